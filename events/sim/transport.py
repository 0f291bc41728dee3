"""Particle transport: charged tracks, low-energy electrons and photons, EM showers, decays.

A ``Builder`` owns one event: the particle records and the energy deposits (points in cm with
energy, dE/dx and step length, and the id of the particle that made them). Primaries are added
with ``Builder.add`` and ``Builder.run`` transports everything, secondaries included.

Physics summary (numbers: shared/PHYSICS.md):
- muons, pions, kaons, protons and Michel electrons are stepped along their CSDA residual range
  (``medium.range_table``), so the Bragg peak comes out of the table; Highland multiple
  scattering in chunks; delta rays above 1 MeV from the 1/T^2 spectrum; Landau-like step
  fluctuations (Gamma-distributed, mean preserved); hadronic inelastic interactions of pions,
  kaons and protons with a constant 85.8 cm interaction length; pion/kaon decay in flight
  from the proper-time integral; decays and captures at rest.
- low-energy electrons (delta rays, Compton electrons) are stepped in one batch with a
  small-angle random walk; low-energy photons go through a batched Compton / photoelectric chain.
- e+-/gamma above ~20-30 MeV make parametrised showers (vectorised draws, no cascade): an
  exponential conversion gap for photons, a 1-MIP (electron) or 2-MIP (photon) trunk, then the
  shower's electrons as a batch of short stepped electrons (log-uniform 1-50 MeV) whose depths
  follow the Grindhammer-Peters / SPINE-LAr Gamma profile and whose lateral positions follow a
  core + halo Moliere-radius profile; half of them hang off earlier ones (branching); 6-14% of
  the energy goes to detached Compton pieces (separate particles, LE if <= 10 voxels).

Shortcuts: no muon decay in flight; no positron annihilation; no pair production for photons
below 20 MeV; the Landau tail is not modelled (Gamma-distributed step fluctuations); hadronic
interactions use a constant interaction length and a toy final state (protons, a scattered pion,
de-excitation photons; neutrons and binding energy invisible); radiative losses of muons above
a few GeV are ignored.

Approximations are knobs (``events.sim.knobs``, carried by ``SimOptions.knobs``; defaults are the
values above): hadronic interaction length scale, delta-ray cut, Michel smearing, shower depth /
width scales and fluctuations, conversion length scale.

The electron, photon and shower transport is in ``events.sim.em`` (a mixin of ``Builder``), the
spectra and shower profiles it draws from in ``events.sim.samplers``.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

import numpy as np

from larsight.events.sim import medium as M
from larsight.events.sim.em import EMTransport
from larsight.events.sim.knobs import Knobs
from larsight.events.sim.kinematics import boost, isotropic, momentum, perp_frame, rotate_about, two_body_p, unit
from larsight.events.sim.samplers import sample_michel_x

TRACK_PDGS = (13, 211, 321, 2212)
EM_PDGS = (11, 22)
# 'kind' of a particle record -> how its deposits are labelled (see voxelize.py)
KINDS = ("track", "michel", "shower", "delta", "compton", "le", "none")


@dataclass(frozen=True)
class SimOptions:
    """Switches and thresholds of the transport (all on by default)."""

    mcs: bool = True
    hadronic: bool = True
    delta_rays: bool = True
    decays: bool = True
    fluctuations: bool = True
    threshold_mev: float = 0.01          # voxel threshold (Supera)
    step_cm: float | None = None         # default: half a voxel, at most 0.3 cm
    electron_shower_mev: float = 30.0    # e+- above this make a parametrised shower
    photon_shower_mev: float = 20.0      # photons above this convert and shower
    delta_cut_mev: float = 1.0           # explicit delta rays above this energy
    hadronic_min_mev: float = 20.0       # no inelastic interaction below this kinetic energy
    knobs: Optional[Knobs] = None        # the approximations' knobs (None: all defaults)
    le_without_particle: bool = False    # PILArNet-M labels: LE voxels get particle/pid -1

    def with_knobs(self, knobs: Knobs) -> "SimOptions":
        """These options with ``knobs`` (the voxel threshold and delta-ray cut come from them)."""
        return replace(self, knobs=knobs, threshold_mev=knobs.threshold_mev,
                       delta_cut_mev=knobs.delta_cut_mev)


_DELTA_K = 0.5 * M.K_BB * M.Z_OVER_A * M.DENSITY   # MeV/cm, delta-ray spectrum coefficient
_MU_CAPTURE = 0.75                                  # mu- at rest in argon (Suzuki et al.)
_MCS_CHUNK = 0.04                                   # rad^2 of accumulated theta0^2 per frame
_DEFAULT_KNOBS = Knobs()


class Builder(EMTransport):
    """Truth record and deposit store of one simulated event."""

    def __init__(self, rng: np.random.Generator, volume, options: SimOptions | None = None):
        self.rng = rng
        self.volume = volume
        self.opt = options or SimOptions()
        self.knobs = self.opt.knobs or _DEFAULT_KNOBS
        self.step = self.opt.step_cm or min(0.5 * volume.voxel_size_cm, 0.3)
        self.lo = volume.lower_cm
        self.hi = volume.upper_cm
        self.parts: list[dict] = []
        self._xyz: list[np.ndarray] = []
        self._e: list[np.ndarray] = []
        self._dedx: list[np.ndarray] = []
        self._ds: list[np.ndarray] = []
        self._own: list[np.ndarray] = []
        self.stack: list[int] = []
        self.pending_e: list[int] = []
        self.pending_g: list[int] = []

    # ------------------------------------------------------------------ records
    def add(self, pdg: int, T: float, x, d, parent: int = -1, process: str = "primary",
            interaction: int | None = None, kind: str | None = None, queue: str = "stack") -> int:
        """Add a particle (kinetic energy T MeV at x cm, direction d) and queue it."""
        mass, _, _ = M.pdg_info(pdg)
        pid = len(self.parts)
        par = self.parts[parent] if parent >= 0 else None
        inter = interaction if interaction is not None else (par["interaction"] if par else -1)
        em = abs(pdg) in EM_PDGS
        group = par["group"] if (par is not None and em and abs(par["pdg"]) in EM_PDGS) else pid
        if kind is None:
            a = abs(pdg)
            kind = "track" if a in TRACK_PDGS else "shower" if a in EM_PDGS else "none"
        x = np.asarray(x, dtype=np.float64)
        self.parts.append(dict(id=pid, pdg=int(pdg), mass=mass, T=max(float(T), 0.0), x=x,
                               d=unit(np.asarray(d, dtype=np.float64)), parent=parent,
                               process=process, interaction=inter, end=x.copy(), kind=kind,
                               group=group))
        {"stack": self.stack, "e": self.pending_e, "g": self.pending_g}.get(queue, []).append(pid)
        return pid

    def deposit(self, owner, xyz, e, dedx, ds) -> None:
        n = len(e)
        if n == 0:
            return
        self._xyz.append(np.asarray(xyz, dtype=np.float64).reshape(n, 3))
        self._e.append(np.asarray(e, dtype=np.float64))
        self._dedx.append(np.broadcast_to(np.asarray(dedx, dtype=np.float64), (n,)))
        self._ds.append(np.broadcast_to(np.asarray(ds, dtype=np.float64), (n,)))
        self._own.append(np.broadcast_to(np.asarray(owner, dtype=np.int64), (n,)))

    def deposits(self):
        """All deposits as arrays (xyz (M,3), energy, dE/dx, step, owner)."""
        if not self._e:
            z = np.zeros(0)
            return np.zeros((0, 3)), z, z, z, np.zeros(0, dtype=np.int64)
        return (np.concatenate(self._xyz), np.concatenate(self._e), np.concatenate(self._dedx),
                np.concatenate(self._ds), np.concatenate(self._own))

    def inside(self, x) -> np.ndarray:
        x = np.asarray(x)
        return np.all((x >= self.lo) & (x < self.hi), axis=-1)

    # ------------------------------------------------------------------ driver
    def run(self) -> "Builder":
        for _ in range(8):
            while self.stack:
                self._transport(self.stack.pop())
            if not (self.pending_e or self.pending_g):
                break
            if self.pending_e:
                ids, self.pending_e = self.pending_e, []
                self._electrons(np.asarray(ids))
            if self.pending_g:
                ids, self.pending_g = self.pending_g, []
                self._photons(np.asarray(ids))
        return self

    def _transport(self, pid: int) -> None:
        r = self.parts[pid]
        a = abs(r["pdg"])
        if a in TRACK_PDGS:
            self._track(pid)
        elif a == 11:
            if r["kind"] == "michel" or (r["T"] < self.opt.electron_shower_mev and r["parent"] < 0):
                self._track(pid)
            elif r["T"] < self.opt.electron_shower_mev:
                self.pending_e.append(pid)
            else:
                self._shower(pid)
        elif a == 22:
            if r["T"] >= self.opt.photon_shower_mev:
                self._shower(pid)
            else:
                self.pending_g.append(pid)
        elif a == 111:
            self._pi0(pid)
        elif a == 2112:
            self._neutron(pid)
        # neutrinos and anything else: invisible

    # ------------------------------------------------------------------ charged tracks
    def _mcs_directions(self, d0, theta0) -> np.ndarray:
        """Directions of successive steps under multiple scattering, rotating the local frame
        every time the accumulated theta0^2 passes _MCS_CHUNK."""
        n = theta0.shape[0]
        if not self.opt.mcs or n == 0:
            return np.broadcast_to(d0, (n, 3)).copy()
        g = self.rng.standard_normal((n, 2)) * theta0[:, None]
        cum = np.cumsum(theta0**2)
        chunk = (cum / _MCS_CHUNK).astype(np.int64)
        cuts = np.flatnonzero(np.diff(chunk)) + 1
        bounds = np.concatenate([[0], cuts, [n]])
        out = np.empty((n, 3))
        d = np.asarray(d0, dtype=np.float64)
        for a, b in zip(bounds[:-1], bounds[1:]):
            u, v = perp_frame(d)
            ang = np.cumsum(g[a:b], axis=0)
            vec = d + ang[:, :1] * u + ang[:, 1:] * v
            vec /= np.linalg.norm(vec, axis=1, keepdims=True)
            out[a:b] = vec
            d = vec[-1]
        return out

    def _track(self, pid: int) -> None:
        r = self.parts[pid]
        rng, opt = self.rng, self.opt
        pdg = r["pdg"]
        sp = M.species_of(pdg)
        tab = M.range_table(sp)
        mass, z = tab.mass, tab.charge
        T0 = r["T"]
        if T0 <= 1e-3:
            self._end(pid, "stop", r["x"], r["d"], 0.0)
            return
        R0 = float(tab.range_cm(T0))
        s_stop, reason = R0, "stop"
        if opt.hadronic and sp in ("pion", "proton", "kaon") and T0 > opt.hadronic_min_mev:
            s_had = rng.exponential(M.NUCLEAR_INTERACTION_CM * self.knobs.hadron_interaction_scale)
            if s_had < R0 - float(tab.range_cm(opt.hadronic_min_mev)):
                s_stop, reason = s_had, "hadronic"
        ds = self.step
        n = max(1, int(np.ceil(s_stop / ds - 1e-9)))
        s = np.minimum(np.arange(n + 1) * ds, s_stop)
        Tb = tab.energy_mev(R0 - s)
        Tb[0] = T0
        if reason == "stop":
            Tb[-1] = 0.0
        dsi = np.diff(s)
        # decay in flight (pions, kaons): proper length along the track vs an exponential draw
        ctau = M.pdg_info(pdg)[2]
        if opt.decays and sp in ("pion", "kaon") and np.isfinite(ctau):
            Tm = 0.5 * (Tb[:-1] + Tb[1:])
            bg = momentum(Tm, mass) / mass
            proper = np.cumsum(dsi / np.maximum(bg, 1e-6))
            k = int(np.searchsorted(proper, rng.exponential(ctau)))
            if k < n and Tb[k + 1] > 0:
                n, reason = k + 1, "decay"
                s, Tb, dsi = s[: n + 1], Tb[: n + 1], dsi[:n]
        Tm = 0.5 * (Tb[:-1] + Tb[1:])
        p = momentum(Tm, mass)
        beta = p / (Tm + mass)
        theta0 = M.highland_theta0(np.maximum(p, 1e-3), np.maximum(beta, 1e-3), dsi, z)
        dirs = self._mcs_directions(r["d"], theta0)
        P = r["x"] + np.concatenate([np.zeros((1, 3)), np.cumsum(dirs * dsi[:, None], axis=0)])
        out = ~self.inside(P[1:])
        if out.any():
            k = int(np.argmax(out))
            n, reason = k + 1, "exit"
            P, Tb, dsi, dirs, Tm, beta, p = P[: n + 1], Tb[: n + 1], dsi[:n], dirs[:n], Tm[:n], beta[:n], p[:n]
        dE = Tb[:-1] - Tb[1:]
        local = dE * tab.collision_fraction(Tm) if sp == "electron" else dE.copy()
        # explicit delta rays (heavy particles): remove their mean share, then draw them
        n_delta = None
        if opt.delta_rays and sp != "electron":
            g = (Tm + mass) / mass
            ratio = M.M_E / mass
            wmax = 2 * M.M_E * (g * g - 1) / (1 + 2 * g * ratio + ratio**2)
            tc = opt.delta_cut_mev
            ok = wmax > tc
            coef = _DELTA_K * z * z / np.maximum(beta, 1e-3) ** 2
            lam = np.where(ok, coef * (1 / tc - 1 / np.maximum(wmax, tc)) * dsi, 0.0)
            frac = np.where(ok, coef * np.log(np.maximum(wmax, tc) / tc) * dsi, 0.0)
            local -= np.minimum(frac, 0.8 * local)
            n_delta = rng.poisson(lam)
        if opt.fluctuations:
            local *= rng.gamma(8.0, 1 / 8.0, local.shape[0])
        mid = P[:-1] + 0.5 * dirs * dsi[:, None]
        self.deposit(pid, mid, local, local / np.maximum(dsi, 1e-4), dsi)
        if n_delta is not None and n_delta.any():
            self._emit_deltas(pid, n_delta, wmax, P, dirs, dsi)
        if sp == "electron":
            self._brem(pid, P, dirs, dE - dE * tab.collision_fraction(Tm))
        self._end(pid, reason, P[-1], dirs[-1], float(Tb[-1]))

    def _emit_deltas(self, pid, n_delta, wmax, P, dirs, dsi) -> None:
        """``n_delta[k]`` delta-ray electrons from step k (1/T^2 spectrum above the cut, at the
        kinematic angle, from a random point of the step)."""
        rng = self.rng
        idx = np.repeat(np.arange(n_delta.shape[0]), n_delta)
        tc = self.opt.delta_cut_mev
        u = rng.random(idx.shape[0])
        Td = 1 / (1 / tc - u * (1 / tc - 1 / wmax[idx]))
        pd = momentum(Td, M.M_E)
        pmax = momentum(wmax[idx], M.M_E)
        cos = np.clip(Td / pd * pmax / wmax[idx], -1, 1)
        dd = rotate_about(dirs[idx], cos, rng.uniform(0, 2 * np.pi, idx.shape[0]))
        pos = P[idx] + dirs[idx] * (dsi[idx] * rng.random(idx.shape[0]))[:, None]
        for j in range(idx.shape[0]):
            self.add(11, Td[j], pos[j], dd[j], parent=pid, process="delta", kind="delta", queue="e")

    def _brem(self, pid, P, dirs, rad) -> None:
        """Radiative loss of a stepped electron as a few bremsstrahlung photons."""
        total = float(rad.sum())
        if total < 0.3:
            if total > 0:
                self.deposit(pid, P[-1:], [total], [3.0], [self.step])
            return
        rng = self.rng
        n = 1 + rng.poisson(total / 8.0)
        w = np.cumsum(rad) / total
        idx = np.minimum(np.searchsorted(w, rng.random(n)), len(rad) - 1)
        share = rng.dirichlet(np.ones(n)) * total
        for j, e in zip(idx, share):
            if e < 0.05:
                continue
            d = rotate_about(dirs[j], [np.cos(min(1.0, M.M_E / e))], [rng.uniform(0, 2 * np.pi)])[0]
            self.add(22, e, P[j], d, parent=pid, process="brem", kind="compton")

    def _end(self, pid: int, reason: str, x, d, T_end: float) -> None:
        r = self.parts[pid]
        r["end"] = np.asarray(x, dtype=np.float64)
        if reason == "exit":
            return
        if reason == "stop" and self.opt.decays:
            self._at_rest(pid)
        elif reason == "hadronic":
            self._hadronic(pid, T_end, d)
        elif reason == "decay":
            self._decay_in_flight(pid, T_end, d)

    def _at_rest(self, pid: int) -> None:
        r = self.parts[pid]
        rng = self.rng
        pdg, x = r["pdg"], r["end"]
        if pdg == -13 or (pdg == 13 and rng.random() >= _MU_CAPTURE):
            # Michel spectrum dN/dx = 2x^2(3-2x): inverse CDF x^3(2-x) = u, by Newton steps
            xx = sample_michel_x(rng, 1)[0]
            E = xx * M.MICHEL_EMAX
            if self.knobs.michel_smear > 0:
                E *= float(np.clip(1 + self.knobs.michel_smear * rng.standard_normal(), 0.5, 1.5))
            self.add(11 if pdg == 13 else -11, max(E - M.M_E, 0.01), x, isotropic(rng),
                     parent=pid, process="decay", kind="michel")
        elif pdg == 13:
            self._nuclear_blips(pid, x, "capture", total=rng.uniform(1.0, 10.0))
        elif pdg == 211:
            mass_pi, mass_mu = M.pdg_info(211)[0], M.pdg_info(13)[0]
            pmu = two_body_p(mass_pi, mass_mu, 0.0)
            self.add(-13, np.hypot(pmu, mass_mu) - mass_mu, x, isotropic(rng), parent=pid,
                     process="decay")
        elif pdg in (-211, -321):
            for _ in range(rng.integers(0, 3)):
                self.add(2212, rng.uniform(5.0, 50.0), x, isotropic(rng), parent=pid, process="capture")
            self._nuclear_blips(pid, x, "capture", total=rng.uniform(1.0, 8.0))
        elif pdg == 321:
            self._kaon_decay(pid, 0.0, r["d"], x)

    def _kaon_decay(self, pid, T, d, x) -> None:
        rng = self.rng
        mK = M.pdg_info(321)[0]
        if rng.random() < 0.64:
            prods = (-13 if self.parts[pid]["pdg"] == 321 else 13, 14)
        else:
            prods = (211 if self.parts[pid]["pdg"] == 321 else -211, 111)
        self._two_body(pid, mK, T, d, x, prods)

    def _two_body(self, pid, mass, T, d, x, prods) -> None:
        """Two-body decay of a parent of kinetic energy T moving along d, isotropic in its rest
        frame; neutrinos are not recorded."""
        m1, m2 = (M.pdg_info(p)[0] for p in prods)
        pstar = two_body_p(mass, m1, m2)
        n = isotropic(self.rng)
        E = np.array([np.hypot(pstar, m1), np.hypot(pstar, m2)])
        p = np.stack([n * pstar, -n * pstar])
        P = momentum(T, mass)
        E2, p2 = boost(E, p, np.asarray(d) * P / (T + mass))
        for pdg, m, e, pv in zip(prods, (m1, m2), E2, p2):
            if abs(pdg) in (12, 14, 16):
                continue
            self.add(pdg, max(e - m, 0.0), x, pv, parent=pid, process="decay")

    def _decay_in_flight(self, pid, T, d) -> None:
        r = self.parts[pid]
        x = r["end"]
        if abs(r["pdg"]) == 211:
            mu = -13 if r["pdg"] == 211 else 13
            self._two_body(pid, M.pdg_info(211)[0], T, d, x, (mu, 14))
        else:
            self._kaon_decay(pid, T, d, x)

    def _hadronic(self, pid, T, d) -> None:
        """Inelastic interaction in flight: the track ends, a few protons (and for pions
        sometimes a scattered pion) come out, plus nuclear de-excitation blips; the rest of
        the energy goes to neutrons and binding (invisible)."""
        r = self.parts[pid]
        rng, x = self.rng, r["end"]
        budget = T * rng.uniform(0.4, 0.9)
        if abs(r["pdg"]) == 211 and rng.random() < 0.5:
            Tp = budget * rng.uniform(0.3, 0.8)
            budget -= Tp
            self.add(r["pdg"], Tp, x, rotate_about(d, [rng.uniform(0.3, 1.0)],
                                                   [rng.uniform(0, 2 * np.pi)])[0],
                     parent=pid, process="hadronic")
        for _ in range(min(4, rng.poisson(0.8 + T / 400.0))):
            if budget < 3.0:
                break
            Tp = min(budget, 3.0 + rng.exponential(50.0))
            budget -= Tp
            self.add(2212, Tp, x, rotate_about(d, [rng.uniform(-0.3, 1.0)],
                                               [rng.uniform(0, 2 * np.pi)])[0],
                     parent=pid, process="hadronic")
        self._nuclear_blips(pid, x, "hadronic", total=rng.uniform(0.5, 6.0))

    def _nuclear_blips(self, pid, x, process, total) -> None:
        """De-excitation photons (1-3, sharing ``total`` MeV) from a nucleus at x."""
        rng = self.rng
        n = 1 + rng.poisson(0.8)
        for e in rng.dirichlet(np.ones(n)) * total:
            if e > 0.1:
                self.add(22, e, x, isotropic(rng), parent=pid, process=process, kind="compton")

    def _neutron(self, pid) -> None:
        """Neutrons leave only scattered blips: 0-3 inelastic-scatter photons along the path."""
        r = self.parts[pid]
        rng = self.rng
        dist = 0.0
        for _ in range(min(3, rng.poisson(min(2.0, 0.5 + r["T"] / 100.0)))):
            dist += rng.exponential(60.0)
            pos = r["x"] + r["d"] * dist
            if not self.inside(pos):
                break
            self.add(22, rng.uniform(0.5, 3.0), pos, isotropic(rng), parent=pid, process="hadronic",
                     kind="compton")
            r["end"] = pos

    def _pi0(self, pid) -> None:
        r = self.parts[pid]
        rng = self.rng
        m = r["mass"]
        n = isotropic(rng)
        E = np.array([m / 2, m / 2])
        p = np.stack([n, -n]) * (m / 2)
        P = momentum(r["T"], m)
        E2, p2 = boost(E, p, r["d"] * P / (r["T"] + m))
        for e, pv in zip(E2, p2):
            self.add(22, e, r["x"], pv, parent=pid, process="decay")
