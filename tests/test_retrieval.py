"""find_similar and the event index (tools.retrieval, tools.index_build) on ~40 simulated
events, with a micro random encoder (with an event head), a random Q-Former projector and a
tiny random language model for text queries: self-retrieval, text queries, metadata filters,
model identity, missing index, atomic rebuilds and appends, the CLI and the Ray Data build."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from larsight.encoder.backbone import PointEncoder
from larsight.encoder.checkpoint import save_weights
from larsight.encoder.config import EncoderConfig
from larsight.encoder.data import DataSpec, take
from larsight.encoder.heads import head_for
from larsight.events.model import Event
from larsight.qformer.projector import EventProjector, EventProjectorConfig
from larsight.tools import index_build
from larsight.tools.index_build import build_index, expand_sources, parse_sim_spec
from larsight.tools.retrieval import (
    EventEmbedder, EventIndex, EventRef, IndexModelMismatchError, IndexNotFoundError,
    SimilarResult, event_metadata, find_similar, parse_event_ref,
)

torch.set_num_threads(1)

MICRO = dict(enc_depths=(1, 1, 1), enc_channels=(16, 24, 32), enc_num_heads=(2, 2, 4),
             enc_patch_size=(32, 32, 32), strides=(2, 2), dec_depths=(1, 1),
             dec_channels=(16, 24), dec_num_heads=(2, 2), dec_patch_size=(32, 32),
             n_event_tokens=8, drop_path=0.0)
N_EVENTS = 40
SEED = 7  # data seed; the events are the eval split's


# ============================================================================ fixtures
@pytest.fixture(scope="module")
def encoder_ckpt(tmp_path_factory) -> Path:
    """A micro random encoder with a random event-class head."""
    torch.manual_seed(0)
    enc = PointEncoder(EncoderConfig.preset("tiny", **MICRO))
    head = head_for("event", enc.config)
    path = tmp_path_factory.mktemp("enc") / "model.safetensors"
    save_weights(path, enc, heads={"event": head}, manifest={"kind": "test"})
    return path


@pytest.fixture(scope="module")
def tiny_lm_dir(tmp_path_factory) -> Path:
    """A 2-layer random Llama with a small word-level tokenizer (no download, no conversion)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = ("nu_e nu_mu cc nc event with a an the gap before shower track muon electron "
             "proton protons pion photon michel long short and no of interaction "
             "charged-current neutral-current mev cm").split()
    vocab = {w: i for i, w in enumerate(["<unk>", "<pad>", "<|im_end|>"] + words)}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", pad_token="<pad>",
                                  eos_token="<|im_end|>")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=256, tie_word_embeddings=True,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    out = tmp_path_factory.mktemp("tiny_lm")
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def make_vlm_dir(folder: Path, encoder_ckpt: Path, lm_dir: Path, seed: int) -> Path:
    """A VLM folder as `larsight align` writes it, with a random projector (no adapters)."""
    torch.manual_seed(seed)
    proj = EventProjector(EventProjectorConfig(encoder_dim=32, lm_dim=32, n_queries=4,
                                               hidden_size=32, num_heads=4,
                                               intermediate_size=64, embed_dim=16))
    proj.save_pretrained(folder / "projector")
    (folder / "vlm.json").write_text(json.dumps({
        "format": "larsight-vlm", "format_version": 1, "lm": str(lm_dir), "quantization": "none",
        "encoder_checkpoint": str(encoder_ckpt), "physics_prompt": False, "has_adapter": False,
        "kind": "test"}))
    return folder


@pytest.fixture(scope="module")
def vlm_dir(tmp_path_factory, encoder_ckpt, tiny_lm_dir) -> Path:
    return make_vlm_dir(tmp_path_factory.mktemp("vlm"), encoder_ckpt, tiny_lm_dir, seed=1)


@pytest.fixture(scope="module")
def other_vlm_dir(tmp_path_factory, encoder_ckpt, tiny_lm_dir) -> Path:
    return make_vlm_dir(tmp_path_factory.mktemp("vlm_other"), encoder_ckpt, tiny_lm_dir, seed=2)


