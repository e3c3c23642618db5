"""`emoedge distill` under torchrun: two CPU processes (gloo), DistributedDataParallel."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from distill.checkpoint import load_checkpoint
from distill.distributed import Cluster
from tests.conftest import REPO
from tests.fixtures_export import make_checkpoint
from tests.tiny_corpora import Corpora


def torchrun(*args: object, nproc: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += [f"--nproc_per_node={nproc}", "-m", "edge.cli", "distill", *map(str, args)]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("stage", ["face", "audio", "fused"])
def test_a_stage_trains_on_two_processes(tiny_corpora: Corpora, tmp_path, stage: str) -> None:
    init = make_checkpoint(tmp_path / "init.pt", "student")
    teacher = make_checkpoint(tmp_path / "teacher.pt", "teacher")
    out = tmp_path / "run"
    args = ["--stage", stage, "--init", init, "--teacher", teacher, "--out", out]
    args += [*tiny_corpora.args(), "--workers", "0"]
    done = torchrun(*args, "--epochs", "2", "--batch-size", "4", "--threads", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rank 0 of 2" in done.stderr and "rank 1 of 2" in done.stderr
    history = json.loads((out / "history.json").read_text())  # written by rank 0 alone
    assert [h["epoch"] for h in history] == [1, 2]
    model, meta = load_checkpoint(out / "best.pt")
    assert meta["train_config"]["stage"] == stage
    # the replicas were compared at the end (Cluster.check_replicas): they stayed equal, so
    # the gradients were averaged; and training moved the weights
    before, _ = load_checkpoint(init)
    changed = [
        k
        for k, v in model.state_dict().items()
        if not torch.equal(v, before.state_dict()[k].half().float())
    ]
    assert changed


def test_shards_split_the_items_between_ranks() -> None:
    parts = [list(range(10))[Cluster(rank=r, world=3).shard(10)] for r in range(3)]
    assert sorted(i for part in parts for i in part) == list(range(10))
    assert parts[0] == [0, 3, 6, 9]


def test_calibrate_refuses_torchrun(tiny_corpora: Corpora, tmp_path) -> None:
    init = make_checkpoint(tmp_path / "init.pt", "student")
    args = ["--stage", "calibrate", "--init", init, "--out", tmp_path / "c", "--workers", "0"]
    done = torchrun(*args, *tiny_corpora.args())
    assert done.returncode != 0 and "runs in one process" in done.stderr
