"""Summary statistics and plots of an event file: ``larsight inspect PATH``.

    report = inspect("events.h5")            # streams the file once, event by event
    print(report)                            # readable summary
    report.plots                             # PNGs in events.h5.inspect/

Everything is accumulated on the fly (per-event numbers, fixed-bin histograms, class sums), so
files of any size are inspected in constant memory apart from two floats per event.
"""
from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

import numpy as np
from pydantic import BaseModel, Field
from tqdm.auto import tqdm

from larsight.events.formats import count, count_untrusted, iter_untrusted, read
from larsight.events.formats.untrusted import DEFAULT_TIMEOUT_S
from larsight.events.model import EVENT_CLASSES, PID_CLASSES, SEMANTIC_CLASSES, Event

VOXEL_ENERGY_BINS = np.logspace(-4, 3, 141)
"""Per-voxel energy histogram bins, MeV (1e-4 .. 1e3, 20 per decade)."""


class Stats(BaseModel):
    """Distribution summary of one per-event quantity."""

    mean: float = 0.0
    median: float = 0.0
    min: float = 0.0
    max: float = 0.0
    p10: float = 0.0
    p90: float = 0.0
    p99: float = 0.0

    @classmethod
    def of(cls, values) -> "Stats":
        v = np.asarray(values, dtype=np.float64)
        if v.size == 0:
            return cls()
        p10, p50, p90, p99 = np.percentile(v, [10, 50, 90, 99])
        return cls(mean=float(v.mean()), median=float(p50), min=float(v.min()), max=float(v.max()),
                   p10=float(p10), p90=float(p90), p99=float(p99))

    def line(self, fmt: str = ".1f") -> str:
        f = lambda x: format(x, fmt)  # noqa: E731
        return (f"mean {f(self.mean)}  median {f(self.median)}  min {f(self.min)}  max {f(self.max)}  "
                f"p10 {f(self.p10)}  p90 {f(self.p90)}  p99 {f(self.p99)}")


class InspectReport(BaseModel):
    """What ``inspect`` found in a file; ``str(report)`` is a readable summary."""

    path: str
    n_events: int = 0
    n_events_in_file: Optional[int] = Field(None, description="events in the file, when known")
    n_points_total: int = 0
    points_per_event: Stats = Stats()
    energy_per_event_mev: Stats = Stats()
    empty_events: int = 0
    semantic_fraction_voxels: dict[str, float] = Field(default_factory=dict)
    semantic_fraction_energy: dict[str, float] = Field(default_factory=dict)
    pid_fraction_voxels: dict[str, float] = Field(default_factory=dict)
    pid_fraction_energy: dict[str, float] = Field(default_factory=dict)
    event_class_counts: dict[str, int] = Field(default_factory=dict)
    channel_counts: dict[str, int] = Field(default_factory=dict)
    labels_present: list[str] = Field(default_factory=list, description="per-point label arrays seen")
    generators: dict[str, int] = Field(default_factory=dict)
    out_dir: Optional[str] = None
    plots: list[str] = Field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"{self.path}: {self.n_events} events"
                 + (f" (of {self.n_events_in_file} in the file)"
                    if self.n_events_in_file is not None and self.n_events_in_file != self.n_events else "")
                 + f", {self.n_points_total} points"]
        if self.generators:
            lines.append("  generator: " + ", ".join(f"{k} ({v})" for k, v in self.generators.items()))
        if self.n_events:
            lines.append(f"  points / event   {self.points_per_event.line('.0f')}")
            lines.append(f"  energy / event   {self.energy_per_event_mev.line('.1f')}  MeV")
        if self.empty_events:
            lines.append(f"  empty events: {self.empty_events}")
        lines.append("  labels: " + (", ".join(self.labels_present) or "none"))

        def table(title, by_vox, by_e):
            if not by_vox:
                return
            lines.append(f"  {title:<14} {'voxels':>8} {'energy':>8}")
            for k in by_vox:
                lines.append(f"    {k:<12} {100 * by_vox[k]:7.1f}% {100 * by_e.get(k, 0.0):7.1f}%")

        table("semantic", self.semantic_fraction_voxels, self.semantic_fraction_energy)
        table("PID", self.pid_fraction_voxels, self.pid_fraction_energy)
        if self.event_class_counts:
            lines.append("  event classes: " + ", ".join(f"{k} {v}" for k, v in self.event_class_counts.items()))
        if self.channel_counts:
            lines.append("  channels: " + ", ".join(f"{k} {v}" for k, v in self.channel_counts.items()))
        if self.plots:
            lines.append(f"  plots ({len(self.plots)}) in {self.out_dir}: "
                         + ", ".join(Path(p).name for p in self.plots))
        return "\n".join(lines)


def _fractions(values: np.ndarray, names: tuple[str, ...]) -> dict[str, float]:
    """``values`` has one slot per class plus a last one for 'none'; zero classes are left out."""
    total = float(values.sum())
    if total <= 0:
        return {}
    out = {name: float(v) / total for name, v in zip(list(names) + ["none"], values) if v > 0}
    return out