@pytest.fixture(scope="module")
def embedder(vlm_dir) -> EventEmbedder:
    return EventEmbedder.load(vlm_dir, device="cpu")


@pytest.fixture(scope="module")
def sim_events() -> list[Event]:
    """The eval split's first 40 non-empty neutrino events (0.6 cm grid)."""
    return take(DataSpec(modes="nu", seed=SEED), "eval", N_EVENTS, min_points=8)


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory, sim_events, embedder) -> Path:
    out = tmp_path_factory.mktemp("idx") / "index"
    report = build_index(sim_events, out, embedder=embedder, batch_size=8, progress=False)
    assert report.n_added == report.n_events == N_EVENTS
    return out


# ============================================================================ embedding
def test_embedder_matches_the_vlm_event_path_and_loads_no_lm(embedder, sim_events):
    evs = sim_events[:3]
    enc = embedder.encode(evs, batch_size=2)
    tok = embedder.encoder.event_tokens(evs)  # what VLM.embed feeds the projector
    with torch.no_grad():
        ref = embedder.projector(tok["tokens"], tok["mask"], tok["coords"]).event_embed.numpy()
    assert np.allclose(enc["vector"], ref, atol=1e-5)
    assert np.allclose(np.linalg.norm(enc["vector"], axis=1), 1, atol=1e-5)
    assert np.allclose(enc["encoder_vector"], embedder.encoder.embed(evs), atol=1e-5)
    assert enc["class_probs"].shape == (3, 3) and np.allclose(enc["class_probs"].sum(1), 1, atol=1e-5)
    assert embedder._vlm is None  # no language model for event vectors
    # the encoder's public batch pass that encode() uses: its outputs and the event head
    out, heads = embedder.encoder.forward_events(evs, heads=("event", "vertex"))
    assert np.allclose(out.pooled.numpy(), enc["encoder_vector"], atol=1e-5)
    assert set(heads) == {"event"}                       # the micro encoder has no vertex head
    assert np.allclose(heads["event"]["logits"].softmax(1).numpy(), enc["class_probs"], atol=1e-5)
    empty = Event(points=np.zeros((0, 3), np.float32), energy=np.zeros(0, np.float32))
    with pytest.raises(ValueError, match="event 1 has no points"):
        embedder.encoder.forward_events([evs[0], empty])
    with pytest.raises(ValueError, match="unknown head"):
        embedder.encoder.forward_events(evs, heads=("colour",))


def test_event_metadata_truth_and_prediction(sim_events):
    ev = sim_events[0]
    row = event_metadata(ev, np.array([0.1, 0.7, 0.2]))
    assert row["class_source"] == "truth" and row["event_class"] == ev.event_class
    assert row["predicted_class"] == "numu_cc" and row["predicted_class_prob"] == pytest.approx(0.7)
    assert row["topology"] and row["n_points"] == len(ev)
    assert row["visible_energy_mev"] == pytest.approx(ev.total_energy_mev)
    bare = Event(points=ev.points, energy=ev.energy)  # no truth at all
    row = event_metadata(bare, np.array([0.6, 0.3, 0.1]))
    assert (row["event_class"], row["class_source"], row["topology"]) == ("nue_cc", "predicted", None)
    assert event_metadata(bare)["class_source"] == "none"


def test_references_and_specs(tmp_path):
    refs = parse_sim_spec("sim:nu,mpv:seed=3:n=4:start=2")
    assert [(r.mode, r.index, r.seed) for r in refs] == [("nu", 2, 3), ("mpv", 3, 3),
                                                         ("nu", 4, 3), ("mpv", 5, 3)]
    assert parse_sim_spec("sim:nu:seed=0:split=eval:n=1")[0].seed == 2  # encoder.data.split_seed
    key = refs[0].key
    assert key == "sim:nu:seed=3:voxel=0.6:index=2" and parse_event_ref(key) == refs[0]
    for bad in ("sim:nu:seed=1", "sim:xx:n=3", "sim:nu:n=3:colour=red", "sim:nu:seed:n=3"):
        with pytest.raises(ValueError):
            parse_sim_spec(bad)
    with pytest.raises(FileNotFoundError, match="event file not found"):
        parse_event_ref(tmp_path / "missing.h5")
    with pytest.raises(FileNotFoundError, match="no file matches|no event files match"):
        expand_sources(str(tmp_path / "*.h5"))


