"""Distributed training that has actually run: ``accelerate launch`` of ``larsight pretrain`` and
``larsight finetune`` with 2 CPU processes (gloo) on a shard folder, against a single process on
the same data.

The launch is the cluster command with the CPU forced by ``ACCELERATE_USE_CPU=1``: accelerate's own
``--cpu`` flag picks its single-process launcher (several CPU processes there need mpirun), while
``--multi_gpu`` starts the processes with torchrun and, on the CPU, Accelerate joins them with gloo.

Same data: shards of 2 events and 2 events per process per step, against one process with 4 events
per step: in every step the two ranks read exactly the two shards the single process reads (ranks
take every other shard of the same permutation), so the losses differ only by how the mean is
taken (per rank, then over ranks, vs. over all points) and, in pretraining, by rank 1's own
augmentations. Tolerances: fine-tuning 3 % per step; pretraining 15 % per step and 5 % on the
mean over the steps.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from larsight.encoder.shards import ShardSpec, write_shards

pytestmark = pytest.mark.slow

STEPS = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(args: list[str], processes: int, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    if processes == 1:
        cmd = [sys.executable, "-m", "larsight.ui.cli", *args]
    else:
        exe = Path(sys.executable).parent / "accelerate"
        accelerate = str(exe) if exe.exists() else shutil.which("accelerate")
        assert accelerate, "the accelerate command is not installed"
        env["ACCELERATE_USE_CPU"] = "1"
        cmd = [accelerate, "launch", "--multi_gpu", "--num_processes", str(processes),
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(_free_port()), "-m", "larsight.ui.cli", *args]
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=420)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


def losses(run: Path) -> np.ndarray:
    with open(run / "loss.csv") as f:
        return np.array([float(r["loss"]) for r in csv.DictReader(f)])


def checkpoint_lines(run: Path) -> list[str]:
    return (run / "checkpoints.log").read_text().splitlines()


def assert_disjoint(by_rank: list[list[str]], n_shards: int, per_rank: int) -> None:
    assert len(by_rank) == 2
    a, b = set(by_rank[0]), set(by_rank[1])
    assert len(a) == len(b) == per_rank and not a & b
    assert a | b <= {f"shard-{k:05d}.h5" for k in range(n_shards)}


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("acc") / "shards"
    write_shards(ShardSpec(modes="nu", n=16, shard_size=2, voxel_size_cm=0.6), out, progress=False)
    return out


def test_two_process_pretrain_matches_one_process(shards, tmp_path):
    common = ["pretrain", "--objective", "mpm", "--data", str(shards), "--workers", "0",
              "--voxel-size", "0.6", "--steps", str(STEPS), "--log-every", "1", "--warmup", "1"]
    res = launch([*common, "--batch-size", "2", "--run-dir", str(tmp_path / "two")], 2, tmp_path)
    assert "2 process(es)" in res.stdout
    launch([*common, "--batch-size", "4", "--run-dir", str(tmp_path / "one")], 1, tmp_path)
    man = json.loads((tmp_path / "two" / "encoder.json").read_text())
    assert man["processes"] == 2 and man["events_seen"] == STEPS * 4
    assert_disjoint(man["shards_read_by_rank"], 8, STEPS)
    # the checkpoint is written once, by rank 0
    lines = checkpoint_lines(tmp_path / "two")
    assert len(lines) == 1 and lines[0].startswith(f"step={STEPS} rank=0")
    two, one = losses(tmp_path / "two"), losses(tmp_path / "one")
    assert len(two) == len(one) == STEPS
    assert np.all(np.abs(two - one) <= 0.15 * one), (two, one)
    assert abs(two.mean() - one.mean()) <= 0.05 * one.mean(), (two, one)


def test_two_process_finetune_matches_one_process(shards, tmp_path):
    common = ["finetune", "--task", "semantic", "--mode", "full", "--init", "scratch", "--data", str(shards),
              "--n-events", "all", "--steps", str(STEPS), "--workers", "0", "--voxel-size", "0.6",
              "--n-eval", "4", "--log-every", "1"]
    launch([*common, "--batch-size", "2", "--run-dir", str(tmp_path / "two")], 2, tmp_path)
    launch([*common, "--batch-size", "4", "--run-dir", str(tmp_path / "one")], 1, tmp_path)
    man = json.loads((tmp_path / "two" / "model.json").read_text())
    assert man["processes"] == 2 and man["complete"]
    assert_disjoint(man["shards_read_by_rank"], 8, STEPS)
    lines = checkpoint_lines(tmp_path / "two")
    assert len(lines) == 2 and all(line.split()[1] == "rank=0" for line in lines)
    assert len(list((tmp_path / "two").glob("model*.safetensors"))) == 1
    two, one = losses(tmp_path / "two"), losses(tmp_path / "one")
    assert len(two) == len(one) == STEPS
    assert np.all(np.abs(two - one) <= 0.03 * one), (two, one)
