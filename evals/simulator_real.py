"""The simulator beside the real PILArNet-M event (a section of evals/reports/simulator.md).

Compares class fractions, voxels per particle and voxel / event energy spectra of simulated
``nu``, ``mpv`` and ``mpr`` events, with default and with randomised knobs (events.sim.knobs),
to the one real PILArNet-M event in shared/data, and checks the label conventions the real
event shows (what LE is, where a shower's voxels end, how small showers are labelled).
Used by ``python -m larsight.evals.simulator_report``; the real event is read, never copied.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy.spatial import cKDTree  # noqa: E402

from larsight.events import SEMANTIC_CLASSES, sim  # noqa: E402

REAL_NAME = "pilarnet_m_test_event_7675.npz"
MODES = ("nu", "mpv", "mpr")


def real_event() -> Optional[dict]:
    """The real event as arrays (voxel indices, MeV, semantic, instance), or None if absent."""
    here = Path(__file__).resolve()
    for base in (here.parents[2] / "shared", here.parents[1].parent / "shared", Path("/work/shared")):
        f = base / "data" / REAL_NAME
        if f.exists():
            with np.load(f) as d:
                return dict(vox=d["voxels"].astype(np.int64), energy=d["energy_mev"].astype(np.float64),
                            semantic=d["semantic"].astype(np.int64),
                            instance=d["instance"].astype(np.int64))
    return None


def _as_arrays(ev, threshold: float = 0.0) -> dict:
    vs = ev.meta.volume.voxel_size_cm
    keep = ev.energy >= threshold
    return dict(vox=np.round((ev.points[keep] - ev.meta.volume.lower_cm) / vs).astype(np.int64),
                energy=ev.energy[keep].astype(np.float64), semantic=ev.semantic[keep].astype(np.int64),
                instance=ev.particle[keep].astype(np.int64))


def particle_sizes(a: dict) -> dict[str, np.ndarray]:
    """Voxels per particle instance (track- and shower-labelled voxels only), by class."""
    out = {}
    for name, cls in (("track", 1), ("shower", 0)):
        m = (a["semantic"] == cls) & (a["instance"] >= 0)
        out[name] = np.unique(a["instance"][m], return_counts=True)[1]
    return out


def summary(events: list[dict]) -> dict:
    """Class fractions, voxels per particle, voxel and event energies of a list of events."""
    sem = np.concatenate([a["semantic"] for a in events])
    en = np.concatenate([a["energy"] for a in events])
    sizes = [particle_sizes(a) for a in events]
    return dict(
        n=len(events), frac=np.bincount(sem, minlength=5) / max(sem.size, 1),
        efrac=np.bincount(sem, weights=en, minlength=5) / max(en.sum(), 1e-9),
        voxels=np.array([a["energy"].size for a in events]),
        event_mev=np.array([a["energy"].sum() for a in events]), voxel_mev=en,
        track=np.concatenate([s["track"] for s in sizes]),
        shower=np.concatenate([s["shower"] for s in sizes]),
        le_no_instance=float(np.mean(np.concatenate([a["instance"][a["semantic"] == 4] < 0
                                                     for a in events]) if (sem == 4).any() else np.nan)))


def _simulate(mode: str, n: int, seed: int, randomize: bool) -> list:
    if randomize:   # keep the PILArNet-M grid so that voxels compare one to one
        return list(sim.simulate(mode, n, seed=seed, randomize=True, knobs={"voxel_size_cm": 0.3}))
    return list(sim.simulate(mode, n, seed=seed))


def samples(n: int, seed: int) -> dict[str, dict]:
    """Summaries of the real event and of each mode, default and randomised; the default ones
    also with the real event's smallest voxel energy applied as the threshold."""
    real = real_event()
    thr = float(real["energy"].min()) if real is not None else 0.0
    out = {"real PILArNet-M": summary([real])} if real is not None else {}
    for mode in MODES:
        evs = _simulate(mode, n, seed, False)
        out[f"{mode} default"] = summary([_as_arrays(e) for e in evs])
        out[f"{mode} default, real threshold"] = summary([_as_arrays(e, thr) for e in evs])
        out[f"{mode} randomised"] = summary([_as_arrays(e) for e in _simulate(mode, n, seed, True)])
    return out


