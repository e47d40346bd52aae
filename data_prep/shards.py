"""``python -m data_prep shards``: synthetic training shards (DESIGN §2, §8), resumable.

    python -m data_prep shards [--config FILE] [shards.key=value ...]
    make shards CONFIG=conf/shards/ade20k.yaml ARGS="shards.root=/data/ADE20K_2021_17_01"

Steps:

1. **Scan** (ade20k, folder): every input is decoded once; unreadable, unsuitable or too
   small inputs are skipped with a reason. The result is kept in ``out_dir/plan.json`` so a
   rerun does not scan again. ``builtin`` needs no scan (scene i = dead-leaves scene i).
2. **Plan**: sample ``i`` gets a scene (builtin: scene i; otherwise the eligible scenes in a
   seeded order, cycled), a split (``val`` when ``blake2b(image_id)`` as a fraction of 2^64
   is below ``val_fraction``: a source image never lands in both splits) and a shard: the
   p-th sample of a split goes to ``<split>-{p // shard_size:06d}.tar``. Sample i's content
   depends only on (config, seed, i): its generator is ``default_rng(sample_seed(seed, i))``.
3. **Write**: worker processes (``workers``; 0 = in this process) synthesise and PNG-encode
   samples; this process writes each shard in sample order under ``.<name>.tmp`` and renames
   it when complete. Members carry a fixed mtime, so the same config gives byte-identical
   shards whatever ``workers`` is. A rerun keeps every complete shard and rebuilds the rest:
   no sample is duplicated or lost. A rerun with another config into the same ``out_dir`` is
   refused.
4. ``manifest.json``: counts, config, schema version, kernel source, skipped inputs with
   reasons, samples that failed, the shard list and brace patterns for ``data.*_shards``.

Kernels come from a bank (``shards.kernel_bank``) or are generated on the fly from the
``kernels`` section (default; nothing on disk needed): ids are drawn from
``[0, kernel_pool)`` and id i is the kernel that a bank made with that section holds at i.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

HELP = "build synthetic training shards (scenes x camera-shake kernels) in shards.out_dir"
ALIASES = {
    "--source": "shards.source",
    "--root": "shards.root",
    "--out": "shards.out_dir",
    "--num-samples": "shards.num_samples",
    "--seed": "shards.seed",
    "--workers": "shards.workers",
}
MTIME = 946684800  # 2000-01-01: every tar member's mtime (byte-identical reruns)
PLAN_FILE = "plan.json"
FAILED_FILE = "failed.json"
MANIFEST = "manifest.json"
NOT_CONTENT = ("workers", "progress", "out_dir")  # shards keys that do not change the bytes
KERNEL_NOT_CONTENT = ("out_dir", "batch_size", "sheet", "chunk_size")


# --------------------------------------------------------------------------- kernels


class KernelSource:
    """Kernels by id: from a bank on disk or generated on the fly (``pool``: id range)."""

    def __init__(self, sc: Any, kc: Any):
        from data_prep.kernels.bank import KernelBank, check_cfg

        self.bank = None
        if sc.kernel_bank:
            self.bank = KernelBank(sc.kernel_bank)
            if self.bank.kernel_size != sc.kernel_size:
                raise ValueError(f"shards.kernel_bank={sc.kernel_bank} holds "
                                 f"{self.bank.kernel_size} px kernels but shards.kernel_size "
                                 f"is {sc.kernel_size}")
            size = len(self.bank)
        else:
            self.kc = OmegaConf.create(OmegaConf.to_container(OmegaConf.create(kc)))
            self.kc.kernel_size = int(sc.kernel_size)
            check_cfg(self.kc)
            size = int(self.kc.count)
        self.pool = int(sc.kernel_pool) or size
        if self.bank is not None and self.pool > size:
            raise ValueError(f"shards.kernel_pool={self.pool} exceeds the bank's {size} kernels")

    def get(self, ids: np.ndarray) -> np.ndarray:
        """(J,) ids -> (J, K, K) float32 correlation kernels."""
        if self.bank is not None:
            return self.bank[np.asarray(ids)]
        from data_prep.kernels.bank import generate

        return generate(self.kc, int(self.kc.seed), np.asarray(ids))[0]

    def describe(self) -> dict[str, Any]:
        if self.bank is not None:
            m = self.bank.meta
            return {"bank": str(self.bank.path), "generator": m.get("generator"),
                    "seed": m.get("seed"), "count": len(self.bank), "pool": self.pool,
                    "config": m.get("config")}
        c = {k: v for k, v in OmegaConf.to_container(self.kc).items()
             if k not in KERNEL_NOT_CONTENT}
        return {"bank": None, "generator": self.kc.generator, "seed": int(self.kc.seed),
                "pool": self.pool, "config": c}


# --------------------------------------------------------------------------- plan


@dataclass
class Item:
    """One planned sample."""

    index: int
    key: str
    split: str
    shard: int
    scene: Any  # builtin: scene index; otherwise the input id
    image_id: str


def shard_name(split: str, shard: int) -> str:
    return f"{split}-{shard:06d}.tar"


def split_of(image_id: str, val_fraction: float) -> str:
    """"val" when blake2b(image_id) / 2^64 < val_fraction, else "train" (stable per image)."""
    h = int.from_bytes(hashlib.blake2b(image_id.encode(), digest_size=8).digest(), "big")
    return "val" if h / 2.0**64 < val_fraction else "train"


def make_plan(sc: Any, scenes: list[tuple[Any, str]] | None, image_id_of: Any = None
              ) -> list[Item]:
    """The sample -> (scene, split, shard) assignment, fixed before anything is written.

    ``scenes``: eligible (input id, image id) pairs of a finite source, or None for builtin
    (then ``image_id_of(i)`` names scene i).
    """
    n = int(sc.num_samples)
    if scenes is not None:
        if not scenes:
            raise ValueError("no usable scene: every input was skipped (see the reasons above)")
        order = np.random.default_rng([int(sc.seed), 1]).permutation(len(scenes))
    counts = {"train": 0, "val": 0}
    items = []
    for i in range(n):
        if scenes is None:
            ref, iid = i, image_id_of(i)
        else:
            ref, iid = scenes[order[i % len(scenes)]]
        split = split_of(iid, float(sc.val_fraction))
        p = counts[split]
        counts[split] += 1
        items.append(Item(i, f"{i:08d}", split, p // int(sc.shard_size), ref, iid))
    return items


# --------------------------------------------------------------------------- workers

_STATE: dict[str, Any] = {}


def _init(cfg: dict, threads: int = 1) -> None:
    """Worker set-up: one torch thread, the scene source and the kernel source."""
    import torch

    from data_prep.scenes import make_source

    torch.set_num_threads(threads)
    c = OmegaConf.create(cfg)
    _STATE.clear()
    _STATE.update(cfg=c, source=make_source(c.shards), kernels=KernelSource(c.shards, c.kernels))


def _scan_one(input_id: str) -> tuple[str, str | None, str, str]:
    """(input id, image id or None, reason, detail): loads the scene once to check it."""
    from data_prep.scenes import SceneSkip

    src = _STATE["source"]
    try:
        scene = src.load(input_id)
        return input_id, scene.image_id, "", ""
    except SceneSkip as e:
        return input_id, None, e.reason, e.detail


def _make_one(item: Item) -> tuple[int, dict | None, str]:
    """(index, encoded sample or None, failure reason)."""
    from blurfield.data.schema import encode_sample
    from data_prep.scenes import SceneSkip
    from data_prep.synth import make_sample, sample_seed

    sc = _STATE["cfg"].shards
    src = _STATE["source"]
    try:
        scene = src.scene(item.scene) if sc.source == "builtin" else src.load(item.scene)
        sample = make_sample(item.key, scene, _STATE["kernels"], sc,
                             sample_seed(int(sc.seed), item.index), str(sc.source))
        return item.index, encode_sample(sample), ""
    except (SceneSkip, OSError, ValueError) as e:
        return item.index, None, f"{type(e).__name__}: {e}"


class _Runner:
    """Maps a function over tasks in order, in worker processes or (workers=0) here. Starts
    them on first use (a rerun with every shard complete starts none)."""

    def __init__(self, cfg: dict, workers: int):
        self.cfg, self.workers, self.pool, self.started = cfg, workers, None, False
        self.threads = 0

    def _start(self) -> None:
        import torch

        self.threads, self.started = torch.get_num_threads(), True
        if self.workers > 0:
            import multiprocessing as mp

            self.pool = mp.get_context("spawn").Pool(self.workers, _init, (self.cfg,))
        else:  # one thread here too: small FFTs run 10-100x slower on busy shared cores
            _init(self.cfg, threads=1)

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


# --------------------------------------------------------------------------- files


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


class TarShard:
    """A shard written under ``.<name>.tmp`` and renamed to ``<name>`` by :meth:`finish`."""

    def __init__(self, out: Path, name: str):
        self.final = out / name
        self.tmp = out / f".{name}.tmp"
        self.fh = open(self.tmp, "wb")
        self.tar = tarfile.TarFile(fileobj=self.fh, mode="w", format=tarfile.USTAR_FORMAT)

    def add(self, encoded: dict[str, Any]) -> None:
        key = encoded["__key__"]
        for member in sorted(k for k in encoded if not k.startswith("__")):
            data = encoded[member]
            info = tarfile.TarInfo(f"{key}.{member}")
            info.size, info.mtime, info.mode = len(data), MTIME, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            self.tar.addfile(info, io.BytesIO(data))

    def finish(self) -> None:
        self.tar.close()
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        os.replace(self.tmp, self.final)


def fingerprint(cfg: DictConfig, kernels: dict) -> tuple[str, dict]:
    """A hash of everything that changes the shards' bytes, and that content."""
    from blurfield.data.schema import SCHEMA_VERSION

    sc = {k: v for k, v in OmegaConf.to_container(cfg.shards, resolve=True).items()
          if k not in NOT_CONTENT + ("kernel_bank",)}
    ks = {k: v for k, v in kernels.items() if k != "bank"}  # a moved bank is the same bank
    content = {"schema": SCHEMA_VERSION, "shards": sc, "kernels": ks}
    h = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]
    return h, content


