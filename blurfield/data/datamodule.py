"""BlurDataModule: the one stream of training batches (docs/design.md §4, §8).

Shards (local paths, globs, brace patterns ``train-{000000..000009}.tar``, several joined
with ``::``, or any URL webdataset opens, e.g. ``pipe:curl -s URL``) are read as an endless
stream by every loader worker of every rank. The ``S = world_size x workers`` streams never
read the same samples: with at least ``S`` shards, stream ``s = rank * workers + worker``
reads shards ``s, s + S, ...``; with fewer, every stream reads every shard and keeps the
samples whose key hashes to ``s`` (with a warning: write more shards). Each stream
reshuffles its shards on every pass, shuffles samples through a buffer and draws its crops
from ``numpy.random.default_rng([seed, epoch, rank, worker])`` (``epoch`` = the epoch at
which the pass starts: every epoch reseeds, so a resumed run reads what an uninterrupted
one would).

``samples_per_epoch`` is the total over all ranks and workers, so an epoch is the same
amount of data on any number of GPUs: each rank yields ``ceil(samples / (world * batch))``
batches, shared out between its workers.

A batch is exactly the binding format (docs/design.md §8)::

    blurry        (N, 3, c, c)                 float32 display values in [0, 1]
    sharp_linear  (N, 3, c + K - 1, c + K - 1) float32 linear light around the crop
    kernels       (N, J, K, K)                 float32 layer kernels (0 for padded layers)
    masks         (N, J, c, c)                 float32 smoothed, normalised layer masks
    layer_valid   (N, J)                       bool
    weights       (N, c, c)                    float32 1 / (sum_j M_j A_j + 1)
    has_field     (N,)                         bool

with ``c = data.crop_size``, ``J`` the most layers in the batch. Blurry/sharp pairs
(``has_field: false``) get zero kernels and masks with ``J >= 1``, ``layer_valid`` false and
weights 1; ``data.require_field`` drops them (counted). Padded layers have zero kernels:
pass ``check=False`` to the physics functions inside training loops.

Unreadable shards are skipped and bad samples dropped, with a logged warning and a count in
:attr:`BlurDataModule.stats` (summed over workers through shared memory).

The parts, one job each: :mod:`blurfield.data.shards` (patterns -> shard URLs),
:mod:`blurfield.data.batch` (one sample's tensors, the batch), :mod:`blurfield.data.streams`
(the train and validation streams), this module (the loaders and the counts) and
:mod:`blurfield.data.throughput` (its speed, for ``bench/``).
"""

from __future__ import annotations

import math
import multiprocessing as mp
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from blurfield.config import DataCfg, as_config
from blurfield.data.batch import BATCH_KEYS
from blurfield.data.shards import count_samples, expand_shards
from blurfield.data.streams import STAT_NAMES, SampleStream, TrainStream, ValStream


def _dist(trainer: Any) -> tuple[int, int]:
    """(rank, world_size) of this process: the trainer's, else torch.distributed's."""
    if trainer is not None:
        return int(trainer.global_rank), int(trainer.world_size)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class _EpochLoader(DataLoader):
    """A DataLoader that tells its stream the epoch before each pass over it."""

    epoch_fn: Callable[[], int | None] | None = None
    _passes = 0

    def __iter__(self):  # type: ignore[override]
        epoch = self.epoch_fn() if self.epoch_fn is not None else None
        self.dataset.set_epoch(self._passes if epoch is None else epoch)  # type: ignore[attr-defined]
        self._passes += 1
        return super().__iter__()


class BlurDataModule(L.LightningDataModule):
    """Training and validation batches from shards (module docstring).

    Args:
        cfg: the ``data`` section (:class:`blurfield.config.DataCfg`, or a DictConfig of it,
            converted here).
        kernel_size: K of the model; samples with a field must have it.
    """

    def __init__(self, cfg: Any, kernel_size: int = 33) -> None:
        super().__init__()
        cfg = as_config(cfg)
        self.cfg: DataCfg = cfg
        self.kernel_size = int(kernel_size)
        for key in ("batch_size", "crop_size", "samples_per_epoch"):
            if getattr(cfg, key) < 1:
                raise ValueError(f"data.{key} must be >= 1, got {getattr(cfg, key)}")
        if cfg.workers < 0:
            raise ValueError(f"data.workers must be >= 0, got {cfg.workers}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and >= 1, got {kernel_size}")
        self._counters: Any = None

    # ---------------------------------------------------------------- counts

    def _shared_counters(self) -> Any:
        if self._counters is None:
            self._counters = mp.Array("q", len(STAT_NAMES))
        return self._counters

    @property
    def stats(self) -> dict[str, int]:
        """Counts over all workers of this process: ``samples`` delivered, ``bad_samples``
        dropped (undecodable, missing a member, too small), ``shard_errors`` (unreadable or
        truncated shards), ``dropped_pairs`` (no field while ``require_field``)."""
        c = self._shared_counters()
        with c.get_lock():
            return dict(zip(STAT_NAMES, (int(v) for v in c[:])))

    # ---------------------------------------------------------------- loaders

    def _stream_kw(self) -> dict[str, Any]:
        rank, world = _dist(getattr(self, "trainer", None))
        return dict(kernel_size=self.kernel_size, crop_size=self.cfg.crop_size,
                    batch_size=self.cfg.batch_size, require_field=self.cfg.require_field,
                    rank=rank, world=world, counters=self._shared_counters(),
                    key_log=self.cfg.key_log)

    def _loader(self, stream: SampleStream) -> _EpochLoader:
        workers = self.cfg.workers
        loader = _EpochLoader(stream, batch_size=None, num_workers=workers,
                              persistent_workers=workers > 0,
                              pin_memory=torch.cuda.is_available())
        loader.epoch_fn = self._trainer_epoch
        return loader

    def _trainer_epoch(self) -> int | None:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return None
        # Lightning creates the train iterator before it restores current_epoch from a
        # checkpoint; the fit loop's processed-epoch count is already right at that point.
        return int(trainer.fit_loop.epoch_progress.current.processed)

    def train_dataloader(self) -> DataLoader:
        urls = expand_shards(self.cfg.train_shards, "data.train_shards")
        kw = self._stream_kw()
        per_rank = math.ceil(self.cfg.samples_per_epoch / (kw["world"] * kw["batch_size"]))
        stream = TrainStream(urls, batches_per_rank=per_rank,
                             shuffle_buffer=max(1, self.cfg.shuffle_buffer),
                             seed=self.cfg.seed, **kw)
        return self._loader(stream)

    def val_dataloader(self) -> DataLoader | list:
        if not self.cfg.val_shards or self.cfg.val_samples < 1:
            return []
        urls = expand_shards(self.cfg.val_shards, "data.val_shards")
        available = count_samples(urls)
        if available == 0:
            raise ValueError(f"data.val_shards: no readable sample in {self.cfg.val_shards}")
        n = min(self.cfg.val_samples, available)
        return self._loader(ValStream(urls, n_samples=n, **self._stream_kw()))


__all__ = ["BATCH_KEYS", "BlurDataModule", "count_samples", "expand_shards"]
