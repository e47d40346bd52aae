"""Test-wide settings: W&B offline into a temp dir, no stray SLURM_* variables, small threads."""

from __future__ import annotations

import os

import pytest
import torch

torch.set_num_threads(2)

for _k in list(os.environ):
    if _k.startswith("SLURM_"):
        del os.environ[_k]


@pytest.fixture(autouse=True)
def _wandb_offline(tmp_path_factory, monkeypatch):
    d = tmp_path_factory.getbasetemp() / "wandb"
    d.mkdir(exist_ok=True)
    monkeypatch.setenv("WANDB_MODE", "offline")
    for k in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(k, str(d))
    monkeypatch.setenv("WANDB_SILENT", "true")


@pytest.fixture
def rng() -> torch.Generator:
    return torch.Generator().manual_seed(0)
