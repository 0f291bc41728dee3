"""Electromagnetic transport of a ``Builder`` (see ``events.sim.transport``): low-energy
electrons stepped in one batch with a small-angle random walk, low-energy photons through a
batched Compton / photoelectric chain, and parametrised EM showers (conversion gap, 1- or 2-MIP
trunk, stepped branch electrons along Grindhammer-Peters depth and Moliere lateral profiles,
detached Compton pieces)."""
from __future__ import annotations

import numpy as np

from larsight.events.sim import medium as M
from larsight.events.sim.kinematics import isotropic, momentum, perp_frame, rotate_about, unit
from larsight.events.sim.samplers import lateral_radius, longitudinal_params, sample_klein_nishina


class EMTransport:
    """Mixin of ``Builder``: the methods that transport electrons, photons and showers. They use
    the builder's ``rng``, ``opt``, ``knobs``, ``step``, ``parts``, ``add``, ``deposit``, ``inside`` and
    ``_brem``."""

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
        rng = self.rng
        E = r["T"]
        axis = r["d"]
        start = r["x"]
        if r["pdg"] == 22:
            start = start + axis * rng.exponential(M.photon_attenuation_cm(E)
                                                   * self.knobs.conversion_length_scale)
            r["end"] = start
            if not self.inside(start):
                return
            n_mip = 2
        else:
            n_mip = 1
        u, v = perp_frame(axis)
        L_tr, e_tr = self._shower_trunk(pid, start, axis, u, v, E, n_mip)
        E_left = max(E - float(e_tr.sum()), 0.0)
        E_det = E_left * rng.uniform(0.06, 0.14)
        E_body = E_left - E_det
        a_gp, b_gp = longitudinal_params(E)
        depth_scale, lat_scale = self._shower_scales()
        b_gp = b_gp / depth_scale
        prof = (L_tr, a_gp, b_gp, a_gp / b_gp * M.X0_CM, lat_scale)
        depth = self._shower_branches(pid, start, axis, u, v, E, E_body, prof)
        if E_det > 0.1:
            self._shower_detached(pid, start, axis, u, v, E_det, prof)
        deepest = float(depth.max()) if depth.size else L_tr
        r["end"] = start + axis * deepest if r["pdg"] != 22 else start
        r["shower_start"] = start

    def _shower_scales(self) -> tuple[float, float]:
        """This shower's longitudinal (Tmax) and lateral (Moliere) scale factors from the knobs;
        the fluctuation draws happen only when their knob is on (defaults: no draw, 1.0)."""
        k = self.knobs
        depth, lat = k.shower_depth_scale, k.moliere_scale
        if k.shower_depth_fluct > 0:
            depth = depth * float(np.exp(k.shower_depth_fluct * self.rng.standard_normal()))
        if k.lateral_fluct > 0:
            lat = lat * float(np.exp(k.lateral_fluct * self.rng.standard_normal()))
        return depth, lat

    def _shower_trunk(self, pid, start, axis, u, v, E, n_mip):
        """The first 2-4.5 cm at 1 MIP (electron) or 2 MIP (photon: the e+e- pair); returns its
        length and the energies deposited along it."""
        rng, ds = self.rng, self.step
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
        return L_tr, e_tr

    def _shower_branches(self, pid, start, axis, u, v, E, E_body, prof) -> np.ndarray:
        """The shower's electrons, energies log-uniform between 1 MeV and min(E/4, 50 MeV),
        stepped like any electron (random-walk scattering, Bragg ends); their energy-weighted
        depth follows the longitudinal profile, their position the lateral one, and they point
        along the axis with a spread that grows with depth. Returns their depths."""
        rng = self.rng
        L_tr, a_gp, b_gp, tmean, lat = prof
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
        rl = lateral_radius(rng, depth - L_tr, tmean) * lat
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
        return depth

    def _shower_detached(self, pid, start, axis, u, v, E_det, prof) -> None:
        """Detached pieces: photons that travel away and leave a Compton electron."""
        rng = self.rng
        L_tr, a_gp, b_gp, tmean, lat = prof
        ne = int(E_det / 1.5) + 4
        pe = np.clip(0.1 + rng.exponential(1.5, ne), 0.1, 12.0)
        kk = int(np.searchsorted(np.cumsum(pe), E_det)) + 1
        pe = pe[:kk]
        if not pe.size:
            return
        pe[-1] = max(pe[-1] - (pe.sum() - E_det), 0.05)
        dep = L_tr + rng.gamma(a_gp, 1 / b_gp, pe.size) * M.X0_CM
        r0 = lateral_radius(rng, dep - L_tr, tmean) * (0.6 * lat)
        ph = rng.uniform(0, 2 * np.pi, pe.size)
        o = start + dep[:, None] * axis + r0[:, None] * (np.cos(ph)[:, None] * u + np.sin(ph)[:, None] * v)
        th = np.abs(rng.normal(0, 0.45, pe.size))
        fly = rotate_about(axis, np.cos(th), rng.uniform(0, 2 * np.pi, pe.size))
        pos = o + fly * rng.exponential(M.photon_attenuation_cm(pe * 4.0))[:, None]
        ok = self.inside(pos)
        for j in np.flatnonzero(ok):
            self.add(11, pe[j], pos[j], isotropic(rng), parent=pid, process="compton",
                     kind="compton", queue="e")
