"""``python -m data_prep shards``: synthetic training shards (docs/design.md §2, §8), resumable.

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
   samples; this process writes each shard in sample order with
   :class:`blurfield.data.writer.ShardWriter` (a temp file ``.<name>.<random>.tmp``,
   renamed when complete). Members carry a fixed mtime, so the same config gives byte-identical
   shards whatever ``workers`` is. A rerun keeps every complete shard and rebuilds the rest:
   no sample is duplicated or lost. A rerun with another config into the same ``out_dir`` is
   refused. Samples that fail are listed in ``failed/<shard>.json``, written just before
   that shard's rename by the one process that builds it.
4. ``manifest.json``: counts, config, schema version, kernel source, skipped inputs with
   reasons, samples that failed, the shard list and brace patterns for ``data.*_shards``.

Parallel parts (``slurm/shards.sbatch``): ``shards.part=i shards.parts=n`` builds only the
shards numbered s with ``s % n == i`` in each split, from the same plan as a single run
(``plan.json`` is created once, atomically, and compared by every other part; each part
scans the inputs unless it is already there), and writes ``manifest.part-<i>.json``
instead of ``manifest.json``. Once every part has ended, one more run without part/parts
finds every shard complete (or rebuilds one that a failed part left), writes the merged
``manifest.json`` and removes the part manifests. The shards are byte-identical to a
single run's.

Kernels come from a bank (``shards.kernel_bank``) or are generated on the fly from the
``kernels`` section (default; nothing on disk needed): ids are drawn from
``[0, kernel_pool)`` and id i is the kernel that a bank made with that section holds at i.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from blurfield.data.writer import MTIME, ShardWriter
from blurfield.fileio import temp_files, write_text_atomic

HELP = "build synthetic training shards (scenes x camera-shake kernels) in shards.out_dir"
ALIASES = {
    "--source": "shards.source",
    "--root": "shards.root",
    "--out": "shards.out_dir",
    "--num-samples": "shards.num_samples",
    "--seed": "shards.seed",
    "--workers": "shards.workers",
}
PLAN_FILE = "plan.json"
FAILED_DIR = "failed"  # failed/<shard stem>.json: the failed samples of one shard
MANIFEST = "manifest.json"
# shards keys that do not change the bytes
NOT_CONTENT = ("workers", "progress", "out_dir", "part", "parts")
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


def _init(cfg: dict, threads: int = 1, worker: bool = False) -> None:
    """Process set-up: one torch thread, the scene source and the kernel source; in a
    worker process also :func:`tune_malloc`."""
    import torch

    from data_prep.scenes import make_source

    if worker:
        tune_malloc()
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

            self.pool = mp.get_context("spawn").Pool(self.workers, _init,
                                                        (self.cfg, 1, True))
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


def _dumps(obj: Any) -> str:
    return json.dumps(obj, indent=1, sort_keys=True) + "\n"


def _write_json(path: Path, obj: Any) -> None:
    write_text_atomic(path, _dumps(obj))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        raise ValueError(f"{path} is not valid JSON (a run killed while writing it?): delete "
                         "it and rerun") from None


def fingerprint(cfg: DictConfig, kernels: dict) -> tuple[str, dict]:
    """A hash of everything that changes the shards' bytes, and that content."""
    from blurfield.data.schema import SCHEMA_VERSION
    from data_prep.synth import SYNTH_VERSION

    sc = {k: v for k, v in OmegaConf.to_container(cfg.shards, resolve=True).items()
          if k not in NOT_CONTENT + ("kernel_bank",)}
    ks = {k: v for k, v in kernels.items() if k != "bank"}  # a moved bank is the same bank
    content = {"schema": SCHEMA_VERSION, "synth": SYNTH_VERSION, "shards": sc, "kernels": ks}
    h = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]
    return h, content


# --------------------------------------------------------------------------- run


def check_cfg(sc: Any) -> None:
    """ValueError naming the key for a ``shards`` section that cannot work."""
    if sc.source not in ("builtin", "ade20k", "folder"):
        raise ValueError(f"shards.source must be builtin, ade20k or folder, got {sc.source!r}")
    for key in ("num_samples", "shard_size", "crop_size", "parts"):
        if int(sc[key]) < 1:
            raise ValueError(f"shards.{key} must be >= 1, got {sc[key]}")
    if not 0 <= sc.part < sc.parts:
        raise ValueError(f"shards.part must be in [0, shards.parts - 1] = [0, {sc.parts - 1}], "
                         f"got {sc.part}")
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
    old = _read_json(f)
    if old.get("fingerprint") == fp:
        return old
    if shards:
        raise ValueError(f"{out} holds shards made with another config ({_diff(old, content)} "
                         "differs); choose another shards.out_dir or empty that folder")
    return None


