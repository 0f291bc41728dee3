"""Small vectorised kinematics helpers: directions, frames, boosts, two-body decays."""
from __future__ import annotations

import numpy as np


def unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.where(n > 0, n, 1.0)


def isotropic(rng: np.random.Generator, n: int | None = None) -> np.ndarray:
    """Unit vector(s) uniform on the sphere: shape (3,) if n is None else (n,3)."""
    m = 1 if n is None else n
    cos = rng.uniform(-1, 1, m)
    phi = rng.uniform(0, 2 * np.pi, m)
    sin = np.sqrt(1 - cos**2)
    out = np.stack([sin * np.cos(phi), sin * np.sin(phi), cos], axis=-1)
    return out[0] if n is None else out


def perp_frame(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors u, v with (u, v, d) right-handed and orthonormal; d (3,) or (n,3)."""
    d = np.asarray(d, dtype=np.float64)
    if d.ndim == 1:  # scalar path (hot in the scattering loop): no np.cross overhead
        x, y, z = float(d[0]), float(d[1]), float(d[2])
        if abs(x) < 0.9:   # u = d x (1,0,0)
            u = (0.0, z, -y)
        else:              # u = d x (0,1,0)
            u = (-z, 0.0, x)
        nu = (u[0] * u[0] + u[1] * u[1] + u[2] * u[2]) ** 0.5
        u = (u[0] / nu, u[1] / nu, u[2] / nu)
        v = (y * u[2] - z * u[1], z * u[0] - x * u[2], x * u[1] - y * u[0])
        return np.array(u), np.array(v)
    helper = np.where(np.abs(d[:, :1]) < 0.9, [[1.0, 0, 0]], [[0, 1.0, 0]])
    u = unit(np.cross(d, helper))
    v = np.cross(d, u)
    return u, v


def rotate_about(axis: np.ndarray, cos_theta, phi) -> np.ndarray:
    """Direction(s) at polar angle acos(cos_theta) and azimuth phi around ``axis`` ((3,) or (n,3))."""
    cos_theta = np.clip(np.asarray(cos_theta, dtype=np.float64), -1, 1)
    phi = np.asarray(phi, dtype=np.float64)
    u, v = perp_frame(axis)
    sin = np.sqrt(1 - cos_theta**2)
    out = (cos_theta[..., None] * np.asarray(axis) + (sin * np.cos(phi))[..., None] * u
           + (sin * np.sin(phi))[..., None] * v)
    return unit(out)


def momentum(T, mass):
    T = np.asarray(T, dtype=np.float64)
    return np.sqrt(T * T + 2 * T * mass)


def two_body_p(M: float, m1: float, m2: float) -> float:
    """Momentum of the daughters of a two-body decay at rest."""
    return float(np.sqrt((M**2 - (m1 + m2) ** 2) * (M**2 - (m1 - m2) ** 2)) / (2 * M))


def boost(E: np.ndarray, p: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boost four-vectors (E (n,), p (n,3)) from the rest frame into a frame where the parent
    moves with velocity ``beta`` (3,)."""
    beta = np.asarray(beta, dtype=np.float64)
    b2 = float(beta @ beta)
    if b2 <= 0:
        return E, p
    gamma = 1 / np.sqrt(1 - b2)
    bp = p @ beta
    E2 = gamma * (E + bp)
    p2 = p + ((gamma - 1) * bp / b2 + gamma * E)[:, None] * beta
    return E2, p2
