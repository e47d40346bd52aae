"""The processes that scan inputs and synthesise samples for the shard generator (step 3 of
:mod:`data_prep.shards`): :class:`Runner` maps :func:`scan_one` or :func:`make_one` over
tasks, in spawned worker processes (``shards.workers``) or in this one (0). Each process
holds its config, scene source and kernel source in a module-level state set by
:func:`init_process`."""

from __future__ import annotations

from typing import Any

from blurfield.config import Config, SceneSource, plain
from data_prep.shards.kernel_source import KernelSource
from data_prep.shards.plan import Item

_STATE: dict[str, Any] = {}
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters


def tune_malloc() -> bool:
    """Keep freed memory in this process's heap (glibc ``mallopt``); True if applied.

    The synthesiser allocates and frees tens of MiB of FFT buffers per sample. By default
    glibc serves such blocks with fresh ``mmap`` pages and returns them on ``free``, so every
    sample pays for page faults on zeroed pages (10-35 % of the synthesis CPU time in
    ``bench/shards.py --no-malloc``). Here blocks up to 32 MiB come from the heap, which is
    trimmed only when 256 MiB sit free at its top. Called in worker processes only.
    """
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(M_MMAP_THRESHOLD, 32 << 20)) and bool(mallopt(M_TRIM_THRESHOLD, 256 << 20))


def init_process(cfg: Config, threads: int = 1, worker: bool = False) -> None:
    """Process set-up: one torch thread, the scene source and the kernel source; in a
    worker process also :func:`tune_malloc`."""
    import torch

    from data_prep.scenes import make_source

    if worker:
        tune_malloc()
    torch.set_num_threads(threads)
    _STATE.clear()
    _STATE.update(cfg=cfg, source=make_source(cfg.shards),
                  kernels=KernelSource(cfg.shards, cfg.kernels))


def scan_one(input_id: str) -> tuple[str, str | None, str, str]:
    """(input id, image id or None, reason, detail): loads the scene once to check it."""
    from data_prep.scenes import SceneSkip

    src = _STATE["source"]
    try:
        scene = src.load(input_id)
        return input_id, scene.image_id, "", ""
    except SceneSkip as e:
        return input_id, None, e.reason, e.detail


def make_one(item: Item) -> tuple[int, dict | None, str]:
    """(index, encoded sample or None, failure reason)."""
    from blurfield.data.schema import encode_sample
    from data_prep.scenes import SceneSkip
    from data_prep.synth import make_sample, sample_seed

    sc = _STATE["cfg"].shards
    src = _STATE["source"]
    try:
        scene = src.scene(item.scene) if sc.source == SceneSource.builtin else src.load(item.scene)
        sample = make_sample(item.key, scene, _STATE["kernels"], sc,
                             sample_seed(sc.seed, item.index), plain(sc.source))
        return item.index, encode_sample(sample), ""
    except (SceneSkip, OSError, ValueError) as e:
        return item.index, None, f"{type(e).__name__}: {e}"


class Runner:
    """Maps a function over tasks in order, in worker processes or (workers=0) here. Starts
    them on first use (a rerun with every shard complete starts none)."""

    def __init__(self, cfg: Config, workers: int):
        self.cfg, self.workers, self.pool, self.started = cfg, workers, None, False
        self.threads = 0

    def _start(self) -> None:
        import torch

        self.threads, self.started = torch.get_num_threads(), True
        if self.workers > 0:
            import multiprocessing as mp

            self.pool = mp.get_context("spawn").Pool(self.workers, init_process,
                                                        (self.cfg, 1, True))
        else:  # one thread here too: small FFTs run 10-100x slower on busy shared cores
            init_process(self.cfg, threads=1)

    def map(self, fn: Any, tasks: list, chunksize: int = 1):
        if not tasks:
            return iter(())
        if not self.started:
            self._start()
        if self.pool is None:
            return map(fn, tasks)
        return self.pool.imap(fn, tasks, chunksize=chunksize)

    def close(self, ok: bool) -> None:
        if not self.started:
            return
        import torch

        if self.pool is not None:
            (self.pool.close if ok else self.pool.terminate)()
            self.pool.join()
        torch.set_num_threads(self.threads)
        _STATE.clear()


__all__ = ["Runner", "init_process", "make_one", "scan_one", "tune_malloc"]
