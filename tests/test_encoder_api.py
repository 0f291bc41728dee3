"""Multi-task fine-tuning into one checkpoint, the inference API (``encoder.load_model``,
``EncoderModel.predict`` / ``embed``) and the encoder report's quick path."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from larsight import events
from larsight.encoder import DEFAULT_CHECKPOINT, EncoderModel, EventPrediction, load_model
from larsight.encoder.checkpoint import load_weights, read_manifest
from larsight.encoder.data import DataSpec, take
from larsight.encoder.finetune import FinetuneConfig, finetune, parse_task_weights, parse_tasks
from larsight.encoder.heads import TASKS
from larsight.encoder.inference import to_model_grid

torch.set_num_threads(1)

MICRO = dict(enc_depths=(1, 1, 1), enc_channels=(16, 24, 32), enc_num_heads=(2, 2, 4),
             enc_patch_size=(32, 32, 32), strides=(2, 2), dec_depths=(1, 1),
             dec_channels=(16, 24), dec_num_heads=(2, 2), dec_patch_size=(32, 32),
             n_event_tokens=8, drop_path=0.0)
MULTI = "semantic,particle,vertex,event,interaction"


@pytest.fixture(scope="module")
def multi_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("multi")
    cfg = FinetuneConfig(task=MULTI, mode="full", init="scratch", encoder_overrides=MICRO,
                         n_events=6, steps=4, batch_size=3, n_eval=3, run_dir=str(run),
                         log_every=2, task_weights="vertex=3")
    result = finetune(cfg, command="pytest multi", progress=False)
    return run, result


@pytest.fixture(scope="module")
def model(multi_run):
    return load_model(multi_run[0] / "model.safetensors")


@pytest.fixture(scope="module")
def nu_events():
    return take(DataSpec(modes=("nu",), seed=7, voxel_size_cm=0.6), "eval", 3)


# ============================================================================ multi-task
def test_task_parsing():
    assert parse_tasks("all") == TASKS
    assert parse_tasks("semantic, vertex,semantic") == ("semantic", "vertex")
    with pytest.raises(ValueError, match="--task"):
        parse_tasks("semantic,bogus")
    assert parse_task_weights("semantic=1,vertex=2.5") == {"semantic": 1.0, "vertex": 2.5}
    with pytest.raises(ValueError, match="not trained"):
        FinetuneConfig(task="semantic,pid", task_weights="vertex=2")
    with pytest.raises(ValueError, match="TASK=WEIGHT"):
        parse_task_weights("vertex")
    assert FinetuneConfig(task="semantic").weights() == {"semantic": 1.0}


def test_multitask_finetune_writes_one_checkpoint_with_every_head(multi_run):
    run, result = multi_run
    tasks = MULTI.split(",")
    assert result["tasks"] == tasks and set(result["metrics"]) == set(tasks)
    assert result["task_weights"]["vertex"] == 3.0 and result["task_weights"]["semantic"] == 1.0
    assert "macro_f1" in result["metrics"]["semantic"] and "median_cm" in result["metrics"]["vertex"]
    assert np.isfinite(result["final_loss"])
    assert sorted(p.name for p in run.glob("*.safetensors")) == ["model.safetensors"]
    man = read_manifest(run / "model.safetensors")
    assert set(man["heads"]) == set(tasks) and man["tasks"] == tasks
    # interaction grouping trains on multi-particle rain; the rest on neutrinos
    groups = {tuple(g["modes"]): g["tasks"] for g in man["data_groups"]}
    assert groups == {("nu",): ["semantic", "particle", "vertex", "event"], ("mpr",): ["interaction"]}
    header = (run / "loss.csv").read_text().splitlines()[0]
    assert all(f"loss_{t}" in header for t in tasks)
    loaded = load_weights(run / "model.safetensors")
    assert set(loaded.heads) == set(tasks)


# ============================================================================ inference API
def _check_prediction(p: EventPrediction, n: int, model: EncoderModel) -> None:
    assert p.n_points == n and p.voxel.shape == (n,)
    assert p.semantic_probs.shape == (n, 5) and p.semantic.shape == (n,)
    np.testing.assert_allclose(p.semantic_probs.sum(1), 1.0, atol=1e-5)
    assert (p.semantic_probs >= 0).all()
    np.testing.assert_array_equal(p.semantic, p.semantic_probs.argmax(1))
    assert p.particle.shape == (n,) and p.interaction.shape == (n,)
    assert p.particle.min() == 0 and p.n_particles == p.particle.max() + 1
    assert p.vertex.shape == (3,) and np.isfinite(p.vertex).all()
    assert 0.0 <= p.vertex_confidence <= 1.0 and p.vertex_spread_cm >= 0
    assert p.event_probs.shape == (3,) and abs(float(p.event_probs.sum()) - 1) < 1e-5
    assert p.event_class in events.EVENT_CLASSES
    assert p.pid is None and p.pid_probs is None  # no pid head in this checkpoint
    d, t = model.embedding_dim, model.config.n_event_tokens
    assert p.embedding.shape == (d,) and p.tokens.shape == (t, d)
    assert p.token_mask.shape == (t,) and p.token_mask.any() and p.token_coords.shape == (t, 3)


def test_load_model_is_validated_eval_mode(model):
    assert set(model.tasks) == set(MULTI.split(","))
    assert not model.encoder.training and not any(h.training for h in model.heads.values())
    assert model.voxel_size_cm == 0.6


def test_predict_maps_every_input_point_in_order(model, nu_events):
    preds = model.predict(nu_events, batch_size=2)
    assert len(preds) == len(nu_events)
    for ev, p in zip(nu_events, preds):
        _check_prediction(p, len(ev), model)
    # batching does not change an event's answer; a single Event gives a one-item list
    alone = model.predict(nu_events[1])
    assert len(alone) == 1
    np.testing.assert_allclose(alone[0].semantic_probs, preds[1].semantic_probs, atol=1e-5)
    np.testing.assert_array_equal(alone[0].particle, preds[1].particle)
    # shuffled input points: outputs follow the points
    ev = nu_events[0]
    perm = np.random.default_rng(0).permutation(len(ev))
    shuffled = model.predict(ev.select(perm))[0]
    np.testing.assert_allclose(shuffled.semantic_probs, preds[0].semantic_probs[perm], atol=1e-5)
    emb = model.embed(nu_events)
    assert emb.shape == (3, model.embedding_dim)
    np.testing.assert_allclose(emb, np.stack([p.embedding for p in preds]), atol=1e-5)


def test_predict_fine_voxels_and_single_point(model):
    fine = take(DataSpec(modes=("nu",), seed=7, voxel_size_cm=0.3), "eval", 1)[0]
    assert fine.meta.volume.voxel_size_cm == 0.3
    p = model.predict([fine])[0]
    _check_prediction(p, len(fine), model)
    # 0.3 cm points merge 2x2x2 into the model's 0.6 cm voxels, energies summed
    merged, energy, inverse = to_model_grid(fine.points, fine.energy, fine.meta.volume, 0.6)
    assert len(merged) < len(fine) and np.array_equal(inverse, p.voxel)
    np.testing.assert_allclose(energy.sum(), fine.energy.sum(), rtol=1e-5)
    assert (np.abs(merged[inverse] - fine.points) <= 0.3 + 1e-4).all()
    # points sharing a model voxel share every per-point output
    first = np.full(p.voxel.max() + 1, -1)
    first[p.voxel[::-1]] = np.arange(len(fine))[::-1]
    np.testing.assert_array_equal(p.semantic_probs, p.semantic_probs[first[p.voxel]])
    np.testing.assert_array_equal(p.particle, p.particle[first[p.voxel]])
    one = fine.select(np.array([5]))
    q = model.predict(one)[0]
    _check_prediction(q, 1, model)
    assert q.n_particles == 1 and q.n_interactions == 1


def test_predict_empty_event(model):
    empty = events.Event(points=np.zeros((0, 3), np.float32), energy=np.zeros(0, np.float32))
    p = model.predict([empty])[0]
    assert p.n_points == 0 and p.semantic_probs.shape == (0, 5) and p.event_class is None
    assert np.isnan(model.embed([empty])).all()


def test_load_model_missing_path_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="larsight finetune --task all"):
        load_model(tmp_path / "nope.safetensors")
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_model(tmp_path)
    assert DEFAULT_CHECKPOINT.name == "model.safetensors"
    assert DEFAULT_CHECKPOINT.parent.name == "encoder_tiny"


def test_shipped_checkpoint_loads_with_its_manifest_and_segments(real_event):
    """The shipped weights: every head, a manifest naming how they were made, and sane output
    on a simulated event and on the real PILArNet-M event (their accuracy is the report's job)."""
    model = load_model()
    assert set(model.tasks) == set(TASKS)
    man = model.manifest
    assert man["command"].startswith("larsight finetune --task all")
    assert man["data"]["seed"] == 0 and man["data"]["split"] == "finetune"
    assert 0 < man["metrics"]["semantic"]["macro_f1"] <= 1
    assert model.voxel_size_cm == 0.3
    sim = take(DataSpec(modes="nu", seed=0), "eval", 1, min_points=8)[0]
    for ev in (sim, real_event):
        p = model.predict(ev)[0]
        assert p.semantic.shape == (len(ev),) and p.semantic.max() < 5
        assert np.allclose(p.semantic_probs.sum(axis=1), 1, atol=1e-4)
        assert np.isfinite(p.vertex).all() and p.event_class in events.EVENT_CLASSES


def test_cli_multitask_options_and_eval_of_a_multihead_checkpoint(multi_run, tmp_path, capsys):
    from larsight.ui.cli import main

    assert main(["finetune", "--task", "semantic,bogus", "--run-dir", str(tmp_path / "x")]) == 2
    assert "--task must be one of" in capsys.readouterr().err
    run, _ = multi_run
    assert main(["eval", "encoder", str(run / "model.safetensors"), "--n", "2",
                 "--out", str(tmp_path / "ev")]) == 0
    report = (tmp_path / "ev" / "report.md").read_text()
    assert "## interaction" in report and "simulated mpr" in report and "simulated nu" in report


# ============================================================================ report
def test_encoder_report_quick_runs_end_to_end(tmp_path, multi_run):
    from larsight.evals import encoder_report

    run, _ = multi_run
    argv = ["--quick", "--sizes", "10", "--pretrained", str(run / "model.safetensors"),
            "--checkpoint", str(run), "--work", str(tmp_path / "work"), "--out",
            str(tmp_path / "out"), "--no-progress"]
    md = encoder_report.main(argv)
    text = md.read_text()
    assert "| fine-tune events | pretrained probe | pretrained full | scratch probe | scratch full |" in text
    assert "| 10 |" in text and "--sizes 10" in text and "QUICK SMOKE RUN" in text
    assert "| semantic macro-F1 |" in text and "missed" in text
    assert (tmp_path / "out" / "encoder" / "data_efficiency.png").exists()
    assert (tmp_path / "out" / "encoder" / "confusion_semantic.png").exists()
    data = json.loads((tmp_path / "out" / "encoder.json").read_text())
    assert set(data["grid"]["cells"]) == {"pretrained/probe/10", "pretrained/full/10",
                                          "scratch/probe/10", "scratch/full/10"}
    # resumable: a second run reuses every cached cell
    cells = sorted((tmp_path / "work" / "cells").glob("*.json"))
    stamps = [c.stat().st_mtime_ns for c in cells]
    encoder_report.main(argv)
    assert [c.stat().st_mtime_ns for c in cells] == stamps
