"""Event generators: particle gun, toy neutrino interactions, PILArNet MPV and MPR modes."""
from __future__ import annotations

from typing import Optional

import numpy as np

from larsight.events.model import PILARNET_VOLUME, EventMeta, Interaction, Volume
from larsight.events.sim import medium as M
from larsight.events.sim.kinematics import isotropic, rotate_about, unit
from larsight.events.sim.knobs import Knobs, event_knobs
from larsight.events.sim.transport import Builder, SimOptions
from larsight.events.sim.voxelize import to_event

VERSION = "0.1"
M_N = M.pdg_info(2212)[0]  # nucleon mass, MeV

# ---------------------------------------------------------------------------- helpers


def _rng(seed, index) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(index)])


def _meta(volume, seed, index, mode, knobs: Optional[Knobs] = None) -> EventMeta:
    return EventMeta(volume=volume, event_id=int(index), seed=int(seed),
                     generator=f"larsight.sim {VERSION} ({mode})",
                     sim_knobs=None if knobs is None else knobs.as_dict())


def regrid(volume: Volume, voxel_size_cm: float) -> Volume:
    """The same region of space on a grid of ``voxel_size_cm`` voxels (itself if unchanged)."""
    if voxel_size_cm == volume.voxel_size_cm:
        return volume
    shape = tuple(max(1, int(round(n * volume.voxel_size_cm / voxel_size_cm))) for n in volume.shape)
    return Volume(voxel_size_cm=voxel_size_cm, shape=shape, origin_cm=volume.origin_cm)


def _setup(seed, index, volume: Volume, options: Optional[SimOptions], randomize: bool,
           knobs: Optional[dict]) -> tuple[Volume, SimOptions, Optional[Knobs]]:
    """(volume, options, knobs) of one event. Without ``randomize`` and ``knobs`` this is
    exactly the simulator without knobs (knobs None, nothing recorded in the meta)."""
    opt = options or SimOptions()
    if not randomize and knobs is None:
        return volume, opt, None
    k = event_knobs(seed, index, randomize, knobs, volume.voxel_size_cm)
    return regrid(volume, k.voxel_size_cm), opt.with_knobs(k), k


def _vertex(rng, volume: Volume, margin_frac: float = 0.1) -> np.ndarray:
    lo, size = volume.lower_cm, volume.size_cm
    return lo + size * rng.uniform(margin_frac, 1 - margin_frac, 3)


def _finish(b: Builder, interactions, meta):
    b.run()
    return to_event(b, interactions, meta)


# ---------------------------------------------------------------------------- particle gun
def particle_gun(pdg: int, kinetic_energy_mev: float, seed: int = 0, direction=None, position=None,
                 volume: Volume = PILARNET_VOLUME, index: int = 0,
                 options: Optional[SimOptions] = None, *, randomize: bool = False,
                 knobs: Optional[dict] = None, **switches):
    """One particle (PDG code, kinetic energy in MeV) from ``position`` (default: the volume
    centre) along ``direction`` (default: isotropic from the seed).

    ``options`` (a ``SimOptions``) or keyword switches (``mcs=False``, ``hadronic=False``,
    ``delta_rays=False``, ``decays=False``, ``fluctuations=False``, ``threshold_mev=...``)
    change the physics for studies and tests; ``randomize`` / ``knobs`` as in ``simulate``."""
    volume, opt, k = _setup(seed, index, volume, options or SimOptions(**switches), randomize, knobs)
    rng = _rng(seed, index)
    x = volume.lower_cm + 0.5 * volume.size_cm if position is None else np.asarray(position, float)
    d = isotropic(rng) if direction is None else unit(np.asarray(direction, float))
    b = Builder(rng, volume, opt)
    b.add(int(pdg), float(kinetic_energy_mev), x, d, interaction=0)
    inter = [Interaction(id=0, vertex_cm=tuple(map(float, x)), channel="GUN")]
    return _finish(b, inter, _meta(volume, seed, index, "gun", k))


# ---------------------------------------------------------------------------- neutrinos
CC_FRACTION = 0.74
# nu_mu CC channel shares QE+MEC / RES / DIS vs E_nu (GeV) (PHYSICS.md, estimate)
_SHARE_E = np.array([0.5, 1.0, 2.0, 5.0, 10.0])
_SHARES = np.array([[65, 30, 5], [45, 35, 20], [30, 35, 35], [15, 25, 60], [8, 15, 77]], float) / 100
MEC_OF_QE = 0.25       # share of MEC in QE+MEC (estimate)
E_NU_MEDIAN_MEV, E_NU_SIGMA = 1500.0, 0.6   # log-normal flux stand-in, clipped to 0.5-10 GeV


