"""A bank of camera-shake kernels on disk: generation by index, the chunked writer, the reader.

Layout of ``out_dir`` (schema ``SCHEMA``)::

    bank.json            generator, count, kernel_size, chunk_size, seed, the kernels config,
                         orientation "correlation", param units, complete
    kernels_00000.npy    (n, K, K) float32 correlation kernels, n = chunk_size but the last
    params_00000.npy     (n,) structured array, one record per kernel (``param_dtype``)
    sheet.png            64 kernels drawn as PSFs;  hist.png  path length and extent

Kernel ``i`` is ``generate(cfg, cfg.seed, [i])`` and lives in chunk ``i // chunk_size``. A
chunk is written to temporary names and renamed when complete, so a rerun skips it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from blurfield.config import Generator, KernelFit, plain
from blurfield.fileio import AtomicFile, temp_files, write_atomic, write_text_atomic

from . import boracchi, mix, render, tremor

SCHEMA = 1
GENERATORS = {Generator.tremor: tremor, Generator.boracchi: boracchi, Generator.mix: mix}
COMMON = {  # per-kernel fields every generator records (render.draw_fitted)
    "index": ("<i8", "1"), "attempts": ("<i4", "draws used; 1 = first draw fitted"),
    "scale": ("<f8", "shrink factor; 1 = not shrunk"), "path_length": ("<f8", "px"),
    "max_step": ("<f8", "px"), "n_samples": ("<i4", "1"), "bbox_w": ("<i2", "px"),
    "bbox_h": ("<i2", "px"), "extent": ("<i2", "px, max(bbox_w, bbox_h), pixels > 1% of max"),
}
# what may differ between a bank on disk and the config that resumes it
NOT_OUTPUT = ("count", "out_dir", "batch_size", "sheet")


def generator_module(name: str | Generator) -> Any:
    """The module of a generator named by a :class:`Generator` or its value; ValueError
    naming the allowed ones otherwise."""
    return GENERATORS[Generator.parse(name, "kernels.generator")]


def param_dtype(generator: str) -> np.dtype:
    """The structured dtype of a bank's per-kernel records."""
    mod = generator_module(generator)
    fields = [(k, t) for k, (t, _) in COMMON.items()]
    return np.dtype(fields + [(k, "<f8") for k in mod.PARAM_UNITS])


def param_units(generator: str) -> dict[str, str]:
    return {**{k: u for k, (_, u) in COMMON.items()}, **generator_module(generator).PARAM_UNITS}


def check_cfg(cfg: Any) -> None:
    """ValueError naming the key, for a kernels config that cannot make a bank."""
    generator_module(cfg.generator)
    if cfg.kernel_size < 3 or cfg.kernel_size % 2 == 0:
        raise ValueError(f"kernels.kernel_size must be odd and >= 3, got {cfg.kernel_size}")
    for key in ("count", "chunk_size", "batch_size", "max_tries"):
        if getattr(cfg, key) < 1:
            raise ValueError(f"kernels.{key} must be >= 1, got {getattr(cfg, key)}")
    KernelFit.parse(cfg.fit, "kernels.fit")
    if not 0 <= cfg.margin < cfg.kernel_size // 2:
        raise ValueError(f"kernels.margin must be in [0, {cfg.kernel_size // 2}), got {cfg.margin}")


def generate(cfg: Any, seed: int, indices: Any) -> tuple[np.ndarray, np.ndarray]:
    """Kernels ``indices`` of the bank ``(cfg, seed)``: correlation kernels and records.

    ``cfg`` is the ``kernels`` config section. Returns ``(n, K, K)`` float32 kernels in
    **correlation** orientation (the PSFs of ``tremor.psfs`` / ``boracchi.psfs`` flipped
    here, once), each >= 0 and summing to 1, centroid at ``(K//2, K//2)``, and an ``(n,)``
    structured array (:func:`param_dtype`). Kernel ``i`` depends on ``(cfg, seed, i)`` only,
    not on which other indices are generated with it.
    """
    idx = np.atleast_1d(np.asarray(indices, dtype=np.int64))
    psf, prm = generator_module(cfg.generator).psfs(cfg, seed, idx)
    rec = np.zeros(len(idx), param_dtype(cfg.generator))
    rec["index"] = idx
    for k in rec.dtype.names[1:]:
        rec[k] = prm[k]
    return render.psf_to_correlation(psf), rec


def _meta(cfg: Any, complete: bool) -> dict:
    c = plain(cfg)
    return {
        "schema": SCHEMA, "generator": c["generator"], "count": cfg.count,
        "kernel_size": cfg.kernel_size, "chunk_size": cfg.chunk_size,
        "seed": cfg.seed, "dtype": "float32", "orientation": "correlation",
        "files": {"kernels": "kernels_{:05d}.npy", "params": "params_{:05d}.npy"},
        "param_units": param_units(cfg.generator), "config": c, "complete": complete,
    }


def _write_json(path: Path, obj: dict) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2) + "\n")


def _check_resumable(out: Path, meta: dict) -> None:
    """ValueError if ``out`` holds a bank made with another config."""
    f = out / "bank.json"
    if not f.exists():
        return
    old = json.loads(f.read_text())
    a = {k: v for k, v in old.get("config", {}).items() if k not in NOT_OUTPUT}
    b = {k: v for k, v in meta["config"].items() if k not in NOT_OUTPUT}
    if old.get("schema") != SCHEMA or a != b:
        diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k)) or ["schema"]
        raise ValueError(f"{out} holds a kernel bank made with a different config "
                         f"(kernels.{diff[0]} differs); choose another kernels.out_dir "
                         "or delete that folder")


