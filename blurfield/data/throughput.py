"""The DataModule's throughput on one thread (``bench/train.py``)."""

from __future__ import annotations

import time

import torch


def datamodule_throughput(shards: str, *, kernel_size: int = 33, crop_size: int = 256,
                          n_samples: int = 64, batch_size: int = 4, warmup: int = 4
                          ) -> dict[str, float]:
    """Throughput of one process on one thread, no loader workers: read, decode the PNGs,
    crop, ``gt_field``, weights, collate (for ``bench/``).

    Returns ``samples_per_s`` (wall clock) and ``samples_per_cpu_s`` (per second of this
    process's CPU time: the per-core figure, unaffected by other load on the machine).
    """
    from blurfield.config import DataCfg
    from blurfield.data.datamodule import BlurDataModule

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = DataCfg(train_shards=shards, val_shards="", samples_per_epoch=10**9,
                      batch_size=batch_size, workers=0, crop_size=crop_size, shuffle_buffer=1)
        it = iter(BlurDataModule(cfg, kernel_size).train_dataloader())
        for _ in range(max(1, warmup // batch_size)):
            next(it)
        n = max(1, n_samples // batch_size)
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(n):
            next(it)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        torch.set_num_threads(threads)
    return {"samples_per_s": n * batch_size / wall,
            "samples_per_cpu_s": n * batch_size / max(cpu, 1e-9)}


__all__ = ["datamodule_throughput"]
