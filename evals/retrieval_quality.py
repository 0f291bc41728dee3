"""Retrieval quality: precision@k of same class and same topology when events query events
(aligned space and the encoder's pooled embedding) and when text queries events, on held-out
events (``evals.retrieval_bench`` reports it beside the index's speed)."""
from __future__ import annotations

import time
from typing import Any, Optional, Sequence

import numpy as np
from tqdm.auto import tqdm

from larsight.encoder.data import DataSpec, take
from larsight.qformer.corpus import parse_topology
from larsight.tools.retrieval import event_metadata

CLASS_QUERIES = {
    "nue_cc": ("nu_e CC", "An electron-neutrino charged-current interaction.",
               "nu_e CC: an electron shower starts at the interaction vertex."),
    "numu_cc": ("nu_mu CC", "A muon-neutrino charged-current interaction.",
                "nu_mu CC: a long minimum-ionising muon track leaves the vertex."),
    "nc": ("NC", "A neutral-current interaction.",
           "NC: no charged lepton, only hadrons and photon showers."),
}
"""Text queries per event class (short label, long name, a one-line description)."""

_NAMES = {"mu": ("muon", "muons"), "e": ("electron", "electrons"), "p": ("proton", "protons"),
          "pi": ("charged pion", "charged pions"), "gamma": ("photon shower", "photon showers"),
          "K": ("kaon", "kaons")}


def topology_queries(topology: str) -> list[str]:
    """Text queries for a topology string: the string itself and a sentence."""
    c = parse_topology(topology)
    parts = []
    for key, name in (("muon", "mu"), ("electron", "e"), ("proton", "p"), ("pion", "pi"),
                      ("photon", "gamma"), ("kaon", "K")):
        n = int(c.get(key, 0))
        if n or name in ("p", "pi"):
            parts.append(f"{n if n else 'no'} {_NAMES[name][0] if n == 1 else _NAMES[name][1]}")
    if not c.get("muon") and not c.get("electron"):
        parts.insert(0, "no charged lepton")
    sentence = "An event with " + (", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1
                                   else parts[0]) + "."
    return [f"Topology: {topology}.", sentence]


# ============================================================================ metrics
def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def topk_indices(queries: np.ndarray, keys: np.ndarray, k: int,
                 exclude_self: bool = False) -> np.ndarray:
    """(Q, k) indices of the ``k`` keys nearest (cosine) to each query, best first; with
    ``exclude_self`` query i is key i and never its own neighbour."""
    sims = _unit(queries) @ _unit(keys).T
    if exclude_self:
        np.fill_diagonal(sims, -np.inf)
    k = min(k, keys.shape[0] - int(exclude_self))
    part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(sims, part, 1), axis=1, kind="stable")
    return np.take_along_axis(part, order, 1)


def precision_at_k(queries: np.ndarray, query_labels: Sequence, keys: np.ndarray,
                   key_labels: Sequence, k: int = 10, exclude_self: bool = False) -> np.ndarray:
    """Per query: share of its ``k`` nearest keys whose label equals the query's label."""
    nn = topk_indices(queries, keys, k, exclude_self)
    kl = np.asarray(key_labels, dtype=object)
    ql = np.asarray(query_labels, dtype=object)
    return (kl[nn] == ql[:, None]).mean(axis=1)


def _chance_self(labels: Sequence) -> float:
    """Expected precision of a random ranking when every item queries the others."""
    lab = np.asarray(labels, dtype=object)
    n = len(lab)
    _, counts = np.unique(lab.astype(str), return_counts=True)
    return float(sum(c * (c - 1) for c in counts) / max(n * (n - 1), 1))


