"""Two-process DDP training on the CPU (gloo) with BlurDataModule; run by tests/test_ddp.py.

    python tests/helpers/ddp_script.py SHARD_GLOB OUT_DIR

``strategy="ddp"`` re-launches this file for rank 1, so it must be a script, not a test.
Rank 0 writes ``OUT_DIR/init.pt`` (initial weights), each rank ``OUT_DIR/rank{r}.pt``
(final weights) and ``OUT_DIR/rank{r}.json`` (steps, data stats); the loader workers log
the keys they deliver under ``OUT_DIR/keys``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning as L
import torch

from blurfield.config import DataCfg
from blurfield.data import BlurDataModule
from blurfield.tasks.estimator import KernelEstimatorModule

EPOCHS, SAMPLES, BATCH = 2, 16, 2


def main(shards: str, out: Path) -> None:
    torch.set_num_threads(1)
    cfg = DataCfg(train_shards=shards, val_shards="", samples_per_epoch=SAMPLES,
                  batch_size=BATCH, workers=2, crop_size=32, shuffle_buffer=2, seed=0,
                  key_log=str(out / "keys"))
    dm = BlurDataModule(cfg, kernel_size=33)
    L.seed_everything(0, verbose=False)
    module = KernelEstimatorModule({"n_basis": 3, "kernel_size": 33, "base_width": 4},
                                   {"lr": 1e-3})
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=EPOCHS,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0)
    if trainer.global_rank == 0:
        torch.save(module.state_dict(), out / "init.pt")
    trainer.fit(module, datamodule=dm)
    r = trainer.global_rank
    torch.save(module.state_dict(), out / f"rank{r}.pt")
    info = {"global_step": trainer.global_step, "world_size": trainer.world_size,
            "stats": dm.stats}
    (out / f"rank{r}.json").write_text(json.dumps(info))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