# --------------------------------------------------------------------------- run


def check_cfg(sc: Any) -> None:
    """ValueError naming the key for a ``shards`` section that cannot work."""
    if sc.source not in ("builtin", "ade20k", "folder"):
        raise ValueError(f"shards.source must be builtin, ade20k or folder, got {sc.source!r}")
    for key in ("num_samples", "shard_size", "crop_size"):
        if int(sc[key]) < 1:
            raise ValueError(f"shards.{key} must be >= 1, got {sc[key]}")
    if sc.workers < 0:
        raise ValueError(f"shards.workers must be >= 0 (0 = no worker processes), got "
                         f"{sc.workers}")
    if not 0.0 <= sc.val_fraction <= 1.0:
        raise ValueError(f"shards.val_fraction must be in [0, 1], got {sc.val_fraction}")
    if sc.kernel_size < 3 or sc.kernel_size % 2 == 0:
        raise ValueError(f"shards.kernel_size must be odd and >= 3, got {sc.kernel_size}")
    if not 0 < sc.brightness_min <= sc.brightness_max:
        raise ValueError(f"shards.brightness_min/max must satisfy 0 < min <= max, got "
                         f"{sc.brightness_min}, {sc.brightness_max}")
    if not 0 <= sc.max_objects <= 254:
        raise ValueError(f"shards.max_objects must be in [0, 254], got {sc.max_objects}")
    if sc.gamma <= 0:
        raise ValueError(f"shards.gamma must be > 0, got {sc.gamma}")
    for k in ("noise_poisson", "noise_gauss"):
        lo, hi = sc[k + "_min"], sc[k + "_max"]
        if not 0 <= lo <= hi:
            raise ValueError(f"shards.{k}_min/max must satisfy 0 <= min <= max, got {lo}, {hi}")