def _class_sums(labels: Optional[np.ndarray], weights: np.ndarray, n_classes: int) -> np.ndarray:
    idx = labels.astype(np.int64)
    idx = np.where((idx >= 0) & (idx < n_classes), idx, n_classes)
    return np.bincount(idx, weights=weights, minlength=n_classes + 1)


def _open_stream(path: Path, max_events: Optional[int], progress: bool, trusted: bool,
                 timeout_s: float) -> tuple[Optional[int], Iterable[Event]]:
    """(events in the file when known, the events to inspect)."""
    if trusted:
        n_file: Optional[int] = int(count(path))
        stream = read(path)
    else:
        n_file = count_untrusted(path, timeout_s=timeout_s)
        stream = iter_untrusted(path, timeout_s=timeout_s)
    total = n_file if max_events is None else (min(n_file, max_events) if n_file is not None else max_events)

    if max_events is not None:
        stream = itertools.islice(stream, int(max_events))
    if progress:
        stream = tqdm(stream, total=total, desc=f"inspect {path.name}", unit="ev")
    return n_file, stream


@dataclass
class _Tally:
    """Running sums over the events seen, so that a file of any size is one pass in constant memory."""

    n_points: list[int] = field(default_factory=list)
    e_total: list[float] = field(default_factory=list)
    vox_hist: np.ndarray = field(
        default_factory=lambda: np.zeros(len(VOXEL_ENERGY_BINS) - 1, dtype=np.int64))
    vox_under: int = 0
    vox_over: int = 0
    sem_n: np.ndarray = field(default_factory=lambda: np.zeros(len(SEMANTIC_CLASSES) + 1))
    sem_e: np.ndarray = field(default_factory=lambda: np.zeros(len(SEMANTIC_CLASSES) + 1))
    pid_n: np.ndarray = field(default_factory=lambda: np.zeros(len(PID_CLASSES) + 1))
    pid_e: np.ndarray = field(default_factory=lambda: np.zeros(len(PID_CLASSES) + 1))
    classes: Counter = field(default_factory=Counter)
    channels: Counter = field(default_factory=Counter)
    generators: Counter = field(default_factory=Counter)
    labels_seen: set[str] = field(default_factory=set)
    first: Optional[Event] = None

    def add(self, ev: Event) -> None:
        if self.first is None:
            self.first = ev
        e = ev.energy.astype(np.float64)
        self.n_points.append(len(ev))
        self.e_total.append(float(e.sum()))
        h, _ = np.histogram(e, bins=VOXEL_ENERGY_BINS)
        self.vox_hist += h
        self.vox_under += int(np.count_nonzero(e < VOXEL_ENERGY_BINS[0]))
        self.vox_over += int(np.count_nonzero(e > VOXEL_ENERGY_BINS[-1]))
        self._add_labels(ev, e)
        if ev.event_class:
            self.classes[ev.event_class] += 1
        elif ev.interactions:
            self.classes["none"] += 1
        for inter in ev.interactions[:1]:
            if inter.channel:
                self.channels[f"{inter.current + ' ' if inter.current else ''}{inter.channel}"] += 1
        if ev.meta.generator:
            self.generators[ev.meta.generator] += 1

    def _add_labels(self, ev: Event, e: np.ndarray) -> None:
        ones = np.ones_like(e)
        if ev.semantic is not None:
            self.labels_seen.add("semantic")
            self.sem_n += _class_sums(ev.semantic, ones, len(SEMANTIC_CLASSES))
            self.sem_e += _class_sums(ev.semantic, e, len(SEMANTIC_CLASSES))
        if ev.pid is not None:
            self.labels_seen.add("pid")
            self.pid_n += _class_sums(ev.pid, ones, len(PID_CLASSES))
            self.pid_e += _class_sums(ev.pid, e, len(PID_CLASSES))
        for name in ("particle", "interaction", "fragment"):
            if getattr(ev, name) is not None:
                self.labels_seen.add(name)

    def report(self, path: Path, n_file: Optional[int]) -> InspectReport:
        n_points = self.n_points
        return InspectReport(
            path=str(path), n_events=len(n_points), n_events_in_file=n_file,
            n_points_total=int(sum(n_points)),
            points_per_event=Stats.of(n_points), energy_per_event_mev=Stats.of(self.e_total),
            empty_events=sum(1 for n in n_points if n == 0),
            semantic_fraction_voxels=_fractions(self.sem_n, SEMANTIC_CLASSES),
            semantic_fraction_energy=_fractions(self.sem_e, SEMANTIC_CLASSES),
            pid_fraction_voxels=_fractions(self.pid_n, PID_CLASSES),
            pid_fraction_energy=_fractions(self.pid_e, PID_CLASSES),
            event_class_counts={k: self.classes[k] for k in list(EVENT_CLASSES) + ["none"]
                                if self.classes[k]},
            channel_counts=dict(sorted(self.channels.items())),
            labels_present=[k for k in ("semantic", "particle", "interaction", "pid", "fragment")
                            if k in self.labels_seen],
            generators=dict(self.generators.most_common()),
        )


