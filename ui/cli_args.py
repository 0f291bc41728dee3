"""Argument types and exit codes of the ``larsight`` command line.

Every numeric option is parsed by a ``Bounded`` type that knows its domain, so that a bad value
(``--n -1``, ``--voxel-size 0``, ``--lr nan``) is argparse's one-line error with exit code 2
instead of a traceback from deep inside a layer; ``tests/test_cli_bad_args.py`` walks every
option of every verb with such values.
"""
from __future__ import annotations

import argparse
import math
from typing import NoReturn, Optional

from larsight.events.model import PILARNET_VOLUME

__all__ = ["EXIT_OK", "EXIT_INTERNAL", "EXIT_USAGE", "EXIT_BAD_INPUT", "EXIT_NO_ANSWER",
           "EXIT_INTERRUPTED", "EXIT_CODES_HELP", "CliError", "UsageError", "BadInputError",
           "NoAnswerError", "Bounded", "count", "whole", "positive", "nonneg", "fraction", "port",
           "voxel_size",
           "CliParser"]

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2          # argparse's own code for bad arguments
EXIT_BAD_INPUT = 3
EXIT_NO_ANSWER = 4
EXIT_INTERRUPTED = 130  # the shell's code for a command stopped by Ctrl+C (128 + SIGINT)

EXIT_CODES_HELP = """\
exit codes:
  0  done (for `ask`: the question was answered)
  1  internal error (a bug: one line; LARSIGHT_DEBUG=1 prints the traceback)
  2  bad arguments: an unknown option, a value out of range, an output that cannot be written
  3  bad input: a file given to read (events, a checkpoint, an index) that is missing,
     unreadable, corrupt or too costly to read; an event index out of range; an empty event
  4  no answer: an empty question, or the agent could not answer (back-end failure)
  130 interrupted (Ctrl+C)"""


class CliError(Exception):
    """A failure whose message is for the user, with the exit code it ends in."""

    code = EXIT_INTERNAL


class UsageError(CliError, ValueError):
    code = EXIT_USAGE


class BadInputError(CliError, ValueError):
    code = EXIT_BAD_INPUT


class NoAnswerError(CliError):
    code = EXIT_NO_ANSWER


class Bounded:
    """An argparse ``type``: an int or a finite float within [lo, hi] (``lo_open``: > lo).

    Carries its bounds so that the bad-argument test can derive values outside them."""

    def __init__(self, kind: type, lo: Optional[float] = None, hi: Optional[float] = None,
                 lo_open: bool = False):
        if kind not in (int, float):
            raise TypeError(f"Bounded: kind must be int or float, got {kind!r}")
        self.kind, self.lo, self.hi, self.lo_open = kind, lo, hi, lo_open
        self.__name__ = "integer" if kind is int else "number"   # argparse names the type by it

    def __call__(self, text: str):
        try:
            value = self.kind(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"expected {'an integer' if self.kind is int else 'a number'}, "
                                             f"got {text!r}") from None
        if self.kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if self.lo is not None and (value < self.lo or (self.lo_open and value == self.lo)):
            raise argparse.ArgumentTypeError(f"must be {'>' if self.lo_open else '>='} {self.lo:g}, got {text}")
        if self.hi is not None and value > self.hi:
            raise argparse.ArgumentTypeError(f"must be <= {self.hi:g}, got {text}")
        return value

    def __repr__(self) -> str:
        lo = "(" if self.lo_open else "["
        return f"Bounded({self.kind.__name__}, {lo}{self.lo}, {self.hi}])"


MAX_SEED = 2**63 - 1  # seeds reach int64 arrays and torch.manual_seed


def count(lo: int = 1, hi: Optional[int] = None) -> Bounded:
    """A number of things (events, steps, workers): an integer >= ``lo``."""
    return Bounded(int, lo, hi)


def whole(hi: Optional[int] = MAX_SEED) -> Bounded:
    """An integer >= 0 (a seed, an event number)."""
    return Bounded(int, 0, hi)


def positive(hi: Optional[float] = None) -> Bounded:
    """A finite number > 0 (a learning rate, a size in cm or MB, minutes)."""
    return Bounded(float, 0.0, hi, lo_open=True)


def nonneg(hi: Optional[float] = None) -> Bounded:
    """A finite number >= 0 (a temperature, an energy)."""
    return Bounded(float, 0.0, hi)


def fraction() -> Bounded:
    """A share in (0, 1)."""
    return Bounded(float, 0.0, 1.0, lo_open=True)


def voxel_size() -> Bounded:
    """A voxel edge in cm: > 0 and no larger than the PILArNet-M volume's edge."""
    return positive(hi=float(PILARNET_VOLUME.size_cm[0]))


def port() -> Bounded:
    return Bounded(int, 1, 65535)


class CliParser(argparse.ArgumentParser):
    """argparse with a one-line error: 'larsight VERB: error: WHAT (larsight VERB --help)'."""

    def error(self, message: str) -> NoReturn:
        text = " ".join(message.split())
        self.exit(EXIT_USAGE, f"{self.prog}: error: {text} (see `{self.prog} --help`)\n")