def _store_plan(out: Path, plan: dict) -> None:
    """Write ``plan.json`` unless a parallel part already has (create-or-compare).

    The plan is written to a temp file and hard-linked to ``plan.json``, which fails if the
    file exists: the plan on disk is then compared with ours. A stale plan of another config
    (no shards: :func:`_load_plan_file` checked) is replaced; every part of one config
    writes the same plan, so racing replacements agree.
    """
    f = out / PLAN_FILE
    tmp = out / f".{PLAN_FILE}.{os.getpid()}.tmp"
    tmp.write_text(_dumps(plan))
    try:
        try:
            os.link(tmp, f)
            return
        except FileExistsError:
            pass
        old = _read_json(f)
        if old == json.loads(_dumps(plan)):
            return
        if old.get("fingerprint") != plan["fingerprint"]:
            os.replace(tmp, f)
            return
        raise ValueError(f"{f} lists other scenes than this run's scan of shards.root (did "
                         "the folder change while parts ran?): delete it and the shards, "
                         "then rerun every part")
    finally:
        tmp.unlink(missing_ok=True)


def _diff(old: dict, new: dict) -> str:
    """The first differing key between two fingerprint contents, as ``section.key``."""
    a = old.get("content", {})
    for sec in ("schema", "synth", "shards", "kernels"):
        x, y = a.get(sec), new.get(sec)
        if isinstance(x, dict) and isinstance(y, dict):
            for k in sorted(set(x) | set(y)):
                if x.get(k) != y.get(k):
                    return f"{sec}.{k}"
        elif x != y:
            return "synthesiser version" if sec == "synth" else sec
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


def manifest_name(part: int, parts: int) -> str:
    """``manifest.json``, or ``manifest.part-<part>.json`` for one part of several."""
    return MANIFEST if parts == 1 else f"manifest.part-{part}.json"


def build(cfg: DictConfig, progress: bool = True) -> dict:
    """Build (or finish) the shards of ``cfg`` in ``cfg.shards.out_dir``; returns the manifest.

    With ``shards.parts`` = n > 1 only the shards numbered s with s % n == ``shards.part``
    (in each split) are built and the manifest is ``manifest.part-<part>.json``; a later run
    with parts = 1 finds them complete and writes ``manifest.json``.
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
    part, parts = int(sc.part), int(sc.parts)
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
        _store_plan(out, {"fingerprint": fp, "content": content, "eligible": eligible,
                          "skipped": skipped})
        items = make_plan(sc, scenes, getattr(source, "image_id", None))
        shards: dict[tuple[str, int], list[Item]] = {}
        for it in items:
            shards.setdefault((it.split, it.shard), []).append(it)
        mine = sorted(k for k in shards if k[1] % parts == part)
        done = [k for k in mine if (out / shard_name(*k)).exists()]
        failed = _load_failed(out, done)
        todo = [it for k in mine if k not in done for it in shards[k]]
        todo.sort(key=lambda it: it.index)
        _write_samples(runner, out, todo, shards, failed, progress, tqdm)
        ok = True
    finally:
        runner.close(ok)
    manifest = _manifest(cfg, fp, content, kernels, shards, mine, failed, skipped, eligible,
                         out)
    _write_json(out / manifest_name(part, parts), manifest)
    if parts == 1:  # merged: the part manifests are superseded
        for p in out.glob("manifest.part-*.json"):
            p.unlink(missing_ok=True)
    return manifest


def _record(out: Path, shard: str) -> Path:
    return out / FAILED_DIR / f"{Path(shard).stem}.json"


def _load_failed(out: Path, done: list[tuple[str, int]]) -> dict[str, dict]:
    """The failed samples of the complete shards ``done``, from their records."""
    folder = out / FAILED_DIR
    have = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
    failed: dict[str, dict] = {}
    for k in done:
        f = _record(out, shard_name(*k))
        if f.name in have:
            failed.update(_read_json(f))
    return failed


def _write_record(out: Path, shard: str, failed: dict[str, dict]) -> None:
    """The shard's failure record (key -> image_id, reason), or none: written before the
    shard's rename, so a complete shard's record is its builder's (parts never share one)."""
    f = _record(out, shard)
    if failed:
        f.parent.mkdir(exist_ok=True)
        _write_json(f, failed)
    else:
        f.unlink(missing_ok=True)


