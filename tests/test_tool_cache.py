"""The tools' per-event cache (tools.engine) and the VLM's one-forward class scoring: one encoder
pass per event shared by every tool and by the VLM, the classification computed once and reused
by describe, concurrent calls waiting for one computation, bounded size; the fast scoring path
giving the plain computation's probabilities."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from larsight.encoder import load_model
from larsight.encoder.data import DataSpec, take
from larsight.encoder.inference import DEFAULT_CHECKPOINT
from larsight.events.model import EVENT_CLASSES
from larsight.events.vocabulary import CLASS_TEXT
from larsight.tools import engine
from larsight.tools.classification import classify_event
from larsight.tools.description import describe

from helpers.vlm import make_vlm, save_tiny_lm

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny_lm_dir(tmp_path_factory, smollm2_dir):
    """A 2-layer random Llama with the bundled SmolLM2 tokenizer (the real class texts)."""
    return save_tiny_lm(tmp_path_factory.mktemp("tiny_lm"), smollm2_dir)


@pytest.fixture(scope="module")
def events():
    return take(DataSpec(modes="nu", seed=7), "eval", 3, min_points=50)


@pytest.fixture(scope="module")
def vlm(tiny_lm_dir):
    """A test-sized VLM on the shipped encoder checkpoint (the tools' default encoder)."""
    return make_vlm(tiny_lm_dir, DEFAULT_CHECKPOINT)


@pytest.fixture(autouse=True)
def fresh_cache():
    engine.clear_cache()
    yield
    engine.clear_cache()


class _Counting:
    """Wraps a callable and counts its calls."""

    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *a, **k):
        self.calls += 1
        return self.fn(*a, **k)


def test_class_tree_scores_every_class_text_token_once(vlm):
    tokens, parents, depths, paths = vlm._class_tree()
    for c, path in zip(EVENT_CLASSES, paths):
        want = vlm.answer_ids(CLASS_TEXT[c] + ":", end=False)
        assert [t for _, t in path] == want
        assert path[0][0] == 0                       # first token: from the prompt's last position
        for (row, _), tok in zip(path[1:], want[:-1]):
            assert tokens[row - 1] == tok            # each later token: from its prefix's node
    # the texts share their first tokens ('nu', '_' for nu_e CC and nu_mu CC): fewer nodes than
    # the texts' tokens, and every parent comes before its child
    assert len(tokens) < sum(len(p) - 1 for p in paths)
    assert all(p < i for i, p in enumerate(parents))
    assert all(depths[i] == (0 if p < 0 else depths[p] + 1) for i, p in enumerate(parents))


def test_one_forward_scoring_gives_the_plain_probabilities(vlm, events):
    """Probabilities of the one-forward tree scoring equal those of scoring every class text
    with the whole prompt (no cache, no tree) within 1e-4, batched or not."""
    def softmax(s):
        p = np.exp(s - s.max(1, keepdims=True))
        return p / p.sum(1, keepdims=True)

    full = softmax(vlm.class_scores_full(events))
    fast = np.array([[p[c] for c in EVENT_CLASSES] for p in vlm.classify(events)])
    assert np.abs(fast - full).max() < 1e-4
    one = vlm.classify(events[1])
    assert np.abs(np.array([one[c] for c in EVENT_CLASSES]) - full[1]).max() < 1e-4
    # eval() between calls keeps the cached system prefix; going back to training drops it
    assert vlm._system_kv
    vlm.eval()
    assert vlm._system_kv
    vlm.train()
    assert not vlm._system_kv
    vlm.eval()


def test_the_tools_encoder_pass_feeds_the_vlm(vlm, events):
    """Tokens from the tools' cached prediction give the VLM the probabilities of its own
    encoder pass (the tools' model is the VLM's encoder checkpoint)."""
    model = engine.get_model(None)
    own = vlm.classify(events[0])
    shared = vlm.classify(events[0], event_inputs=vlm.prediction_inputs(model.predict(events[0])))
    assert max(abs(own[c] - shared[c]) for c in EVENT_CLASSES) < 1e-5