def channel_shares(e_nu_mev: float) -> np.ndarray:
    """(QE+MEC, RES, DIS) probabilities at E_nu, linear in ln E between the PHYSICS.md points."""
    le = np.log(np.clip(e_nu_mev / 1000.0, 0.5, 10.0))
    s = np.array([np.interp(le, np.log(_SHARE_E), _SHARES[:, j]) for j in range(3)])
    return s / s.sum()


def _sample_energy(rng) -> float:
    while True:
        e = E_NU_MEDIAN_MEV * np.exp(E_NU_SIGMA * rng.standard_normal())
        if 500.0 <= e <= 10000.0:
            return float(e)


def _hadron_dirs(rng, qhat, n, spread=0.6) -> np.ndarray:
    """Hadron directions scattered around the momentum transfer direction."""
    if n == 0:
        return np.zeros((0, 3))
    return unit(qhat + spread * 1.6 * isotropic(rng, n) * rng.uniform(0.2, 1.0, (n, 1)))


MIN_VOXELS = 10   # a detector records nothing of an interaction that leaves no visible energy


def neutrino(seed: int = 0, index: int = 0, volume: Volume = PILARNET_VOLUME,
             flavour: Optional[str] = None, energy_mev: Optional[float] = None,
             options: Optional[SimOptions] = None, min_voxels: int = MIN_VOXELS, *,
             randomize: bool = False, knobs: Optional[dict] = None):
    """A toy neutrino interaction along +z (nu_e CC, nu_mu CC or NC) at a random vertex.

    ``flavour`` forces the class: 'nue_cc', 'numu_cc' or 'nc'. Channels QE/MEC, RES, DIS with
    the PHYSICS.md shares; lepton energy (1-y) E_nu, angle from Q^2; final-state protons,
    neutrons, charged and neutral pions. Interactions that leave fewer than ``min_voxels``
    voxels (e.g. an NC event whose only hadron is a neutron) are redrawn from the same random
    stream, as a trigger would never have recorded them; the event stays reproducible.
    ``randomize`` / ``knobs``: as in ``simulate`` (the ``nu_*`` knobs and ``remnant_protons``
    change the channel mix and the final state)."""
    volume, options, k = _setup(seed, index, volume, options, randomize, knobs)
    rng = _rng(seed, index)
    for _ in range(100):
        ev = _neutrino_once(rng, seed, index, volume, flavour, energy_mev, options, k)
        if len(ev) >= min_voxels:
            break
    return ev


def _neutrino_once(rng, seed, index, volume, flavour, energy_mev, options, k: Optional[Knobs]):
    opt = options or SimOptions()
    if flavour is None:
        if rng.random() < CC_FRACTION:
            flavour = "nue_cc" if rng.random() < 0.5 else "numu_cc"
        else:
            flavour = "nc"
    if flavour not in ("nue_cc", "numu_cc", "nc"):
        raise ValueError(f"neutrino: flavour must be 'nue_cc', 'numu_cc' or 'nc', got {flavour!r}")
    cc = flavour != "nc"
    nu_pdg = 12 if flavour == "nue_cc" else 14 if flavour == "numu_cc" else int(rng.choice([12, 14]))
    E = float(energy_mev) if energy_mev is not None else _sample_energy(rng)
    ch = _channel(rng, E, k)
    vtx = _vertex(rng, volume)
    b = Builder(rng, volume, opt)
    beam = np.array([0.0, 0.0, 1.0])
    lep_pdg = (11 if nu_pdg == 12 else 13) if cc else nu_pdg
    m_l = M.pdg_info(lep_pdg)[0] if cc else 0.0
    y, Q2, El, pl, cos = _lepton_kinematics(rng, ch, E, m_l)
    phi = rng.uniform(0, 2 * np.pi)
    ldir = rotate_about(beam, [cos], [phi])[0]
    nu_h = y * E                              # energy transfer
    q = E * beam - pl * ldir                  # momentum transfer
    inter = Interaction(id=0, vertex_cm=tuple(map(float, vtx)), nu_pdg=nu_pdg,
                        current="CC" if cc else "NC", channel=ch, nu_energy_mev=E,
                        event_class=flavour)
    if cc:
        b.add(lep_pdg, El - m_l, vtx, ldir, interaction=0)
    else:
        b.add(nu_pdg, El, vtx, ldir, interaction=0)   # outgoing neutrino: recorded, invisible
    hadrons = _hadron_species(rng, ch, cc, nu_h, Q2)
    energies = _hadron_energies(rng, ch, hadrons, nu_h)   # draws before the directions
    dirs = _hadron_dirs(rng, unit(q), len(hadrons))
    for h, T, d in zip(hadrons, energies, dirs):
        b.add(h, float(T), vtx, d, interaction=0)
    if k is not None and k.remnant_protons > 0:
        _remnant_protons(rng, b, vtx, k.remnant_protons)
    return _finish(b, [inter], _meta(volume, seed, index, "nu", k))


