"""Test-wide settings: W&B offline into a temp dir, no stray SLURM_* variables, small threads;
shared fixtures (``one_thread``, ``tiny_path``)."""

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


@pytest.fixture
def one_thread():
    """One torch thread for the test: small images and tiny models run faster so, and are
    immune to busy-waiting on a loaded machine. Use with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    """A saved, untrained ``KernelEstimator(base_width=4)`` (seed 0): its weight file's path."""
    from blurfield.models import KernelEstimator, save_estimator

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_estimator(KernelEstimator(base_width=4), path)
    return path
