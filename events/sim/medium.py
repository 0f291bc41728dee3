"""Liquid argon: constants, stopping powers, CSDA range tables, photon attenuation, recombination.

Every number comes from shared/PHYSICS.md (sources named there). Tables are computed once per
process and cached at module level (``range_table``).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from hepunits.constants import c_light  # mm/ns
from particle import Particle as _PDG

# ----------------------------------------------------------------------------- medium
DENSITY = 1.396              # g/cm3, PDG
Z_OVER_A = 0.45059           # PDG (Z=18, A=39.948)
Z_AR = 18
X0_CM = 14.0                 # radiation length, 19.55 g/cm2 / 1.396
MOLIERE_CM = 9.04            # Moliere radius, PDG
EC_ELECTRON = 32.84          # critical energy, MeV (e-); 31.91 for e+
EC_POSITRON = 31.91
I_EV = 188.0                 # mean excitation energy, eV (ICRU-37 / PDG)
K_BB = 0.307075              # MeV cm2/mol
STERNHEIMER = dict(a=0.19559, k=3.0, x0=0.2, x1=3.0, C=5.2146, delta0=0.0)
NUCLEAR_INTERACTION_CM = 85.8
W_ION_MEV = 23.6e-6          # MeV per electron-ion pair
MIP_DEDX = 2.105             # MeV/cm
DRIFT_CM_PER_US = 0.1648     # 0.5 kV/cm, 87 K
E_FIELD_KV_CM = 0.5
BOX_ALPHA, BOX_BETA = 0.93, 0.212   # modified box (ArgoNeuT)
BIRKS_A, BIRKS_K = 0.800, 0.0486    # Birks (ICARUS)
MICHEL_EMAX = 52.83          # MeV

M_E = _PDG.from_pdgid(11).mass  # MeV


@lru_cache(maxsize=None)
def pdg_info(pdg: int) -> tuple[float, float, float]:
    """(mass MeV, charge e, c*tau cm) of a PDG code from `particle` (c*tau = inf if stable)."""
    p = _PDG.from_pdgid(int(pdg))
    mass = float(p.mass or 0.0)
    life = p.lifetime  # ns
    ctau = float(life) * c_light / 10.0 if life is not None and np.isfinite(life) else np.inf
    return mass, float(p.charge or 0.0), ctau


# ----------------------------------------------------------------------------- stopping power
def density_effect(x: np.ndarray) -> np.ndarray:
    """Sternheimer density correction delta(x), x = log10(beta*gamma)."""
    s = STERNHEIMER
    two_ln10 = 2.0 * np.log(10.0)
    d = np.where(x >= s["x1"], two_ln10 * x - s["C"],
                 two_ln10 * x - s["C"] + s["a"] * np.clip(s["x1"] - x, 0, None) ** s["k"])
    return np.where(x < s["x0"], s["delta0"] * 10.0 ** (2.0 * (x - s["x0"])), d)


def bethe_bloch(T: np.ndarray, mass: float, z: float = 1.0, spin_half: bool = False) -> np.ndarray:
    """Mean collision stopping power -dE/dx in MeV/cm for a heavy charged particle of kinetic
    energy T (MeV): Bethe-Bloch with W_max and the density effect (plus the spin-1/2 term for
    muons, as in the PDG muon tables)."""
    T = np.asarray(T, dtype=np.float64)
    gamma = 1.0 + T / mass
    bg2 = gamma**2 - 1.0
    beta2 = bg2 / gamma**2
    ratio = M_E / mass
    wmax = 2 * M_E * bg2 / (1 + 2 * gamma * ratio + ratio**2)
    I = I_EV * 1e-6
    delta = density_effect(0.5 * np.log10(bg2))
    bracket = 0.5 * np.log(2 * M_E * bg2 * wmax / I**2) - beta2 - 0.5 * delta
    if spin_half:
        bracket = bracket + 0.125 * (wmax / (T + mass)) ** 2
    return K_BB * z**2 * Z_OVER_A * DENSITY / beta2 * bracket


def electron_collision_dedx(T: np.ndarray) -> np.ndarray:
    """Collision stopping power of electrons (Moller cross-section, ICRU-37 form) in MeV/cm."""
    T = np.asarray(T, dtype=np.float64)
    tau = T / M_E
    gamma = tau + 1
    beta2 = 1 - 1 / gamma**2
    I = I_EV * 1e-6
    F = 1 - beta2 + (tau**2 / 8 - (2 * tau + 1) * np.log(2)) / (tau + 1) ** 2
    delta = density_effect(0.5 * np.log10(gamma**2 - 1))
    bracket = np.log(tau**2 * (tau + 2) / (2 * (I / M_E) ** 2)) + F - delta
    return 0.5 * K_BB * Z_OVER_A * DENSITY / beta2 * bracket


def electron_radiative_dedx(T: np.ndarray) -> np.ndarray:
    """Radiative loss of electrons, the high-energy form (T + m)/X0 scaled to vanish at low T
    (equals the collision loss near the critical energy). MeV/cm."""
    T = np.asarray(T, dtype=np.float64)
    return (T + M_E) / X0_CM * T / (T + 2.0)


# ----------------------------------------------------------------------------- range tables
@dataclass(frozen=True)
class RangeTable:
    """CSDA range R(T) and its inverse for one species, tabulated on a log grid."""

    name: str
    mass: float
    charge: float
    logT: np.ndarray        # ln T (MeV)
    logR: np.ndarray        # ln R (cm)
    dedx: np.ndarray        # total stopping power at T, MeV/cm
    col_frac: np.ndarray    # collision / total (1 for heavy particles)

    def range_cm(self, T):
        T = np.maximum(np.asarray(T, dtype=np.float64), 1e-12)
        return np.exp(np.interp(np.log(T), self.logT, self.logR,
                                left=-np.inf, right=self.logR[-1]))

    def energy_mev(self, R):
        """Kinetic energy with residual range R (cm); 0 at R <= 0."""
        R = np.asarray(R, dtype=np.float64)
        out = np.exp(np.interp(np.log(np.maximum(R, 1e-300)), self.logR, self.logT))
        return np.where(R > np.exp(self.logR[0]), out, np.exp(self.logT[0]) * np.clip(
            R / np.exp(self.logR[0]), 0, 1) ** (1 / 1.76))

    def stopping_power(self, T):
        T = np.maximum(np.asarray(T, dtype=np.float64), 1e-12)
        return np.interp(np.log(T), self.logT, self.dedx)

    def collision_fraction(self, T):
        T = np.maximum(np.asarray(T, dtype=np.float64), 1e-12)
        return np.interp(np.log(T), self.logT, self.col_frac)


SPECIES = {"muon": 13, "pion": 211, "kaon": 321, "proton": 2212, "electron": 11}
_PDG_TO_SPECIES = {13: "muon", 211: "pion", 321: "kaon", 2212: "proton", 11: "electron"}


def species_of(pdg: int) -> str:
    return _PDG_TO_SPECIES[abs(int(pdg))]


@lru_cache(maxsize=None)
def range_table(species: str) -> RangeTable:
    """Integrate 1/S(T) on a fine log grid. Below T_low (where Bethe-Bloch's logarithm stops
    being valid) the range follows the power law R ~ T^1.76 of the proton fit, matched in
    value and slope to the Bethe-Bloch part."""
    pdg = SPECIES[species]
    mass, charge, _ = pdg_info(pdg)
    charge = abs(charge)
    if species == "electron":
        t_low = 0.01
        T = np.exp(np.linspace(np.log(t_low), np.log(1e5), 3000))
        col = electron_collision_dedx(T)
        S = col + electron_radiative_dedx(T)
    else:
        t_low = 1.0 * mass / pdg_info(2212)[0]
        T = np.exp(np.linspace(np.log(t_low), np.log(1e5), 3000))
        S = bethe_bloch(T, mass, charge, spin_half=(species == "muon"))
        col = S
    p = 1.76
    r_low = t_low / (p * S[0])
    # trapezoid in ln T: dR = T/S dlnT
    f = T / S
    dlt = np.diff(np.log(T))
    R = r_low + np.concatenate([[0.0], np.cumsum(0.5 * (f[1:] + f[:-1]) * dlt)])
    return RangeTable(species, mass, charge, np.log(T), np.log(R), S, col / S)


def csda_range_cm(pdg: int, T) -> np.ndarray:
    """CSDA range in LAr (cm) of a muon, pion, kaon, proton or electron of kinetic energy T MeV."""
    return range_table(species_of(pdg)).range_cm(T)


# ----------------------------------------------------------------------------- photons
# Attenuation length (cm) of photons in LAr vs energy: high-energy pair limit 9/7 X0 = 18 cm,
# about 22 cm at 100 MeV and 28 cm near 10 MeV (PHYSICS.md, estimate); below 10 MeV the Compton
# values are estimates read off NIST XCOM-like curves for argon.
_GAMMA_E = np.array([0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 300.0,
                     1000.0, 1e4, 1e6])
_GAMMA_L = np.array([1.7, 4.4, 6.3, 9.0, 12.4, 16.8, 23.0, 28.0, 27.5, 24.5, 22.0, 20.0,
                     18.8, 18.1, 18.0])


def photon_attenuation_cm(E) -> np.ndarray:
    """Mean free path (cm) of a photon of energy E (MeV) in LAr (conversion length above ~10 MeV)."""
    E = np.asarray(E, dtype=np.float64)
    return np.interp(np.log(np.maximum(E, 1e-3)), np.log(_GAMMA_E), _GAMMA_L)


# ----------------------------------------------------------------------------- recombination
def recombination(dedx, alpha: float = BOX_ALPHA, beta: float = BOX_BETA) -> np.ndarray:
    """Modified-box recombination survival fraction R(dE/dx) at 0.5 kV/cm."""
    xi = beta * np.maximum(np.asarray(dedx, dtype=np.float64), 1e-3) / (E_FIELD_KV_CM * DENSITY)
    # below dE/dx ~ 0.2 MeV/cm the box formula goes negative: no charge survives there
    return np.maximum(np.log(alpha + xi) / xi, 0.0)


def recombination_birks(dedx, A: float = BIRKS_A, k: float = BIRKS_K) -> np.ndarray:
    """Birks recombination survival fraction R = A / (1 + k dE/dx / (E rho)) at 0.5 kV/cm."""
    dedx = np.maximum(np.asarray(dedx, dtype=np.float64), 0.0)
    return A / (1.0 + k * dedx / (E_FIELD_KV_CM * DENSITY))


def highland_theta0(p, beta, step_cm, z=1.0):
    """Highland plane-projected scattering angle (rad) for a step; the logarithmic correction
    is evaluated at one radiation length so that per-step angles add in quadrature."""
    return 13.6 / (beta * p) * abs(z) * np.sqrt(step_cm / X0_CM)
