"""The chat app's event display: the 3D view, the XZ / YZ projections and gallery thumbnails.

Every figure has an explicit height (Gradio draws a plotly figure without one at zero height).
The 3D view and the projections come from ``tools.render`` (reconstruction overlays: vertex,
particle starts, directions, Michel electrons); a thumbnail is a small XZ energy map as an RGB
array for ``gr.Gallery``.
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from matplotlib import colormaps
from scipy.ndimage import grey_dilation

from larsight.events.model import Event
from larsight.events.projections import pixel_maps
from larsight.tools import render

__all__ = ["HEIGHT_3D", "HEIGHT_2D", "COLOR_CHOICES", "event_figure", "projections_figure",
           "empty_figure", "thumbnail", "caption", "hits_markdown"]

HEIGHT_3D = 560
HEIGHT_2D = 380
MAX_POINTS_3D = 40_000
"""Larger events are subsampled in the 3D view (the browser stays responsive)."""

COLOR_CHOICES = (("energy", "energy"), ("semantic class", "semantic"), ("particle", "particle"),
                 ("interaction", "interaction"), ("PID", "pid"))
"""(label, ``tools.render`` colour) pairs of the colour selector."""


def empty_figure(message: str, height: int = HEIGHT_3D):
    """A blank figure with a centred note (explicit height)."""
    fig = go.Figure()
    fig.add_annotation(text=message, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False,
                       font=dict(size=15, color="#555"))
    fig.update_layout(height=height, xaxis=dict(visible=False), yaxis=dict(visible=False),
                      margin=dict(l=10, r=10, t=30, b=10), plot_bgcolor="white")
    return fig


def event_figure(event: Event, color_by: str = "energy", overlay: bool = True, labels: str = "reco",
                 height: int = HEIGHT_3D):
    """(3D figure, note): ``labels='truth'`` falls back to the reconstruction, with a note,
    when the event has no truth labels of that kind."""
    note = ""
    if labels == "truth" and color_by != "energy" and getattr(event, color_by, None) is None:
        note = f"this event has no truth '{color_by}' labels: showing the reconstruction's"
        labels = "reco"
    fig = render(event, color_by=color_by, overlay=overlay, labels=labels, height=height,
                 max_points=MAX_POINTS_3D)
    # the legend under the scene: the energy colour bar keeps the right-hand side
    fig.update_layout(margin=dict(l=0, r=0, t=40, b=0),
                      legend=dict(itemsizing="constant", orientation="h", yanchor="top", y=0.0, x=0.0))
    return fig, note


def projections_figure(event: Event, overlay: bool = True, height: int = HEIGHT_2D):
    """The XZ and YZ energy maps side by side, with the reconstruction drawn over them."""
    fig = render(event, view="projections", overlay=overlay, height=height)
    fig.update_layout(margin=dict(l=40, r=10, t=50, b=40))
    return fig


def thumbnail(event: Event, size: int = 160, view: str = "xz") -> np.ndarray:
    """An RGB ``uint8`` (size, size, 3) energy map of one view (log scale, white background)."""
    img = np.full((size, size, 3), 255, np.uint8)
    if len(event) == 0:
        return img
    m = pixel_maps(event, size=size, views=(view,), log=True, crop_to_event=True)[0]
    m = grey_dilation(m, size=(2, 2))  # sparse voxels stay visible at thumbnail size
    hit = m > 0
    if not hit.any():
        return img
    scaled = m / max(float(m.max()), 1e-9)
    rgb = (colormaps["viridis"](0.15 + 0.85 * scaled)[..., :3] * 255).astype(np.uint8)
    img[hit] = rgb[hit]
    return np.ascontiguousarray(img[::-1])  # rows grow upwards in the map: z up on screen


def caption(hit) -> str:
    """Gallery caption of a ``SimilarEvent``: rank, class, topology, energy, similarity."""
    cls = hit.event_class or "?"
    if hit.class_source == "predicted":
        cls += "?"
    return f"#{hit.rank} {cls}" + (f" · {hit.topology}" if hit.topology else "")


def hits_markdown(result) -> str:
    """The hits of a ``SimilarResult`` as a Markdown table (rank, similarity, class, topology,
    visible energy, key)."""
    rows = ["| # | similarity | class | topology | E vis (MeV) | event |", "|---|---|---|---|---|---|"]
    for h in result.hits:
        cls = (h.event_class or "-") + (" (predicted)" if h.class_source == "predicted" else "")
        energy = f"{h.visible_energy_mev:.0f}" if h.visible_energy_mev is not None else "-"
        rows.append(f"| {h.rank} | {h.similarity:.3f} | {cls} | {h.topology or '-'} | {energy} | `{h.key}` |")
    return "\n".join(rows)