# ============================================================================ queries
def test_an_event_is_its_own_nearest_neighbour(index_dir, sim_events):
    for i in (0, 17, 39):
        res = find_similar(sim_events[i], k=5, index=index_dir)
        assert isinstance(res, SimilarResult) and len(res) == 5 and res.query_kind == "event"
        assert res.hits[0].key == EventRef.of_event(sim_events[i]).key
        assert res.hits[0].similarity == pytest.approx(1.0, abs=1e-4)
        sims = [h.similarity for h in res.hits]
        assert sims == sorted(sims, reverse=True) and res.embed_ms > 0
    # by reference: the stored vector is used (no embedding), the same neighbours come back
    again = find_similar(res.hits[0].key, k=5, index=index_dir)
    assert again.keys == res.keys and again.embed_ms < 50
    # exclude_self drops it
    other = find_similar(res.hits[0].key, k=5, index=index_dir, exclude_self=True)
    assert res.hits[0].key not in other.keys and len(other) == 5
    # a hit gives its event back (re-simulated from its seed and index)
    assert res.hits[0].load().equals(sim_events[39])
    # rendering
    assert "<table>" in res._repr_html_() and "similarity" in str(res)


def test_text_query_returns_k_events(index_dir):
    res = find_similar("nu_e CC with a gap before the shower", k=7, index=index_dir)
    assert res.query_kind == "text" and len(res) == 7
    assert all(-1.0 <= h.similarity <= 1.0 for h in res.hits)
    res = find_similar("a long muon track", k=3, index=index_dir, event_class="numu_cc")
    assert res.query_kind == "text" and all(h.event_class == "numu_cc" for h in res.hits)
    with pytest.raises(FileNotFoundError, match="event file not found"):
        find_similar("nowhere/run.h5:3", k=3, index=index_dir)  # a reference, not a text


def test_index_from_event_files(tmp_path, sim_events, embedder):
    from larsight import events as ev_mod

    data = tmp_path / "data"
    data.mkdir()
    ev_mod.write(data / "a.h5", sim_events[:3])
    ev_mod.write(data / "b.root", sim_events[3:5])
    rep = build_index([str(data / "*.h5"), str(data / "b.root")], tmp_path / "idx",
                      embedder=embedder, batch_size=2, progress=False)
    assert rep.n_events == 5
    ref = f"{data / 'b.root'}:1"
    res = find_similar(ref, k=2, index=tmp_path / "idx")
    assert res.hits[0].key == f"{(data / 'b.root').resolve()}:1"
    assert res.hits[0].load().equals(sim_events[4]) and res.hits[0].event_class == sim_events[4].event_class
    res = find_similar(ev_mod.read(data / "a.h5", 2), k=1, index=tmp_path / "idx")
    assert res.hits[0].key.endswith("a.h5:2") and res.hits[0].similarity == pytest.approx(1, abs=1e-4)
    # the tools' conventions for references (tools.inputs)
    from larsight.tools.inputs import ToolInputError

    assert find_similar((data / "a.h5", -1), k=1, index=tmp_path / "idx").hits[0].key.endswith("a.h5:2")
    with pytest.raises(ToolInputError, match="holds 3 events"):
        find_similar(str(data / "a.h5"), k=1, index=tmp_path / "idx")
    with pytest.raises(ToolInputError, match="unknown event index 7"):
        find_similar(f"{data / 'a.h5'}:7", k=1, index=tmp_path / "idx")
    with pytest.raises(ToolInputError, match="empty"):
        find_similar(sim_events[0].select(np.zeros(len(sim_events[0]), bool)), index=tmp_path / "idx")