def _channel(rng, E: float, k: Optional[Knobs]) -> str:
    """QE / MEC / RES / DIS from the PHYSICS.md shares, reweighted by the knobs; COH with the
    probability ``nu_coh_fraction`` (no draw when that knob is 0)."""
    shares = channel_shares(E)
    w = k.channel_weights() if k is not None else None
    if w is not None:
        shares = shares * w / float(shares @ w)
    ch = ("QE", "RES", "DIS")[int(rng.choice(3, p=shares))]
    if ch == "QE" and rng.random() < MEC_OF_QE:
        ch = "MEC"
    if k is not None and k.nu_coh_fraction > 0 and rng.random() < k.nu_coh_fraction:
        ch = "COH"
    return ch


REMNANT_T_MEV = (5.0, 15.0, 60.0)   # nuclear-remnant protons: min, mean excess, max kinetic energy


def _remnant_protons(rng, b: Builder, vtx, mean: float) -> None:
    """Poisson(mean) low-energy isotropic protons from the struck nucleus (knob remnant_protons)."""
    lo, scale, hi = REMNANT_T_MEV
    for _ in range(int(rng.poisson(mean))):
        T = min(lo + rng.exponential(scale), hi)
        b.add(2212, float(T), vtx, isotropic(rng), interaction=0, process="nuclear")


def _lepton_kinematics(rng, ch: str, E: float, m_l: float):
    """Inelasticity y, Q^2, lepton energy, momentum and cos(angle to the beam) for channel
    ``ch`` (redrawn until kinematically allowed, 50 tries, then a fixed forward lepton)."""
    for _ in range(50):
        if ch in ("QE", "MEC"):
            y = rng.beta(1.2, 4.8)                        # mean 0.2
            Q2 = 2 * M_N * y * E * rng.uniform(0.7, 1.0)  # QE: Q^2 ~ 2 M nu (Fermi smeared)
        elif ch == "COH":                                 # tiny |t|, forward lepton
            y = rng.beta(1.5, 3.0)
            Q2 = rng.exponential(0.05e6)                  # MeV^2 (~0.05 GeV^2)
        elif ch == "RES":
            y = rng.beta(2.0, 3.5)                        # mean ~0.36
            W = np.clip(rng.normal(1232.0, 60.0), 1080.0, 1600.0)
            Q2 = M_N**2 + 2 * M_N * y * E - W**2
        else:
            y = rng.beta(2.4, 2.6)                        # mean 0.48
            x_bj = rng.beta(1.0, 3.0) * 0.95 + 0.02
            Q2 = 2 * M_N * E * x_bj * y
        El = (1 - y) * E
        if El <= m_l + 1.0 or Q2 <= 0:
            continue
        pl = np.sqrt(El**2 - m_l**2)
        cos = (2 * E * El - m_l**2 - Q2) / (2 * E * pl)
        if -1 <= cos <= 1:
            break
    else:
        y, El, cos = 0.2, 0.8 * E, 0.9
        pl = np.sqrt(max(El**2 - m_l**2, 1.0))
    return y, Q2, El, pl, cos


def _hadron_species(rng, ch: str, cc: bool, nu_h: float, Q2: float) -> list[int]:
    """PDG codes of the final-state hadrons of channel ``ch``."""
    hadrons: list[int] = []
    if ch == "QE":
        hadrons = [2212] * int(rng.choice(4, p=[0.2, 0.5, 0.2, 0.1]))
        if not hadrons:
            hadrons = [2112]
    elif ch == "MEC":
        hadrons = [2212] * int(rng.choice([1, 2, 3], p=[0.4, 0.45, 0.15])) + [2112]
    elif ch == "COH":   # one pion, the nucleus stays intact
        hadrons = [211 if cc else 111]
    elif ch == "RES":
        charged = rng.random() < 2 / 3
        pi = (211 if (cc or rng.random() < 0.5) else -211) if charged else 111
        hadrons = [pi, 2212 if rng.random() < 0.6 else 2112]
        if rng.random() < 0.3:
            hadrons.append(2212)
    else:
        W2 = max(M_N**2 + 2 * M_N * nu_h - Q2, 1.2e6) / 1e6   # GeV^2
        nh = max(1, rng.poisson(0.4 + 1.42 * np.log(W2)))
        for _ in range(nh):
            u = rng.random()
            if u < 0.70:   # DIS final states are mostly pions, a third of them neutral
                hadrons.append(111 if rng.random() < 1 / 3 else int(rng.choice([211, -211])))
            elif u < 0.84:
                hadrons.append(2212)
            elif u < 0.95:
                hadrons.append(2112)
            else:
                hadrons.append(int(rng.choice([321, -321])))
        hadrons.append(2212 if rng.random() < 0.6 else 2112)
    return hadrons


