"""Long training runs: pre-simulated shards (atomic, resumable writing; a manifest with checksums),
the shard stream (disjoint ranks, exact resume under DataLoader workers), run folders outside the
work tree, exact ``--resume`` of pretrain and finetune, stop on a signal, clear errors for a
mismatched resume or unlabelled events, and the classification-loss options."""
from __future__ import annotations

import csv
import itertools
import json
import os
import signal

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from larsight.encoder import shards as S
from larsight.encoder.finetune import FinetuneConfig, finetune
from larsight.encoder.heads import class_weights_from_counts, classification_loss
from larsight.encoder.pretrain import PretrainConfig, pretrain
from larsight.encoder.stream import ShardReader, ShardStream, delivered
from larsight.encoder.training import ResumeMismatch, resolve_run_dir
from larsight.events import formats

torch.set_num_threads(1)

MICRO = dict(enc_depths=(1, 1, 1), enc_channels=(16, 24, 32), enc_num_heads=(2, 2, 4),
             enc_patch_size=(32, 32, 32), strides=(2, 2), dec_depths=(1, 1),
             dec_channels=(16, 24), dec_num_heads=(2, 2), dec_patch_size=(32, 32),
             n_event_tokens=8, drop_path=0.0)


def make_shards(path, n=24, shard_size=4, modes="nu", seed=0, split="pretrain", workers=1):
    spec = S.ShardSpec(modes=modes, n=n, seed=seed, split=split, shard_size=shard_size,
                       voxel_size_cm=0.6)
    return S.write_shards(spec, path, workers=workers, command="pytest", progress=False)


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("shards") / "nu"
    make_shards(out, n=32, shard_size=4)
    return out


@pytest.fixture(scope="module")
def ft_shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("shards") / "ft"
    make_shards(out, n=24, shard_size=4, split="finetune")
    return out


def event_key(ev) -> tuple:
    return (ev.meta.seed, len(ev), round(float(ev.energy.sum()), 4))


def loss_rows(run) -> list[dict]:
    with open(run / "loss.csv") as f:
        return [{k: v for k, v in r.items() if k.startswith("loss") or k in ("step", "lr")}
                for r in csv.DictReader(f)]


def state_tensors(run) -> dict[str, torch.Tensor]:
    return {k: v for k, v in load_file(str(run / "state" / "state.safetensors")).items()
            if not k.startswith("rng.")}


def assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# ============================================================================ shards
def test_shard_manifest_records_counts_and_checksums(shard_dir):
    man = json.loads((shard_dir / S.MANIFEST).read_text())
    assert man["complete"] and man["n_events"] == 32 and len(man["shards"]) == 8
    assert man["command"] == "pytest" and man["simulator_seed"] == 0
    total = np.zeros(5, dtype=np.int64)
    for rec in man["shards"]:
        path = shard_dir / rec["file"]
        assert S.sha256(path) == rec["sha256"]
        evs = formats.read_range(path, 0, 100)
        assert len(evs) == rec["n"] == 4
        counts = np.bincount(np.concatenate([e.semantic for e in evs]), minlength=5)
        assert counts.tolist() == rec["semantic_counts"]
        total += counts
    assert total.tolist() == man["semantic_counts"]
    # shard k holds events k*4 .. k*4+3 of the split's simulator stream
    from larsight.events.sim import simulate
    ref = next(iter(simulate("nu", 1, seed=0, volume=S.volume_for(0.6), start=5)))
    got = formats.read_range(shard_dir / "shard-00001.h5", 1, 2)[0]
    np.testing.assert_allclose(got.energy.sum(), ref.energy.sum(), rtol=1e-5)