def _load_plan_file(out: Path, fp: str, content: dict) -> dict | None:
    """The cached scan of a previous run with the same fingerprint; refuses to mix configs."""
    f = out / PLAN_FILE
    shards = sorted(p.name for p in out.glob("*.tar"))
    if not f.exists():
        if shards:
            raise ValueError(f"{out} holds shards ({shards[0]}, ...) but no {PLAN_FILE}: "
                             "choose another shards.out_dir or empty that folder")
        return None
    old = json.loads(f.read_text())
    if old.get("fingerprint") == fp:
        return old
    if shards:
        raise ValueError(f"{out} holds shards made with another config ({_diff(old, content)} "
                         "differs); choose another shards.out_dir or empty that folder")
    return None


def _diff(old: dict, new: dict) -> str:
    """The first differing key between two fingerprint contents, as ``section.key``."""
    a = old.get("content", {})
    for sec in ("schema", "shards", "kernels"):
        x, y = a.get(sec), new.get(sec)
        if isinstance(x, dict) and isinstance(y, dict):
            for k in sorted(set(x) | set(y)):
                if x.get(k) != y.get(k):
                    return f"{sec}.{k}"
        elif x != y:
            return sec
    return "plan.json"


def scan(runner: _Runner, source: Any, progress: bool) -> tuple[list, list]:
    """Eligible (input id, image id) pairs and skipped [input id, reason, detail] lists."""
    from tqdm import tqdm

    inputs = source.inputs()
    eligible, skipped = [], []
    for input_id, image_id, reason, detail in tqdm(
            runner.map(_scan_one, inputs, chunksize=4), total=len(inputs), unit="image",
            desc="scan", disable=not progress):
        if image_id is None:
            skipped.append([input_id, reason, detail])
        else:
            eligible.append([input_id, image_id])
    return eligible, skipped


