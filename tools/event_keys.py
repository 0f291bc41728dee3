"""The event-key grammar: how an indexed event is named and got back.

    from larsight.tools.event_keys import EventRef, parse_event_ref
    parse_event_ref("run7.h5:12").key           # '/abs/run7.h5:12'
    parse_event_ref("sim:nu:seed=3:voxel=0.6:index=12").load()   # simulated again

Two kinds of key:

- ``/abs/file.h5:12``: an event file (PILArNet-M ``.h5`` or ``.root``) and the event's index,
  counted from the start; the ``path:index`` syntax itself is ``tools.inputs.parse_ref``'s;
- ``sim:MODE:seed=S:voxel=CM:index=I``: a simulated event (the simulator is reproducible, so
  mode, seed, grid and index are enough to make it again).

The index rows, the agent's event references, the UI's index picker and the evaluation
suites all use these keys.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np

from larsight.events.formats import read
from larsight.events.model import Event
from larsight.events.sim import MODES

from .inputs import EventFileNotFoundError, ToolInputError, checked_index, parse_ref, split_index

__all__ = ["EventRef", "parse_event_ref", "parse_sim_fields", "looks_like_ref",
           "DEFAULT_SIM_VOXEL_CM", "EVENT_FILE_SUFFIXES"]

DEFAULT_SIM_VOXEL_CM = 0.6
"""Grid of simulated events when a key does not say (the encoder's and the VLM's training grid)."""
EVENT_FILE_SUFFIXES = (".h5", ".hdf5", ".root")

_SIM_KEY = re.compile(r"^sim:(?P<body>.+)$")


@dataclass(frozen=True)
class EventRef:
    """Where one event comes from: a file and an index, or a simulator mode, seed and index.
    Small and picklable (it is what a Ray build ships to its workers)."""

    source: str
    """Absolute file path, or ``sim:<mode>``."""
    index: int
    seed: Optional[int] = None
    voxel_size_cm: Optional[float] = None

    @property
    def is_sim(self) -> bool:
        return self.source.startswith("sim:")

    @property
    def mode(self) -> Optional[str]:
        return self.source[4:] if self.is_sim else None

    @property
    def key(self) -> str:
        if self.is_sim:
            vs = self.voxel_size_cm if self.voxel_size_cm is not None else DEFAULT_SIM_VOXEL_CM
            return f"sim:{self.mode}:seed={self.seed}:voxel={vs:g}:index={self.index}"
        return f"{self.source}:{self.index}"

    def load(self) -> Event:
        """The event: read from its file, or simulated again (events are reproducible)."""
        if self.is_sim:
            # encoder.data imports torch (seconds): only simulating an event again needs it
            from larsight.encoder.data import volume_for

            if self.mode not in MODES:
                raise ValueError(f"{self.key}: unknown simulator mode {self.mode!r}; "
                                 f"known {sorted(MODES)}")
            vs = self.voxel_size_cm if self.voxel_size_cm is not None else DEFAULT_SIM_VOXEL_CM
            vs = round(float(vs), 6)  # a float32 round trip must not change the grid
            return MODES[self.mode](seed=int(self.seed or 0), index=int(self.index),
                                    volume=volume_for(vs))
        if not Path(self.source).exists():
            raise EventFileNotFoundError(f"event file not found: {self.source} (it held event "
                                         f"{self.key} when it was indexed)")
        return read(self.source, int(self.index))

    def to_dict(self) -> dict:
        return {"source": self.source, "index": int(self.index), "seed": self.seed,
                "voxel_size_cm": self.voxel_size_cm}

    @classmethod
    def from_dict(cls, d: dict) -> "EventRef":
        seed, vs = d.get("seed"), d.get("voxel_size_cm")
        ok = lambda v: v is not None and not (isinstance(v, float) and np.isnan(v))
        return cls(str(d["source"]), int(d["index"]), int(seed) if ok(seed) else None,
                   float(vs) if ok(vs) else None)

    @classmethod
    def of_event(cls, event: Event) -> Optional["EventRef"]:
        """The reference an event's ``meta`` records (file + index, or simulator + seed)."""
        m = event.meta
        if m.source is not None and m.index is not None:
            return cls(str(Path(m.source).resolve()), int(m.index))
        gen = m.generator or ""
        mode = re.search(r"\((\w+)\)", gen)
        if gen.startswith("larsight.sim") and mode and m.seed is not None and m.event_id is not None:
            return cls(f"sim:{mode.group(1)}", int(m.event_id), int(m.seed),
                       float(m.volume.voxel_size_cm))
        return None