def test_interrupted_shard_write_leaves_no_half_shard_and_resumes(tmp_path, monkeypatch):
    spec = S.ShardSpec(modes="nu", n=12, shard_size=4, voxel_size_cm=0.6)
    real = S.simulated_range

    def failing(spec_, first, stop):
        for i, ev in enumerate(real(spec_, first, stop)):
            if first == 8 and i == 2:
                raise KeyboardInterrupt  # the process is stopped in the middle of shard 2
            yield ev

    monkeypatch.setattr(S, "simulated_range", failing)
    out = tmp_path / "sh"
    with pytest.raises(KeyboardInterrupt):
        S.write_shards(spec, out, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["shard-00000.h5", "shard-00001.h5", S.MANIFEST]
    with pytest.raises(S.ShardError, match="did not finish"):
        S.open_shards(out)
    before = (out / "shard-00000.h5").stat().st_mtime_ns
    monkeypatch.setattr(S, "simulated_range", real)
    S.write_shards(spec, out, progress=False)
    assert (out / "shard-00000.h5").stat().st_mtime_ns == before  # kept, not rewritten
    fresh = tmp_path / "fresh"
    S.write_shards(spec, fresh, progress=False)
    for k in range(3):
        a, b = formats.read_range(out / S.shard_name(k), 0, 4), formats.read_range(fresh / S.shard_name(k), 0, 4)
        assert [event_key(e) for e in a] == [event_key(e) for e in b]
    S.open_shards(out, verify=True)


def test_shard_folder_errors_name_the_problem(tmp_path, shard_dir):
    with pytest.raises(S.ShardError, match="another command"):
        make_shards(shard_dir, n=32, shard_size=4, seed=1)
    with pytest.raises(S.ShardError, match="no shards.json"):
        S.open_shards(tmp_path)
    with pytest.raises(S.ShardError, match="must be one or more"):
        S.ShardSpec(modes="bogus")


# ============================================================================ stream
def test_ranks_read_disjoint_shards_covering_the_folder(shard_dir):
    folder = S.open_shards(shard_dir)
    for epoch in range(3):
        parts = [ShardStream(folder, seed=3, rank=r, world=2).rank_shards(epoch) for r in range(2)]
        assert not set(parts[0]) & set(parts[1])
        assert sorted(parts[0] + parts[1]) == list(range(8))
    with pytest.raises(S.ShardError, match="cannot feed"):
        ShardStream(folder, world=4, workers=3)


@pytest.mark.parametrize("workers", [0, 2])
def test_stream_resumes_at_any_position(shard_dir, workers):
    folder = S.open_shards(shard_dir)
    whole = [(p, event_key(e)) for p, e in itertools.islice(
        ShardReader(folder, seed=1, workers=workers), 50)]
    assert [p for p, _ in whole] == list(range(1, 51))
    assert len({k for _, k in whole[:32]}) == 32  # one epoch: every event once
    for start in (5, 33):
        again = [(p, event_key(e)) for p, e in itertools.islice(
            ShardReader(folder, seed=1, workers=workers, start=start), 50 - start)]
        assert again == whole[start:]
    assert delivered(5, 0, 2) == 3 and delivered(5, 1, 2) == 2


# ============================================================================ run folders
def test_run_folders_default_outside_the_work_tree(tmp_path, monkeypatch):
    monkeypatch.delenv("LARSIGHT_RUNS", raising=False)
    d = resolve_run_dir("pretrain", None, "abc")
    assert d == __import__("pathlib").Path.home() / ".cache" / "larsight" / "runs" / "pretrain-abc"
    monkeypatch.setenv("LARSIGHT_RUNS", str(tmp_path))
    assert resolve_run_dir("finetune", None, "x") == tmp_path / "finetune-x"
    assert resolve_run_dir("finetune").parent == tmp_path
    assert resolve_run_dir("align1", str(tmp_path / "mine")) == tmp_path / "mine"
    with pytest.raises(FileNotFoundError, match="no finetune run"):
        resolve_run_dir("finetune", resume=True)
    for name in ("old", "new"):
        (tmp_path / f"finetune-{name}" / "state").mkdir(parents=True)
        (tmp_path / f"finetune-{name}" / "state" / "state.json").write_text("{}")
        os.utime(tmp_path / f"finetune-{name}" / "state" / "state.json",
                 (1, 1) if name == "old" else None)
    assert resolve_run_dir("finetune", resume=True) == tmp_path / "finetune-new"


# ============================================================================ exact resume
def pretrain_cfg(run, data, **over) -> PretrainConfig:
    base = dict(objective="distill", run_dir=str(run), steps=6, batch_size=2, lr=3e-3, warmup=2,
                data=str(data) if data else None, workers=2, voxel_size_cm=0.6, encoder_overrides=MICRO, log_every=1,
                ckpt_every=100, n_local=1, n_prototypes=32, n_point_prototypes=16, proj_hidden=32)
    return PretrainConfig(**{**base, **over})


def test_pretrain_resume_is_exact(tmp_path, shard_dir):
    pretrain(pretrain_cfg(tmp_path / "one", shard_dir), command="one")
    pretrain(pretrain_cfg(tmp_path / "two", shard_dir, stop_at=3), command="two")
    assert json.loads((tmp_path / "two" / "state" / "state.json").read_text())["step"] == 3
    pretrain(pretrain_cfg(tmp_path / "two", shard_dir, resume=True), command="two")
    assert_same_tensors(state_tensors(tmp_path / "one"), state_tensors(tmp_path / "two"))
    assert loss_rows(tmp_path / "one") == loss_rows(tmp_path / "two")
    assert len(loss_rows(tmp_path / "one")) == 6
    man = json.loads((tmp_path / "two" / "encoder.json").read_text())
    assert man["data"]["shards"] == str(shard_dir) and man["shards_read_by_rank"][0]
    # another model's settings or other data: refused, naming the difference
    with pytest.raises(ResumeMismatch, match="objective='distill' there, 'mpm' here"):
        pretrain(pretrain_cfg(tmp_path / "two", shard_dir, objective="mpm", resume=True, steps=8))
    other = tmp_path / "other"
    make_shards(other, n=8, shard_size=4, seed=5)
    with pytest.raises(ResumeMismatch, match="fingerprint="):
        pretrain(pretrain_cfg(tmp_path / "two", other, resume=True, steps=8))


def finetune_cfg(run, data, **over) -> FinetuneConfig:
    base = dict(task="semantic", mode="full", init="scratch", encoder_overrides=MICRO, n_events=None,
                data=str(data) if data else None, workers=2, steps=6, batch_size=2, warmup=2, n_eval=4, log_every=1,
                run_dir=str(run), voxel_size_cm=0.6)
    return FinetuneConfig(**{**base, **over})


def test_finetune_resume_is_exact(tmp_path, ft_shards):
    r1 = finetune(finetune_cfg(tmp_path / "one", ft_shards), command="one", progress=False)
    r2 = finetune(finetune_cfg(tmp_path / "two", ft_shards, stop_at=3, time_limit_min=60),
                  command="two", progress=False)
    assert not r2["complete"] and r2["steps"] == 3 and r1["complete"]
    assert not (tmp_path / "two" / "metrics.json").exists()  # evaluated only when finished
    r2 = finetune(finetune_cfg(tmp_path / "two", ft_shards, resume=True), command="two", progress=False)
    assert r2["complete"] and (tmp_path / "two" / "metrics.json").exists()
    assert_same_tensors(state_tensors(tmp_path / "one"), state_tensors(tmp_path / "two"))
    w1, w2 = load_file(str(tmp_path / "one" / "model.safetensors")), load_file(str(tmp_path / "two" / "model.safetensors"))
    assert_same_tensors(w1, w2)
    assert loss_rows(tmp_path / "one") == loss_rows(tmp_path / "two")
    assert r1["metrics"]["accuracy"] == r2["metrics"]["accuracy"]
    with pytest.raises(ResumeMismatch, match="task='semantic' there, 'pid' here"):
        finetune(finetune_cfg(tmp_path / "two", ft_shards, task="pid", resume=True, steps=8), progress=False)


def test_stop_signal_checkpoints_and_stops(tmp_path, shard_dir, monkeypatch):
    import larsight.encoder.pretrain as P

    real = P._train_step

    def step_then_signal(cfg, m, evs, prog, voxel, acc):
        out = real(cfg, m, evs, prog, voxel, acc)
        if prog.step == 1:  # the step being run is the 2nd
            os.kill(os.getpid(), signal.SIGTERM)
        return out

    monkeypatch.setattr(P, "_train_step", step_then_signal)
    summary = pretrain(pretrain_cfg(tmp_path / "sig", shard_dir, steps=10, workers=0))
    assert summary["step"] == 2
    assert json.loads((tmp_path / "sig" / "state" / "state.json").read_text())["step"] == 2
    assert signal.getsignal(signal.SIGTERM) is not None  # the handler was restored
    lines = (tmp_path / "sig" / "checkpoints.log").read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith("step=2 rank=0")


# ============================================================================ labels and losses
def test_finetune_on_unlabelled_events_is_a_clear_error(tmp_path, ft_shards, capsys):
    evs = formats.read_range(ft_shards / "shard-00000.h5", 0, 4)
    bare = [e.copy(semantic=None, particle=None, interaction=None, pid=None) for e in evs]
    path = tmp_path / "bare.h5"
    formats.write(path, bare)
    with pytest.raises(ValueError, match="has semantic labels"):
        finetune(finetune_cfg(tmp_path / "bare", None, files=(str(path),), n_events=4))
    from larsight.ui.cli import main
    code = main(["finetune", "--task", "semantic", "--files", str(path), "--n-events", "4",
                 "--run-dir", str(tmp_path / "cli"), "--steps", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "has semantic labels" in err[0]


def test_classification_losses():
    torch.manual_seed(0)
    logits, y = torch.randn(64, 5), torch.randint(0, 5, (64,))
    y[:4] = -1
    ce = torch.nn.functional.cross_entropy(logits, y, ignore_index=-1)
    w = torch.ones(5)
    assert torch.allclose(classification_loss(logits, y, w, "focal", gamma=0.0), ce, atol=1e-6)
    assert classification_loss(logits, y, w, "focal", gamma=2.0) < ce
    assert torch.allclose(classification_loss(logits, y, w * 3, "ce"), ce)
    w2 = torch.tensor([1.0, 1.0, 5.0, 5.0, 1.0])
    assert not torch.allclose(classification_loss(logits, y, w2, "balanced"), ce)
    with pytest.raises(ValueError, match="--loss must be one of"):
        FinetuneConfig(loss="hinge")


def test_balanced_weights_come_from_the_shard_counts(tmp_path, ft_shards):
    cfg = finetune_cfg(tmp_path / "bal", ft_shards, steps=1, mode="probe", workers=0)
    finetune(cfg, progress=False)
    counts = json.loads((ft_shards / S.MANIFEST).read_text())["semantic_counts"]
    saved = load_file(str(tmp_path / "bal" / "model.safetensors"))["heads.semantic.class_weight"]
    assert torch.allclose(saved, class_weights_from_counts(counts))
    cfg = finetune_cfg(tmp_path / "focal", ft_shards, steps=1, mode="probe", workers=0, loss="focal")
    finetune(cfg, progress=False)
    man = json.loads((tmp_path / "focal" / "model.json").read_text())
    assert man["heads"]["semantic"]["loss"] == "focal" and man["heads"]["semantic"]["focal_gamma"] == 2.0