def build(cfg: DictConfig, progress: bool = True) -> dict:
    """Build (or finish) the shards of ``cfg`` in ``cfg.shards.out_dir``; returns the manifest.

    Raises ValueError with a one-line message on a bad config, root or out_dir.
    """
    from tqdm import tqdm

    from data_prep.scenes import make_source

    sc = cfg.shards
    check_cfg(sc)
    source = make_source(sc)  # checks the root / layout before anything is written
    kernels = KernelSource(sc, cfg.kernels)
    fp, content = fingerprint(cfg, kernels.describe())
    out = Path(sc.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cached = _load_plan_file(out, fp, content)
    plain = OmegaConf.to_container(cfg, resolve=True)
    runner = _Runner(plain, int(sc.workers))
    ok = False
    try:
        if sc.source == "builtin":
            eligible, skipped, scenes = None, [], None
        elif cached is not None:
            eligible, skipped = cached["eligible"], cached["skipped"]
            scenes = [tuple(e) for e in eligible]
        else:
            eligible, skipped = scan(runner, source, progress)
            scenes = [tuple(e) for e in eligible]
        _write_json(out / PLAN_FILE, {"fingerprint": fp, "content": content,
                                      "eligible": eligible, "skipped": skipped})
        items = make_plan(sc, scenes, getattr(source, "image_id", None))
        shards: dict[tuple[str, int], list[Item]] = {}
        for it in items:
            shards.setdefault((it.split, it.shard), []).append(it)
        done = {k for k in shards if (out / shard_name(*k)).exists()}
        failed = _load_failed(out, {it.key for k in done for it in shards[k]})
        todo = [it for it in items if (it.split, it.shard) not in done]
        _write_samples(runner, out, todo, shards, failed, progress, tqdm)
        ok = True
    finally:
        runner.close(ok)
    manifest = _manifest(cfg, fp, content, kernels, shards, failed, skipped, eligible, out)
    _write_json(out / MANIFEST, manifest)
    return manifest


def _load_failed(out: Path, keep_keys: set[str]) -> dict[str, dict]:
    f = out / FAILED_FILE
    old = json.loads(f.read_text()) if f.exists() else {}
    return {k: v for k, v in old.items() if k in keep_keys}


def _write_samples(runner, out, todo, shards, failed, progress, tqdm) -> None:
    left = {k: len(v) for k, v in shards.items()}
    open_: dict[tuple[str, int], TarShard] = {}
    try:
        bar = tqdm(total=len(todo), unit="sample", desc="shards", disable=not progress)
        by_index = {it.index: it for it in todo}
        for index, encoded, reason in runner.map(_make_one, todo, chunksize=2):
            it = by_index[index]
            k = (it.split, it.shard)
            if k not in open_:
                open_[k] = TarShard(out, shard_name(*k))
            if encoded is None:
                failed[it.key] = {"image_id": it.image_id, "reason": reason}
                _write_json(out / FAILED_FILE, failed)
            else:
                open_[k].add(encoded)
            left[k] -= 1
            if left[k] == 0:
                open_.pop(k).finish()
            bar.update(1)
        bar.close()
    finally:
        for s in open_.values():  # interrupted: leave the temp file, a rerun rebuilds it
            s.fh.close()
    _write_json(out / FAILED_FILE, failed)


def _pattern(out: Path, split: str, n: int) -> str | None:
    if n == 0:
        return None
    if n == 1:
        return str(out / shard_name(split, 0))
    return str(out / f"{split}-{{000000..{n - 1:06d}}}.tar")


def _manifest(cfg, fp, content, kernels, shards, failed, skipped, eligible, out) -> dict:
    from blurfield.data.schema import SCHEMA_VERSION

    rows, counts = [], {"train": 0, "val": 0}
    for (split, shard), its in sorted(shards.items()):
        n = sum(1 for it in its if it.key not in failed)
        counts[split] += n
        rows.append({"name": shard_name(split, shard), "split": split, "samples": n,
                     "keys": [its[0].key, its[-1].key]})
    reasons: dict[str, int] = {}
    for _, reason, _ in skipped:
        reasons[reason] = reasons.get(reason, 0) + 1
    nshards = {s: sum(1 for r in rows if r["split"] == s) for s in ("train", "val")}
    return {
        "schema_version": SCHEMA_VERSION,
        "fingerprint": fp,
        "source": cfg.shards.source,
        "counts": {"requested": int(cfg.shards.num_samples), "train": counts["train"],
                   "val": counts["val"], "total": counts["train"] + counts["val"],
                   "failed": len(failed), "skipped_inputs": len(skipped),
                   "scenes": len(eligible) if eligible is not None else None},
        "shards": rows,
        "patterns": {s: _pattern(out, s, nshards[s]) for s in ("train", "val")},
        "skipped": {"by_reason": reasons,
                    "inputs": [{"input": i, "reason": r, "detail": d} for i, r, d in skipped]},
        "failed": [{"key": k, **v} for k, v in sorted(failed.items())],
        "kernels": kernels.describe(),
        "config": OmegaConf.to_container(cfg.shards, resolve=True),
        "content": content,
    }


def run(cfg: DictConfig, args: argparse.Namespace) -> int:
    from blurfield.cli import UserError

    if getattr(args, "inputs", None):
        raise UserError(f"unexpected argument '{args.inputs[0]}' (expected shards.key=value)")
    progress = bool(cfg.shards.progress) and not getattr(args, "quiet", False)
    try:
        m = build(cfg, progress=progress)
    except ValueError as e:
        raise UserError(str(e)) from None
    c = m["counts"]
    ns = {s: sum(1 for r in m["shards"] if r["split"] == s) for s in ("train", "val")}
    print(f"{c['total']} samples in {cfg.shards.out_dir}: {c['train']} train in {ns['train']} "
          f"shard(s), {c['val']} val in {ns['val']} shard(s); {c['skipped_inputs']} input(s) "
          f"skipped, {c['failed']} failed; see manifest.json")
    for s in ("train", "val"):
        if m["patterns"][s]:
            print(f"  data.{s}_shards={m['patterns'][s]}")
    return 0


__all__ = ["build", "make_plan", "split_of", "shard_name", "KernelSource", "TarShard", "run"]
