"""Build (or finish) a shard set: :func:`build`, the steps of :mod:`data_prep.shards` in
order, with the checks of the ``shards`` section, the scan of finite sources, the writing
of samples into their shards (:class:`blurfield.data.writer.ShardWriter`) and the
per-shard failure records that a rerun or a later part reads back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from blurfield.config import Config, SceneSource, ShardsCfg, as_config
from blurfield.data.writer import ShardWriter
from blurfield.fileio import temp_files
from data_prep.shards import workers
from data_prep.shards.kernel_source import KernelSource
from data_prep.shards.manifest import manifest, manifest_name
from data_prep.shards.plan import (
    Item,
    fingerprint,
    load_plan_file,
    make_plan,
    read_json,
    shard_name,
    store_plan,
    write_json,
)
from data_prep.shards.workers import Runner

FAILED_DIR = "failed"  # failed/<shard stem>.json: the failed samples of one shard


def check_cfg(sc: ShardsCfg) -> None:
    """ValueError naming the key for a ``shards`` section that cannot work (its choices are
    checked by their types, when the config is loaded)."""
    for key in ("num_samples", "shard_size", "crop_size", "parts"):
        if getattr(sc, key) < 1:
            raise ValueError(f"shards.{key} must be >= 1, got {getattr(sc, key)}")
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
        lo, hi = getattr(sc, k + "_min"), getattr(sc, k + "_max")
        if not 0 <= lo <= hi:
            raise ValueError(f"shards.{k}_min/max must satisfy 0 <= min <= max, got {lo}, {hi}")


def scan(runner: Runner, source: Any, progress: bool) -> tuple[list, list]:
    """Eligible (input id, image id) pairs and skipped [input id, reason, detail] lists."""
    from tqdm import tqdm

    inputs = source.inputs()
    eligible, skipped = [], []
    for input_id, image_id, reason, detail in tqdm(
            runner.map(workers.scan_one, inputs, chunksize=4), total=len(inputs), unit="image",
            desc="scan", disable=not progress):
        if image_id is None:
            skipped.append([input_id, reason, detail])
        else:
            eligible.append([input_id, image_id])
    return eligible, skipped


def build(cfg: DictConfig | Config, progress: bool = True) -> dict:
    """Build (or finish) the shards of ``cfg`` in ``cfg.shards.out_dir``; returns the manifest.

    With ``shards.parts`` = n > 1 only the shards numbered s with s % n == ``shards.part``
    (in each split) are built and the manifest is ``manifest.part-<part>.json``; a later run
    with parts = 1 finds them complete and writes ``manifest.json``.
    Raises ValueError with a one-line message on a bad config, root or out_dir.
    """
    from tqdm import tqdm

    from data_prep.scenes import make_source

    cfg = as_config(cfg)  # typed from here on (a Config is used as it is)
    sc = cfg.shards
    check_cfg(sc)
    source = make_source(sc)  # checks the root / layout before anything is written
    kernels = KernelSource(sc, cfg.kernels)
    fp, content = fingerprint(cfg, kernels.describe())
    out = Path(sc.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cached = load_plan_file(out, fp, content)
    part, parts = sc.part, sc.parts
    runner = Runner(cfg, sc.workers)
    ok = False
    try:
        if sc.source == SceneSource.builtin:
            eligible, skipped, scenes = None, [], None
        elif cached is not None:
            eligible, skipped = cached["eligible"], cached["skipped"]
            scenes = [tuple(e) for e in eligible]
        else:
            eligible, skipped = scan(runner, source, progress)
            scenes = [tuple(e) for e in eligible]
        store_plan(out, {"fingerprint": fp, "content": content, "eligible": eligible,
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
    m = manifest(cfg, fp, content, kernels, shards, mine, failed, skipped, eligible, out)
    write_json(out / manifest_name(part, parts), m)
    if parts == 1:  # merged: the part manifests are superseded
        for p in out.glob("manifest.part-*.json"):
            p.unlink(missing_ok=True)
    return m


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
            failed.update(read_json(f))
    return failed


def _write_record(out: Path, shard: str, failed: dict[str, dict]) -> None:
    """The shard's failure record (key -> image_id, reason), or none: written before the
    shard's rename, so a complete shard's record is its builder's (parts never share one)."""
    f = _record(out, shard)
    if failed:
        f.parent.mkdir(exist_ok=True)
        write_json(f, failed)
    else:
        f.unlink(missing_ok=True)


def _write_samples(runner: Runner, out: Path, todo: list[Item],
                   shards: dict[tuple[str, int], list[Item]], failed: dict[str, dict],
                   progress: bool, tqdm: Any) -> None:
    """Build the samples ``todo`` (in index order) into their shards; a shard is renamed
    into place when its last sample is in, just after its failure record."""
    left = {(it.split, it.shard): len(shards[(it.split, it.shard)]) for it in todo}
    open_: dict[tuple[str, int], ShardWriter] = {}
    shard_failed: dict[tuple[str, int], dict[str, dict]] = {}
    try:
        bar = tqdm(total=len(todo), unit="sample", desc="shards", disable=not progress)
        by_index = {it.index: it for it in todo}
        for index, encoded, reason in runner.map(workers.make_one, todo, chunksize=2):
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


__all__ = ["FAILED_DIR", "build", "check_cfg", "scan"]
