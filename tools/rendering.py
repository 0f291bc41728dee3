"""``render``: the event as a plotly figure, with the reconstruction drawn over it.

    from larsight.tools import render
    fig = render("run.h5:3")                              # 3D, coloured by energy, overlays on
    fig = render(ev, color_by="particle")                 # reconstructed particles, one colour each
    fig = render(ev, color_by="semantic", labels="truth") # the event's own truth labels
    fig = render(ev, view="projections")                  # XZ and YZ energy maps side by side
    fig = render(ev, view="xz")                           # one 2D view
    render(ev, out="event.html")                          # also written to a file (atomic)
    render(ev, view="projections", out="xz_yz.png")       # static image (needs kaleido)

Built on ``events.display`` (``plot_event``, ``plot_projections``; explicit figure height, so
Gradio draws it). Overlays (``overlay=True``): the reconstructed vertex (black x), particle
starts (grey dots, hover: type, length, energy), track start-to-end lines and shower axes in
the colour of their PID, and Michel electrons (green diamonds). ``labels="reco"`` (default)
colours by what the tools found (``semantic``: the segmentation; ``particle``, ``pid``,
``interaction``: the reconstruction); ``labels="truth"`` by the event's labels.

``out=PATH`` writes the figure as well as returning it, atomically (a temporary file beside
PATH, then a rename): ``.html`` is a standalone interactive page (plotly.js embedded, works
offline); ``.png`` / ``.svg`` / ``.pdf`` / ``.jpg`` / ``.webp`` use plotly's static export,
which needs the optional ``kaleido`` package (without it the call fails with
``ImageExportError`` before any work is done; ``events.display.render_png`` draws a
matplotlib PNG of the XZ / YZ / XY projections without it).
"""
from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path
from typing import Literal, Optional, Union

import numpy as np

# plotly (about a second to import) is imported where a figure is drawn, so that importing the
# tools never loads it (tests/test_tools_core.py checks `import larsight.tools`)
from larsight.events.display import _overlay_geometry, _vertices, plot_event, plot_projections, save_html
from larsight.events.model import PID_CLASSES, Event, Particle

from . import engine
from .inputs import EventLike, describe_ref, load_event
from .reconstruction import Reconstruction, reconstruct
from .segmentation import segment

__all__ = ["render", "save_figure", "ImageExportError", "COLOR_BY", "VIEWS", "FILE_FORMATS"]

COLOR_BY = ("energy", "semantic", "particle", "interaction", "pid")
VIEWS = ("3d", "xz", "yz", "projections")
IMAGE_FORMATS = ("png", "svg", "pdf", "jpg", "jpeg", "webp")
FILE_FORMATS = ("html",) + IMAGE_FORMATS
"""What ``render(..., out=PATH)`` writes, by PATH's suffix."""
_AXES = {"x": 0, "y": 1, "z": 2}


class ImageExportError(RuntimeError):
    """A static image (.png, .svg, ...) cannot be written here (kaleido missing or failing)."""


def _out_format(out: Union[str, os.PathLike]) -> str:
    """The file format of ``out`` from its suffix; ValueError for anything else, and
    ``ImageExportError`` for an image format when plotly's static export is not installed."""
    path = Path(out)
    fmt = path.suffix.lower().lstrip(".")
    if fmt in ("htm",):
        fmt = "html"
    if fmt not in FILE_FORMATS:
        raise ValueError(f"render: cannot write {path}: the file name must end in one of "
                         f"{', '.join('.' + f for f in FILE_FORMATS)}")
    if path.is_dir():
        raise ValueError(f"render: cannot write {path}: it is a directory")
    if fmt != "html" and importlib.util.find_spec("kaleido") is None:
        raise ImageExportError(
            f"render: writing {path.name} (.{fmt}) needs plotly's static image export, the "
            f"'kaleido' package, which is not installed (pip install kaleido); write .html "
            f"instead (interactive, no extra package), or use events.display.render_png for a "
            f"matplotlib PNG of the XZ / YZ / XY projections")
    return fmt


def save_figure(fig, out: Union[str, os.PathLike], *, width: Optional[int] = None,
                height: Optional[int] = None, scale: float = 2.0) -> Path:
    """Write a plotly figure to ``out`` atomically (see the module docstring for formats).

    ``width`` / ``height`` (pixels) and ``scale`` apply to static images; an HTML page keeps
    the figure's own size. Returns the path written."""
    fmt = _out_format(out)
    path = Path(out).expanduser()
    if fmt == "html":
        return save_html(fig, path)
    try:
        data = fig.to_image(format="jpg" if fmt == "jpeg" else fmt, width=width,
                            height=height or fig.layout.height, scale=scale)
    except Exception as exc:   # kaleido present but unusable (e.g. no browser for kaleido 1.x)
        raise ImageExportError(f"render: plotly's static export could not write {path.name}: "
                               f"{type(exc).__name__}: {exc}; write .html instead") from exc
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _reco_event(ev: Event, reco: Reconstruction, seg) -> Event:
    """The event carrying the tools' labels: predicted semantic classes, reconstructed
    particle ids, their PID and interaction (points of no particle: -1)."""
    n = len(ev)
    particle = np.full(n, -1, np.int32)
    pid = np.full(n, -1, np.int8)
    inter = np.full(n, -1, np.int32)
    table = []
    for p in reco.particles:
        idx = p.point_index
        particle[idx] = p.id
        pid[idx] = PID_CLASSES.index(p.pid)
        inter[idx] = p.interaction
        table.append(Particle(id=p.id, pid=PID_CLASSES.index(p.pid), interaction=p.interaction,
                              start_cm=p.start_cm, end_cm=p.end_cm))
    return Event(points=ev.points, energy=ev.energy, semantic=seg.semantic.astype(np.int8),
                 particle=particle, interaction=inter, pid=pid, particles=table, meta=ev.meta)