def chunk_done(out: Path, c: int, rows: int, kernel_size: int) -> bool:
    """Whether chunk ``c`` is on disk with ``rows`` kernels."""
    k, p = out / f"kernels_{c:05d}.npy", out / f"params_{c:05d}.npy"
    if not (k.exists() and p.exists()):
        return False
    try:
        km, pm = np.load(k, mmap_mode="r"), np.load(p, mmap_mode="r")
    except (ValueError, OSError):
        return False
    return km.shape == (rows, kernel_size, kernel_size) and pm.shape == (rows,)


def write_bank(cfg: Any, progress: bool = True) -> tuple[Path, int]:
    """Write (or finish) the bank of ``cfg`` (the kernels section) in ``cfg.out_dir``.

    Returns the folder and the number of chunks written now (0 = everything was on disk).
    """
    from tqdm import tqdm

    check_cfg(cfg)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = _meta(cfg, complete=False)
    _check_resumable(out, meta)
    _write_json(out / "bank.json", meta)
    K, cs, n = cfg.kernel_size, cfg.chunk_size, cfg.count
    written = 0
    with tqdm(total=n, unit="kernel", disable=not progress, desc=f"{cfg.generator} bank") as bar:
        for c in range((n + cs - 1) // cs):
            lo, hi = c * cs, min(c * cs + cs, n)
            if chunk_done(out, c, hi - lo, K):
                bar.update(hi - lo)
                continue
            kf, pf = out / f"kernels_{c:05d}.npy", out / f"params_{c:05d}.npy"
            for t in temp_files(kf) + temp_files(pf):  # left by a killed run
                t.unlink(missing_ok=True)
            kfile = AtomicFile(kf)  # the kernels are memory-mapped onto its temp file
            try:
                km = np.lib.format.open_memmap(kfile.tmp, mode="w+", dtype=np.float32,
                                               shape=(hi - lo, K, K))
                rec = np.zeros(hi - lo, param_dtype(cfg.generator))
                for b in range(lo, hi, cfg.batch_size):
                    e = min(b + cfg.batch_size, hi)
                    km[b - lo:e - lo], rec[b - lo:e - lo] = generate(cfg, cfg.seed,
                                                                     np.arange(b, e))
                    bar.update(e - b)
                km.flush()
                del km
                write_atomic(pf, lambda fh, rec=rec: np.save(fh, rec))
            except BaseException:
                kfile.discard()
                raise
            kfile.commit()  # last: chunk_done needs both files
            written += 1
    _write_json(out / "bank.json", _meta(cfg, complete=True))
    if cfg.sheet:
        from .sheet import write_pictures

        write_pictures(KernelBank(out), out)
    return out, written


class KernelBank:
    """Read a bank written by :func:`write_bank`, memory-mapped.

    ``bank[i]`` -> ``(K, K)`` float32 correlation kernel (a copy); ``bank[a:b]`` or an index
    array -> ``(n, K, K)``; ``len(bank)``; ``bank.params`` -> the ``(count,)`` records;
    ``bank.meta`` -> bank.json. Safe to use from forked data-loader workers.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        f = self.path / "bank.json"
        if not f.exists():
            raise ValueError(f"{self.path}: no bank.json; make a bank with "
                             "`python -m data_prep kernels kernels.out_dir=...`")
        self.meta = json.loads(f.read_text())
        if self.meta.get("schema") != SCHEMA:
            raise ValueError(f"{f}: schema {self.meta.get('schema')}, this code reads {SCHEMA}")
        if not self.meta.get("complete"):
            raise ValueError(f"{self.path}: the bank is incomplete; rerun "
                             "`python -m data_prep kernels` with its config to finish it")
        self.count = int(self.meta["count"])
        self.kernel_size = int(self.meta["kernel_size"])
        self.chunk_size = int(self.meta["chunk_size"])
        self.generator = self.meta["generator"]
        self._chunks: dict[int, np.ndarray] = {}
        self._params: np.ndarray | None = None

    def __len__(self) -> int:
        return self.count

    def _chunk(self, c: int) -> np.ndarray:
        if c not in self._chunks:
            self._chunks[c] = np.load(self.path / f"kernels_{c:05d}.npy", mmap_mode="r")
        return self._chunks[c]

    def __getitem__(self, i: Any) -> np.ndarray:
        if isinstance(i, (int, np.integer)):
            j = int(i) + self.count if i < 0 else int(i)
            if not 0 <= j < self.count:
                raise IndexError(f"kernel {i} out of range for a bank of {self.count}")
            return np.array(self._chunk(j // self.chunk_size)[j % self.chunk_size])
        idx = np.arange(self.count)[i]
        out = np.empty((len(idx), self.kernel_size, self.kernel_size), np.float32)
        for n, j in enumerate(idx):
            out[n] = self._chunk(j // self.chunk_size)[j % self.chunk_size]
        return out

    @property
    def params(self) -> np.ndarray:
        """``(count,)`` structured records (``param_dtype``), loaded once."""
        if self._params is None:
            n = (self.count + self.chunk_size - 1) // self.chunk_size
            self._params = np.concatenate(
                [np.load(self.path / f"params_{c:05d}.npy") for c in range(n)])
        return self._params