def retrieval_quality(embedder, events: Optional[Sequence] = None, *, n: int = 300,
                      seed: int = 0, k: int = 10, text: bool = True, batch_size: int = 8,
                      progress: bool = True, encoded: Optional[dict] = None,
                      max_topologies: int = 6) -> dict[str, Any]:
    """Precision@k of retrieval with ``embedder`` (a ``tools.retrieval.EventEmbedder``) on
    held-out events (default: the first ``n`` non-empty neutrino events of the eval split of
    ``seed``): same class and same topology, event-to-event (aligned space and the encoder's
    pooled embedding) and text-to-event. ``encoded`` reuses vectors already computed
    (``{"vector", "encoder_vector", "event_class", "topology"}``). Returns a JSON-ready dict."""
    t0 = time.perf_counter()
    if encoded is None:
        if events is None:
            events = take(DataSpec(modes="nu", seed=seed), "eval", n, min_points=8)
        encoded = encode_events(embedder, events, batch_size, progress)
    V = np.asarray(encoded["vector"], dtype=np.float32)
    E = encoded.get("encoder_vector")
    cls = list(encoded["event_class"])
    topo = list(encoded["topology"])
    n_ev = len(cls)
    if n_ev < k + 1:
        raise ValueError(f"retrieval_quality: {n_ev} events; need more than k={k}")
    classes, counts = np.unique(np.asarray(cls, dtype=str), return_counts=True)
    out: dict[str, Any] = {
        "k": k, "n_events": n_ev,
        "class_counts": {str(c): int(n) for c, n in zip(classes, counts)},
        "n_topologies": int(len(set(topo))),
        "event_to_event": {}, "text_to_event": {},
    }
    out["event_to_event"] = _event_to_event(V, E, cls, topo, classes, k)
    if text:
        out["text_to_event"] = _text_to_event(embedder, V, cls, topo, classes, counts, k, max_topologies)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def encode_events(embedder, events: Sequence, batch_size: int = 8, progress: bool = True) -> dict:
    """``{"vector", "encoder_vector", "event_class", "topology"}`` of ``events``."""
    vec, encv, cls, topo = [], [], [], []
    for s in tqdm(range(0, len(events), batch_size), desc="embed", unit="batch",
                  disable=not progress):
        chunk = list(events[s:s + batch_size])
        e = embedder.encode(chunk, batch_size=batch_size)
        vec.append(e["vector"])
        encv.append(e["encoder_vector"])
        for ev in chunk:
            row = event_metadata(ev)
            cls.append(row["event_class"])
            topo.append(row["topology"])
    return {"vector": np.concatenate(vec), "encoder_vector": np.concatenate(encv),
            "event_class": cls, "topology": topo}


def _event_to_event(V: np.ndarray, E: Optional[np.ndarray], cls: list, topo: list, classes: np.ndarray,
                    k: int) -> dict:
    """Precision@k of same class / same topology, events querying events, per space."""
    e2e: dict[str, Any] = {}
    for name, M in (("aligned", V), ("encoder", E)):
        if M is None or not np.all(np.isfinite(M)):
            continue
        pc = precision_at_k(M, cls, M, cls, k, exclude_self=True)
        pt = precision_at_k(M, topo, M, topo, k, exclude_self=True)
        e2e[name] = {
            "class_precision": round(float(pc.mean()), 4),
            "topology_precision": round(float(pt.mean()), 4),
            "class_precision_by_class": {str(c): round(float(pc[np.asarray(cls) == c].mean()), 4)
                                         for c in classes},
        }
    e2e["chance"] = {"class_precision": round(_chance_self(cls), 4),
                     "topology_precision": round(_chance_self(topo), 4)}
    return e2e


def _text_to_event(embedder, V: np.ndarray, cls: list, topo: list, classes: np.ndarray, counts: np.ndarray,
                   k: int, max_topologies: int) -> dict:
    """Precision@k of text queries (per class, per frequent topology) against the events."""
    out: dict[str, Any] = {}
    n_ev = len(cls)
    texts, labels_c = [], []
    for c in classes:
        for q in CLASS_QUERIES.get(str(c), ()):
            texts.append(q)
            labels_c.append(str(c))
    t_counts = {t: topo.count(t) for t in set(topo) if t is not None}
    top_topos = [t for t, m in sorted(t_counts.items(), key=lambda kv: -kv[1])
                 if m >= k][:max_topologies]
    topo_texts, labels_t = [], []
    for t in top_topos:
        for q in topology_queries(t):
            topo_texts.append(q)
            labels_t.append(t)
    T = embedder.embed_text(texts + topo_texts)
    tc, tt = T[:len(texts)], T[len(texts):]
    pc = precision_at_k(tc, labels_c, V, cls, k)
    by_class = {str(c): round(float(pc[np.asarray(labels_c) == c].mean()), 4) for c in classes}
    share = {str(c): float(m) / n_ev for c, m in zip(classes, counts)}
    out["class"] = {
        "precision": round(float(np.mean(list(by_class.values()))), 4),
        "by_class": by_class, "chance": round(float(np.mean(list(share.values()))), 4),
        "queries": {q: lab for q, lab in zip(texts, labels_c)},
        "per_query": {q: round(float(p), 4) for q, p in zip(texts, pc)},
    }
    if topo_texts:
        pt = precision_at_k(tt, labels_t, V, topo, k)
        by_topo = {t: round(float(pt[np.asarray(labels_t, dtype=object) == t].mean()), 4)
                   for t in top_topos}
        out["topology"] = {
            "precision": round(float(np.mean(list(by_topo.values()))), 4),
            "by_topology": by_topo,
            "chance": round(float(np.mean([t_counts[t] / n_ev for t in top_topos])), 4),
            "queries": {q: lab for q, lab in zip(topo_texts, labels_t)},
            "per_query": {q: round(float(p), 4) for q, p in zip(topo_texts, pt)},
        }
    return out