def _q(x: np.ndarray, fmt: str = "{:.0f}") -> str:
    if not x.size:
        return "-"
    p = np.percentile(x, [10, 50, 90])
    return " / ".join(fmt.format(v) for v in p)


def table(stats: dict[str, dict]) -> list[str]:
    lines = ["| sample | events | voxel fractions " + " / ".join(c[:6] for c in SEMANTIC_CLASSES)
             + " | energy fractions (same order) | voxels/event p10/50/90 | MeV/event p10/50/90 "
             "| voxels per track p10/50/90 | voxels per shower p10/50/90 | voxel MeV p10/50/90 "
             "| voxels < 0.14 MeV |", "|" + " --- |" * 10]
    for name, s in stats.items():
        lines.append(
            f"| {name} | {s['n']} | " + " / ".join(f"{f:.3f}" for f in s["frac"]) + " | "
            + " / ".join(f"{f:.3f}" for f in s["efrac"]) + f" | {_q(s['voxels'])} | "
            f"{_q(s['event_mev'])} | {_q(s['track'])} | {_q(s['shower'])} | "
            f"{_q(s['voxel_mev'], '{:.2f}')} | {np.mean(s['voxel_mev'] < 0.14):.0%} |")
    return lines


def conventions(seed: int) -> dict:
    """Label-convention numbers: LE voxels without an instance, distance of LE voxels to the
    nearest non-LE voxel, shower voxels detached from their own shower, small shower instances."""
    def measure(arrs):
        le_d, detached, sh_vox, small = [], 0, 0, 0
        for a in arrs:
            v, sem, ins = a["vox"], a["semantic"], a["instance"]
            le = sem == 4
            if le.any() and (~le).any():
                le_d.append(cKDTree(v[~le]).query(v[le])[0])
            for g in np.unique(ins[(sem == 0) & (ins >= 0)]):
                m = (ins == g) & (sem == 0)
                sh_vox += int(m.sum())
                small += int(m.sum() <= 10)
                if m.sum() > 1:
                    detached += int((cKDTree(v[m]).query(v[m], k=2)[0][:, 1] > 3).sum())
        le_d = np.concatenate(le_d) if le_d else np.zeros(0)
        le_ins = np.concatenate([a["instance"][a["semantic"] == 4] for a in arrs])
        tracks = np.concatenate([particle_sizes(a)["track"] for a in arrs])
        return dict(le_none=float(np.mean(le_ins < 0)) if le_ins.size else np.nan,
                    tiny_tracks=float(np.mean(tracks < 5)) if tracks.size else np.nan,
                    min_track=int(tracks.min()) if tracks.size else 0,
                    le_dist=np.percentile(le_d, [25, 50, 75]) * 0.3 if le_d.size else None,
                    detached=detached / max(sh_vox, 1), small=small)
    real = real_event()
    out = {"real": measure([real])} if real is not None else {}
    out["mpv"] = measure([_as_arrays(e) for e in sim.simulate("mpv", 40, seed=seed)])
    return out


