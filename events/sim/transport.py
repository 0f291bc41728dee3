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
"""
from __future__ import annotations

from dataclasses import dataclass
import numpy as np

from larsight.events.sim import medium as M
from larsight.events.sim.kinematics import isotropic, momentum, perp_frame, rotate_about, two_body_p, unit, boost

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


_DELTA_K = 0.5 * M.K_BB * M.Z_OVER_A * M.DENSITY   # MeV/cm, delta-ray spectrum coefficient
_MU_CAPTURE = 0.75                                  # mu- at rest in argon (Suzuki et al.)
_MCS_CHUNK = 0.04                                   # rad^2 of accumulated theta0^2 per frame


class Builder:
    """Truth record and deposit store of one simulated event."""

    def __init__(self, rng: np.random.Generator, volume, options: SimOptions | None = None):
        self.rng = rng
        self.volume = volume
        self.opt = options or SimOptions()
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
            s_had = rng.exponential(M.NUCLEAR_INTERACTION_CM)
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
            idx = np.repeat(np.arange(n_delta.shape[0]), n_delta)
            tc = opt.delta_cut_mev
            u = rng.random(idx.shape[0])
            Td = 1 / (1 / tc - u * (1 / tc - 1 / wmax[idx]))
            pd = momentum(Td, M.M_E)
            pmax = momentum(wmax[idx], M.M_E)
            cos = np.clip(Td / pd * pmax / wmax[idx], -1, 1)
            dd = rotate_about(dirs[idx], cos, rng.uniform(0, 2 * np.pi, idx.shape[0]))
            pos = P[idx] + dirs[idx] * (dsi[idx] * rng.random(idx.shape[0]))[:, None]
            for j in range(idx.shape[0]):
                self.add(11, Td[j], pos[j], dd[j], parent=pid, process="delta", kind="delta", queue="e")
        if sp == "electron":
            self._brem(pid, P, dirs, dE - dE * tab.collision_fraction(Tm))
        self._end(pid, reason, P[-1], dirs[-1], float(Tb[-1]))

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

    # ------------------------------------------------------------------ low-energy electrons
    def _electrons(self, ids: np.ndarray) -> None:
        """Step the queued low-energy electrons (delta rays, Compton electrons) in one batch;
        those above 10 MeV radiate a few photons."""
        parts = self.parts
        T = np.array([parts[i]["T"] for i in ids])
        keep = T > 1e-3
        ids, T = ids[keep], T[keep]
        if ids.size == 0:
            return
        x0 = np.stack([parts[i]["x"] for i in ids])
        d0 = np.stack([parts[i]["d"] for i in ids])
        end = self._step_electrons(T, x0, d0, ids, brem=True)
        for k, i in enumerate(ids):
            parts[i]["end"] = end[k]

    def _step_electrons(self, T, x0, d0, owners, brem: bool, full: bool = False):
        """Step a batch of electrons along their CSDA range with a small-angle random walk for
        multiple scattering; deposits go to ``owners`` (one per electron). With ``brem``, the
        radiative share of electrons above 10 MeV becomes photons. Returns the end points."""
        rng, ds = self.rng, self.step
        tab = M.range_table("electron")
        R = tab.range_cm(T)
        n = np.maximum(1, np.ceil(R / ds - 1e-9).astype(np.int64))
        off = np.concatenate([[0], np.cumsum(n)])
        tot = int(off[-1])
        g = np.repeat(np.arange(T.size), n)
        j = np.arange(tot) - off[g]
        s0 = j * ds
        Rg = R[g]
        s1 = np.minimum(s0 + ds, Rg)
        Ts = tab.energy_mev(Rg - s0)
        Ts[off[:-1]] = T
        Te = np.where(s1 >= Rg - 1e-12, 0.0, tab.energy_mev(Rg - s1))
        dE = np.maximum(Ts - Te, 0.0)
        dsi = s1 - s0
        Tm = 0.5 * (Ts + Te)
        if self.opt.mcs:
            p = momentum(np.maximum(Tm, 1e-3), M.M_E)
            th = M.highland_theta0(p, p / (Tm + M.M_E), np.maximum(dsi, 1e-4))
            noise = rng.standard_normal((tot, 3)) * np.minimum(th, 1.5)[:, None]
            c = np.cumsum(noise, axis=0)
            start = np.concatenate([np.zeros((1, 3)), c[off[1:-1] - 1]])
            c -= start[g]
            dirs = unit(d0[g] + c)
        else:
            dirs = d0[g]
        disp = dirs * dsi[:, None]
        cp = np.cumsum(disp, axis=0)
        base = np.concatenate([np.zeros((1, 3)), cp[off[1:-1] - 1]])
        end = x0[g] + cp - base[g]
        mid = end - 0.5 * disp
        radiate = (T > 10.0)[g] if brem else np.zeros(tot, dtype=bool)
        col = tab.collision_fraction(Tm) if brem else None
        local = np.where(radiate, dE * col, dE) if brem else dE
        if self.opt.fluctuations:
            local = local * rng.gamma(8.0, 1 / 8.0, tot)
        self.deposit(np.asarray(owners)[g], mid, local, local / np.maximum(dsi, 1e-4), dsi)
        if brem:
            for k in np.flatnonzero(T > 10.0):
                sl = slice(off[k], off[k + 1])
                self._brem(int(owners[k]), np.concatenate([x0[k:k + 1], end[sl]]), dirs[sl],
                           dE[sl] * (1 - col[sl]))
        if full:
            return end[off[1:] - 1], mid, dirs
        return end[off[1:] - 1]

    # ------------------------------------------------------------------ low-energy photons
    def _photons(self, ids: np.ndarray) -> None:
        """Batched Compton / photoelectric chain of low-energy photons (no pair production)."""
        rng, parts = self.rng, self.parts
        E = np.array([parts[i]["T"] for i in ids], dtype=np.float64)
        x = np.stack([parts[i]["x"] for i in ids]).astype(np.float64)
        d = np.stack([parts[i]["d"] for i in ids]).astype(np.float64)
        own = np.asarray(ids)
        new_e = []   # (owner, T, pos, dir, process)
        for _ in range(40):
            if E.size == 0:
                break
            x = x + d * rng.exponential(M.photon_attenuation_cm(E))[:, None]
            alive = self.inside(x)
            E, x, d, own = E[alive], x[alive], d[alive], own[alive]
            if E.size == 0:
                break
            photo = E < 0.1
            for k in np.flatnonzero(photo):
                new_e.append((own[k], E[k], x[k], isotropic(rng), "photoelectric"))
                parts[own[k]]["end"] = x[k]
            keep = ~photo
            E, x, d, own = E[keep], x[keep], d[keep], own[keep]
            if E.size == 0:
                break
            eps = sample_klein_nishina(rng, E / M.M_E)
            cos = 1 - (1 / eps - 1) * M.M_E / E
            dn = rotate_about(d, cos, rng.uniform(0, 2 * np.pi, E.size))
            pe = E[:, None] * d - (E * eps)[:, None] * dn
            Te = E * (1 - eps)
            for k in range(E.size):
                if Te[k] > 2e-3:
                    new_e.append((own[k], Te[k], x[k], pe[k], "compton"))
                parts[own[k]]["end"] = x[k]
            E, d = E * eps, dn
        for o, t, pos, dv, proc in new_e:
            self.add(11, t, pos, dv, parent=int(o), process=proc, kind="compton", queue="e")

    # ------------------------------------------------------------------ EM showers
    def _shower(self, pid: int) -> None:
        r = self.parts[pid]
        rng, ds = self.rng, self.step
        E = r["T"]
        axis = r["d"]
        start = r["x"]
        if r["pdg"] == 22:
            start = start + axis * rng.exponential(M.photon_attenuation_cm(E))
            r["end"] = start
            if not self.inside(start):
                return
            n_mip = 2
        else:
            n_mip = 1
        u, v = perp_frame(axis)
        # trunk: 2-4.5 cm at 1 MIP (electron) or 2 MIP (photon: the e+e- pair)
        L_tr = rng.uniform(2.0, 4.5)
        L_tr = min(L_tr, 0.25 * E / (n_mip * M.MIP_DEDX))
        m = max(1, int(L_tr / ds))
        t_tr = (np.arange(m) + 0.5) * ds
        pts = [start + t_tr[:, None] * axis]
        if n_mip == 2:  # second leg of the pair at a small opening angle
            leg = unit(axis + rng.uniform(0.01, 0.04) * (u * np.cos(a := rng.uniform(0, 6.3)) + v * np.sin(a)))
            pts = [start + t_tr[:, None] * axis, start + t_tr[:, None] * leg]
        trunk = np.concatenate(pts)
        e_tr = np.full(trunk.shape[0], M.MIP_DEDX * ds)
        if self.opt.fluctuations:
            e_tr = e_tr * rng.gamma(8.0, 1 / 8.0, e_tr.size)
        self.deposit(pid, trunk, e_tr, e_tr / ds, ds)
        E_left = max(E - float(e_tr.sum()), 0.0)
        E_det = E_left * rng.uniform(0.06, 0.14)
        E_body = E_left - E_det
        a_gp, b_gp = longitudinal_params(E)
        tmean = a_gp / b_gp * M.X0_CM
        # branches: the shower's electrons, energies log-uniform between 1 MeV and
        # min(E/4, 50 MeV), stepped like any electron (random-walk scattering, Bragg ends);
        # their energy-weighted depth follows the longitudinal profile, their position the
        # lateral one, and they point along the axis with a spread that grows with depth
        e_hi = float(np.clip(0.25 * E, 2.0, 50.0))
        n0 = int(E_body / ((e_hi - 1.0) / np.log(e_hi)) * 1.3) + 8
        eb = np.exp(rng.uniform(0.0, np.log(e_hi), n0))
        cumE = np.cumsum(eb)
        k = min(int(np.searchsorted(cumE, E_body)) + 1, n0)
        eb = eb[:k].copy()
        if k:
            eb[-1] = max(eb[-1] - (cumE[k - 1] - E_body), 0.05)
        rng_e = M.range_table("electron").range_cm(eb)
        depth = L_tr + rng.gamma(a_gp, 1 / b_gp, k) * M.X0_CM
        rl = lateral_radius(rng, depth - L_tr, tmean)
        phi = rng.uniform(0, 2 * np.pi, k)
        er = np.cos(phi)[:, None] * u + np.sin(phi)[:, None] * v
        spread = 0.25 + 0.35 * np.clip((depth - L_tr) / tmean, 0, 2)
        sd = unit(axis + (rl / (depth + 2.0))[:, None] * er
                  + spread[:, None] * rng.standard_normal((k, 3)))
        centre = start + depth[:, None] * axis + rl[:, None] * er
        x0 = centre - 0.35 * rng_e[:, None] * sd
        # about half of the branches hang off earlier ones (a tree, not a cloud of sticks)
        if k:
            child = rng.random(k) < 0.5
            child[np.argmax(eb)] = False
            par = ~child
            _, mid, dirs = self._step_electrons(eb[par], x0[par], sd[par], np.full(int(par.sum()), pid),
                                               brem=False, full=True)
            nc = int(child.sum())
            if nc and mid.shape[0]:
                at = rng.integers(0, mid.shape[0], nc)
                cd = unit(dirs[at] + 0.6 * rng.standard_normal((nc, 3)))
                x0[child] = mid[at]
                sd[child] = cd
                self._step_electrons(eb[child], x0[child], sd[child], np.full(nc, pid), brem=False)
        # detached pieces: photons that travel away and leave a Compton electron
        if E_det > 0.1:
            ne = int(E_det / 1.5) + 4
            pe = np.clip(0.1 + rng.exponential(1.5, ne), 0.1, 12.0)
            kk = int(np.searchsorted(np.cumsum(pe), E_det)) + 1
            pe = pe[:kk]
            if pe.size:
                pe[-1] = max(pe[-1] - (pe.sum() - E_det), 0.05)
                dep = L_tr + rng.gamma(a_gp, 1 / b_gp, pe.size) * M.X0_CM
                r0 = lateral_radius(rng, dep - L_tr, tmean) * 0.6
                ph = rng.uniform(0, 2 * np.pi, pe.size)
                o = start + dep[:, None] * axis + r0[:, None] * (np.cos(ph)[:, None] * u + np.sin(ph)[:, None] * v)
                th = np.abs(rng.normal(0, 0.45, pe.size))
                fly = rotate_about(axis, np.cos(th), rng.uniform(0, 2 * np.pi, pe.size))
                pos = o + fly * rng.exponential(M.photon_attenuation_cm(pe * 4.0))[:, None]
                ok = self.inside(pos)
                for j in np.flatnonzero(ok):
                    self.add(11, pe[j], pos[j], isotropic(rng), parent=pid, process="compton",
                             kind="compton", queue="e")
        deepest = float(depth.max()) if k else L_tr
        r["end"] = start + axis * deepest if r["pdg"] != 22 else start
        r["shower_start"] = start


# ---------------------------------------------------------------------------- samplers
def sample_michel_x(rng: np.random.Generator, n: int) -> np.ndarray:
    """x = E/E_max from dN/dx = 2x^2(3-2x): solve the CDF x^3(2-x) = u by Newton iteration."""
    u = rng.random(n)
    x = np.cbrt(u / 2) * 1.0 + 0.3 * u  # starting point
    x = np.clip(x, 0.05, 1.0)
    for _ in range(30):
        f = x**3 * (2 - x) - u
        fp = 6 * x**2 - 4 * x**3
        x = np.clip(x - f / np.maximum(fp, 1e-9), 1e-6, 1.0)
    return x


def sample_klein_nishina(rng: np.random.Generator, k: np.ndarray) -> np.ndarray:
    """eps = E'/E of a Compton scatter (photon energy k in electron masses), by rejection from
    a log-uniform proposal."""
    k = np.asarray(k, dtype=np.float64)
    out = np.empty_like(k)
    todo = np.arange(k.size)
    emin = 1 / (1 + 2 * k)
    while todo.size:
        e0 = emin[todo]
        eps = e0 ** rng.random(todo.size)
        one_m_cos = (1 / eps - 1) / k[todo]
        sin2 = one_m_cos * (2 - one_m_cos)
        acc = rng.random(todo.size) < (1 - eps * sin2 / (1 + eps**2))
        out[todo[acc]] = eps[acc]
        todo = todo[~acc]
    return out


def longitudinal_params(E: float) -> tuple[float, float]:
    """Gamma-profile shape a and rate b (per X0) of an EM shower of energy E MeV.

    Grindhammer-Peters above ~300 MeV (Tmax = ln y - 0.858, a = 0.21 + (0.492 + 2.38/Z) ln y),
    the SPINE LAr fit below 80 MeV (tmax = 0.689 ln(1 + 0.305 y^1.68),
    a = 1.4 + 0.083 ln(1 + 0.21 y^7.83)), interpolated linearly in ln E in between (the GP
    parametrisation has a < 1 below ~120 MeV in argon, so it cannot be used there)."""
    y = max(E, 1.0) / M.EC_ELECTRON
    t_sp = 0.689 * np.log1p(0.305 * y**1.68)
    a_sp = 1.4 + 0.083 * np.log1p(0.21 * y**7.83)
    ly = np.log(y)
    t_gp = ly - 0.858
    a_gp = 0.21 + (0.492 + 2.38 / M.Z_AR) * ly
    w = float(np.clip(np.log(max(E, 1.0) / 80.0) / np.log(300.0 / 80.0), 0.0, 1.0))
    if w > 0:
        tmax = (1 - w) * t_sp + w * max(t_gp, 1e-3)
        a = (1 - w) * a_sp + w * max(a_gp, 1.01)
    else:
        tmax, a = t_sp, a_sp
    tmax = max(tmax, 0.05)
    a = max(a, 1.05)
    return float(a), float((a - 1) / tmax)


LATERAL_CORE = (0.2, 0.9)    # core radius / R_M and its energy share
LATERAL_HALO = 1.2           # halo radius / R_M


def lateral_radius(rng: np.random.Generator, depth_cm: np.ndarray, tmean_cm: float) -> np.ndarray:
    """Distance from the shower axis: a core and a halo, each F(r) = r^2/(r^2 + R^2) (the
    Grindhammer-Peters radial form), tuned so that with the branches' own spread about 90% of
    the energy lies within one Moliere radius and 95% within two (PHYSICS.md); narrower early in
    the shower and wider late."""
    depth_cm = np.asarray(depth_cm, dtype=np.float64)
    scale = np.clip(0.5 + 0.5 * depth_cm / max(tmean_cm, 1.0), 0.4, 1.6)
    u = rng.uniform(0, 0.995, depth_cm.shape)
    R = np.where(rng.random(depth_cm.shape) < LATERAL_CORE[1], LATERAL_CORE[0], LATERAL_HALO)
    return M.MOLIERE_CM * R * scale * np.sqrt(u / (1 - u))
