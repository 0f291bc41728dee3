"""The words and numbers of an event's physics, defined once: class and particle names,
visibility thresholds, shower-start dE/dx settings and the liquid-argon numbers texts quote.

Physics numbers come from shared/PHYSICS.md through ``events.sim.medium`` (the simulator's
constants), so the simulator, the truth facts, the tools and the agent agree on them.
"""
from __future__ import annotations

from larsight.events.model import EVENT_CLASSES, PID_CLASSES
from larsight.events.sim import medium as _M

__all__ = [
    "CLASS_TEXT", "EVENT_CLASSES", "PID_CLASSES", "TRACK_TYPES", "SHOWER_TYPES",
    "MIN_VOXELS", "MUON_MIP_MIN_CM", "PROTON_MIN_KE_MEV", "PROTON_MIN_LENGTH_CM",
    "TRACK_MIN_LENGTH_CM", "SHOWER_MIN_MEV", "MICHEL_MIN_VOXELS", "MICHEL_MAX_DIST_CM",
    "DECAY_VISIBLE_MEV", "DEDX_FROM_CM", "DEDX_WINDOW_CM", "DEDX_RADIUS_CM", "DEDX_MIN_VOXELS",
    "DEDX_MIN_SHOWER_MEV", "MIP_DEDX", "X0_CM", "CONVERSION_LENGTH_CM", "MOLIERE_CM",
    "MICHEL_EMAX_MEV", "EC_ELECTRON_MEV", "PI0_MASS_MEV", "NUCLEAR_INTERACTION_CM",
]

# ============================================================================ names
CLASS_TEXT = {"nue_cc": "nu_e CC", "numu_cc": "nu_mu CC", "nc": "NC"}
"""The event class as text (keys: ``EVENT_CLASSES``): every classification answer of the VLM
starts with exactly one of these + ':', and the tools, the agent and the UI show them."""

TRACK_TYPES = ("muon", "pion", "proton", "kaon")
"""PID class names (``PID_CLASSES``) whose particles leave tracks; the others shower."""
SHOWER_TYPES = ("electron", "photon")

# ============================================================================ visibility
# A particle is *counted* only if it passes these (see ``events.vocabulary``).
MIN_VOXELS = 5
MUON_MIP_MIN_CM = 20.0    # a muon track shorter than this (T < ~70 MeV) is not called MIP-like
PROTON_MIN_KE_MEV = 40.0
PROTON_MIN_LENGTH_CM = 1.5
TRACK_MIN_LENGTH_CM = 2.0
SHOWER_MIN_MEV = 10.0
MICHEL_MIN_VOXELS = 3
MICHEL_MAX_DIST_CM = 2.0   # a Michel electron counts for a track when it starts this close to its end
DECAY_VISIBLE_MEV = 10.0   # a decay muon/pion above this leaves a visible track (decay in flight;
                           # the muon of a pi+ decay at rest has 4.1 MeV and travels ~1.5 mm)

# ============================================================================ shower-start dE/dx
# From truth voxels: energy of the shower's voxels in a cylinder of radius DEDX_RADIUS_CM around
# the axis, between DEDX_FROM_CM and DEDX_FROM_CM + DEDX_WINDOW_CM from the shower start (the
# first 0.3 cm are skipped: tracks from the same vertex win shared voxels), divided by the
# window. It recovers ~2.0 MeV/cm for electrons and ~4.2 MeV/cm for photons.
DEDX_FROM_CM, DEDX_WINDOW_CM, DEDX_RADIUS_CM = 0.3, 2.0, 1.0
DEDX_MIN_VOXELS = 3
DEDX_MIN_SHOWER_MEV = 40.0   # below this the trunk (a quarter of the energy at 1-2 MIP) is
                             # shorter than the window: no start dE/dx is given

# ============================================================================ liquid argon
MIP_DEDX = _M.MIP_DEDX                      # 2.105 MeV/cm
X0_CM = _M.X0_CM                            # 14.0 cm
CONVERSION_LENGTH_CM = 9.0 / 7.0 * X0_CM    # 18 cm: mean photon path before pair conversion
MOLIERE_CM = _M.MOLIERE_CM                  # 9.04 cm
MICHEL_EMAX_MEV = _M.MICHEL_EMAX            # 52.83 MeV
EC_ELECTRON_MEV = _M.EC_ELECTRON            # 32.84 MeV
PI0_MASS_MEV = _M.pdg_info(111)[0]          # 134.98 MeV (PDG, through `particle`)
NUCLEAR_INTERACTION_CM = _M.NUCLEAR_INTERACTION_CM