def test_metadata_filters(index_dir, sim_events):
    idx = EventIndex.open(index_dir)
    assert len(idx) == N_EVENTS and sum(idx.class_counts().values()) == N_EVENTS
    q = sim_events[3]
    n_numu = sum(e.event_class == "numu_cc" for e in sim_events)
    res = find_similar(q, k=N_EVENTS, index=index_dir, where="event_class = 'numu_cc'")
    assert len(res) == n_numu and all(h.event_class == "numu_cc" for h in res.hits)
    res = find_similar(q, k=N_EVENTS, index=index_dir, event_class=["nue_cc", "nc"],
                       min_energy_mev=300)
    expect = sum(e.event_class in ("nue_cc", "nc") and e.total_energy_mev >= 300 for e in sim_events)
    assert len(res) == expect and all(h.visible_energy_mev >= 300 for h in res.hits)
    topo = res.hits[0].topology if res.hits else find_similar(q, k=1, index=index_dir).hits[0].topology
    res = find_similar(q, k=N_EVENTS, index=index_dir, topology=topo)
    assert res.hits and all(h.topology == topo for h in res.hits)
    res = find_similar(q, k=5, index=index_dir, where="n_protons >= 1 AND visible_energy_mev < 2000")
    assert all(h.visible_energy_mev < 2000 for h in res.hits)
    with pytest.raises(ValueError, match="bad filter.*columns"):
        find_similar(q, k=3, index=index_dir, where="no_such_column > 1")
    with pytest.raises(ValueError, match="event_class"):
        find_similar(q, k=3, index=index_dir, event_class="numu")
    with pytest.raises(ValueError, match="k must be"):
        find_similar(q, k=0, index=index_dir)