def _write_samples(runner, out, todo, shards, failed, progress, tqdm) -> None:
    left = {(it.split, it.shard): len(shards[(it.split, it.shard)]) for it in todo}
    open_: dict[tuple[str, int], ShardWriter] = {}
    shard_failed: dict[tuple[str, int], dict[str, dict]] = {}
    try:
        bar = tqdm(total=len(todo), unit="sample", desc="shards", disable=not progress)
        by_index = {it.index: it for it in todo}
        for index, encoded, reason in runner.map(_make_one, todo, chunksize=2):
            it = by_index[index]
            k = (it.split, it.shard)
            if k not in open_:
                open_[k] = _open_shard(out / shard_name(*k))
            if encoded is None:
                rec = {"image_id": it.image_id, "reason": reason}
                shard_failed.setdefault(k, {})[it.key] = rec
                failed[it.key] = rec
            else:
                open_[k].write(encoded)
            left[k] -= 1
            if left[k] == 0:
                _write_record(out, shard_name(*k), shard_failed.pop(k, {}))
                open_.pop(k).close()
            bar.update(1)
        bar.close()
    finally:
        for s in open_.values():  # interrupted: drop the partial shard, a rerun rebuilds it
            s.abort()


def _open_shard(path: Path) -> ShardWriter:
    """The writer of one shard to (re)build, after removing the temp files that a killed
    run left for it (a shard is built by one process: parts never share one)."""
    for t in temp_files(path):
        t.unlink(missing_ok=True)
    return ShardWriter(path)


def _pattern(out: Path, split: str, n: int) -> str | None:
    if n == 0:
        return None
    if n == 1:
        return str(out / shard_name(split, 0))
    return str(out / f"{split}-{{000000..{n - 1:06d}}}.tar")


def _manifest(cfg, fp, content, kernels, shards, listed, failed, skipped, eligible, out
              ) -> dict:
    """The manifest of the ``listed`` shards (every shard of the plan for parts = 1);
    ``patterns`` always name every shard of the plan."""
    from blurfield.data.schema import SCHEMA_VERSION

    rows, counts, planned = [], {"train": 0, "val": 0}, 0
    keys = set()
    for split, shard in listed:
        its = shards[(split, shard)]
        n = sum(1 for it in its if it.key not in failed)
        counts[split] += n
        planned += len(its)
        keys.update(it.key for it in its)
        rows.append({"name": shard_name(split, shard), "split": split, "samples": n,
                     "keys": [its[0].key, its[-1].key]})
    failed = {k: v for k, v in failed.items() if k in keys}
    reasons: dict[str, int] = {}
    for _, reason, _ in skipped:
        reasons[reason] = reasons.get(reason, 0) + 1
    nshards = {s: sum(1 for k in shards if k[0] == s) for s in ("train", "val")}
    sc = cfg.shards
    m = {
        "schema_version": SCHEMA_VERSION,
        "fingerprint": fp,
        "source": sc.source,
        "counts": {"requested": int(sc.num_samples), "planned": planned,
                   "train": counts["train"], "val": counts["val"],
                   "total": counts["train"] + counts["val"],
                   "failed": len(failed), "skipped_inputs": len(skipped),
                   "scenes": len(eligible) if eligible is not None else None},
        "shards": rows,
        "patterns": {s: _pattern(out, s, nshards[s]) for s in ("train", "val")},
        "skipped": {"by_reason": reasons,
                    "inputs": [{"input": i, "reason": r, "detail": d} for i, r, d in skipped]},
        "failed": [{"key": k, **v} for k, v in sorted(failed.items())],
        "kernels": kernels.describe(),
        "config": OmegaConf.to_container(sc, resolve=True),
        "content": content,
    }
    if int(sc.parts) > 1:
        m["part"] = {"index": int(sc.part), "count": int(sc.parts)}
    return m


def run(cfg: DictConfig, args: argparse.Namespace) -> int:
    from blurfield.errors import UserError

    if getattr(args, "inputs", None):
        raise UserError(f"unexpected argument '{args.inputs[0]}' (expected shards.key=value)")
    progress = bool(cfg.shards.progress) and not getattr(args, "quiet", False)
    try:
        m = build(cfg, progress=progress)
    except ValueError as e:
        raise UserError(str(e)) from None
    c = m["counts"]
    ns = {s: sum(1 for r in m["shards"] if r["split"] == s) for s in ("train", "val")}
    part, parts = int(cfg.shards.part), int(cfg.shards.parts)
    what = f"part {part} of {parts}: " if parts > 1 else ""
    print(f"{what}{c['total']} samples in {cfg.shards.out_dir}: {c['train']} train in "
          f"{ns['train']} shard(s), {c['val']} val in {ns['val']} shard(s); "
          f"{c['skipped_inputs']} input(s) skipped, {c['failed']} failed; see "
          f"{manifest_name(part, parts)}")
    if parts > 1:
        print("  when every part is done, run once more without shards.part/parts: it "
              "writes manifest.json")
        return 0
    for s in ("train", "val"):
        if m["patterns"][s]:
            print(f"  data.{s}_shards={m['patterns'][s]}")
    return 0


__all__ = ["MTIME", "build", "make_plan", "split_of", "shard_name", "KernelSource", "run",
           "tune_malloc"]
