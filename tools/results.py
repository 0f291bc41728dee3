"""The base of every tool result: pydantic, printable, and drawn as small tables in Jupyter.

A result subclasses ``ToolResult`` and implements ``_sections()``: a list of
``(title, header, rows)`` tables. ``str(result)`` gives the same content as plain text and
``result._repr_html_()`` as HTML (notebooks call it). Per-point numpy arrays may live on a
result (``arbitrary_types_allowed``); declare them with ``Field(exclude=True, repr=False)`` so
that ``model_dump()`` / ``model_dump_json()`` stay compact (the agent's observation).
"""
from __future__ import annotations

import html
import math
from typing import Any, Optional, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict

__all__ = ["ToolResult", "Vec3", "fmt_num", "fmt_vec", "html_table", "text_table", "vec"]

Vec3 = tuple[float, float, float]

Section = tuple[str, Sequence[str], Sequence[Sequence[Any]]]


def vec(v, nd: int = 2) -> Vec3:
    """A rounded (x, y, z) tuple of floats."""
    a = np.asarray(v, dtype=np.float64).reshape(3)
    return (round(float(a[0]), nd), round(float(a[1]), nd), round(float(a[2]), nd))


def fmt_num(x: Any, nd: int = 1) -> str:
    """A number for tables: '-' for None / NaN, fixed decimals for floats."""
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, (float, np.floating)):
        return "-" if not math.isfinite(float(x)) else f"{float(x):.{nd}f}"
    return str(x)


def fmt_vec(v: Optional[Sequence[float]], nd: int = 1) -> str:
    if v is None:
        return "-"
    return "(" + ", ".join(f"{float(c):.{nd}f}" for c in v) + ")"


def _auto_decimals(x: float) -> int:
    """Decimals that keep a table number readable: one for 1 and above (lengths in cm, MeV),
    two below 1 (probabilities, confidences, direction cosines), three below 0.01."""
    a = abs(float(x))
    return 1 if a >= 1 or a == 0 else 2 if a >= 0.01 else 3


def _cell(x: Any) -> str:
    if isinstance(x, tuple) and len(x) == 3 and all(isinstance(c, (int, float)) for c in x):
        small = all(abs(float(c)) <= 1.0 for c in x)     # a direction: two decimals
        return fmt_vec(x, 2 if small else 1)
    if isinstance(x, (float, np.floating)) and not isinstance(x, bool) and math.isfinite(float(x)):
        return fmt_num(x, _auto_decimals(x))
    return fmt_num(x)


def html_table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th style='text-align:left;padding:2px 8px'>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td style='text-align:left;padding:2px 8px'>{html.escape(_cell(c))}</td>"
                         for c in row) + "</tr>" for row in rows)
    cap = f"<caption style='text-align:left;font-weight:bold'>{html.escape(title)}</caption>" if title else ""
    return (f"<table style='border-collapse:collapse;font-size:90%;margin-bottom:6px'>{cap}"
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def text_table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [list(header)] + [[_cell(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [title] if title else []
    for k, r in enumerate(cells):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


class ToolResult(BaseModel):
    """Base class of tool results (see the module docstring)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    def _sections(self) -> list[Section]:
        """Default: one row per field (names carry the units, e.g. ``length_cm``)."""
        return [("", ["field", "value"], [(k, v) for k, v in self.model_dump().items()])]

    def _headline(self) -> str:
        return type(self).__name__

    def __str__(self) -> str:
        parts = [self._headline()]
        parts += [text_table(t, h, r) for t, h, r in self._sections() if r]
        return "\n\n".join(parts)

    def _repr_html_(self) -> str:
        parts = [f"<div style='font-family:monospace'><b>{html.escape(self._headline())}</b>"]
        parts += [html_table(t, h, r) for t, h, r in self._sections() if r]
        parts.append("</div>")
        return "".join(parts)