def test_classify_and_describe_score_an_event_once(vlm, events, monkeypatch):
    model = engine.get_model(None)
    scores = _Counting(vlm.class_scores)
    own_encoder = _Counting(vlm.event_inputs)
    tools_encoder = _Counting(model.predict)
    monkeypatch.setattr(vlm, "class_scores", scores)
    monkeypatch.setattr(vlm, "event_inputs", own_encoder)
    monkeypatch.setattr(model, "predict", tools_encoder)
    ev = events[0]
    first = classify_event(ev, vlm=vlm)
    again = classify_event(ev, vlm=vlm)
    desc = describe(ev, vlm=vlm)
    assert first.method == "vlm" and first.vlm_probabilities == again.vlm_probabilities
    assert desc.event_class == first.predicted_class
    assert desc.class_probability == first.probabilities[first.predicted_class]
    assert scores.calls == 1            # describe reused the classification
    assert tools_encoder.calls == 1     # one encoder pass for classify, reconstruct, describe
    assert own_encoder.calls == 0       # the VLM read the tools' event tokens
    # a different event is a different key
    classify_event(events[1], vlm=vlm)
    assert scores.calls == 2 and tools_encoder.calls == 2
    # the cached probabilities are the VLM's own
    direct = vlm.classify(events[1])
    later = classify_event(events[1], vlm=vlm)
    assert max(abs(later.vlm_probabilities[c] - direct[c]) for c in EVENT_CLASSES) <= 1e-4


class _SlowModel:
    """An encoder stand-in: ``predict`` takes a while and counts its calls."""

    path = None

    def __init__(self, delay=0.2, fail_first=False):
        self.delay, self.calls, self.fail_first = delay, 0, fail_first
        self._lock = threading.Lock()

    def predict(self, event):
        with self._lock:
            self.calls += 1
            n = self.calls
        time.sleep(self.delay)
        if self.fail_first and n == 1:
            raise RuntimeError("first call fails")
        return [("prediction", len(event), n)]


def test_concurrent_calls_for_one_event_run_the_model_once(events):
    model = _SlowModel()
    got = []
    threads = [threading.Thread(target=lambda: got.append(engine.predict(events[0], model)[1]))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(got) == 4 and model.calls == 1
    assert all(g is got[0] for g in got)


def test_a_failed_computation_is_not_cached_and_waiters_retry(events):
    model = _SlowModel(delay=0.2, fail_first=True)
    results, errors = [], []

    def call():
        try:
            results.append(engine.predict(events[0], model)[1])
        except RuntimeError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
        time.sleep(0.02)
    for t in threads:
        t.join(10)
    assert len(errors) == 1 and len(results) == 2      # the owner failed; a waiter computed
    assert model.calls == 2 and results[0] is results[1]


def test_the_cache_is_bounded_and_keyed_by_content(events):
    model = _SlowModel(delay=0.0)
    ev = events[0]
    subsets = [ev.select(np.arange(len(ev)) != i) for i in range(engine._CACHE_SIZE + 5)]
    for s in subsets:
        engine.predict(s, model)
    assert model.calls == len(subsets)
    assert len(engine._PREDICTIONS) == engine._CACHE_SIZE
    engine.predict(subsets[-1], model)              # recent: still cached
    assert model.calls == len(subsets)
    engine.predict(subsets[0], model)               # the oldest was dropped
    assert model.calls == len(subsets) + 1
    # same content, another object: the same entry
    copy = ev.select(np.ones(len(ev), dtype=bool))
    engine.predict(ev, model)
    n = model.calls
    engine.predict(copy, model)
    assert model.calls == n


@pytest.mark.slow
def test_shipped_vlm_probabilities_equal_the_plain_computation():
    """The shipped VLM (SmolLM2-135M): the one-forward scoring and the tools' shared encoder
    pass give the plain computation's probabilities within 1e-4."""
    from larsight.qformer.vlm import DEFAULT_VLM_DIR, load_vlm

    if not (DEFAULT_VLM_DIR / "vlm.json").exists():
        pytest.fail(f"no shipped VLM at {DEFAULT_VLM_DIR}")
    vlm = load_vlm()
    evs = take(DataSpec(modes="nu", seed=3, voxel_size_cm=0.6), "eval", 3, min_points=50)
    s = vlm.class_scores_full(evs)
    full = np.exp(s - s.max(1, keepdims=True))
    full /= full.sum(1, keepdims=True)
    fast = np.array([[p[c] for c in EVENT_CLASSES] for p in vlm.classify(evs)])
    assert np.abs(fast - full).max() < 1e-4
    model = load_model(vlm.encoder.path)
    for ev, want in zip(evs, full):
        got = vlm.classify(ev, event_inputs=vlm.prediction_inputs(model.predict(ev)))
        assert np.abs(np.array([got[c] for c in EVENT_CLASSES]) - want).max() < 1e-4