def parse_sim_fields(body: str, what: str) -> tuple[str, dict[str, str]]:
    """``MODES:name=value:...`` (a ``sim:`` key or spec without its prefix) -> (MODES, fields);
    ``what`` names the text in the error message."""
    parts = body.split(":")
    modes, fields = parts[0], {}
    for part in parts[1:]:
        name, sep, value = part.partition("=")
        if not sep or not name or not value:
            raise ValueError(f"{what}: expected NAME=VALUE after the mode, got {part!r}")
        fields[name.strip()] = value.strip()
    return modes, fields


def _parse_sim_key(s: str, body: str) -> EventRef:
    mode, f = parse_sim_fields(body, f"event reference {s!r}")
    unknown = set(f) - {"seed", "voxel", "index"}
    if unknown or "index" not in f or "," in mode:
        raise ValueError(f"event reference {s!r}: expected sim:MODE:seed=S[:voxel=CM]:index=I")
    try:
        return EventRef(f"sim:{mode}", int(f["index"]), int(f.get("seed", 0)),
                        float(f.get("voxel", DEFAULT_SIM_VOXEL_CM)))
    except ValueError:
        raise ValueError(f"event reference {s!r}: seed and index must be integers, "
                         f"voxel a number (sim:MODE:seed=S[:voxel=CM]:index=I)") from None


def parse_event_ref(text: Union[str, os.PathLike, tuple]) -> EventRef:
    """The ``EventRef`` (what an index row points at) of ``FILE:INDEX``, ``(FILE, INDEX)``,
    ``FILE`` (a one-event file) or ``sim:MODE:seed=S[:voxel=CM]:index=I``.

    Unlike ``tools.inputs.parse_ref``, which only splits ``"path:index"`` into its parts, this
    checks the file and resolves the index (absolute path, index counted from the start).
    File references follow the tools' convention (``tools.inputs``): a missing file raises
    ``EventFileNotFoundError``, an index the file does not have or a several-event file
    without an index ``ToolInputError``; negative indices count from the end."""
    if isinstance(text, tuple):
        if len(text) != 2 or isinstance(text[1], bool) or not isinstance(text[1], (int, np.integer)):
            raise ToolInputError(f"event reference {text!r}: expected (path, integer index)")
        path, index = Path(os.fspath(text[0])).expanduser(), int(text[1])
    else:
        s = str(os.fspath(text)).strip()
        m = _SIM_KEY.match(s)
        if m:
            return _parse_sim_key(s, m.group("body"))
        path, index = parse_ref(s)
    index, _ = checked_index(path, index)
    return EventRef(str(path.resolve()), index)


def looks_like_ref(s: str) -> bool:
    """A query string that names an event (rather than a text to search for)."""
    s = s.strip()
    if not s or "\n" in s:
        return False
    if _SIM_KEY.match(s) and ":index=" in s and " " not in s:
        return True
    p = Path(split_index(s)[0]).expanduser()
    if p.is_file():
        return True
    head, sep, _ = s.rpartition(":")
    if sep and head and not re.search(r"\s", s) and (
            Path(head).expanduser().is_file() or Path(head).suffix.lower() in EVENT_FILE_SUFFIXES):
        return True        # 'file.h5:<not an integer>': a bad reference, not a text
    # a missing event file is an error (not a text query) when it looks like one
    return not re.search(r"\s", s) and p.suffix.lower() in EVENT_FILE_SUFFIXES
