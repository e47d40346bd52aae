"""The photos of one ``estimate`` or ``deblur`` run: in this process, or in worker processes.

``restore.workers`` (auto | N) says how many photos run at once, each in its own process
with ``max(1, threads // N)`` torch threads, ``threads`` being ``restore.threads``; auto is
one process for one photo (or on a CUDA device) and ``min(photos, threads)`` otherwise, i.e.
one thread each. On a CPU, photos side by side at one thread each use the cores better than
one photo at a time on several threads (OpenMP threads wait on each other, and much more so
while another job shares the machine; README, Speed).

Workers are started with ``spawn`` (forking a process whose torch threads have started is
unsafe), each loads the model once (:meth:`PhotoJob.prepare`) and restores photos with its
progress bars off; what a photo prints (the no-harm decision line on stdout, notes on
stderr) is kept and printed by this process in the photos' input order, so a run's output
and files are those of a run in one process. A photo that fails gets one line naming it on
stderr and the others go on; a :class:`~blurfield.errors.UserError` (e.g. missing weights)
stops the run; Ctrl-C ends the workers.
"""

from __future__ import annotations

import io
import os
import signal
import sys
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from blurfield.errors import UserError


class PhotoJob(Protocol):
    """What a command does to each photo. It travels to the workers by pickling, before
    :meth:`prepare` is called there."""

    command: str

    def prepare(self) -> None:
        """Load what every photo needs (the model): once per process, before its first
        photo. A :class:`UserError` stops the run."""

    def run(self, path: Path, progress: bool) -> None:
        """Process one photo: write its files, print its lines (``tqdm.write``); raise
        ``ValueError``/``OSError`` for a photo that cannot be processed. ``progress``: show
        progress bars (off in workers)."""


@dataclass
class Outcome:
    """What became of one photo.

    index: its place among the photos given; path: as given.
    lines: in worker processes, what it printed, ``("out" | "err", text)`` in order (printed
    by :func:`run_photos`); empty when it ran in this process (printed as it went).
    error: the line reported when it failed (naming the photo), else None.
    fatal: the error was a :class:`UserError` (the run stops).
    pid: the process it ran in; threads: ``torch.get_num_threads()`` there; seconds: wall time.
    """

    index: int
    path: str
    lines: list[tuple[str, str]] = field(default_factory=list)
    error: str | None = None
    fatal: bool = False
    pid: int = 0
    threads: int = 0
    seconds: float = 0.0


def plan_workers(workers: Any, photos: int, threads: int, gpu: bool = False) -> tuple[int, int]:
    """``(processes, torch threads each)`` for ``photos`` photos given ``threads`` torch
    threads in all (:func:`blurfield.api.resolve_threads`).

    ``workers``: "auto"/None: one process with every thread for one photo or on a GPU
    (``gpu``), else ``min(photos, threads)`` processes; a whole number N >= 1: ``min(N,
    photos)`` processes. Each gets ``max(1, threads // processes)`` threads.
    ValueError for anything else.
    """
    from blurfield.api import count_or_auto

    n = count_or_auto(workers, "workers")
    n = max(1, (1 if gpu else min(photos, threads)) if n is None else min(n, photos))
    return n, max(1, threads // n)


def plan(rc: Any, photos: int, threads: int) -> tuple[int, int]:
    """:func:`plan_workers` from the restore section (``restore.workers``, ``restore.device``)
    for ``photos`` photos and ``threads`` threads in all; a bad value is a :class:`UserError`."""
    from blurfield.api import resolve_device

    try:
        gpu = resolve_device(rc.get("device", "auto")).type != "cpu"
        return plan_workers(rc.get("workers", "auto"), photos, threads, gpu=gpu)
    except ValueError as e:
        raise UserError(f"restore.{e}" if str(e).startswith("workers") else str(e)) from None


def failure_line(path: str, err: BaseException) -> str:
    """The first line of ``err``, naming ``path`` (and the error's type unless it is a
    ``ValueError``/``OSError``/``UserError``, the expected ones)."""
    msg = str(err).splitlines()[0] if str(err).strip() else type(err).__name__
    if not isinstance(err, ValueError | OSError | UserError) and str(err).strip():
        msg = f"{type(err).__name__}: {msg}"
    return msg if path in msg else f"{path}: {msg}"


def _attempt(job: PhotoJob, index: int, path: str, progress: bool) -> Outcome:
    """Run one photo; an expected or unexpected failure becomes ``Outcome.error``, a
    :class:`UserError` propagates."""
    import torch

    t0 = time.perf_counter()
    out = Outcome(index, path, pid=os.getpid(), threads=torch.get_num_threads())
    try:
        job.run(Path(path), progress)
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - one photo's failure must not stop the others
        out.error = failure_line(path, e)
    out.seconds = time.perf_counter() - t0
    return out


def _emit(command: str, outcome: Outcome) -> None:
    """Print what a photo printed in a worker, then its error line."""
    from tqdm import tqdm

    for stream, text in outcome.lines:
        tqdm.write(text, file=sys.stdout if stream == "out" else sys.stderr)
    if outcome.error is not None:
        tqdm.write(f"blurfield {command}: {outcome.error}", file=sys.stderr)


def run_photos(job: PhotoJob, photos: Sequence[Path | str], workers: int = 1,
               threads: int = 1) -> list[Outcome]:
    """Run ``job`` on every photo: in this process when ``workers`` is 1 (torch threads as
    they are), else in ``workers`` spawned processes at ``threads`` torch threads each.

    Each photo's lines and error line are printed in input order, under a bar counting the
    photos. Returns one :class:`Outcome` per photo, in input order. Raises the
    :class:`UserError` of the first photo that hit one (the run stops).
    """
    paths = [str(p) for p in photos]
    if workers <= 1:
        return _run_here(job, paths)
    return _run_pool(job, paths, workers, threads)


def exit_code(outcomes: Sequence[Outcome]) -> int:
    """1 if any photo failed, else 0."""
    return 1 if any(o.error is not None for o in outcomes) else 0


def _run_here(job: PhotoJob, paths: list[str]) -> list[Outcome]:
    from tqdm import tqdm

    job.prepare()
    outcomes = []
    for i, path in enumerate(tqdm(paths, desc=job.command, unit="photo", disable=None)):
        outcome = _attempt(job, i, path, progress=True)
        _emit(job.command, outcome)
        outcomes.append(outcome)
    return outcomes


# --------------------------------------------------------------------------- worker side

_JOB: PhotoJob | None = None
_PREPARED = False


def _init_worker(job: PhotoJob, threads: int) -> None:
    """Worker start: Ctrl-C is the parent's to handle (it ends the workers); torch threads."""
    import torch

    global _JOB, _PREPARED
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)
    _JOB, _PREPARED = job, False


