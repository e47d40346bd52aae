"""``manifest.json`` of a shard set (step 4 of :mod:`data_prep.shards`): counts, config,
schema version, kernel source, skipped inputs with reasons, failed samples, the shard list
and the brace patterns for ``data.*_shards``; ``manifest.part-<i>.json`` for one part."""

from __future__ import annotations

from pathlib import Path

from blurfield.config import Config, plain
from data_prep.shards.kernel_source import KernelSource
from data_prep.shards.plan import Item, shard_name

MANIFEST = "manifest.json"


def manifest_name(part: int, parts: int) -> str:
    """``manifest.json``, or ``manifest.part-<part>.json`` for one part of several."""
    return MANIFEST if parts == 1 else f"manifest.part-{part}.json"


def pattern(out: Path, split: str, n: int) -> str | None:
    """The brace pattern of the ``n`` shards of a split (``data.*_shards``), None if none."""
    if n == 0:
        return None
    if n == 1:
        return str(out / shard_name(split, 0))
    return str(out / f"{split}-{{000000..{n - 1:06d}}}.tar")


def manifest(cfg: Config, fp: str, content: dict, kernels: KernelSource,
             shards: dict[tuple[str, int], list[Item]], listed: list[tuple[str, int]],
             failed: dict[str, dict], skipped: list, eligible: list | None, out: Path) -> dict:
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
        "source": plain(sc.source),
        "counts": {"requested": sc.num_samples, "planned": planned,
                   "train": counts["train"], "val": counts["val"],
                   "total": counts["train"] + counts["val"],
                   "failed": len(failed), "skipped_inputs": len(skipped),
                   "scenes": len(eligible) if eligible is not None else None},
        "shards": rows,
        "patterns": {s: pattern(out, s, nshards[s]) for s in ("train", "val")},
        "skipped": {"by_reason": reasons,
                    "inputs": [{"input": i, "reason": r, "detail": d} for i, r, d in skipped]},
        "failed": [{"key": k, **v} for k, v in sorted(failed.items())],
        "kernels": kernels.describe(),
        "config": plain(sc),
        "content": content,
    }
    if sc.parts > 1:
        m["part"] = {"index": sc.part, "count": sc.parts}
    return m


__all__ = ["MANIFEST", "manifest", "manifest_name", "pattern"]
