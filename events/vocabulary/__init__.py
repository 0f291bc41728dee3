"""The physics vocabulary of an event, defined once: class and particle names, visibility
thresholds, the topology notation and the truth facts of an event. The corpus, the tools, the
agent, the UI and the evaluations import these words from here.

    from larsight.events.vocabulary import CLASS_TEXT, event_facts, topology_string
    facts = event_facts(event)              # EventFacts (pydantic) from the truth
    facts.main.topology                     # '1mu 2p 0pi'
    CLASS_TEXT[facts.event_class]           # 'nu_mu CC'

Facts
-----
``event_facts`` reads what an ``events.Event`` carries: the particle and interaction tables of the
simulator (or of a larsight file), and per-point ``particle`` / ``interaction`` / ``semantic`` /
``pid`` labels. Events with only per-point labels (a foreign PILArNet-M file) get facts from the
labelled voxels (no class, no energies, lengths from the voxel extent). An event with no truth at
all raises ``NoTruthError``.

One ``InteractionFacts`` per interaction (a neutrino interaction, a PILArNet multi-particle vertex,
or each independent particle of a "rain" event). Its particles are the *primary-level* particles:
the interaction's primaries plus the photons of primary pi0 decays (what the detector sees of a
pi0). Secondaries (Michel electrons, delta rays, hadronic debris) are not listed; a Michel
electron is recorded on the track whose decay chain made it (``michel``: mu -> e, and
pi+ -> mu+ -> e+ at the pion's end).

Visibility thresholds (a particle is *counted* only if it passes them; every particle with
voxels is still listed, with ``visible`` False):

- any particle: at least ``MIN_VOXELS`` (5) voxels;
- protons: kinetic energy >= ``PROTON_MIN_KE_MEV`` (40 MeV, CSDA range about 1.5 cm; when the
  kinetic energy is unknown, a length >= ``PROTON_MIN_LENGTH_CM``, 1.5 cm);
- muons, charged pions, kaons: length >= ``TRACK_MIN_LENGTH_CM`` (2 cm);
- electrons and photons: deposited energy >= ``SHOWER_MIN_MEV`` (10 MeV);
- a Michel electron: at least ``MICHEL_MIN_VOXELS`` (3) voxels, starting within
  ``MICHEL_MAX_DIST_CM`` (2 cm) of the track's end (a muon from a pion decay in flight travels
  away: its Michel electron is not at the pion's end; such a pion ``decays``).

Topology string (``topology_string``; the agent's ``reconstruct`` tool uses the same convention):
counts of visible primary-level particles, space separated, always in this order::

    <lepton> <N>p <N>pi [<N>gamma] [<N>K]

``<lepton>`` is ``<N>mu`` (muons) and/or ``<N>e`` (electrons), or ``0l`` when there is neither;
``pi`` counts charged pions; ``gamma`` (photon showers, the photons of pi0 decays included) and
``K`` (kaons) appear only when non-zero. Examples: ``1mu 2p 0pi`` (nu_mu CC QE),
``1e 1p 0pi`` (nu_e CC), ``0l 1p 0pi 2gamma`` (NC with a pi0), ``1mu 1e 0p 1pi`` (a gun event).
``parse_topology`` inverts it.

Modules: ``terms`` (names, thresholds, liquid-argon numbers), ``facts`` (the typed records),
``topology`` (the notation and the counting rule), ``truth`` (``event_facts``).
"""
from larsight.events.vocabulary.facts import (COUNT_KEYS, EventFacts, InteractionFacts, NoTruthError,
                                              ParticleFacts, Vec3)
from larsight.events.vocabulary.terms import (CLASS_TEXT, CONVERSION_LENGTH_CM, DECAY_VISIBLE_MEV,
                                              DEDX_FROM_CM, DEDX_MIN_SHOWER_MEV, DEDX_MIN_VOXELS,
                                              DEDX_RADIUS_CM, DEDX_WINDOW_CM, EC_ELECTRON_MEV,
                                              EVENT_CLASSES, MICHEL_EMAX_MEV, MICHEL_MAX_DIST_CM,
                                              MICHEL_MIN_VOXELS, MIN_VOXELS, MIP_DEDX, MOLIERE_CM,
                                              MUON_MIP_MIN_CM, NUCLEAR_INTERACTION_CM, PI0_MASS_MEV,
                                              PID_CLASSES, PROTON_MIN_KE_MEV, PROTON_MIN_LENGTH_CM,
                                              SHOWER_MIN_MEV, SHOWER_TYPES, TRACK_MIN_LENGTH_CM,
                                              TRACK_TYPES, X0_CM)
from larsight.events.vocabulary.topology import finish_counts, is_visible, parse_topology, topology_string
from larsight.events.vocabulary.truth import event_facts

__all__ = [
    "CLASS_TEXT", "EVENT_CLASSES", "PID_CLASSES", "TRACK_TYPES", "SHOWER_TYPES",
    "MIN_VOXELS", "MUON_MIP_MIN_CM", "PROTON_MIN_KE_MEV", "PROTON_MIN_LENGTH_CM",
    "TRACK_MIN_LENGTH_CM", "SHOWER_MIN_MEV", "MICHEL_MIN_VOXELS", "MICHEL_MAX_DIST_CM",
    "DECAY_VISIBLE_MEV", "DEDX_FROM_CM", "DEDX_WINDOW_CM", "DEDX_RADIUS_CM", "DEDX_MIN_VOXELS",
    "DEDX_MIN_SHOWER_MEV", "MIP_DEDX", "X0_CM", "CONVERSION_LENGTH_CM", "MOLIERE_CM",
    "MICHEL_EMAX_MEV", "EC_ELECTRON_MEV", "PI0_MASS_MEV", "NUCLEAR_INTERACTION_CM",
    "Vec3", "COUNT_KEYS", "NoTruthError", "ParticleFacts", "InteractionFacts", "EventFacts",
    "topology_string", "parse_topology", "is_visible", "finish_counts", "event_facts",
]