def test_a_different_model_is_refused(index_dir, other_vlm_dir, sim_events, vlm_dir, tmp_path):
    other = EventEmbedder.load(other_vlm_dir, device="cpu")
    with pytest.raises(IndexModelMismatchError, match="not comparable"):
        find_similar(sim_events[0], k=3, index=index_dir, embedder=other)
    with pytest.raises(IndexModelMismatchError):
        find_similar("a muon", k=3, index=index_dir, vlm=other_vlm_dir)
    # the VLM folder the index names, retrained in place: caught by the weights' fingerprint
    import shutil

    moved = tmp_path / "index"
    shutil.copytree(index_dir, moved)
    manifest = json.loads((moved / "index.json").read_text())
    manifest["model"]["vlm_dir"] = str(other_vlm_dir)
    (moved / "index.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexModelMismatchError, match=manifest["model"]["fingerprint"]):
        find_similar(sim_events[0], k=3, index=moved)


def test_missing_index_says_how_to_build_one(tmp_path, monkeypatch):
    with pytest.raises(IndexNotFoundError, match="larsight index build"):
        find_similar("a muon", index=tmp_path / "nothing")
    monkeypatch.setenv("LARSIGHT_INDEX", str(tmp_path / "env_index"))
    with pytest.raises(IndexNotFoundError, match="env_index"):
        find_similar("a muon")


# ============================================================================ building
def test_rebuild_is_atomic_and_append_is_safe(tmp_path, sim_events, embedder, monkeypatch):
    out = tmp_path / "index"
    build_index(sim_events[:6], out, embedder=embedder, batch_size=3, progress=False)
    before = json.loads((out / "index.json").read_text())

    real = index_build.embed_rows
    calls = {"n": 0}

    def crashing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("simulated crash in batch 2")
        return real(*args, **kwargs)

    monkeypatch.setattr(index_build, "embed_rows", crashing)
    monkeypatch.setattr(index_build, "WRITE_ROWS", 1)  # the first batch reaches the disk
    with pytest.raises(RuntimeError, match="simulated crash"):
        build_index(sim_events[6:14], out, embedder=embedder, batch_size=3, progress=False)
    idx = EventIndex.open(out)
    assert json.loads((out / "index.json").read_text()) == before and len(idx) == 6
    assert idx.count() == 6 and len(find_similar(sim_events[0], k=10, index=out)) == 6
    assert len(os.listdir(out / "lance")) == 1  # the half-written table is gone

    # a crashed append is invisible, and the next append rolls it back
    calls["n"] = 0
    with pytest.raises(RuntimeError, match="simulated crash"):
        build_index(sim_events[6:14], out, embedder=embedder, batch_size=3, progress=False,
                    append=True)
    assert EventIndex.open(out).count() == 6
    monkeypatch.setattr(index_build, "embed_rows", real)
    rep = build_index(sim_events[4:10], out, embedder=embedder, batch_size=3, progress=False,
                      append=True)
    assert (rep.n_added, rep.n_skipped_duplicate, rep.n_events) == (4, 2, 10)
    idx = EventIndex.open(out)
    ids = idx.to_arrow(["id"]).column("id").to_pylist()
    assert sorted(ids) == list(range(10)) and len(idx.manifest["builds"]) == 2

    # a full rebuild replaces the table
    rep = build_index(sim_events[:2] + [sim_events[2].select(np.zeros(len(sim_events[2]), bool))],
                      out, embedder=embedder, progress=False)
    assert (rep.n_events, rep.n_skipped_empty) == (2, 1) and len(os.listdir(out / "lance")) == 1


def test_append_with_another_model_is_refused(tmp_path, sim_events, embedder, other_vlm_dir):
    out = tmp_path / "index"
    build_index(sim_events[:2], out, embedder=embedder, progress=False)
    with pytest.raises(IndexModelMismatchError, match="rebuild without --append"):
        build_index(sim_events[2:3], out, embedder=other_vlm_dir, progress=False, append=True)


def test_cli_build_and_search(tmp_path, vlm_dir, capsys):
    from larsight.ui.cli import main

    out = tmp_path / "cli_index"
    assert main(["index", "build", "--simulate", "nu", "--n", "3", "--seed", "11", "--out",
                 str(out), "--vlm", str(vlm_dir), "--batch-size", "2", "--no-progress"]) == 0
    assert "indexed 3 events" in capsys.readouterr().out
    key = "sim:nu:seed=11:voxel=0.6:index=1"
    assert main(["index", "search", str(out), "--event", key, "-k", "2", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["hits"][0]["key"] == key and len(res["hits"]) == 2
    assert main(["index", "search", str(out), "--text", "a muon track", "-k", "3"]) == 0
    assert "similarity" in capsys.readouterr().out
    assert main(["index", "search", str(tmp_path / "none"), "--text", "x"]) == 3   # bad input
    assert "larsight index build" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray Data's own internals
def test_ray_build_matches_the_local_build(tmp_path, vlm_dir, embedder):
    """On a local Ray instance (~18 s on an idle 2-core machine)."""
    import ray   # heavy, so imported here; in the dev extras: a missing Ray must fail, not skip
    spec = "sim:nu:seed=13:n=4"
    local = build_index(spec, tmp_path / "local", embedder=embedder, batch_size=2, progress=False)
    try:
        ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    except (RuntimeError, ConnectionError, TimeoutError) as err:  # Ray's raylet has a fixed 30 s start-up wait: a saturated
        ray.shutdown()        # machine can miss it, which says nothing about this code
        pytest.skip(f"local Ray instance did not start: {err}")
    try:
        rep = build_index(spec, tmp_path / "ray", embedder=vlm_dir, batch_size=2, progress=False,
                          ray=True, ray_actors=1)
    finally:
        ray.shutdown()
    assert rep.ray and rep.n_events == local.n_events == 4
    cols = ["key", "event_class", "topology", "n_points", "vector"]
    a = EventIndex.open(tmp_path / "local").to_arrow(cols).sort_by("key").to_pylist()
    b = EventIndex.open(tmp_path / "ray").to_arrow(cols).sort_by("key").to_pylist()
    assert [r["key"] for r in a] == [r["key"] for r in b]
    for ra, rb in zip(a, b):
        assert ra["topology"] == rb["topology"] and ra["n_points"] == rb["n_points"]
        assert np.allclose(ra["vector"], rb["vector"], atol=1e-5)


def test_precomputed_rows_and_the_hnsw_index(tmp_path, index_dir, embedder, other_vlm_dir):
    """append_rows adds vectors embedded elsewhere; an HNSW index answers like exact search."""
    from larsight.evals.retrieval_bench import synthetic_rows
    from larsight.tools.index_build import append_rows

    real = EventIndex.open(index_dir).to_arrow()
    rows = synthetic_rows(real, 400, np.random.default_rng(0))
    out = tmp_path / "big"
    model = embedder.model_info()
    assert append_rows(out, real, model, create=True) == N_EVENTS
    assert append_rows(out, rows, model, vector_index="hnsw") == N_EVENTS + 400
    idx = EventIndex.open(out)
    assert idx.manifest["vector_index"] == "IVF_HNSW_SQ" and len(idx.manifest["builds"]) == 2
    for v in np.stack(real.column("vector").to_numpy(zero_copy_only=False))[:5]:
        ann = [r["key"] for r in idx.search(v, 5)]
        exact = [r["key"] for r in idx.search(v, 5, exact=True)]
        assert ann[0] == exact[0] and len(set(ann) & set(exact)) >= 4
    with pytest.raises(IndexNotFoundError):
        append_rows(tmp_path / "missing", rows, model)
    other = EventEmbedder.load(other_vlm_dir, device="cpu").model_info()
    with pytest.raises(IndexModelMismatchError):
        append_rows(out, rows, other)


def test_precision_at_k_and_the_quality_report(index_dir, embedder):
    from larsight.evals.retrieval_bench import precision_at_k, retrieval_quality, topology_queries

    keys = np.eye(4)[[0, 0, 1, 1, 2, 2]] + 0.01 * np.arange(6)[:, None]
    labels = ["a", "a", "b", "b", "c", "c"]
    assert precision_at_k(keys, labels, keys, labels, k=1, exclude_self=True).tolist() == [1.0] * 6
    assert precision_at_k(keys[:1], ["b"], keys, labels, k=2).tolist() == [0.0]
    assert topology_queries("1mu 2p 0pi")[1] == "An event with 1 muon, 2 protons and no charged pions."
    assert "no charged lepton" in topology_queries("0l 1p 0pi 2gamma")[1]
    real = EventIndex.open(index_dir).to_arrow()
    enc = {"vector": np.stack(real.column("vector").to_numpy(zero_copy_only=False)),
           "encoder_vector": np.stack(real.column("encoder_vector").to_numpy(zero_copy_only=False)),
           "event_class": real.column("event_class").to_pylist(),
           "topology": real.column("topology").to_pylist()}
    q = retrieval_quality(embedder, encoded=enc, k=5)
    assert q["n_events"] == N_EVENTS and sum(q["class_counts"].values()) == N_EVENTS
    for space in ("aligned", "encoder", "chance"):
        assert 0 <= q["event_to_event"][space]["class_precision"] <= 1
    assert 0 <= q["text_to_event"]["class"]["precision"] <= 1
    json.dumps(q)  # JSON-ready


def test_retrieval_bench_quick(tmp_path, vlm_dir):
    from larsight.evals.retrieval_bench import main

    out = tmp_path / "reports"
    assert main(["--quick", "--no-ray", "--real", "14", "--n", "600", "--queries", "4",
                 "--vlm", str(vlm_dir), "--no-progress", "--out", str(out)]) == 0
    rep = json.loads((out / "retrieval_bench.json").read_text())
    assert rep["fill"]["n_rows"] == 600 and rep["latency"]["ann_recall_at_k"] == 1.0
    assert rep["build_local_sim"]["n"] == 14 and "quality" in rep
    md = (out / "retrieval_bench.md").read_text()
    assert "precision@10" in md and "Query latency at 600" in md