def plot(stats: dict[str, dict], path: Path) -> None:
    fig, axs = plt.subplots(1, 3, figsize=(16, 4.2))
    names = [k for k in stats if "real threshold" not in k]
    bins = np.logspace(-2, 1.5, 50)
    for name in names:
        s = stats[name]
        style = dict(color="k", lw=2) if name.startswith("real") else dict(
            ls="--" if "randomised" in name else "-")
        axs[0].hist(s["voxel_mev"], bins=bins, density=True, histtype="step", label=name, **style)
        axs[2].hist(s["track"], bins=np.logspace(0, 3.5, 30), density=True, histtype="step",
                    label=name, **style)
    axs[0].set(xscale="log", yscale="log", xlabel="voxel energy (MeV)", ylabel="density")
    axs[2].set(xscale="log", xlabel="voxels per track instance", ylabel="density")
    x = np.arange(5)
    w = 0.8 / len(names)
    for k, name in enumerate(names):
        axs[1].bar(x + w * (k - len(names) / 2), stats[name]["frac"], width=w, label=name,
                   color="k" if name.startswith("real") else None)
    axs[1].set_xticks(x, SEMANTIC_CLASSES)
    axs[1].set_ylabel("fraction of voxels")
    axs[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def section(n: int, seed: int, pdir: Path) -> list[str]:
    """The report section (markdown lines) and its plot ``pdir/real_comparison.png``."""
    real = real_event()
    if real is None:
        return ["## Beside real PILArNet-M data", "", f"(shared/data/{REAL_NAME} not found)", ""]
    stats = samples(n, seed)
    plot(stats, pdir / "real_comparison.png")
    conv = conventions(seed)
    r, s = conv["real"], conv["mpv"]
    thr = real["energy"].min()
    lines = ["## Beside real PILArNet-M data", "",
             f"The real event (shared/data/{REAL_NAME}: PILArNet-M test split, event 7675, a GEANT4 "
             f"multi-particle interaction; {real['energy'].size} voxels, {real['energy'].sum():.0f} MeV, "
             f"smallest voxel {thr:.2f} MeV) beside {n} simulated events per sample (seed {seed}): "
             "`default` = the simulator's defaults, `randomised` = every knob drawn per event "
             "(`--randomize`, grid kept at 0.3 cm here), `real threshold` = the default events with "
             f"voxels below {thr:.2f} MeV removed. Percentiles are p10 / p50 / p90. One real event "
             "is one sample: its numbers say what the real labels look like, not what their "
             "distribution is.", ""] + table(stats) + [""]
    lines += [
        "Label conventions (what the real event shows, and the simulator):", "",
        f"- LE: every LE voxel of the real event has no instance (instance -1, PID none: "
        f"{r['le_none']:.0%}); in the simulator LE voxels keep the particle that made them "
        f"({s['le_none']:.0%} without one). LE voxels lie far from everything else in both "
        f"(distance to the nearest non-LE voxel, quartiles: real "
        + " / ".join(f"{d:.1f}" for d in r["le_dist"]) + " cm, mpv "
        + " / ".join(f"{d:.1f}" for d in s["le_dist"]) + " cm): isolated Compton / photoelectric "
        "/ neutron blips, as the simulator makes them. Semantic labels agree; only the instance "
        "of LE differs. The default is left as it is (changing it changes every default event and "
        "the trained instance heads); `SimOptions(le_without_particle=True)` gives the "
        "PILArNet-M convention.",
        f"- Where a shower's voxels end: the real shower instances are contiguous (shower voxels "
        f"more than 3 voxels from any other voxel of their shower: {r['detached']:.1%}; simulator "
        f"{s['detached']:.2%}); detached pieces are LE, not shower, in both.",
        f"- Small showers: the real event has {r['small']} photon shower instances of 10 voxels or "
        f"fewer (7 and 9 voxels, 4-5 MeV, own instance, PID photon) that the simulator would call "
        f"LE if they came from a Compton scatter (simulator, 40 mpv events: {s['small']} such "
        "instances). One event cannot say which photons PILArNet keeps as particles (likely "
        "those recorded as particles by GEANT4/Supera, e.g. de-excitation photons); left as is.",
        f"- Tiny tracks: the smallest track instance of the real event has {r['min_track']} "
        f"voxels (its 3 protons: 13-18 voxels); {s['tiny_tracks']:.0%} of the simulator's track "
        "instances have fewer than 5 voxels, nearly all protons of a few MeV from hadronic "
        "interactions and captures (few voxels, so semantic fractions barely move, but they count "
        "as particles). Whether PILArNet drops or relabels such protons cannot be read off one "
        "event; reconstruction and counting should not count instances of a few voxels.",
        "- Michel and delta: the real event has none (0 voxels), so it cannot check those rules; "
        "the simulator follows PHYSICS.md (Supera: a delta ray of fewer than 10 voxels is merged "
        "into its track; a Michel is the e+- of a muon decay at rest).",
        f"- Threshold: the real event's smallest voxel is {thr:.2f} MeV, the simulator's default "
        "threshold is 0.01 MeV; the `threshold_mev` knob (0.005-0.2 MeV) covers both.", "",
        "![real comparison](simulator/real_comparison.png)", ""]
    return lines