def _hadron_energies(rng, ch: str, hadrons: list[int], nu_h: float) -> np.ndarray:
    """Kinetic energies: the available energy (nu - binding - meson masses) shared among the
    hadrons."""
    binding = 30.0
    masses = np.array([M.pdg_info(h)[0] if h in (111, 211, -211, 321, -321) else 0.0 for h in hadrons])
    avail = max(nu_h - binding - masses.sum(), 10.0 * len(hadrons))
    # mesons carry most of the hadronic energy; nucleons (notably invisible neutrons) less
    is_meson = np.array([abs(h) not in (2212, 2112) for h in hadrons])
    w = rng.dirichlet(np.where(is_meson, 2.0, 0.8) if ch == "DIS" else np.full(len(hadrons), 1.5))
    Tks = w * avail
    if ch == "QE":  # protons of 30-300 MeV
        Tks = np.clip(Tks, 30.0, 300.0) if hadrons[0] == 2212 else Tks
    return Tks


# ---------------------------------------------------------------------------- PILArNet modes
# PILArNet multi-particle vertex: kinetic energy uniform per group (PHYSICS.md)
MPV_GROUPS = (
    ((11, 13, -13), 40.0, 1500.0),
    ((22,), 40.0, 1500.0),
    ((211, -211), 40.0, 1500.0),
    ((2212,), 50.0, 700.0),
)


def _draw_gun_particle(rng):
    g = MPV_GROUPS[int(rng.integers(len(MPV_GROUPS)))]
    pdg = int(rng.choice(g[0]))
    return pdg, float(rng.uniform(g[1], g[2]))


def mpv(seed: int = 0, index: int = 0, volume: Volume = PILARNET_VOLUME,
        options: Optional[SimOptions] = None, *, randomize: bool = False,
        knobs: Optional[dict] = None):
    """PILArNet multi-particle vertex: 1-6 particles, isotropic, from one vertex.
    ``randomize`` / ``knobs``: as in ``simulate``."""
    volume, opt, k = _setup(seed, index, volume, options, randomize, knobs)
    rng = _rng(seed, index)
    b = Builder(rng, volume, opt)
    vtx = _vertex(rng, volume)
    for _ in range(int(rng.integers(1, 7))):
        pdg, T = _draw_gun_particle(rng)
        b.add(pdg, T, vtx, isotropic(rng), interaction=0)
    inter = [Interaction(id=0, vertex_cm=tuple(map(float, vtx)), channel="GUN")]
    return _finish(b, inter, _meta(volume, seed, index, "mpv", k))


def mpr(seed: int = 0, index: int = 0, volume: Volume = PILARNET_VOLUME,
        options: Optional[SimOptions] = None, *, randomize: bool = False,
        knobs: Optional[dict] = None):
    """PILArNet multi-particle rain: 2-10 independent particles at random points with random
    directions (cosmic-like), each its own interaction. Muons enter from the top (+y) half
    of the time, like cosmic rays. ``randomize`` / ``knobs``: as in ``simulate``."""
    volume, opt, kn = _setup(seed, index, volume, options, randomize, knobs)
    rng = _rng(seed, index)
    b = Builder(rng, volume, opt)
    inters = []
    for k in range(int(rng.integers(2, 11))):
        pdg, T = _draw_gun_particle(rng)
        x = _vertex(rng, volume, 0.02)
        d = isotropic(rng)
        if abs(pdg) == 13 and rng.random() < 0.5:
            d = unit(np.array([d[0], -abs(d[1]) - 0.5, d[2]]))
        b.add(pdg, T, x, d, interaction=k)
        inters.append(Interaction(id=k, vertex_cm=tuple(map(float, x)), channel="GUN"))
    return _finish(b, inters, _meta(volume, seed, index, "mpr", kn))
