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
"""

from __future__ import annotations

import glob
import hashlib
import logging
import math
import multiprocessing as mp
import os
import re
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from blurfield.data.schema import Sample, SampleError, decode_sample, gt_field, image_tensor
from blurfield.data.weights import segment_weights
from blurfield.physics.camera import to_linear

log = logging.getLogger(__name__)

STAT_NAMES = ("samples", "bad_samples", "shard_errors", "dropped_pairs")
BATCH_KEYS = ("blurry", "sharp_linear", "kernels", "masks", "layer_valid", "weights",
              "has_field")
MAX_CONSECUTIVE_DROPS = 1000  # then the stream gives up with an error instead of spinning
_URL = re.compile(r"^[a-z][a-z0-9+.-]*:")  # "pipe:", "http:", "s3:", ...
# Our streams split the data between workers themselves, so their __len__ is exact.
warnings.filterwarnings("ignore", message="Your `IterableDataset` has `__len__` defined")


# --------------------------------------------------------------------------- shard lists


def expand_shards(spec: str | Sequence[str], name: str = "shards") -> list[str]:
    """Shard URLs from a pattern: ``::``-separated parts, braces, then globs on local paths.

    Raises ValueError naming ``name`` when nothing matches or a local file is missing.
    """
    import braceexpand

    parts = list(spec) if not isinstance(spec, str) else spec.split("::")
    urls: list[str] = []
    for part in parts:
        for url in braceexpand.braceexpand(str(part).strip()):
            if not url:
                continue
            if _URL.match(url) and not url.startswith("file:"):
                urls.append(url)
                continue
            path = url[5:] if url.startswith("file:") else url
            if glob.has_magic(path):
                found = sorted(glob.glob(path))
                if not found:
                    raise ValueError(f"{name}: no shard matches '{path}'; build shards with "
                                     "`make shards` or fix the pattern")
                urls += found
            elif not os.path.isfile(path):
                raise ValueError(f"{name}: shard '{path}' does not exist; build shards with "
                                 "`make shards` or fix the path")
            else:
                urls.append(path)
    if not urls:
        raise ValueError(f"{name}: the shard pattern '{spec}' names no shards")
    return urls


# --------------------------------------------------------------------------- one sample


def crop_window(
    shape: tuple[int, int], crop: int, kernel_size: int, rng: np.random.Generator | None
) -> tuple[int, int, int, int]:
    """A blurry crop ``(top, left, crop, crop)`` at least ``K // 2`` from every border, so
    the sharp window ``K - 1`` larger around it fits (:func:`schema.sharp_window`).

    ``rng=None`` gives the centre crop. Raises SampleError if the image is too small.
    """
    h, w = shape
    o = (kernel_size - 1) // 2
    hi_t, hi_l = h - crop - kernel_size // 2, w - crop - kernel_size // 2
    if hi_t < o or hi_l < o:
        raise SampleError(f"image {h} x {w} is smaller than crop + K - 1 = "
                          f"{crop + kernel_size - 1}")
    if rng is None:
        return (min(max((h - crop) // 2, o), hi_t), min(max((w - crop) // 2, o), hi_l),
                crop, crop)
    return int(rng.integers(o, hi_t + 1)), int(rng.integers(o, hi_l + 1)), crop, crop


def prepare_sample(
    sample: Sample, window: tuple[int, int, int, int], kernel_size: int
) -> dict[str, Tensor]:
    """One sample's tensors for the blurry crop ``window = (top, left, c, c)``.

    Returns ``blurry`` (3, c, c), ``sharp_linear`` (3, c + K - 1, c + K - 1) (cropped as
    uint8 before linearising), ``kernels`` (J, K, K), ``masks`` (J, c, c), ``weights``
    (c, c) and ``has_field`` () bool; ``J = 1`` of zeros without a field.
    """
    top, left, h, w = window
    o = (kernel_size - 1) // 2
    st, sl = top - o, left - o
    size = (h + kernel_size - 1, w + kernel_size - 1)
    blurry = image_tensor(sample.blurry[top : top + h, left : left + w])
    sharp = image_tensor(sample.sharp[st : st + size[0], sl : sl + size[1]])
    sharp = to_linear(sharp, float(sample.meta["gamma"])) * float(sample.meta["brightness"])
    if sample.has_field:
        g = gt_field(sample, window)
        kernels, masks = g.kernels.float(), g.masks.float()
        weights = segment_weights(masks, g.counts)
    else:
        kernels = torch.zeros(1, kernel_size, kernel_size)
        masks = torch.zeros(1, h, w)
        weights = torch.ones(h, w)
    return {"blurry": blurry, "sharp_linear": sharp, "kernels": kernels, "masks": masks,
            "weights": weights, "has_field": torch.tensor(sample.has_field)}


def collate(items: Sequence[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Items of :func:`prepare_sample` -> a batch; layers padded to ``J = max`` with zeros.

    ``layer_valid[n, j]`` is true for the real layers of samples with a field.
    """
    n = len(items)
    j = max(int(it["kernels"].shape[0]) for it in items)
    k = items[0]["kernels"].shape[-1]
    h, w = items[0]["masks"].shape[-2:]
    kernels = torch.zeros(n, j, k, k)
    masks = torch.zeros(n, j, h, w)
    valid = torch.zeros(n, j, dtype=torch.bool)
    for i, it in enumerate(items):
        ji = it["kernels"].shape[0]
        kernels[i, :ji] = it["kernels"]
        masks[i, :ji] = it["masks"]
        valid[i, :ji] = bool(it["has_field"])
    return {
        "blurry": torch.stack([it["blurry"] for it in items]),
        "sharp_linear": torch.stack([it["sharp_linear"] for it in items]),
        "kernels": kernels,
        "masks": masks,
        "layer_valid": valid,
        "weights": torch.stack([it["weights"] for it in items]),
        "has_field": torch.stack([it["has_field"] for it in items]),
    }


