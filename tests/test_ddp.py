"""DDP on the CPU: 2 ranks x 2 loader workers read disjoint samples, an epoch is
samples_per_epoch in total, and both ranks end with identical weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from helpers import fake_shards as fs

HERE = Path(__file__).resolve().parent


def test_ddp_two_ranks_disjoint_samples_identical_weights(tmp_path):
    from helpers.ddp_script import BATCH, EPOCHS, SAMPLES

    fs.write_shards(tmp_path / "shards", "train", 4, 3, kernel_size=33, vary_layers=True)
    out = tmp_path / "out"
    out.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, str(HERE / "helpers" / "ddp_script.py"),
         str(tmp_path / "shards" / "train-*.tar"), str(out)],
        env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]

    info = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    steps = EPOCHS * SAMPLES // (2 * BATCH)
    assert [i["global_step"] for i in info] == [steps, steps]
    assert all(i["world_size"] == 2 for i in info)

    keys = {}
    for r in (0, 1):
        files = sorted((out / "keys").glob(f"train-rank{r}-worker*.txt"))
        assert len(files) == 2  # both loader workers of the rank delivered samples
        keys[r] = [k for f in files for k in f.read_text().split()]
    assert len(keys[0]) + len(keys[1]) == EPOCHS * SAMPLES  # the epoch is a total
    assert not set(keys[0]) & set(keys[1])  # ranks never read the same samples
    assert sum(i["stats"]["samples"] for i in info) == EPOCHS * SAMPLES

    w0, w1 = (torch.load(out / f"rank{r}.pt") for r in (0, 1))
    assert w0.keys() == w1.keys()
    for k in w0:
        assert torch.equal(w0[k], w1[k]), k
    init = torch.load(out / "init.pt")
    assert init.keys() == w0.keys()
    assert not all(torch.equal(init[k], w0[k]) for k in w0)  # it trained
