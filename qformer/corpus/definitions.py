"""Textbook questions answered without a tool (a definition each): tool-trace records of the
corpus, and the agent's answers to general questions."""
from __future__ import annotations

from larsight.events.vocabulary import (CONVERSION_LENGTH_CM, EC_ELECTRON_MEV, MICHEL_EMAX_MEV, MIP_DEDX, MOLIERE_CM,
                                        NUCLEAR_INTERACTION_CM, PI0_MASS_MEV, X0_CM)

from .text import fmt_dedx

DEFINITIONS = (
    ("What is a Michel electron?",
     f"The electron (or positron) from the decay of a muon at rest, up to {MICHEL_EMAX_MEV:.1f} MeV "
     "(mean about 37 MeV): a short shower-like blip at the end of a stopping muon track."),
    ("What is a MIP?",
     f"A minimum-ionising particle: it loses about {fmt_dedx(MIP_DEDX)} in liquid argon (1.508 MeV cm2/g), "
     "like an energetic muon."),
    ("How do you tell an electron shower from a photon shower?",
     f"An electron shower starts at the vertex with about 1 MIP ({fmt_dedx(MIP_DEDX)}) in its first centimetres; a "
     f"photon converts after a gap (mean about {CONVERSION_LENGTH_CM:.0f} cm) and starts with about 2 MIP "
     f"({fmt_dedx(2 * MIP_DEDX)}) from its e+e- pair."),
    ("Why do photon showers start with a gap?",
     f"A photon is neutral and leaves nothing until it converts; the conversion length is 9/7 of the "
     f"radiation length, about {CONVERSION_LENGTH_CM:.0f} cm in argon."),
    ("What is the radiation length of liquid argon?", f"{X0_CM:.1f} cm (19.55 g/cm2)."),
    ("What is the Moliere radius of liquid argon?",
     f"{MOLIERE_CM:.2f} cm: 90% of a shower's energy lies within one Moliere radius of its axis."),
    ("What is a Bragg peak?",
     "The rise of dE/dx at the end of a stopping heavy charged particle such as a proton: the "
     "deposit per cm grows steeply as it slows down."),
    ("What does NC mean?",
     "Neutral current: the neutrino scatters through Z exchange and leaves as a neutrino, so "
     "there is no charged lepton, only hadrons and photons."),
    ("What is a nu_mu CC event?",
     "A muon-neutrino charged-current interaction: a muon (a long minimum-ionising track) "
     "leaves the vertex with the hadronic system."),
    ("What is a nu_e CC event?",
     "An electron-neutrino charged-current interaction: an electron shower starts at the vertex "
     f"with about 1 MIP ({fmt_dedx(MIP_DEDX)})."),
    ("How does a pi0 show up?",
     f"A pi0 ({PI0_MASS_MEV:.2f} MeV) decays to two photons (98.8%), seen as two showers that start "
     "after conversion gaps."),
    ("Why do some stopping muons have no Michel electron?",
     "A stopping mu- is captured by an argon nucleus about 75% of the time instead of decaying; "
     "a mu+ always decays."),
    ("What is a delta ray?",
     "An electron knocked out of an atom by a track's ionisation: a short branch along the track."),
    ("What is the nuclear interaction length of liquid argon?",
     f"About {NUCLEAR_INTERACTION_CM:.1f} cm: pions and protons travelling that far often end in a "
     "hadronic interaction instead of stopping."),
    ("What is the critical energy in argon?",
     f"About {EC_ELECTRON_MEV:.2f} MeV for electrons: below it ionisation losses exceed bremsstrahlung."),
)