# --------------------------------------------------------------------------- streams


def _key_hash(key: str) -> int:
    """A stable hash of a sample key (Python's hash() changes between processes)."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")


def _worker() -> tuple[int, int]:
    info = get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)


def _dist(trainer: Any) -> tuple[int, int]:
    """(rank, world_size) of this process: the trainer's, else torch.distributed's."""
    if trainer is not None:
        return int(trainer.global_rank), int(trainer.world_size)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class _Stream(IterableDataset):
    """What the train and validation streams share: reading, decoding, counting."""

    def __init__(self, urls: list[str], *, kernel_size: int, crop_size: int, batch_size: int,
                 require_field: bool, rank: int, world: int, counters: Any,
                 key_log: str | None, name: str) -> None:
        super().__init__()
        self.urls, self.kernel_size, self.crop_size = urls, kernel_size, crop_size
        self.batch_size, self.require_field = batch_size, require_field
        self.rank, self.world, self.counters = rank, world, counters
        self.key_log, self.name = key_log, name
        self._log_file: Any = None

    def _count(self, stat: str, n: int = 1) -> int:
        i = STAT_NAMES.index(stat)
        with self.counters.get_lock():
            self.counters[i] += n
            return int(self.counters[i])

    def _shard_error(self, exn: Exception) -> bool:
        """webdataset handler: count, warn, go on (with the next member or shard)."""
        total = self._count("shard_errors")
        log.warning("%s: skipped an unreadable shard or part of one (%d so far): %s",
                    self.name, total, str(exn)[:300])
        return True

    def _raw(self, urls: Sequence[str]) -> Iterator[dict[str, Any]]:
        from webdataset.tariterators import tarfile_samples

        return tarfile_samples(({"url": u} for u in urls), handler=self._shard_error)

    def _process(self, raw: dict[str, Any], rng: np.random.Generator | None
                 ) -> dict[str, Tensor] | None:
        """Decode, crop and build the ground truth; None (counted) for a dropped sample."""
        key = raw.get("__key__", "?")
        try:
            sample = decode_sample(raw)
            if sample.has_field and int(sample.meta["kernel_size"]) != self.kernel_size:
                raise _ConfigMismatch(
                    f"{self.name}: sample {key} has kernel_size {sample.meta['kernel_size']} "
                    f"but the model's is {self.kernel_size}; set model.kernel_size or use "
                    "shards made with this kernel size")
            if not sample.has_field and self.require_field:
                self._count("dropped_pairs")
                return None
            window = crop_window(sample.blurry.shape[:2], self.crop_size, self.kernel_size,
                                 rng)
        except _ConfigMismatch:
            raise
        except Exception as e:  # untrusted bytes: PIL, numpy, json, SampleError
            total = self._count("bad_samples")
            if total <= 20 or total % 100 == 0:
                log.warning("%s: dropped sample %s from %s (%d bad so far): %s", self.name, key,
                            raw.get("__url__", "?"), total, str(e)[:300])
            return None
        item = prepare_sample(sample, window, self.kernel_size)
        self._count("samples")
        if self.key_log:
            self._write_key(sample.key)
        return item

    def _write_key(self, key: str) -> None:
        if self._log_file is None:
            worker, _ = _worker()
            d = Path(self.key_log)  # type: ignore[arg-type]
            d.mkdir(parents=True, exist_ok=True)
            path = d / f"{self.name}-rank{self.rank}-worker{worker}.txt"
            self._log_file = open(path, "a", buffering=1)  # noqa: SIM115 (line-buffered log)
        self._log_file.write(key + "\n")

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_log_file"] = None
        state["_items"] = None
        return state

    def set_epoch(self, epoch: int) -> None:
        """Train streams reseed with it; the validation stream is the same every epoch."""


class _ConfigMismatch(ValueError):
    """Shards and config disagree: an error for the user, never a dropped sample."""


class TrainStream(_Stream):
    """The endless, shuffled, randomly cropped stream; one epoch = ``len(self)`` batches."""

    def __init__(self, urls: list[str], *, batches_per_rank: int, shuffle_buffer: int,
                 seed: int, **kw: Any) -> None:
        super().__init__(urls, name="train", **kw)
        self.batches_per_rank, self.shuffle_buffer, self.seed = (
            batches_per_rank, shuffle_buffer, seed)
        self.epoch = 0
        self._items: Iterator[dict[str, Tensor]] | None = None

    def __len__(self) -> int:
        return self.batches_per_rank

    def set_epoch(self, epoch: int) -> None:
        """The epoch the next pass starts (re)seeding from, if the stream must restart."""
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        worker, workers = _worker()
        epoch, self.epoch = self.epoch, self.epoch + 1
        # Reseed at every epoch: epoch e reads the same data whether the run was resumed
        # at e or not (a stream carried across epochs could not be restored by a resume).
        self._items = self._stream(epoch, worker, workers)
        n = self.batches_per_rank // workers + int(worker < self.batches_per_rank % workers)
        for _ in range(n):
            yield collate([next(self._items) for _ in range(self.batch_size)])

    def _stream(self, epoch: int, worker: int, workers: int) -> Iterator[dict[str, Tensor]]:
        """Endless items of stream ``rank * workers + worker`` seeded by the epoch."""
        rng = np.random.default_rng([self.seed, epoch, self.rank, worker])
        sid, n_streams = self.rank * workers + worker, self.world * workers
        by_shard = len(self.urls) >= n_streams
        if not by_shard and sid == 0:
            log.warning("train: %d shards for %d streams (ranks x workers): every stream "
                        "reads every shard and keeps its share; write at least %d shards",
                        len(self.urls), n_streams, n_streams)
        buffer: list[dict[str, Any]] = []
        limit, drops = self.shuffle_buffer, 0
        while True:
            urls = self.urls[sid::n_streams] if by_shard else self.urls
            seen = mine = 0
            for raw in self._raw([urls[i] for i in rng.permutation(len(urls))]):
                seen += 1
                if not by_shard and _key_hash(raw["__key__"]) % n_streams != sid:
                    continue
                mine += 1
                buffer.append(raw)
                if len(buffer) < limit:
                    continue
                item = self._process(buffer.pop(int(rng.integers(len(buffer)))), rng)
                drops = 0 if item is not None else drops + 1
                if drops > MAX_CONSECUTIVE_DROPS:
                    raise ValueError(self._give_up(drops))
                if item is not None:
                    yield item
            if mine == 0 and by_shard:  # its shards are unreadable: share all shards instead
                log.warning("train: stream %d read nothing from its shards %s; it reads all "
                            "shards and keeps its share instead", sid, urls)
                by_shard = False
            elif mine == 0:
                raise ValueError(
                    f"train: stream {sid} of {n_streams} (ranks x workers) got no sample from "
                    f"data.train_shards ({len(self.urls)} shards, {seen} readable samples): "
                    "write more samples or use fewer workers")
            limit = min(limit, len(buffer) + 1)  # less data than the buffer: shrink it

    def _give_up(self, drops: int) -> str:
        why = ("data.require_field is true and these look like blurry/sharp pairs "
               "(set data.require_field=false)" if self.counters[3] > self.counters[1]
               else "see the warnings above")
        return f"train: {drops} samples in a row were dropped: {why}"


class ValStream(_Stream):
    """The fixed validation set: the first ``n`` samples of the shards, centre crops.

    Rank ``r`` takes samples ``r, r + world, ...`` (wrapping like a DistributedSampler so
    every rank has the same number of batches); its workers share out the batches.
    """

    def __init__(self, urls: list[str], *, n_samples: int, **kw: Any) -> None:
        super().__init__(urls, name="val", **kw)
        self.n_samples = n_samples
        self.per_rank = math.ceil(n_samples / self.world)

    def __len__(self) -> int:
        return math.ceil(self.per_rank / self.batch_size)

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        worker, workers = _worker()
        mine = [(self.rank + self.world * t) % self.n_samples for t in range(self.per_rank)]
        batches = [mine[i : i + self.batch_size] for i in range(0, len(mine), self.batch_size)]
        batches = batches[worker::workers]
        wanted = {i for b in batches for i in b}
        raws: dict[int, dict[str, Any]] = {}
        for i, raw in enumerate(self._raw(self.urls)):
            if i >= self.n_samples:
                break
            if i in wanted:
                raws[i] = raw
        for b in batches:
            items = [it for it in (self._process(raws[i], None) for i in b if i in raws) if it]
            if items:
                yield collate(items)


def count_samples(urls: Sequence[str]) -> int:
    """The number of samples (distinct keys) in the shards, unreadable parts skipped."""
    from webdataset.tariterators import tarfile_samples

    return sum(1 for _ in tarfile_samples(({"url": u} for u in urls), handler=lambda e: True))


class _EpochLoader(DataLoader):
    """A DataLoader that tells its stream the epoch before each pass over it."""

    epoch_fn: Callable[[], int | None] | None = None
    _passes = 0

    def __iter__(self):  # type: ignore[override]
        epoch = self.epoch_fn() if self.epoch_fn is not None else None
        self.dataset.set_epoch(self._passes if epoch is None else epoch)  # type: ignore[attr-defined]
        self._passes += 1
        return super().__iter__()


# --------------------------------------------------------------------------- DataModule


class BlurDataModule(L.LightningDataModule):
    """Training and validation batches from shards (module docstring).

    Args:
        cfg: the ``data`` section (:class:`blurfield.config.DataCfg` or a DictConfig of it).
        kernel_size: K of the model; samples with a field must have it.
    """

    def __init__(self, cfg: Any, kernel_size: int = 33) -> None:
        super().__init__()
        self.cfg, self.kernel_size = cfg, int(kernel_size)
        for key in ("batch_size", "crop_size", "samples_per_epoch"):
            if int(getattr(cfg, key)) < 1:
                raise ValueError(f"data.{key} must be >= 1, got {getattr(cfg, key)}")
        if int(cfg.workers) < 0:
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
        return dict(kernel_size=self.kernel_size, crop_size=int(self.cfg.crop_size),
                    batch_size=int(self.cfg.batch_size),
                    require_field=bool(getattr(self.cfg, "require_field", True)),
                    rank=rank, world=world, counters=self._shared_counters(),
                    key_log=getattr(self.cfg, "key_log", None))

    def _loader(self, stream: _Stream) -> _EpochLoader:
        workers = int(self.cfg.workers)
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
        per_rank = math.ceil(int(self.cfg.samples_per_epoch) / (kw["world"] * kw["batch_size"]))
        stream = TrainStream(urls, batches_per_rank=per_rank,
                             shuffle_buffer=max(1, int(self.cfg.shuffle_buffer)),
                             seed=int(self.cfg.seed), **kw)
        return self._loader(stream)

    def val_dataloader(self) -> DataLoader | list:
        if not self.cfg.val_shards or int(self.cfg.val_samples) < 1:
            return []
        urls = expand_shards(self.cfg.val_shards, "data.val_shards")
        available = count_samples(urls)
        if available == 0:
            raise ValueError(f"data.val_shards: no readable sample in {self.cfg.val_shards}")
        n = min(int(self.cfg.val_samples), available)
        return self._loader(ValStream(urls, n_samples=n, **self._stream_kw()))


# --------------------------------------------------------------------------- throughput


def datamodule_throughput(shards: str, *, kernel_size: int = 33, crop_size: int = 256,
                          n_samples: int = 64, batch_size: int = 4, warmup: int = 4
                          ) -> dict[str, float]:
    """Throughput of one process on one thread, no loader workers: read, decode the PNGs,
    crop, ``gt_field``, weights, collate (for ``bench/``).

    Returns ``samples_per_s`` (wall clock) and ``samples_per_cpu_s`` (per second of this
    process's CPU time: the per-core figure, unaffected by other load on the machine).
    """
    from blurfield.config import DataCfg

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