def _title(ev: Event, reco: Optional[Reconstruction]) -> str:
    bits = []
    src = describe_ref(ev)
    if src:
        bits.append(src)
    bits.append(f"{len(ev)} points, {ev.total_energy_mev:.0f} MeV")
    if reco is not None:
        bits.append(f"reco {reco.topology}")
        v = reco.vertex
        bits.append(f"vertex {v.status}" + (f" ({v.confidence:.2f})" if v.vertex_cm is not None else ""))
    if ev.event_class:
        bits.append(f"truth {ev.event_class}")
    return " | ".join(bits)


def _add_2d_overlays(fig, overlays: list[dict], views: list[str]) -> None:
    import plotly.graph_objects as go   # plotly: see the module's import note

    for col, view in enumerate(views, start=1):
        a, b = _AXES[view[0]], _AXES[view[1]]
        for item in overlays:
            kind, geo = _overlay_geometry(item)
            name = item.get("name", "overlay")
            color = item.get("color", "black")
            if kind == "points":
                fig.add_trace(go.Scatter(
                    x=geo[:, a], y=geo[:, b], mode="markers", name=name, legendgroup=name,
                    showlegend=col == 1, text=item.get("text"),
                    marker=dict(color=color, size=float(item.get("size", 5)) + 3,
                                symbol={"x": "x", "diamond": "diamond"}.get(item.get("symbol"), "circle"),
                                line=dict(color="white", width=1)),
                    hovertemplate="%{text}<extra>%{fullData.name}</extra>" if item.get("text") else None),
                    row=1, col=col)
            else:
                xs, ys = [], []
                for p0, p1 in geo:
                    xs += [p0[a], p1[a], None]
                    ys += [p0[b], p1[b], None]
                fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=name, legendgroup=name,
                                         showlegend=col == 1, line=dict(color=color, width=2)),
                              row=1, col=col)


def render(event: EventLike, color_by: str = "energy", overlay: bool = True,
           view: Literal["3d", "xz", "yz", "projections"] = "3d",
           labels: Literal["reco", "truth"] = "reco", height: int = 600,
           max_points: Optional[int] = None, model: engine.ModelLike = None,
           out: Optional[Union[str, os.PathLike]] = None):
    """A plotly figure of one event (``plotly.graph_objects.Figure``; see the module docstring).

    ``color_by``: energy | semantic | particle | interaction | pid (3D view; the 2D views show
    energy maps). ``view``: 3d, xz, yz or projections (XZ and YZ side by side). ``overlay``:
    draw the reconstruction. ``height`` in pixels. ``max_points`` subsamples huge events in 3D.
    ``out``: also write the figure there (.html, or .png / .svg / ... with kaleido), atomically."""
    if color_by not in COLOR_BY:
        raise ValueError(f"render: color_by must be one of {COLOR_BY}, got {color_by!r}")
    if view not in VIEWS:
        raise ValueError(f"render: view must be one of {VIEWS}, got {view!r}")
    if labels not in ("reco", "truth"):
        raise ValueError(f"render: labels must be 'reco' or 'truth', got {labels!r}")
    if out is not None:
        _out_format(out)          # a bad file name fails before any work
    ev = load_event(event, tool="render")
    fig = _figure(ev, color_by, overlay, view, labels, height, max_points, model)
    if out is not None:
        save_figure(fig, out)
    return fig


def _figure(ev: Event, color_by: str, overlay: bool, view: str, labels: str, height: int,
            max_points: Optional[int], model: engine.ModelLike):
    need_reco = overlay or (labels == "reco" and color_by != "energy")
    reco = reconstruct(ev, model=model) if need_reco else None
    overlays = reco.overlays() if (overlay and reco is not None) else []
    title = _title(ev, reco)
    if view != "3d":
        views = ["xz", "yz"] if view == "projections" else [view]
        fig = plot_projections(ev, views=tuple(views), height=height)
        if overlays:
            _add_2d_overlays(fig, overlays, views)
        fig.update_layout(title=dict(text=title, x=0.02), legend=dict(orientation="h", y=-0.15))
        return fig
    shown = ev
    if labels == "reco" and color_by != "energy":
        shown = _reco_event(ev, reco, segment(ev, model=model))
    elif labels == "truth" and color_by != "energy" and getattr(ev, color_by) is None:
        raise ValueError(f"render: the event has no truth '{color_by}' labels; use labels='reco'")
    fig = plot_event(shown, color_by=color_by, height=height, max_points=max_points,
                     overlays=overlays, title=title, show_vertices=True)
    if shown is not ev and ev.interactions:
        # plot_event draws truth vertices from the event's table: keep them on the reco view
        import plotly.graph_objects as go   # plotly: see the module's import note

        vtx, text = _vertices(ev)
        fig.add_trace(go.Scatter3d(x=vtx[:, 0], y=vtx[:, 1], z=vtx[:, 2], mode="markers",
                                   name="truth vertex", text=text,
                                   hovertemplate="%{text}<extra></extra>",
                                   marker=dict(size=6, color="black", symbol="diamond",
                                               line=dict(color="white", width=1))))
    return fig
