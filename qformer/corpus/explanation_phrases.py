"""Question and sentence templates of the explanation corpus (``corpus.explanations``).

Every list is split by template (``actions.template_split``): about a fifth of each goes to the
held-out split only. Sentence templates are written so that ``agent.claims.extract_claims`` reads
their statements about the event and finds nothing else: physics that is not a measurement of
this event (what a photon would do) is said in hypothetical words and without numbers; no
article stands before a species the event may lack ("photon-like", never "like a photon").
Slots: {C} a class, {p} a probability, {L} a length, {E} an energy, {g} a gap, {d} a dE/dx,
{m} a MIP level, {N} a count phrase ("2 protons"), {alts} the other classes with their
probabilities, {why} a reason clause, {X} a class asked about.
"""
from __future__ import annotations

QUESTIONS: dict[str, tuple[str, ...]] = {
    "why": (
        "Why is this {X}?", "Explain the classification.", "What makes you think it's {Xs}?",
        "Why did you call it {X}?", "Why {X}?", "Can you justify the classification?",
        "What in the event tells you it is {X}?", "Explain why this event is {X}.",
        "Walk me through how you classified this event.", "On what basis is this {X}?",
        "Why would you say this is {X}?", "How did you decide this is {X}?",
        "What evidence supports the class?", "Give me the reasoning behind the classification.",
        "Why this class and not another?", "Convince me this is {X}.",
        "What are the reasons for the classification?", "Explain your call on this event.",
    ),
    "why_not": (
        "Why not {Y}?", "Why isn't this {Y}?", "Could it be {Y} instead?", "Why do you rule out {Y}?",
        "What argues against {Y}?", "My shift partner thinks it's {Y}. Why not?",
        "Is there any chance this is {Y}?", "Why not call it {Y}?", "What excludes {Y} here?",
        "Couldn't this just be {Y}?", "How do you know it is not {Y}?", "Why reject {Y}?",
    ),
    "pi0": (
        "Could a pi0 fake this electron shower and how would you tell?",
        "Is the shower an electron or a photon?", "How do you know the shower is not from a pi0?",
        "Could this be a photon instead of an electron?", "Electron or gamma: what does the dE/dx say?",
        "Is there a pi0 faking the electron here?", "What distinguishes the shower from a photon conversion?",
        "Could a neutral pion mimic the signal in this event?", "How would you tell a pi0 background apart here?",
        "Is the electron candidate really an electron?", "Check the shower for a photon signature.",
        "What does the start of the shower tell you about electron versus photon?",
    ),
    "particles": (
        "What particles support this classification?", "What do you see in this event?",
        "Which particles make you say that?", "Describe the final state and what it means for the class.",
        "What is in the event, and how does it fit the class?", "List the evidence from the particles.",
        "Which tracks and showers matter for the class?", "Summarise the particles behind the call.",
        "What did the reconstruction find, and what does it imply?", "What particle content drives the decision?",
    ),
    "confidence": (
        "How sure are you, and why?", "How confident is the classification?", "Is the classification reliable?",
        "How certain is this call?", "Should I trust the class?", "What is your confidence and what supports it?",
        "Is the classifier sure about this one?", "How solid is this classification?",
        "Any doubts about the class?", "Rate your confidence in the classification and explain.",
    ),
}
"""Question templates per kind ({X} / {Xs}: the predicted class or, sometimes, another one;
{Y}: a class other than the prediction)."""

CLASS_ASKED = {"nue_cc": ("nu_e CC", "nue CC", "a nu_e event", "electron-neutrino CC", "nu_e",
                          "a nue charged-current event", "CC nu_e"),
               "numu_cc": ("nu_mu CC", "numu CC", "a nu_mu event", "muon-neutrino CC", "nu_mu",
                           "a numu charged-current event", "CC nu_mu"),
               "nc": ("NC", "neutral current", "an NC event", "neutral-current", "a neutral-current interaction")}
"""How a question names a class (the question is not read by the validator)."""

