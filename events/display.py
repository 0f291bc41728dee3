"""Event displays: interactive plotly 3D scatter and 2D projections, static matplotlib PNGs.

    fig = plot_event(ev, color_by="semantic")      # plotly Figure (explicit height, equal aspect)
    save_html(fig, "event.html")                   # atomic: temp file + os.replace
    plot_projections(ev)                           # XZ and YZ heatmaps, log scale
    render_png(ev, "event.png", color_by="pid")    # XZ, YZ, XY panels for reports / README

``overlays`` (for reconstruction results) is a list of dicts or pydantic models, one trace each:

    {"kind": "points", "points": [[x, y, z], ...], "name": "reco vertex", "text": ["v0"],
     "color": "black", "size": 6, "symbol": "x"}
    {"kind": "segments", "segments": [[[x0, y0, z0], [x1, y1, z1]], ...], "name": "muon dir",
     "color": "red", "width": 5}
    {"kind": "segments", "start": [x, y, z], "end": [x, y, z], ...}          # one segment
    {"kind": "segments", "start": [x, y, z], "direction": [dx, dy, dz], "length_cm": 30}

``kind`` may be left out: ``points`` -> points, ``segments``/``start`` -> segments.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from larsight.events.formats.atomic import atomic_path
from larsight.events.model import PID_CLASSES, SEMANTIC_CLASSES, Event

COLOR_BY = ("energy", "semantic", "particle", "interaction", "pid")

SEMANTIC_COLORS = {0: "#1f77b4", 1: "#d62728", 2: "#2ca02c", 3: "#ff7f0e", 4: "#9467bd", -1: "#7f7f7f"}
PID_COLORS = {0: "#17becf", 1: "#1f77b4", 2: "#d62728", 3: "#ff7f0e", 4: "#2ca02c", 5: "#8c564b",
              -1: "#7f7f7f"}
_CYCLE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22",
          "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d",
          "#31a354", "#756bb1", "#636363", "#fd8d3c")
MAX_INSTANCE_TRACES = 30
"""Particles / interactions beyond this many (ordered by energy) share one 'other' trace."""

_AXIS_TITLES = ("x [cm]", "y [cm]", "z [cm] (beam)")


# ---------------------------------------------------------------------------- helpers
def _check_color_by(color_by: str) -> None:
    if color_by not in COLOR_BY:
        raise ValueError(f"color_by must be one of {COLOR_BY}, got {color_by!r}")


def _labels(event: Event, name: str) -> np.ndarray:
    arr = getattr(event, name)
    if arr is None:
        return np.full(len(event), -1, dtype=np.int64)
    return arr.astype(np.int64)


def _names(table: Sequence[str], labels: np.ndarray, none: str = "none") -> np.ndarray:
    lookup = np.array(list(table) + [none], dtype=object)
    idx = np.where((labels >= 0) & (labels < len(table)), labels, len(table))
    return lookup[idx]


def _subsample(event: Event, max_points: Optional[int], seed: int = 0) -> Event:
    if max_points is None or len(event) <= max_points:
        return event
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(event), size=int(max_points), replace=False))
    return event.select(keep)


def _particle_names(event: Event) -> dict[int, str]:
    out = {}
    for p in event.particles:
        out[p.id] = f"particle {p.id} ({p.pid_name}{', pdg ' + str(p.pdg) if p.pdg else ''})"
    return out


def _interaction_names(event: Event) -> dict[int, str]:
    out = {-1: "background"}
    for i in event.interactions:
        what = i.event_class or (f"{i.current} {i.channel}" if i.current else i.channel) or ""
        out[i.id] = f"interaction {i.id}" + (f" ({what})" if what else "")
    return out


def _groups(event: Event, color_by: str) -> list[tuple[str, str, np.ndarray]]:
    """(legend name, colour, point mask) per category, in legend order."""
    labels = _labels(event, color_by)
    present = np.unique(labels)
    if color_by == "semantic":
        return [(SEMANTIC_CLASSES[k] if k >= 0 else "unlabelled", SEMANTIC_COLORS.get(int(k), "#7f7f7f"),
                 labels == k) for k in sorted(present, key=lambda k: (k < 0, k))]
    if color_by == "pid":
        return [(PID_CLASSES[k] if 0 <= k < len(PID_CLASSES) else "none", PID_COLORS.get(int(k), "#7f7f7f"),
                 labels == k) for k in sorted(present, key=lambda k: (k < 0, k))]
    names = _particle_names(event) if color_by == "particle" else _interaction_names(event)
    energy = np.bincount(np.searchsorted(present, labels), weights=event.energy, minlength=present.size)
    order = [present[i] for i in np.argsort(-energy, kind="stable")]
    labelled = [k for k in order if k >= 0]
    main, rest = labelled[:MAX_INSTANCE_TRACES], labelled[MAX_INSTANCE_TRACES:]
    out = []
    for n, k in enumerate(main):
        default = f"{color_by} {k}"
        out.append((names.get(int(k), default), _CYCLE[n % len(_CYCLE)], labels == k))
    if rest:
        out.append((f"{len(rest)} other {color_by}s", "#bbbbbb", np.isin(labels, rest)))
    if -1 in present:
        out.append(("background" if color_by == "interaction" else f"no {color_by}", "#7f7f7f", labels == -1))
    return out


def _cube_ranges(points: np.ndarray, extra: Iterable[np.ndarray] = (), pad: float = 0.05,
                 fallback: Optional[tuple[np.ndarray, np.ndarray]] = None) -> list[list[float]]:
    """Per-axis [lo, hi] of a cube holding all points (equal aspect)."""
    arrays = [np.asarray(points, dtype=np.float64).reshape(-1, 3)]
    arrays += [np.asarray(e, dtype=np.float64).reshape(-1, 3) for e in extra]
    allp = np.concatenate(arrays) if arrays else np.empty((0, 3))
    # a non-finite overlay or vertex must not take the axis limits with it
    allp = allp[np.all(np.isfinite(allp), axis=1)]
    if allp.size == 0:
        lo, hi = fallback if fallback is not None else (np.zeros(3), np.ones(3))
    else:
        lo, hi = allp.min(axis=0), allp.max(axis=0)
    centre = (lo + hi) / 2
    half = max(float(np.max(hi - lo)) / 2, 1.0) * (1 + pad)
    return [[float(c - half), float(c + half)] for c in centre]


def _vertices(event: Event) -> tuple[np.ndarray, list[str]]:
    pts, text = [], []
    for i in event.interactions:
        pts.append(i.vertex_cm)
        bits = [f"interaction {i.id}"]
        if i.event_class:
            bits.append(i.event_class)
        if i.channel:
            bits.append(i.channel)
        if i.nu_energy_mev:
            bits.append(f"E_nu = {i.nu_energy_mev:.0f} MeV")
        text.append(" | ".join(bits))
    return np.asarray(pts, dtype=np.float64).reshape(-1, 3), text


def _as_dict(item: Any) -> dict:
    if hasattr(item, "model_dump"):
        return item.model_dump()
    if isinstance(item, dict):
        return dict(item)
    raise TypeError(f"overlay items are dicts or pydantic models, got {type(item).__name__}")


def _overlay_geometry(item: dict) -> tuple[str, np.ndarray]:
    """('points', (M,3)) or ('segments', (S,2,3)) for one overlay item."""
    kind = item.get("kind")
    if kind is None:
        kind = "points" if "points" in item else "segments" if ("segments" in item or "start" in item) else None
    if kind in ("point", "points"):
        pts = np.asarray(item.get("points", []), dtype=np.float64).reshape(-1, 3)
        return "points", pts
    if kind in ("segment", "segments", "line", "lines", "direction"):
        if item.get("segments") is not None:
            seg = np.asarray(item["segments"], dtype=np.float64).reshape(-1, 2, 3)
        else:
            start = np.asarray(item["start"], dtype=np.float64).reshape(3)
            if item.get("end") is not None:
                end = np.asarray(item["end"], dtype=np.float64).reshape(3)
            elif item.get("direction") is not None:
                d = np.asarray(item["direction"], dtype=np.float64).reshape(3)
                norm = np.linalg.norm(d)
                if norm == 0:
                    raise ValueError("overlay: direction has zero length")
                end = start + d / norm * float(item.get("length_cm", 20.0))
            else:
                raise ValueError("overlay: a segment needs 'end' or 'direction'")
            seg = np.stack([start, end])[None]
        return "segments", seg
    raise ValueError(f"overlay: unknown kind {kind!r} (use 'points' or 'segments')")


def _summary_title(event: Event) -> str:
    bits = []
    if event.event_class:
        bits.append(event.event_class)
    bits.append(f"{len(event)} points")
    bits.append(f"{event.total_energy_mev:.1f} MeV")
    if event.meta.source is not None:
        src = Path(event.meta.source).name
        bits.append(f"{src}[{event.meta.index}]" if event.meta.index is not None else src)
    return " | ".join(bits)


# ---------------------------------------------------------------------------- plotly
_HOVER = ("x %{x:.1f}, y %{y:.1f}, z %{z:.1f} cm<br>E = %{customdata[0]} MeV<br>"
          "semantic: %{customdata[1]}<br>particle: %{customdata[2]} (%{customdata[3]})<br>"
          "interaction: %{customdata[4]}<extra>%{fullData.name}</extra>")


def _custom_data(ev: Event) -> np.ndarray:
    """Per-point hover columns: energy, semantic name, particle, pid name, interaction."""
    sem, part, inter, pid = (_labels(ev, k) for k in ("semantic", "particle", "interaction", "pid"))
    return np.stack([ev.energy.astype(np.float64).round(4).astype(object),
                     _names(SEMANTIC_CLASSES, sem, "none"),
                     part.astype(object), _names(PID_CLASSES, pid, "none"), inter.astype(object)], axis=1)


def _energy_trace(ev: Event, custom: np.ndarray, marker_size: float) -> dict:
    """Scatter3d arguments of the single log10-energy trace."""
    p = ev.points
    e = np.maximum(ev.energy.astype(np.float64), 1e-4)
    loge = np.log10(e)
    order = np.argsort(loge, kind="stable")          # bright points drawn last
    lo = np.floor(loge.min()) if loge.size else -2.0
    hi = np.ceil(loge.max()) if loge.size else 2.0
    if hi <= lo:
        hi = lo + 1
    ticks = np.arange(lo, hi + 1)
    return dict(
        x=p[order, 0], y=p[order, 1], z=p[order, 2], mode="markers", name="energy",
        customdata=custom[order], hovertemplate=_HOVER,
        marker=dict(size=marker_size, color=loge[order], colorscale="Viridis", cmin=lo, cmax=hi,
                    colorbar=dict(title="E [MeV]", tickvals=ticks.tolist(),
                                  ticktext=[f"{10 ** t:g}" for t in ticks]), opacity=0.9),
        showlegend=False)


def _category_traces(ev: Event, color_by: str, custom: np.ndarray, marker_size: float) -> list[dict]:
    """Scatter3d arguments of one trace per category of ``color_by``."""
    p = ev.points
    return [dict(x=p[mask, 0], y=p[mask, 1], z=p[mask, 2], mode="markers", name=name,
                 customdata=custom[mask], hovertemplate=_HOVER,
                 marker=dict(size=marker_size, color=color, opacity=0.9))
            for name, color, mask in _groups(ev, color_by)]


def _vertex_trace(ev: Event) -> tuple[np.ndarray, dict]:
    """(vertices, Scatter3d arguments) of the truth-vertex diamonds."""
    vtx, text = _vertices(ev)
    return vtx, dict(
        x=vtx[:, 0], y=vtx[:, 1], z=vtx[:, 2], mode="markers", name="truth vertex", text=text,
        hovertemplate="%{text}<br>(%{x:.1f}, %{y:.1f}, %{z:.1f}) cm<extra></extra>",
        marker=dict(size=6, color="black", symbol="diamond", line=dict(color="white", width=1)))


def _overlay_trace(n: int, raw: Any) -> tuple[np.ndarray, dict]:
    """((M, 3) points that the axes must hold, Scatter3d arguments) of overlay item ``n``."""
    item = _as_dict(raw)
    kind, geo = _overlay_geometry(item)
    name = item.get("name") or f"overlay {n}"
    color = item.get("color") or _CYCLE[(n + 3) % len(_CYCLE)]
    if kind == "points":
        text = item.get("text", item.get("labels", item.get("label")))
        if isinstance(text, str):
            text = [text] * len(geo)
        return geo, dict(
            x=geo[:, 0], y=geo[:, 1], z=geo[:, 2], mode="markers", name=name, text=text,
            hovertemplate=(("%{text}<br>" if text is not None else "")
                           + "(%{x:.1f}, %{y:.1f}, %{z:.1f}) cm<extra>%{fullData.name}</extra>"),
            marker=dict(size=float(item.get("size", 5)), color=color,
                        symbol=item.get("symbol", "cross")))
    xs, ys, zs = [], [], []
    for a, b in geo:                          # None breaks the line between segments
        xs += [a[0], b[0], None]
        ys += [a[1], b[1], None]
        zs += [a[2], b[2], None]
    return geo.reshape(-1, 3), dict(x=xs, y=ys, z=zs, mode="lines", name=name, hoverinfo="name",
                                    line=dict(color=color, width=float(item.get("width", 5))))


def _scene_layout(event: Event, points: np.ndarray, extra: list[np.ndarray], height: int,
                  title: Optional[str], color_by: str) -> dict:
    """update_layout arguments: explicit height, title, and a cubic scene over everything drawn."""
    v = event.meta.volume
    ranges = _cube_ranges(points, extra, fallback=(v.lower_cm, v.upper_cm))
    axes = {f"{k}axis": dict(title=t, range=r, backgroundcolor="white", gridcolor="#dddddd")
            for k, t, r in zip("xyz", _AXIS_TITLES, ranges)}
    return dict(
        height=int(height), title=dict(text=title if title is not None else _summary_title(event), x=0.02),
        margin=dict(l=0, r=0, t=40, b=0), legend=dict(itemsizing="constant", title=color_by),
        scene=dict(aspectmode="cube", camera=dict(up=dict(x=0, y=1, z=0),
                                                  eye=dict(x=1.25, y=0.9, z=1.25)), **axes),
        template="plotly_white")


def plot_event(event: Event, color_by: str = "energy", height: int = 600, max_points: Optional[int] = None,
               overlays: Optional[Sequence[Any]] = None, marker_size: float = 2.0,
               title: Optional[str] = None, show_vertices: bool = True):
    """A plotly 3D scatter of the event (``plotly.graph_objects.Figure``).

    ``color_by``: ``energy`` (one trace, log10 colour scale in MeV) or one trace per category of
    ``semantic`` / ``pid`` (legend names from SEMANTIC_CLASSES / PID_CLASSES), ``particle`` /
    ``interaction`` (the largest ``MAX_INSTANCE_TRACES`` by energy, the rest grouped). Hover
    shows energy and all labels. Truth vertices (interaction table) are drawn as diamonds in a
    trace named ``truth vertex``; ``overlays`` add one trace each (see the module docstring).
    The layout has an explicit ``height`` (Gradio draws figures without one at zero height) and
    a cubic scene over the event's extent (equal aspect); y is up, z (beam) along the view.
    ``max_points`` subsamples points at random (seeded) for very large events.
    """
    import plotly.graph_objects as go

    _check_color_by(color_by)
    ev = _subsample(event, max_points)
    custom = _custom_data(ev)
    if color_by == "energy":
        traces = [go.Scatter3d(**_energy_trace(ev, custom, marker_size))]
    else:
        traces = [go.Scatter3d(**kw) for kw in _category_traces(ev, color_by, custom, marker_size)]
    extra = []
    if show_vertices and ev.interactions:
        vtx, kw = _vertex_trace(ev)
        extra.append(vtx)
        traces.append(go.Scatter3d(**kw))
    for n, raw in enumerate(overlays or []):
        geo, kw = _overlay_trace(n, raw)
        extra.append(geo)
        traces.append(go.Scatter3d(**kw))
    fig = go.Figure(data=traces)
    fig.update_layout(**_scene_layout(event, ev.points, extra, height, title, color_by))
    return fig


def plot_projections(event: Event, size: int = 256, height: int = 450, crop_to_event: bool = True,
                     views: Sequence[str] = ("xz", "yz")):
    """The XZ and YZ energy maps side by side as plotly heatmaps on a log10 MeV scale.

    ``crop_to_event`` (default) bins a square box around the event in each view; ``False`` the
    full volume (the VLM paper's input). Empty pixels are transparent.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from larsight.events.projections import pixel_maps, view_extents

    maps = pixel_maps(event, size=size, views=views, crop_to_event=crop_to_event)
    boxes = view_extents(event, views, crop_to_event=crop_to_event)
    fig = make_subplots(rows=1, cols=len(views), subplot_titles=[v.upper() for v in views],
                        horizontal_spacing=0.1)
    positive = maps[maps > 0]
    lo = float(np.floor(np.log10(positive.min()))) if positive.size else -2.0
    hi = float(np.ceil(np.log10(positive.max()))) if positive.size else 2.0
    if hi <= lo:
        hi = lo + 1
    ticks = np.arange(lo, hi + 1)
    for k, (view, m, ((alo, ahi), (blo, bhi))) in enumerate(zip(views, maps, boxes)):
        da, db = (ahi - alo) / size, (bhi - blo) / size
        with np.errstate(divide="ignore"):
            z = np.where(m > 0, np.log10(np.where(m > 0, m, 1)), np.nan)
        fig.add_trace(go.Heatmap(
            z=z, x=alo + da * (np.arange(size) + 0.5), y=blo + db * (np.arange(size) + 0.5),
            colorscale="Viridis", zmin=lo, zmax=hi, showscale=(k == len(views) - 1),
            colorbar=dict(title="MeV", tickvals=ticks.tolist(), ticktext=[f"{10 ** t:g}" for t in ticks]),
            customdata=m, hovertemplate=f"{view[0]} %{{x:.1f}} cm, {view[1]} %{{y:.1f}} cm<br>"
                                        "%{customdata:.3g} MeV<extra></extra>",
            name=view.upper()), row=1, col=k + 1)
        fig.update_xaxes(title_text=f"{view[0]} [cm]", range=[alo, ahi], row=1, col=k + 1)
        fig.update_yaxes(title_text=f"{view[1]} [cm]", range=[blo, bhi], row=1, col=k + 1,
                         scaleanchor=f"x{k + 1 if k else ''}", scaleratio=1)
    fig.update_layout(height=int(height), title=dict(text=_summary_title(event), x=0.02),
                      margin=dict(l=40, r=20, t=60, b=40), template="plotly_white",
                      plot_bgcolor="white")
    return fig


# ---------------------------------------------------------------------------- files
def _atomic_write(path, write) -> Path:
    """Call ``write(tmp_path)`` on a temp file next to ``path``, then swap it in
    (:func:`larsight.events.formats.atomic.atomic_path`); creates missing parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        write(str(tmp))
    return path


def save_html(fig, path, include_plotlyjs: Any = True) -> Path:
    """Write a plotly figure as a standalone HTML page, atomically (temp file + ``os.replace``).

    ``include_plotlyjs=True`` embeds plotly.js (works offline, ~4 MB); ``"cdn"`` links it.
    """
    html = fig.to_html(include_plotlyjs=include_plotlyjs, full_html=True)

    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(html)

    return _atomic_write(path, write)


# ---------------------------------------------------------------------------- matplotlib
def _mpl():
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "ps", "cairo", "pgf") \
            and not os.environ.get("DISPLAY"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def draw_event_panels(event: Event, axes, color_by: str = "semantic", point_size: float = 1.5,
                      show_vertices: bool = True, legend: bool = True):
    """Draw XZ, YZ and XY scatter panels of ``event`` onto three matplotlib axes."""
    _check_color_by(color_by)
    views = ((0, 2, "XZ"), (1, 2, "YZ"), (0, 1, "XY"))
    p = event.points
    v = event.meta.volume
    ranges = _cube_ranges(p, [_vertices(event)[0]] if show_vertices else [], pad=0.05,
                          fallback=(v.lower_cm, v.upper_cm))
    mappable = None
    handles = []
    for ax, (a, b, title) in zip(axes, views):
        if color_by == "energy":
            e = np.maximum(event.energy.astype(np.float64), 1e-4)
            order = np.argsort(e, kind="stable")
            from matplotlib.colors import LogNorm

            norm = LogNorm(vmin=max(e.min(), 1e-3), vmax=max(e.max(), 1e-2)) if e.size else None
            mappable = ax.scatter(p[order, a], p[order, b], c=e[order], s=point_size, cmap="viridis",
                                  norm=norm, linewidths=0)
        else:
            handles = []
            for name, color, mask in _groups(event, color_by):
                h = ax.scatter(p[mask, a], p[mask, b], s=point_size, color=color, label=name, linewidths=0)
                handles.append(h)
        if show_vertices and event.interactions:
            vtx, _ = _vertices(event)
            hv = ax.scatter(vtx[:, a], vtx[:, b], marker="D", s=30, facecolor="none", edgecolor="black",
                            linewidths=1.2, label="truth vertex", zorder=5)
            if ax is axes[0] and color_by != "energy":
                handles.append(hv)
        ax.set_xlim(*ranges[a])
        ax.set_ylim(*ranges[b])
        ax.set_aspect("equal")
        ax.set_xlabel(_AXIS_TITLES[a])
        ax.set_ylabel(_AXIS_TITLES[b])
        ax.set_title(title)
        ax.grid(alpha=0.2)
    return mappable, handles


def render_png(event: Event, path, color_by: str = "semantic", dpi: int = 120,
               max_points: Optional[int] = None, title: Optional[str] = None) -> Path:
    """A static PNG with XZ, YZ and XY projections coloured by ``color_by`` (atomic write)."""
    plt = _mpl()
    ev = _subsample(event, max_points)
    fig, axes = plt.subplots(1, 3, figsize=(15, 5.4), constrained_layout=True)
    try:
        mappable, handles = draw_event_panels(ev, axes, color_by=color_by)
        if color_by == "energy" and mappable is not None:
            fig.colorbar(mappable, ax=axes, label="E per voxel [MeV]", shrink=0.8)
        elif handles:
            fig.legend(handles=handles, loc="outside right upper", markerscale=4, fontsize=8,
                       title=color_by)
        fig.suptitle(title if title is not None else _summary_title(event))
        _atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png"))
    finally:
        plt.close(fig)
    return Path(path)
