"""Random draws and profiles of the transport: the Michel spectrum, Klein-Nishina Compton
scattering, and the longitudinal (Grindhammer-Peters) and lateral (Moliere core + halo)
shower profiles. Numbers: shared/PHYSICS.md through ``events.sim.medium``."""
from __future__ import annotations

import numpy as np

from larsight.events.sim import medium as M


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
