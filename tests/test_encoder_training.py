"""Encoder training: tiny pretraining (both objectives) and fine-tuning that learn, checkpoint
round trips and clear errors, resumable state, and the evaluation metrics against hand values."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from larsight.encoder.backbone import PointEncoder
from larsight.encoder.checkpoint import (CheckpointError, load_train_state, load_weights, read_manifest,
                                save_train_state, save_weights)
from larsight.encoder.config import EncoderConfig
from larsight.encoder.data import DataSpec, make_batch, split_seed, take
from larsight.encoder.evaluate import (adjusted_rand_index, confusion_matrix, distance_stats, f1_scores,
                              purity_efficiency)
from larsight.encoder.finetune import FinetuneConfig, finetune
from larsight.encoder.heads import cluster_embeddings, discriminative_loss, head_for
from larsight.encoder.pretrain import PretrainConfig, pretrain

torch.set_num_threads(1)

# a micro encoder: 3 stages, ~40k parameters, a fraction of a second per step on one core
MICRO = dict(enc_depths=(1, 1, 1), enc_channels=(16, 24, 32), enc_num_heads=(2, 2, 4),
             enc_patch_size=(32, 32, 32), strides=(2, 2), dec_depths=(1, 1),
             dec_channels=(16, 24), dec_num_heads=(2, 2), dec_patch_size=(32, 32),
             n_event_tokens=8, drop_path=0.0)


def micro_config(**over) -> EncoderConfig:
    return EncoderConfig.preset("tiny", **{**MICRO, **over})


def pretrain_config(tmp_path, objective: str, **over) -> PretrainConfig:
    base = dict(objective=objective, run_dir=str(tmp_path / objective), steps=30, batch_size=2,
                lr=3e-3, warmup=3, data_mode="nu", voxel_size_cm=0.6, encoder_overrides=MICRO,
                log_every=5, ckpt_every=100, n_local=2, n_prototypes=64, n_point_prototypes=32,
                proj_hidden=64)
    return PretrainConfig(**{**base, **over})


def read_log(run_dir) -> list[dict]:
    with open(f"{run_dir}/loss.csv") as f:
        return list(csv.DictReader(f))


def first_last(rows, key) -> tuple[float, float]:
    vals = [float(r[key]) for r in rows]
    return float(np.mean(vals[:2])), float(np.mean(vals[-2:]))


@pytest.fixture(scope="module")
def mpm_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pretrain")
    cfg = pretrain_config(tmp, "mpm")
    summary = pretrain(cfg, command="pytest mpm")
    return cfg, summary


# ============================================================================ pretraining
def test_pretrain_mpm_lowers_loss_and_writes_run_folder(mpm_run):
    cfg, summary = mpm_run
    rows = read_log(cfg.run_dir)
    first, last = first_last(rows, "loss")
    assert last < 0.7 * first, (first, last)
    assert summary["step"] == 30
    run = __import__("pathlib").Path(cfg.run_dir)
    for name in ("loss.csv", "loss.png", "encoder.safetensors", "encoder.json",
                 "state/state.safetensors", "state/state.json"):
        assert (run / name).exists(), name
    man = read_manifest(run / "encoder.safetensors")
    assert man["objective"] == "mpm" and man["step"] == 30 and man["command"] == "pytest mpm"
    assert man["data"]["split"] == "pretrain" and man["data"]["voxel_size_cm"] == 0.6
    assert "loss" in man["metrics"]


def test_pretrain_distill_student_learns_to_match_teacher(tmp_path):
    cfg = pretrain_config(tmp_path, "distill")
    pretrain(cfg, command="pytest distill")
    rows = read_log(cfg.run_dir)
    # the cross-entropy includes the teacher's (moving) target entropy; the part the student
    # controls is KL(teacher || student), which must fall
    first, last = first_last(rows, "kl")
    assert last < 0.7 * first, (first, last)
    man = read_manifest(tmp_path / "distill" / "encoder.safetensors")
    assert man["weights_from"] == "EMA teacher"
    loaded = load_weights(tmp_path / "distill" / "encoder.safetensors")
    assert loaded.encoder.config.enc_channels == MICRO["enc_channels"]


def test_pretrain_resume_continues_the_run(tmp_path):
    cfg = pretrain_config(tmp_path, "mpm", steps=6, log_every=2, ckpt_every=3, time_limit_min=None)
    pretrain(cfg, command="a")
    state = json.loads((tmp_path / "mpm" / "state" / "state.json").read_text())
    assert state["step"] == 6
    cfg2 = pretrain_config(tmp_path, "mpm", steps=8, log_every=2, ckpt_every=3, resume=True)
    summary = pretrain(cfg2, command="b")
    assert summary["step"] == 8
    steps = [int(r["step"]) for r in read_log(cfg2.run_dir)]
    assert steps == [2, 4, 6, 8]  # continued, no duplicated rows
    state = json.loads((tmp_path / "mpm" / "state" / "state.json").read_text())
    assert state["step"] == 8 and state["extra"]["events_seen"] == 16


# ============================================================================ fine-tuning
def test_finetune_semantic_from_pretrained_lowers_loss(tmp_path, mpm_run):
    cfg, _ = mpm_run
    ft = FinetuneConfig(task="semantic", mode="full", init=f"{cfg.run_dir}/encoder.safetensors",
                        n_events=12, steps=60, batch_size=4, lr=5e-3, warmup=3, n_eval=6,
                        run_dir=str(tmp_path / "ft"), log_every=5)
    result = finetune(ft, command="pytest finetune", progress=False)
    first, last = first_last(read_log(tmp_path / "ft"), "loss")
    assert last < 0.85 * first, (first, last)
    m = result["metrics"]
    assert 0.0 <= m["macro_f1"] <= 1.0 and len(m["confusion"]) == 5
    loaded = load_weights(tmp_path / "ft" / "model.safetensors")
    assert set(loaded.heads) == {"semantic"}
    assert loaded.manifest["init_manifest"]["objective"] == "mpm"
    assert loaded.manifest["data"]["n_events"] == 12


@pytest.mark.parametrize("task", ["particle", "vertex", "event", "pid"])
def test_every_head_trains_and_evaluates(tmp_path, task):
    ft = FinetuneConfig(task=task, mode="probe", init="scratch", encoder_overrides=MICRO,
                        n_events=6, steps=4, batch_size=3, n_eval=3, run_dir=str(tmp_path / task),
                        log_every=2)
    result = finetune(ft, command="pytest", progress=False)
    assert np.isfinite(result["final_loss"])
    key = {"particle": "ari", "vertex": "median_cm", "event": "accuracy", "pid": "macro_f1"}[task]
    assert key in result["metrics"]


# ============================================================================ checkpoints
def _model_and_head(seed=0, **over):
    torch.manual_seed(seed)
    enc = PointEncoder(micro_config(**over))
    head = head_for("semantic", enc.config, kind="mlp", class_weight=[1, 2, 3, 4, 5])
    return enc.eval(), head.eval()


@pytest.fixture(scope="module")
def small_batch():
    evs = take(DataSpec(modes=("nu",), seed=3, voxel_size_cm=0.6), "eval", 2)
    return make_batch(evs, micro_config())


def test_checkpoint_round_trip_is_exact(tmp_path, small_batch):
    enc, head = _model_and_head()
    path = save_weights(tmp_path / "m.safetensors", enc, {"semantic": head},
                        manifest={"command": "x", "metrics": {"f1": 0.5}})
    loaded = load_weights(path)  # rebuilt from the manifest alone
    for (k, a), (k2, b) in zip(enc.state_dict().items(), loaded.encoder.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    for k, v in head.state_dict().items():
        assert torch.equal(v, loaded.heads["semantic"].state_dict()[k])
    inputs = {k: small_batch[k] for k in ("coords", "grid", "feat", "offset")}
    with torch.no_grad():
        a = head(enc(inputs), small_batch)["logits"]
        b = loaded.heads["semantic"].eval()(loaded.encoder.eval()(inputs), small_batch)["logits"]
    assert torch.equal(a, b)
    assert loaded.manifest["metrics"] == {"f1": 0.5}
    # loading into an existing model of the same architecture works too
    enc2, head2 = _model_and_head(seed=1)
    load_weights(path, enc2, {"semantic": head2})
    assert torch.equal(enc2.embed[0].weight, enc.embed[0].weight)


def test_wrong_shape_tensor_is_named(tmp_path):
    enc, head = _model_and_head()
    path = save_weights(tmp_path / "m.safetensors", enc, {"semantic": head})
    tensors = load_file(str(path))
    tensors["encoder.enc_stages.1.blocks.0.mlp.0.weight"] = torch.zeros(7, 24)
    manifest_text = path.with_suffix(".json").read_text()
    save_file(tensors, str(path), metadata={"larsight_manifest": json.dumps(json.loads(manifest_text))})
    with pytest.raises(CheckpointError, match=r"encoder\.enc_stages\.1\.blocks\.0\.mlp\.0\.weight"
                                              r".*\(7, 24\).*\(96, 24\)"):
        load_weights(path)


def test_mismatches_give_clear_errors(tmp_path):
    enc, head = _model_and_head()
    path = save_weights(tmp_path / "m.safetensors", enc, {"semantic": head})
    other, _ = _model_and_head(enc_channels=(16, 32, 32))
    with pytest.raises(CheckpointError, match="enc_channels"):
        load_weights(path, other)
    wrong_head = head_for("semantic", enc.config, kind="mlp", n_classes=6)
    with pytest.raises(CheckpointError, match=r"heads\.semantic\.class_weight.*\(5,\).*\(6,\)"):
        load_weights(path, enc, {"semantic": wrong_head})
    with pytest.raises(CheckpointError, match="no 'vertex' head"):
        load_weights(path, enc, {"vertex": head_for("vertex", enc.config)})
    tensors = load_file(str(path))
    del tensors["encoder.out_norm.bias"]
    save_file(tensors, str(path))
    with pytest.raises(CheckpointError, match=r"encoder\.out_norm\.bias' is missing"):
        load_weights(path)
    with pytest.raises(FileNotFoundError):
        load_weights(tmp_path / "nope.safetensors")


def test_train_state_round_trip(tmp_path, small_batch):
    enc, head = _model_and_head()
    enc.train()
    model = torch.nn.ModuleDict({"encoder": enc, "head": head})
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    inputs = {k: small_batch[k] for k in ("coords", "grid", "feat", "offset")}
    head.loss(head(enc(inputs), small_batch), small_batch).backward()
    opt.step()
    save_train_state(tmp_path / "state", step=7, modules={"model": model}, optimizer=opt,
                     extra={"cursor": 42})
    expected_rand = torch.rand(3)
    enc2, head2 = _model_and_head(seed=5)
    model2 = torch.nn.ModuleDict({"encoder": enc2, "head": head2})
    opt2 = torch.optim.AdamW(model2.parameters(), lr=1e-3)
    st = load_train_state(tmp_path / "state", modules={"model": model2}, optimizer=opt2)
    assert st == {"step": 7, "extra": {"cursor": 42}}
    assert torch.equal(torch.rand(3), expected_rand)  # RNG restored
    for k, v in model.state_dict().items():
        assert torch.equal(v, model2.state_dict()[k])
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s1["param_groups"] == s2["param_groups"]
    for pid in s1["state"]:
        for k, v in s1["state"][pid].items():
            assert torch.equal(v, s2["state"][pid][k])


# ============================================================================ metrics & heads
def test_f1_and_confusion_by_hand():
    cm = confusion_matrix(np.array([0, 0, 1, 1, 2, -1]), np.array([0, 1, 1, 1, 0, 2]), 3)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    f = f1_scores(cm)
    np.testing.assert_allclose(f["f1"], [0.5, 0.8, 0.0])
    assert f["macro_f1"] == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    assert f["accuracy"] == pytest.approx(3 / 5)
    # a class absent from the truth does not count in macro-F1
    f = f1_scores(confusion_matrix(np.array([0, 1]), np.array([0, 2]), 3))
    assert f["macro_f1"] == pytest.approx(0.5)


def test_ari_purity_efficiency_by_hand():
    t, p = np.array([0, 0, 1, 1]), np.array([0, 0, 1, 2])
    assert adjusted_rand_index(t, p) == pytest.approx(4 / 7)
    assert adjusted_rand_index(t, np.array([5, 5, 3, 3])) == pytest.approx(1.0)
    assert adjusted_rand_index(np.array([0, 1, 0, 1]), np.array([0, 0, 1, 1])) == pytest.approx(-0.5)
    assert purity_efficiency(t, p) == pytest.approx((1.0, 0.75))
    d = distance_stats(np.array([0.5, 2.0, 4.0, np.nan]))
    assert d["n"] == 3 and d["median_cm"] == 2.0 and d["frac_within_1cm"] == pytest.approx(1 / 3)


def test_grouping_clusters_and_loss():
    rng = np.random.default_rng(0)
    line = np.stack([np.arange(20) * 0.6, np.zeros(20), np.zeros(20)], 1)
    coords = np.concatenate([line, line + [0, 0.6, 0], line + [30, 0, 0]])
    emb = np.concatenate([np.zeros((20, 4)), np.full((20, 4), 3.0), np.zeros((20, 4))])
    emb += rng.normal(0, 0.05, emb.shape)
    labels = cluster_embeddings(coords, emb, radius_cm=1.0, threshold=1.5)
    # touching tracks with different embeddings split; a distant piece of the first joins it
    assert labels[0] == labels[45] != labels[25]
    assert len(np.unique(labels)) == 2
    # well separated instances, each tight around its mean: no pull, no push
    inst = torch.tensor([0] * 20 + [1] * 20 + [0] * 20)
    perfect = (inst[:, None] == 1).float().expand(60, 4) * 4.0
    zero_batch = torch.zeros(60, dtype=torch.long)
    assert float(discriminative_loss(perfect, inst, zero_batch, reg=0.0)) == pytest.approx(0.0)
    mixed = torch.zeros(60, 4)
    assert float(discriminative_loss(mixed, inst, zero_batch, reg=0.0)) > 1.0


def test_split_seeds_never_overlap():
    seeds = {split_seed(s, sp) for s in range(50) for sp in ("pretrain", "finetune", "eval")}
    assert len(seeds) == 150
    with pytest.raises(ValueError):
        split_seed(0, "test")


def test_cli_has_training_verbs():
    from larsight.ui.cli import build_parser

    p = build_parser()
    a = p.parse_args(["pretrain", "--objective", "mpm", "--steps", "3"])
    assert a.objective == "mpm" and a.steps == 3
    a = p.parse_args(["finetune", "--task", "vertex", "--mode", "full", "--n-events", "all"])
    assert a.n_events is None and a.mode == "full"
    a = p.parse_args(["eval", "encoder", "x.safetensors", "--task", "semantic", "pid"])
    assert a.target == "encoder" and a.task == ["semantic", "pid"]
