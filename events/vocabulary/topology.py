"""The topology notation (``1mu 2p 0pi``) and the counting rule behind it: which particles are
visible, and how the visible ones become an interaction's counts and topology string. The
corpus writes it and the ``reconstruct`` tool measures it, so both must read it the same way."""
from __future__ import annotations

from larsight.events.vocabulary.facts import COUNT_KEYS, InteractionFacts, ParticleFacts
from larsight.events.vocabulary.terms import (MIN_VOXELS, PROTON_MIN_KE_MEV, PROTON_MIN_LENGTH_CM,
                                              SHOWER_MIN_MEV, TRACK_MIN_LENGTH_CM)

__all__ = ["topology_string", "parse_topology", "is_visible", "finish_counts"]

_TOPO_SUFFIX = {"mu": "muon", "e": "electron", "p": "proton", "pi": "pion", "gamma": "photon",
                "K": "kaon"}


def topology_string(counts: dict[str, int]) -> str:
    """``<lepton> <N>p <N>pi [<N>gamma] [<N>K]`` from counts keyed by PID name (muon, electron,
    proton, pion = charged pions, photon, kaon); missing keys count 0. See ``events.vocabulary``."""
    g = lambda k: int(counts.get(k, 0) or 0)  # noqa: E731
    mu, e = g("muon"), g("electron")
    parts = []
    if mu:
        parts.append(f"{mu}mu")
    if e:
        parts.append(f"{e}e")
    if not parts:
        parts.append("0l")
    parts += [f"{g('proton')}p", f"{g('pion')}pi"]
    if g("photon"):
        parts.append(f"{g('photon')}gamma")
    if g("kaon"):
        parts.append(f"{g('kaon')}K")
    return " ".join(parts)


def parse_topology(text: str) -> dict[str, int]:
    """Inverse of ``topology_string``: counts keyed by PID name (all six keys present)."""
    out = {k: 0 for k in ("muon", "electron", "proton", "pion", "photon", "kaon")}
    for tok in text.split():
        if tok == "0l":
            continue
        i = 0
        while i < len(tok) and tok[i].isdigit():
            i += 1
        if i == 0 or tok[i:] not in _TOPO_SUFFIX:
            raise ValueError(f"parse_topology: cannot read {tok!r} in {text!r}")
        out[_TOPO_SUFFIX[tok[i:]]] = int(tok[:i])
    return out


def is_visible(pf: ParticleFacts) -> bool:
    """Whether a particle passes the visibility thresholds (``events.vocabulary.terms``)."""
    if pf.n_voxels < MIN_VOXELS:
        return False
    if pf.type == "proton":
        if pf.kinetic_energy_mev is not None:
            return pf.kinetic_energy_mev >= PROTON_MIN_KE_MEV
        return (pf.length_cm or 0.0) >= PROTON_MIN_LENGTH_CM
    if pf.kind == "track":
        return (pf.length_cm or 0.0) >= TRACK_MIN_LENGTH_CM
    return pf.deposited_energy_mev >= SHOWER_MIN_MEV


def finish_counts(it: InteractionFacts, n_pi0: int) -> None:
    """Set ``it.counts`` and ``it.topology`` from its visible particles (and ``n_pi0`` primary
    pi0s, which are seen only through their photons)."""
    c = {k: 0 for k in COUNT_KEYS}
    for p in it.particles:
        if not p.visible:
            continue
        if p.type in c:
            c[p.type] += 1
        c[p.kind] += 1
        c["michel"] += int(p.michel)
    c["pi0"] = int(n_pi0)
    it.counts = c
    it.topology = topology_string(c)