S: dict[str, tuple[str, ...]] = {
    "class": (
        "This is {C} (p = {p}).", "The event is classified as {C} with p = {p}.",
        "I classify it as {C}, p = {p}.", "Classified as {C}: the classifier gives p = {p}.",
        "It is {C}; the classifier's probability is {p}.", "Prediction: {C} at p = {p}.",
        "The classification is {C} (probability {p}).", "This event looks like {C}, with p = {p}.",
        "The event is {C}, at a probability of {p}.", "It is classified as {C} (p = {p}).",
    ),
    "class_uncertain": (
        "The event is classified as {C} (p = {p}), yet the particles do not back it: {why}.",
        "I classify it as {C} with p = {p}, but this is uncertain because {why}.",
        "Prediction: {C}, p = {p}. The class is uncertain: {why}.",
        "This is most likely {C} (p = {p}); still, {why}, so I am not sure.",
        "The classification is {C} at p = {p}, but treat it with caution: {why}.",
        "It is classified as {C} (p = {p}); the reconstruction disagrees, since {why}.",
    ),
    "alts": (
        "The other classes get {alts}.", "Next come {alts}.", "The remaining probability goes to {alts}.",
        "For comparison, the classifier gives {alts}.", "Lower down: {alts}.", "The alternatives score {alts}.",
    ),
    "muon": (
        "A muon track of {L} cm leaves the vertex{mich}.", "The muon track is {L} cm long{mich}.",
        "There is a {L} cm long muon track{mich}.", "The {L} cm muon track is the key evidence.",
        "A long muon, {L} cm, is the charged lepton{mich}.",
        "The event has a muon track of {L} cm{mich}, the charged lepton of a nu_mu interaction.",
        "Its main track is a muon of {L} cm{mich}.", "The muon track measures {L} cm{mich}.",
    ),
    "mich": (
        " that ends with a Michel electron", " ending in a Michel electron", " and ends with a Michel electron",
        ", stopping with a Michel electron", " with a Michel electron at its end",
    ),
    "michel_sent": (
        "A Michel electron sits at its end.", "It ends with a Michel electron.",
        "Its end shows a Michel electron, so the muon stopped and decayed.", "The track ends with a Michel electron.",
        "A Michel electron follows at the end of the track.",
    ),
    "no_michel": (
        "No Michel electron is found at its end.", "There is no Michel electron at the track end.",
        "It ends without a Michel electron.", "The reconstruction finds no Michel electron.",
        "No Michel decay shows up at its end.",
    ),
    "muon_energy": (
        "The muon carries {E} MeV.", "Its energy is {E} MeV.", "That is a {E} MeV muon.",
        "The reconstruction gives the muon {E} MeV.", "The muon has an energy of {E} MeV.",
    ),
    "muon_energy_lb": (
        "The muon energy is at least {E} MeV.", "The muon carries at least {E} MeV.",
        "Its energy is at least {E} MeV, a lower bound.", "The reconstruction bounds the muon energy at no less than {E} MeV.",
    ),
    "electron": (
        "An electron shower of {E} MeV starts {g} cm from the vertex with a start dE/dx of {d} MeV/cm ({m} MIP).",
        "The electron shower starts {g} cm from the vertex and its trunk deposits {d} MeV/cm, {m} MIP.",
        "There is an electron shower that starts {g} cm from the vertex, with {d} MeV/cm ({m} MIP) at its start.",
        "The {E} MeV electron shower starts at the vertex; its start dE/dx is {d} MeV/cm, about {m} MIP.",
        "An electron shower starts {g} cm from the vertex, and its first centimetres give {d} MeV/cm ({m} MIP).",
        "The electron shower, {E} MeV, begins {g} cm from the vertex with a trunk of {d} MeV/cm, {m} MIP.",
        "The shower starts {g} cm from the vertex with {d} MeV/cm ({m} MIP) at its start, as a single electron does.",
    ),
    "electron_gapped": (
        "The electron shower starts {g} cm from the vertex with {d} MeV/cm ({m} MIP) at its start, which looks photon-like.",
        "The electron candidate starts {g} cm away from the vertex and its trunk deposits {d} MeV/cm ({m} MIP), more photon-like than electron-like.",
        "The electron shower begins {g} cm from the vertex, with a start dE/dx of {d} MeV/cm ({m} MIP): that is photon-like.",
        "Its shower starts {g} cm from the vertex at {d} MeV/cm ({m} MIP), photon-like for an electron candidate.",
        "The shower called an electron starts {g} cm from the vertex and deposits {d} MeV/cm ({m} MIP) at its start, so the electron label is doubtful.",
    ),
    "no_muon": (
        "No muon track is found.", "There is no muon.", "The reconstruction finds no muon.",
        "No muon leaves the vertex.", "There is no muon track in the event.", "I see no muon track.",
    ),
    "no_electron": (
        "No electron shower is found.", "There is no electron shower.", "The reconstruction finds no electron.",
        "I see no electron shower.", "There is no electron in the event.",
    ),
    "no_lepton": (
        "There is no charged lepton: no muon and no electron.", "The reconstruction finds no muon and no electron.",
        "No muon and no electron are reconstructed.", "I find no charged lepton, with no muon and no electron.",
        "There is no muon and no electron shower.", "No charged lepton is found: no muon, no electron.",
    ),
    "protons": (
        "The reconstruction also finds {N}.", "There are also {N}.", "Besides that, I see {N}.",
        "The hadronic part has {N}.", "It also has {N} near the vertex.", "The vertex also has {N}.",
    ),
    "proton_one": (
        "A proton track of {L} cm sits at the vertex.", "There is also a {L} cm proton track.",
        "A short proton track, {L} cm, starts at the vertex.", "The proton track is {L} cm long.",
        "Next to it is a proton track of {L} cm.",
    ),
    "pions": (
        "There are {N}.", "The reconstruction finds {N}.", "I also see {N}.", "The event has {N}.",
        "It also holds {N}.",
    ),
    "photon_pair": (
        "Two photon showers convert {g1} cm and {g2} cm from the vertex, each starting with {d1} and {d2} MeV/cm.",
        "There are two photon showers: they begin {g1} cm and {g2} cm away from the vertex, with {d1} and {d2} MeV/cm at their start.",
        "The event has two photon showers that start {g1} cm and {g2} cm from the vertex, with start dE/dx {d1} and {d2} MeV/cm.",
        "Two photons convert away from the vertex, at {g1} cm and {g2} cm, and their showers start with {d1} and {d2} MeV/cm.",
        "The two photon showers start {g1} cm and {g2} cm from the vertex, with {d1} and {d2} MeV/cm at the start.",
    ),
    "pi0_word": (
        "Together they look like a pi0 decay.", "That pair is the signature of a pi0.",
        "They are what a neutral pion decay leaves.", "The pair points to a pi0.", "This is the pattern of a pi0 decaying to two photons.",
    ),
    "photon_one": (
        "A photon shower starts {g} cm from the vertex with {d} MeV/cm ({m} MIP) at its start.",
        "There is a photon shower that converts {g} cm from the vertex, with {d} MeV/cm ({m} MIP) at its start.",
        "The photon shower begins {g} cm from the vertex with a start dE/dx of {d} MeV/cm ({m} MIP).",
        "A photon converts {g} cm from the vertex; its shower starts with {d} MeV/cm ({m} MIP).",
        "The photon shower starts {g} cm from the vertex and its trunk deposits {d} MeV/cm ({m} MIP).",
    ),
    "visible": (
        "The visible energy is {E} MeV.", "In total the event deposits a visible energy of {E} MeV.",
        "The visible energy comes to {E} MeV.", "The deposited energy is {E} MeV.",
        "Visible energy: {E} MeV.",
    ),
    "vertex": (
        "The vertex is at {V}.", "The interaction vertex is at {V}.", "The vertex sits at {V}.",
        "The vertex was found at {V}.",
    ),
    "not_numu": (
        "It is not nu_mu CC, because there is no muon track.", "It is not nu_mu CC: no muon leaves the vertex.",
        "Not nu_mu CC either, since there is no muon.", "It is not nu_mu CC, as no muon track is found.",
        "The event is not nu_mu CC, with no muon track in it.",
    ),
    "not_nue": (
        "It is not nu_e CC, because there is no electron shower.", "It is not nu_e CC: no electron shower is found.",
        "Not nu_e CC either, since there is no electron.", "It is not nu_e CC, as no electron shower is found.",
        "The event is not nu_e CC, with no electron in it.",
    ),
    "not_nue_photons": (
        "It is not nu_e CC: no electron shower is found, only photon showers that start away from the vertex.",
        "It is not nu_e CC, because there is no electron and the showers start away from the vertex.",
        "Not nu_e CC: the showers are photon-like and no electron shower is found.",
        "It is not nu_e CC, since there is no electron shower, just photons converting away from the vertex.",
    ),
    "not_nc_muon": (
        "It is not NC, because the muon track is a charged lepton.", "It is not NC: the muon track means a charged-current interaction.",
        "It is not NC, since a muon track is there.", "The muon rules out NC: it is not NC.",
        "Not NC: the muon is the charged lepton of a CC interaction.",
    ),
    "not_nc_electron": (
        "It is not NC, because the electron shower is a charged lepton.", "It is not NC: the electron shower starts at the vertex.",
        "It is not NC, since an electron shower is there.", "Not NC: the electron is the charged lepton of a CC interaction.",
        "The electron shower rules out NC: it is not NC.",
    ),
    "pi0_test": (
        "A pi0 would decay to two photons, and each photon would convert after a gap with about twice the ionisation at its start.",
        "If this were a pi0 photon, its shower would start away from the vertex and at about twice the dE/dx.",
        "A photon would typically convert some centimetres from the vertex and start with twice the ionisation of a single electron.",
        "What would tell a photon apart: a gap before its shower starts and about double the dE/dx in the first centimetres.",
        "A photon from a pi0 would leave a gap and a doubled start dE/dx; an electron would start at the vertex with one MIP.",
    ),
    "pi0_verdict_e": (
        "So the shower is electron-like; a pi0 is not needed to explain it.", "That is electron-like, not photon-like.",
        "Both measurements favour the electron reading.", "So a pi0 is unlikely to fake it here.",
        "That makes photon conversion unlikely for this shower.",
    ),
    "pi0_verdict_g": (
        "So a pi0 photon could indeed fake this electron.", "That is photon-like, so the electron label is doubtful.",
        "Both measurements look photon-like.", "So I would not trust the electron label here.",
    ),
    "no_shower_to_fake": (
        "There is no electron shower here for a pi0 to fake.", "No electron shower is found, so nothing is being faked.",
        "The reconstruction finds no electron, so there is no electron shower to fake.",
        "There is no electron in the event to confuse with photon showers.",
    ),
    "cannot_rule_out": (
        "I cannot rule out {Y} from the particles alone.", "The particles alone do not exclude {Y}.",
        "Nothing in the reconstruction excludes {Y}.", "I would not exclude {Y} from these measurements.",
        "From the particles alone I cannot exclude {Y}.",
    ),
    "counts": (
        "The reconstruction finds {N}.", "In total: {N}.", "I count {N}.", "The final state is {N}.",
        "Altogether the event has {N}.",
    ),
}
"""Sentence templates per fact (see the module docstring)."""

WHY: dict[str, tuple[str, ...]] = {
    "no_electron": ("no electron shower is reconstructed", "the reconstruction finds no electron",
                    "there is no electron shower", "no electron shower is found"),
    "no_muon": ("no muon track is reconstructed", "the reconstruction finds no muon", "there is no muon track",
                "no muon is found"),
    "muon": ("a muon track of {L} cm is reconstructed", "the event has a {L} cm muon track",
             "there is a muon track of {L} cm"),
    "electron": ("an electron shower starts {g} cm from the vertex", "the reconstruction finds an electron shower",
                 "an electron shower of {E} MeV is there"),
    "gapped": ("the electron shower starts {g} cm from the vertex with {d} MeV/cm, which is photon-like",
               "the shower starts {g} cm from the vertex at {d} MeV/cm ({m} MIP), photon-like",
               "the electron candidate starts {g} cm away from the vertex with {d} MeV/cm at its start"),
    "low_p": ("the probability is low", "the classifier is far from sure", "the probabilities are close",
              "the margin over the next class is small"),
}
"""Reason clauses of an uncertain class."""
