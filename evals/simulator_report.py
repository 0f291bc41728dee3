"""Simulator benchmark and physics validation report.

    python -m larsight.evals.simulator_report [--seed 2026] [--n 200] [--n-real 100] [--out evals/reports]

Writes evals/reports/simulator.md and PNG plots under evals/reports/simulator/: speed per mode
(one core and all cores), points per event, semantic class fractions, energy spectra, and the
physics checks (CSDA ranges vs the PHYSICS.md table, Bragg peaks, Michel spectrum, shower
profiles and containment, photon conversion gaps), and the comparison of default and randomised
(events.sim.knobs) events with the real PILArNet-M event (evals/simulator_real.py). It also
regenerates docs/simulator_knobs.md, the knob table, from events/sim/knobs.py.
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from larsight.events import PILARNET_VOLUME, SEMANTIC_CLASSES, Volume  # noqa: E402
from larsight.events import sim  # noqa: E402
from larsight.events.sim import medium as M  # noqa: E402
from larsight.events.sim.knobs import write_markdown  # noqa: E402
from larsight.evals import simulator_real  # noqa: E402
from larsight.events.sim.run import _pool_stream  # noqa: E402
from larsight.events.sim.samplers import longitudinal_params, sample_michel_x  # noqa: E402
from larsight.events.formats.atomic import atomic_open  # noqa: E402
from scipy.stats import gamma as gdist  # noqa: E402

RANGE_TABLE = {  # PHYSICS.md, cm: T -> (muon, pion, kaon, proton)
    50: (13.0, 9.2, 3.7, 2.30), 100: (30.4, 26.9, 12.5, 7.82), 200: (76.1, 70.6, 39.5, 26.0),
    500: (217, 212, 156, 116), 1000: (441, 442, 387, 319), 5000: (2024, 2071, 2203, 2165),
}
SPECIES = ((13, "muon"), (211, "pion"), (321, "kaon"), (2212, "proton"))
BARE = dict(mcs=False, hadronic=False, delta_rays=False, decays=False, fluctuations=False)
SEM_COLOURS = np.array(["tab:red", "tab:blue", "tab:green", "tab:orange", "tab:gray"])


def _load() -> str:
    try:
        la = os.getloadavg()
        return f"{la[0]:.2f} / {la[1]:.2f} / {la[2]:.2f} (1/5/15 min) on {os.cpu_count()} cores"
    except OSError:
        return "unknown"


def bench(mode: str, n: int, seed: int, workers: int) -> tuple[float, list]:
    """Events per second generating ``n`` events (events kept for the statistics)."""
    fn = sim.MODES[mode]
    fn(seed=seed, index=10**6)                      # warm the tables
    t = time.perf_counter()
    if workers == 1:
        evs = [fn(seed=seed, index=i) for i in range(n)]
    else:
        evs = list(_pool_stream(mode, n, seed, PILARNET_VOLUME, workers,
                                max(1, n // (8 * workers))))
    return n / (time.perf_counter() - t), evs


def simulated_range(pdg: int, T: float) -> float:
    length = RANGE_TABLE[5000][0] * 1.2 if T >= 5000 else 600.0
    vol = Volume(voxel_size_cm=0.3, shape=(8, 8, int(length / 0.3)), origin_cm=(-1.2, -1.2, -0.3))
    ev = sim.particle_gun(pdg, T, seed=1, direction=[0, 0, 1], position=[0, 0, 0], volume=vol, **BARE)
    return float(ev.points[ev.fragment == 0, 2].max()) + 0.15


def display(ax, ev, title):
    p = ev.points
    ax.scatter(p[:, 2], p[:, 0], s=1.5, c=SEM_COLOURS[ev.semantic], marker="s", lw=0)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("z (cm, beam)")
    ax.set_ylabel("x (cm)")
    ax.set_title(title, fontsize=9)


def main(argv=None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--n", type=int, default=200, help="events per mode and benchmark")
    ap.add_argument("--n-real", type=int, default=100,
                    help="events per sample in the comparison with the real PILArNet-M event")
    ap.add_argument("--out", default="evals/reports")
    args = ap.parse_args(argv)
    out = Path(args.out)
    pdir = out / "simulator"
    pdir.mkdir(parents=True, exist_ok=True)
    seed, n = args.seed, args.n
    load_before = _load()
    workers = os.cpu_count() or 1
    lines = [
        "# Simulator report (events/sim)", "",
        f"Produced by `python -m larsight.evals.simulator_report --seed {seed} --n {n} "
        f"--n-real {args.n_real}` "
        f"(larsight.sim {sim.VERSION}); geometry: PILArNet-M default (768^3 voxels of 0.3 cm).",
        f"Machine: {platform.processor() or platform.machine()}, {workers} cores, Python "
        f"{platform.python_version()}; load average before the run: {load_before}.", "",
    ]
    speed_lines, stats = speed_section(n, seed, workers)
    lines += speed_lines
    event_lines, frac = events_section(stats)
    lines += event_lines
    plot_points_energy(stats, pdir)
    plot_classes_spectra(stats["nu"], frac, pdir)
    plot_event_displays(seed, pdir)
    range_lines, sim_r = ranges_section()
    lines += range_lines
    plot_ranges_bragg(sim_r, seed, pdir)
    em_lines, em = showers_and_decays(seed)
    lines += em_lines
    plot_showers_decays(em, pdir)
    lines += simulator_real.section(args.n_real, seed, pdir)
    lines += ["## Plots", ""] + [f"![{p.stem}](simulator/{p.name})" for p in sorted(pdir.glob("*.png"))]
    lines += ["", "## Known shortcuts", "",
              "See the module docstrings of events/sim: parametrised showers (not a particle-by-particle "
              "cascade), a constant 85.8 cm hadronic interaction length with a toy final state, "
              "no muon decay in flight, no positron annihilation photons, a toy neutrino flux and "
              "final-state model (no nuclear model beyond a fixed binding energy), "
              "no diffusion or electron lifetime. The detector response (energy scale, charge "
              "noise, dead and noisy voxels, recombination model) and the other approximations "
              "are knobs (docs/simulator_knobs.md), at the simulator's own values unless "
              "`--randomize` / `--knob` is given.", ""]
    md = out / "simulator.md"
    with atomic_open(md, "w") as fh:
        fh.write("\n".join(lines))
    print(f"wrote {md}")
    docs = Path(__file__).resolve().parents[1] / "docs"
    if docs.is_dir():
        write_markdown(docs / "simulator_knobs.md")
    return md


# ============================================================================ sections
def speed_section(n: int, seed: int, workers: int) -> tuple[list[str], dict[str, list]]:
    """Events per second of each mode on one core and on every core; the one-core events are
    kept for the statistics of the other sections."""
    speed, stats = {}, {}
    for mode in ("nu", "mpv", "mpr"):
        r1, evs = bench(mode, n, seed, 1)
        rN, _ = bench(mode, 2 * n, seed, workers) if workers > 1 else (r1, None)
        speed[mode] = (r1, rN)
        stats[mode] = evs
    lines = ["## Speed", "",
              f"Events per second, default geometry, {n} events on one core and {2 * n} on "
              f"{workers} worker processes (ordered `imap`, as `simulate_file` does; no file "
              "writing). Target: at least 50 neutrino events/s on both cores.", "",
              "| mode | events/s (1 core) | ms/event (1 core) | events/s (" + f"{workers} cores) |",
              "| --- | --- | --- | --- |"]
    for mode, (r1, rN) in speed.items():
        lines.append(f"| {mode} | {r1:.1f} | {1000 / r1:.1f} | {rN:.1f} |")
    lines += ["", f"Load average after the benchmarks: {_load()}.", ""]

    return lines, stats


def events_section(stats: dict[str, list]) -> tuple[list[str], dict[str, np.ndarray]]:
    """Points, energy and particles per event, semantic class fractions and the neutrino sample's
    classes and channels; also returns each mode's voxel fractions per class."""
    lines = ["## Events", "",
              "| mode | points/event mean | p5 | p50 | p95 | max | visible energy/event mean (MeV) |"
              " particles/event |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for mode, evs in stats.items():
        npt = np.array([len(e) for e in evs])
        en = np.array([e.total_energy_mev for e in evs])
        npart = np.mean([len(e.particles) for e in evs])
        q = np.percentile(npt, [5, 50, 95])
        lines.append(f"| {mode} | {npt.mean():.0f} | {q[0]:.0f} | {q[1]:.0f} | {q[2]:.0f} | "
                     f"{npt.max()} | {en.mean():.0f} | {npart:.1f} |")
    lines += ["", "Semantic class fractions (of voxels / of energy):", "",
              "| mode | " + " | ".join(SEMANTIC_CLASSES) + " |",
              "| --- |" + " --- |" * len(SEMANTIC_CLASSES)]
    frac = {}
    for mode, evs in stats.items():
        sem = np.concatenate([e.semantic for e in evs])
        en = np.concatenate([e.energy for e in evs])
        fv = np.bincount(sem, minlength=5) / sem.size
        fe = np.bincount(sem, weights=en, minlength=5) / en.sum()
        frac[mode] = fv
        lines.append(f"| {mode} | " + " | ".join(f"{a:.3f} / {b:.3f}" for a, b in zip(fv, fe)) + " |")
    nu = stats["nu"]
    cls = np.array([e.event_class for e in nu])
    chans = np.array([e.interactions[0].channel for e in nu])
    lines += ["", f"Neutrino sample ({len(nu)} events): "
              + ", ".join(f"{c} {np.mean(cls == c):.2f}" for c in ("nue_cc", "numu_cc", "nc"))
              + f" (CC fraction {np.mean(cls != 'nc'):.2f}, target 0.74); channels "
              + ", ".join(f"{c} {np.mean(chans == c):.2f}" for c in ("QE", "MEC", "RES", "DIS")) + ".",
              ""]

    return lines, frac


def ranges_section() -> tuple[list[str], dict]:
    """Simulated straight-track CSDA ranges against the table; also returns them by (pdg, T)."""
    lines = ["## CSDA ranges", "",
              "Simulated: length of a straight particle-gun track (scattering, interactions, "
              "delta rays, decays and fluctuations off) measured from its voxels; table: "
              "PHYSICS.md (muon 50 MeV is an estimate there).", "",
              "| T (MeV) | " + " | ".join(f"{n} sim / table (cm)" for _, n in SPECIES) + " |",
              "| --- |" + " --- |" * len(SPECIES)]
    worst = 0.0
    sim_r = {}
    for T, row in RANGE_TABLE.items():
        cells = []
        for k, (pdg, name) in enumerate(SPECIES):
            r = simulated_range(pdg, T)
            sim_r[(pdg, T)] = r
            dev = r / row[k] - 1
            if not (pdg == 13 and T == 50):
                worst = max(worst, abs(dev))
            cells.append(f"{r:.1f} / {row[k]} ({dev:+.1%})")
        lines.append(f"| {T} | " + " | ".join(cells) + " |")
    lines += ["", f"Largest deviation from a table value: {worst:.1%} "
              "(a 0.3 cm voxel is 4% of the 7.8 cm proton range at 100 MeV). "
              f"A 10 MeV proton stops in {float(M.csda_range_cm(2212, 10.0)):.3f} cm (table 0.135).", ""]

    return lines, sim_r


def showers_and_decays(seed: int) -> tuple[list[str], dict]:
    """Michel spectrum, shower containment and profile, photon conversion distances; also
    returns the samples the plot needs."""
    michel = []
    small = Volume(voxel_size_cm=0.3, shape=(200, 200, 200))
    for s in range(300):
        ev = sim.particle_gun(-13, 30.0, seed=seed + s, position=[30, 30, 30], volume=small,
                              delta_rays=False)
        michel += [p.kinetic_energy_mev + M.M_E for p in ev.particles if p.process == "decay"]
    michel = np.array(michel)
    cont1, cont2, prof = [], [], []
    for s in range(12):
        ev = sim.particle_gun(11, 500.0, seed=seed + s, direction=[0, 0, 1], position=[115, 115, 10])
        c = np.asarray(ev.particles[0].start_cm)
        p = ev.points + 0.15
        r = np.hypot(p[:, 0] - c[0], p[:, 1] - c[1])
        cont1.append(ev.energy[r < M.MOLIERE_CM].sum() / ev.energy.sum())
        cont2.append(ev.energy[r < 2 * M.MOLIERE_CM].sum() / ev.energy.sum())
        prof.append((p[:, 2] - c[2], ev.energy))
    gaps = []
    for s in range(400):
        ev = sim.particle_gun(22, 300.0, seed=seed + s, direction=[0, 0, 1], position=[115, 115, 10])
        g = ev.particles[0]
        gaps.append(np.linalg.norm(np.subtract(g.end_cm, g.start_cm)))
    gaps = np.array(gaps)
    lam = float(M.photon_attenuation_cm(300.0))
    lines = ["## Showers and decays", "",
              f"- Michel electrons from {len(michel)} stopped mu+: mean {michel.mean():.2f} MeV "
              f"(expected 36.98 = 0.7 x 52.83), max {michel.max():.2f} MeV (endpoint 52.83).",
              f"- 500 MeV electron showers (12): {np.mean(cont1):.1%} of the visible energy within "
              f"1 Moliere radius of the axis, {np.mean(cont2):.1%} within 2 (PHYSICS.md: 90% / 95%).",
              f"- 300 MeV photons (400): mean conversion distance {gaps.mean():.1f} +- "
              f"{gaps.std() / np.sqrt(gaps.size):.1f} cm, expected {lam:.1f} cm (9/7 X0 = "
              f"{9 / 7 * M.X0_CM:.1f} cm at high energy).", ""]
    return lines, {"michel": michel, "prof": prof, "gaps": gaps, "lam": lam}


# ============================================================================ plots
def plot_points_energy(stats: dict[str, list], pdir: Path) -> None:
    fig, axs = plt.subplots(1, 3, figsize=(15, 4))
    for mode, evs in stats.items():
        axs[0].hist([len(e) for e in evs], bins=40, histtype="step", label=mode)
        axs[1].hist([e.total_energy_mev for e in evs], bins=40, histtype="step", label=mode)
        axs[2].hist(np.concatenate([e.energy for e in evs]), bins=np.logspace(-2, 2, 60),
                    histtype="step", label=mode, density=True)
    axs[0].set_xlabel("points per event")
    axs[1].set_xlabel("visible energy per event (MeV)")
    axs[2].set_xlabel("voxel energy (MeV)")
    axs[2].set_xscale("log")
    axs[2].set_yscale("log")
    for a in axs:
        a.legend()
    fig.tight_layout()
    fig.savefig(pdir / "points_energy.png", dpi=90)
    plt.close(fig)



def plot_classes_spectra(nu: list, frac: dict[str, np.ndarray], pdir: Path) -> None:
    cls = np.array([e.event_class for e in nu])
    fig, axs = plt.subplots(1, 3, figsize=(15, 4))
    x = np.arange(5)
    for k, (mode, fv) in enumerate(frac.items()):
        axs[0].bar(x + 0.27 * (k - 1), fv, width=0.27, label=mode)
    axs[0].set_xticks(x, SEMANTIC_CLASSES)
    axs[0].set_ylabel("fraction of voxels")
    axs[0].legend()
    enu = np.array([e.interactions[0].nu_energy_mev for e in nu])
    for c in ("nue_cc", "numu_cc", "nc"):
        axs[1].hist(enu[cls == c] / 1000, bins=np.logspace(np.log10(0.5), 1, 25), histtype="step", label=c)
    axs[1].set_xscale("log")
    axs[1].set_xlabel("E_nu (GeV)")
    axs[1].legend()
    lep = [(p.kinetic_energy_mev, np.asarray(p.momentum_mev)) for e in nu for p in e.particles
           if p.parent < 0 and abs(p.pdg) in (11, 13)]
    cos = [m[2] / np.linalg.norm(m) for _, m in lep]
    axs[2].hist(np.degrees(np.arccos(np.clip(cos, -1, 1))), bins=36, range=(0, 180))
    axs[2].set_xlabel("CC lepton angle to the beam (deg)")
    fig.tight_layout()
    fig.savefig(pdir / "classes_spectra.png", dpi=90)
    plt.close(fig)



def plot_event_displays(seed: int, pdir: Path) -> None:
    fig, axs = plt.subplots(2, 3, figsize=(16, 10))
    picks = [("nue_cc", sim.neutrino(seed=seed, index=0, flavour="nue_cc")),
             ("numu_cc", sim.neutrino(seed=seed, index=1, flavour="numu_cc")),
             ("nc", sim.neutrino(seed=seed, index=2, flavour="nc")),
             ("mpv", sim.mpv(seed=seed, index=0)), ("mpr", sim.mpr(seed=seed, index=0)),
             ("e- 1 GeV gun", sim.particle_gun(11, 1000.0, seed=seed, direction=[0, 0, 1],
                                               position=[115, 115, 20]))]
    for ax, (name, ev) in zip(axs.flat, picks):
        inter = ev.interactions[0]
        extra = f" {inter.channel} E={inter.nu_energy_mev:.0f} MeV" if inter.nu_pdg else ""
        display(ax, ev, f"{name}{extra}: {len(ev)} points, {ev.total_energy_mev:.0f} MeV")
    handles = [plt.Line2D([], [], marker="s", ls="", color=c, label=s)
               for c, s in zip(SEM_COLOURS, SEMANTIC_CLASSES)]
    fig.legend(handles=handles, loc="lower center", ncol=5)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(pdir / "event_displays.png", dpi=90)
    plt.close(fig)



def plot_ranges_bragg(sim_r: dict, seed: int, pdir: Path) -> None:
    fig, axs = plt.subplots(1, 2, figsize=(12, 4.5))
    Ts = np.array(sorted(RANGE_TABLE))
    for k, (pdg, name) in enumerate(SPECIES):
        line, = axs[0].plot(Ts, [RANGE_TABLE[T][k] for T in Ts], "o", label=f"{name} table")
        axs[0].plot(Ts, [sim_r[(pdg, T)] for T in Ts], "x", color=line.get_color(), ms=9)
        tt = np.logspace(1, 3.8, 100)
        axs[0].plot(tt, M.csda_range_cm(pdg, tt), "-", color=line.get_color(), lw=0.8)
    axs[0].set_xscale("log")
    axs[0].set_yscale("log")
    axs[0].set_xlabel("kinetic energy (MeV)")
    axs[0].set_ylabel("CSDA range (cm)")
    axs[0].set_title("o table, x simulated track, - Bethe-Bloch table", fontsize=9)
    axs[0].legend(fontsize=8)
    # Bragg: dE/dx vs residual range
    LONG = Volume(voxel_size_cm=0.3, shape=(8, 8, 2000), origin_cm=(-1.2, -1.2, -0.3))
    for pdg, T, name, fit in ((2212, 300.0, "proton", lambda r: 17 * r ** -0.42),
                              (13, 300.0, "muon", lambda r: 8 * r ** -0.37)):
        ev = sim.particle_gun(pdg, T, seed=seed, direction=[0, 0, 1], position=[0, 0, 0],
                              volume=LONG, mcs=False, hadronic=False, delta_rays=False, decays=False)
        z = ev.points[ev.fragment == 0, 2] + 0.15
        res = z.max() - z + 0.15
        line, = axs[1].plot(res, ev.energy[ev.fragment == 0] / 0.3, ".", ms=3, label=f"{name} {T:.0f} MeV")
        rr = np.logspace(-0.5, 2, 50)
        axs[1].plot(rr, fit(rr), "-", color=line.get_color(), lw=1, label=f"{name} fit (PHYSICS.md)")
    axs[1].set_xscale("log")
    axs[1].set_yscale("log")
    axs[1].set_xlabel("residual range (cm)")
    axs[1].set_ylabel("dE/dx per voxel (MeV/cm)")
    axs[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(pdir / "ranges_bragg.png", dpi=90)
    plt.close(fig)



def plot_showers_decays(em: dict, pdir: Path) -> None:
    michel, prof, gaps, lam = em["michel"], em["prof"], em["gaps"], em["lam"]
    fig, axs = plt.subplots(1, 3, figsize=(15, 4))
    axs[0].hist(michel, bins=27, range=(0, 54), density=True, label="simulated")
    xx = np.linspace(0, 1, 100)
    axs[0].plot(xx * M.MICHEL_EMAX, 2 * xx**2 * (3 - 2 * xx) / M.MICHEL_EMAX, "k-", label="2x^2(3-2x)")
    axs[0].set_xlabel("Michel electron energy (MeV)")
    axs[0].legend()
    z = np.concatenate([a for a, _ in prof])
    w = np.concatenate([b for _, b in prof])
    h, edges = np.histogram(z / M.X0_CM, bins=40, range=(0, 16), weights=w)
    axs[1].step(edges[:-1], h / h.sum() / np.diff(edges), where="post", label="simulated 500 MeV e-")
    a_gp, b_gp = longitudinal_params(500.0)
    tt = np.linspace(0, 16, 200)
    axs[1].plot(tt, gdist.pdf(tt - 0.2, a_gp, scale=1 / b_gp), "k-", label="Gamma profile (GP)")
    axs[1].set_xlabel("depth (X0)")
    axs[1].legend()
    axs[2].hist(gaps, bins=30, range=(0, 120), density=True, label="simulated 300 MeV photons")
    gg = np.linspace(0, 120, 100)
    axs[2].plot(gg, np.exp(-gg / lam) / lam, "k-", label=f"exp, mean {lam:.1f} cm")
    axs[2].set_xlabel("conversion distance (cm)")
    axs[2].legend()
    fig.tight_layout()
    fig.savefig(pdir / "showers_decays.png", dpi=90)
    plt.close(fig)



if __name__ == "__main__":
    main()
