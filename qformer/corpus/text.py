"""Numbers and words in corpus texts: cm with one decimal (lengths of 1 m and more also as metres
with two decimals), MeV as integers (energies of 1 GeV and more also as GeV with two decimals),
dE/dx in MeV/cm with one decimal, vertices as ``(x, y, z) cm``; articles, lists, plurals and
particle nouns. ``energy_forms`` and ``length_forms`` list the spellings a value can take."""
from __future__ import annotations

from collections import Counter
from typing import Optional, Sequence

import numpy as np

from larsight.events.vocabulary import ParticleFacts


def fmt_mev(x: float) -> str:
    return f"{int(round(x))} MeV"


def fmt_gev(x: float) -> str:
    return f"{x / 1000.0:.2f} GeV"


def fmt_energy(mev: float, rng: Optional[np.random.Generator] = None) -> str:
    """MeV as an integer; 1 GeV and above as GeV with two decimals (or, drawn, MeV)."""
    if mev >= 1000.0 and (rng is None or rng.random() < 0.7):
        return fmt_gev(mev)
    return fmt_mev(mev)


def energy_forms(mev: float) -> list[str]:
    """Every spelling ``fmt_energy`` can give for ``mev``."""
    return [fmt_mev(mev)] + ([fmt_gev(mev)] if mev >= 1000.0 else [])


def fmt_length(cm: float, rng: Optional[np.random.Generator] = None) -> str:
    """cm with one decimal; 1 m and above also (drawn) as metres with two decimals."""
    if cm >= 100.0 and rng is not None and rng.random() < 0.4:
        return f"{cm / 100.0:.2f} m"
    return f"{cm:.1f} cm"


def length_forms(cm: float) -> list[str]:
    """Every spelling ``fmt_length`` can give for ``cm``."""
    return [f"{cm:.1f} cm"] + ([f"{cm / 100.0:.2f} m"] if cm >= 100.0 else [])


def fmt_vertex(v: Sequence[float]) -> str:
    return f"({v[0]:.1f}, {v[1]:.1f}, {v[2]:.1f}) cm"


def fmt_dedx(x: float) -> str:
    return f"{x:.1f} MeV/cm"


def article(word: str) -> str:
    """'a' or 'an' before ``word`` (numbers read aloud: 8..., 11, 18, 80..., 800...)."""
    w = word.strip()
    if not w:
        return "a"
    if w[0].isdigit():
        ip = ""
        for ch in w:
            if ch.isdigit():
                ip += ch
            else:
                break
        if ip[0] == "8" or (len(ip) in (2, 5) and ip[:2] in ("11", "18")):
            return "an"
        return "a"
    if w.startswith(("NC", "MeV", "X0", "EM ", "e+", "e-")):
        return "an"
    low = w.lower()
    if low.startswith(("uni", "use", "one")):
        return "a"
    return "an" if low[0] in "aeiou" else "a"


def with_article(phrase: str) -> str:
    return f"{article(phrase)} {phrase}"


def pick(rng: np.random.Generator, seq: Sequence):
    return seq[int(rng.integers(len(seq)))]


def capitalise(s: str) -> str:
    if not s or s.startswith(("nu_", "pi0", "pi+", "pi-", "mu+", "mu-", "e+", "e-")):
        return s
    return s[:1].upper() + s[1:]


def join_words(items: list[str], rng: Optional[np.random.Generator] = None) -> str:
    if not items:
        return ""
    if len(items) == 1:
        return items[0]
    sep = ", " if (rng is None or rng.random() < 0.8) and not any(", " in i for i in items) else "; "
    last = " and " if sep == ", " else "; and "
    return sep.join(items[:-1]) + last + items[-1]


def plural(n: int, word: str, plural_form: Optional[str] = None) -> str:
    return f"{n} {word if n == 1 else (plural_form or word + 's')}"


NOUNS = {"muon": ("muon", "muons"), "electron": ("electron", "electrons"),
         "photon": ("photon", "photons"), "proton": ("proton", "protons"),
         "pion": ("charged pion", "charged pions"), "kaon": ("kaon", "kaons"),
         "unknown": ("particle", "particles")}


def noun(t: str, n: int = 1) -> str:
    s, p = NOUNS.get(t, (t, t + "s"))
    return s if n == 1 else p


def one_of(rng, *forms: str) -> str:
    return pick(rng, forms)


def type_list(parts: list[ParticleFacts]) -> str:
    n = Counter(p.type for p in parts)
    order = [t for t in ("muon", "electron", "photon", "proton", "pion", "kaon", "unknown") if n.get(t)]
    return join_words([plural(n[t], noun(t), noun(t, 2)) for t in order])
