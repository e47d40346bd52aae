"""The sample streams behind the DataModule's loaders (docs/design.md §4, §8): reading
shards, decoding, dropping bad samples with counts, splitting the data between ranks and
loader workers.

:class:`TrainStream` is endless and reseeded at every epoch; :class:`ValStream` is the
fixed set of the first ``n`` samples, centre-cropped. Both yield batches of
:func:`blurfield.data.batch.collate`. How the ``S = world_size x workers`` streams share
the shards is described in :mod:`blurfield.data.datamodule`.
"""

from __future__ import annotations

import hashlib
import logging
import math
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor
from torch.utils.data import IterableDataset, get_worker_info

from blurfield.data.batch import collate, crop_window, prepare_sample
from blurfield.data.schema import decode_sample

log = logging.getLogger(__name__)

STAT_NAMES = ("samples", "bad_samples", "shard_errors", "dropped_pairs")
MAX_CONSECUTIVE_DROPS = 1000  # then the stream gives up with an error instead of spinning
# Our streams split the data between workers themselves, so their __len__ is exact.
warnings.filterwarnings("ignore", message="Your `IterableDataset` has `__len__` defined")


def _key_hash(key: str) -> int:
    """A stable hash of a sample key (Python's hash() changes between processes)."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")


def _worker() -> tuple[int, int]:
    info = get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)


class SampleStream(IterableDataset):
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


class TrainStream(SampleStream):
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


class ValStream(SampleStream):
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


__all__ = ["MAX_CONSECUTIVE_DROPS", "STAT_NAMES", "SampleStream", "TrainStream", "ValStream"]