def inspect(path, out_dir=None, max_events: Optional[int] = None, progress: bool = True,
            plots: bool = True, trusted: bool = False,
            timeout_s: float = DEFAULT_TIMEOUT_S) -> InspectReport:
    """Stream ``path`` once and summarise it; write PNG plots to ``out_dir`` (default
    ``<path>.inspect/``): points per event, energy spectra (per voxel, per event), class
    fractions, and an event display of event 0.

    The file is parsed in the bounded reader process (:func:`iter_untrusted`: ``timeout_s`` per
    block of events, a memory cap), since ``larsight inspect`` is pointed at files written by
    others; ``trusted=True`` reads in this process (files the project wrote itself)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"inspect: no such file {str(path)!r}")
    n_file, stream = _open_stream(path, max_events, progress, trusted, timeout_s)
    tally = _Tally()
    for ev in stream:
        tally.add(ev)
    report = tally.report(path, n_file)
    if plots:
        out = Path(out_dir) if out_dir is not None else path.with_name(path.name + ".inspect")
        out.mkdir(parents=True, exist_ok=True)
        report.out_dir = str(out)
        report.plots = [str(p) for p in _plots(
            report, out, np.asarray(tally.n_points), np.asarray(tally.e_total), tally.vox_hist,
            tally.sem_n, tally.sem_e, tally.pid_n, tally.pid_e, tally.first)]
    return report


def _plots(report: InspectReport, out: Path, n_points: np.ndarray, e_total: np.ndarray,
           vox_hist: np.ndarray, sem_n, sem_e, pid_n, pid_e, first: Optional[Event]) -> list[Path]:
    from larsight.events.display import _atomic_write, _mpl, render_png

    plt = _mpl()
    written: list[Path] = []

    def save(fig, name):
        p = out / name
        try:
            _atomic_write(p, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
        finally:
            plt.close(fig)
        written.append(p)

    title = Path(report.path).name
    # points per event
    fig, ax = plt.subplots(figsize=(6.5, 4.2), constrained_layout=True)
    if n_points.size:
        ax.hist(n_points, bins=min(50, max(5, n_points.size // 2)), color="#1f77b4", edgecolor="white")
        ax.axvline(np.median(n_points), color="k", ls="--", lw=1, label=f"median {np.median(n_points):.0f}")
        ax.legend()
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("points (voxels) per event")
    ax.set_ylabel("events")
    ax.set_title(f"{title}: {report.n_events} events")
    save(fig, "points_per_event.png")

    # energy spectra
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.2), constrained_layout=True)
    a1.stairs(vox_hist, VOXEL_ENERGY_BINS, fill=True, color="#2ca02c", alpha=0.8)
    a1.set_xscale("log")
    if vox_hist.any():
        a1.set_yscale("log")
        nz = np.flatnonzero(vox_hist)
        a1.set_xlim(VOXEL_ENERGY_BINS[max(nz[0] - 4, 0)], VOXEL_ENERGY_BINS[min(nz[-1] + 5, len(vox_hist))])
    a1.set_xlabel("energy per voxel [MeV]")
    a1.set_ylabel("voxels")
    a1.set_title("per-voxel energy")
    if e_total.size:
        a2.hist(e_total, bins=min(50, max(5, e_total.size // 2)), color="#ff7f0e", edgecolor="white")
    a2.yaxis.get_major_locator().set_params(integer=True)
    a2.set_xlabel("visible energy per event [MeV]")
    a2.set_ylabel("events")
    a2.set_title("per-event total energy")
    fig.suptitle(title)
    save(fig, "energy_spectra.png")

    # class fractions
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.2), constrained_layout=True)
    for ax, names, n, e, what in ((a1, SEMANTIC_CLASSES, sem_n, sem_e, "semantic class"),
                                  (a2, PID_CLASSES, pid_n, pid_e, "PID class")):
        labels = list(names) + ["none"]
        x = np.arange(len(labels))
        fn = n / n.sum() if n.sum() > 0 else n
        fe = e / e.sum() if e.sum() > 0 else e
        ax.bar(x - 0.2, fn, width=0.4, label="by voxels", color="#1f77b4")
        ax.bar(x + 0.2, fe, width=0.4, label="by energy", color="#d62728")
        ax.set_xticks(x, labels, rotation=30)
        ax.set_ylabel("fraction")
        ax.set_title(what + ("" if n.sum() > 0 else " (no labels)"))
        ax.legend()
    fig.suptitle(title)
    save(fig, "class_fractions.png")

    if report.event_class_counts:
        fig, ax = plt.subplots(figsize=(5.5, 4), constrained_layout=True)
        keys = list(report.event_class_counts)
        ax.bar(keys, [report.event_class_counts[k] for k in keys], color="#9467bd")
        ax.set_ylabel("events")
        ax.set_title(f"{title}: event classes")
        save(fig, "event_classes.png")

    if first is not None:
        color_by = "semantic" if first.semantic is not None else "energy"
        p = out / "event_0.png"
        render_png(first, p, color_by=color_by)
        written.append(p)
    return written