class _Tagged(io.TextIOBase):
    """A text stream appending what is written to ``lines`` as ``(tag, text)`` lines."""

    def __init__(self, tag: str, lines: list[tuple[str, str]]) -> None:
        self.tag, self.lines, self.pending = tag, lines, ""

    def write(self, s: str) -> int:
        self.pending += s
        *done, self.pending = self.pending.split("\n")
        self.lines.extend((self.tag, line) for line in done)
        return len(s)

    def isatty(self) -> bool:
        return False

    def flush(self) -> None:
        if self.pending:
            self.lines.append((self.tag, self.pending))
            self.pending = ""


def _work(index: int, path: str) -> Outcome:
    """One photo in a worker, what it prints kept in the outcome."""
    global _PREPARED
    assert _JOB is not None, "worker not initialised"
    lines: list[tuple[str, str]] = []
    out, err = _Tagged("out", lines), _Tagged("err", lines)
    try:
        with redirect_stdout(out), redirect_stderr(err):
            if not _PREPARED:
                _JOB.prepare()
                _PREPARED = True
            outcome = _attempt(_JOB, index, path, progress=False)
    except UserError as e:
        outcome = Outcome(index, path, error=str(e), fatal=True, pid=os.getpid())
    out.flush()
    err.flush()
    outcome.lines = lines
    return outcome


# --------------------------------------------------------------------------- parent side


def _run_pool(job: PhotoJob, paths: list[str], workers: int, threads: int) -> list[Outcome]:
    import multiprocessing

    from tqdm import tqdm

    outcomes: list[Outcome | None] = [None] * len(paths)
    shown = 0
    bar = tqdm(total=len(paths), desc=f"{job.command} ({workers} workers x {threads} threads)",
               unit="photo", disable=None)
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker, initargs=(job, threads))
    try:
        pending: dict[Future, int] = {pool.submit(_work, i, p): i for i, p in enumerate(paths)}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                i = pending.pop(fut)
                try:
                    outcome = fut.result()
                except Exception as e:  # noqa: BLE001 - a worker died (killed, out of memory)
                    why = str(e) or type(e).__name__
                    outcome = Outcome(i, paths[i],
                                      error=f"{paths[i]}: its worker process failed ({why})")
                if outcome.fatal:
                    raise UserError(outcome.error)
                outcomes[i] = outcome
                bar.update()
            while shown < len(paths) and outcomes[shown] is not None:
                _emit(job.command, outcomes[shown])
                shown += 1
    except BaseException:
        _stop(pool)
        raise
    finally:
        bar.close()
    pool.shutdown(wait=True)
    return [o for o in outcomes if o is not None]


def _stop(pool: ProcessPoolExecutor) -> None:
    """End the workers now (Ctrl-C or a fatal error): queued photos are dropped and the
    running ones terminated."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(timeout=5)
