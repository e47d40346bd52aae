"""The plan of a shard set (step 2 of :mod:`data_prep.shards`): which scene, split and shard
each sample gets, fixed before anything is written; the fingerprint of the config that
makes the bytes, and ``plan.json``, the cached scan that every part of a run shares."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from blurfield.config import Config, ShardsCfg, plain
from blurfield.fileio import write_text_atomic

PLAN_FILE = "plan.json"
NOT_CONTENT = ("workers", "progress", "out_dir", "part", "parts")  # no effect on the bytes


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


def make_plan(sc: ShardsCfg, scenes: list[tuple[Any, str]] | None, image_id_of: Any = None
              ) -> list[Item]:
    """The sample -> (scene, split, shard) assignment, fixed before anything is written.

    ``scenes``: eligible (input id, image id) pairs of a finite source, or None for builtin
    (then ``image_id_of(i)`` names scene i).
    """
    n = sc.num_samples
    if scenes is not None:
        if not scenes:
            raise ValueError("no usable scene: every input was skipped (see the reasons above)")
        order = np.random.default_rng([sc.seed, 1]).permutation(len(scenes))
    counts = {"train": 0, "val": 0}
    items = []
    for i in range(n):
        if scenes is None:
            ref, iid = i, image_id_of(i)
        else:
            ref, iid = scenes[order[i % len(scenes)]]
        split = split_of(iid, sc.val_fraction)
        p = counts[split]
        counts[split] += 1
        items.append(Item(i, f"{i:08d}", split, p // sc.shard_size, ref, iid))
    return items


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=1, sort_keys=True) + "\n"


def write_json(path: Path, obj: Any) -> None:
    write_text_atomic(path, dumps(obj))


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        raise ValueError(f"{path} is not valid JSON (a run killed while writing it?): delete "
                         "it and rerun") from None


def fingerprint(cfg: Config, kernels: dict) -> tuple[str, dict]:
    """A hash of everything that changes the shards' bytes, and that content."""
    from blurfield.data.schema import SCHEMA_VERSION
    from data_prep.synth import SYNTH_VERSION

    sc = {k: v for k, v in plain(cfg.shards).items() if k not in NOT_CONTENT + ("kernel_bank",)}
    ks = {k: v for k, v in kernels.items() if k != "bank"}  # a moved bank is the same bank
    content = {"schema": SCHEMA_VERSION, "synth": SYNTH_VERSION, "shards": sc, "kernels": ks}
    h = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]
    return h, content


def load_plan_file(out: Path, fp: str, content: dict) -> dict | None:
    """The cached scan of a previous run with the same fingerprint; refuses to mix configs."""
    f = out / PLAN_FILE
    shards = sorted(p.name for p in out.glob("*.tar"))
    if not f.exists():
        if shards:
            raise ValueError(f"{out} holds shards ({shards[0]}, ...) but no {PLAN_FILE}: "
                             "choose another shards.out_dir or empty that folder")
        return None
    old = read_json(f)
    if old.get("fingerprint") == fp:
        return old
    if shards:
        raise ValueError(f"{out} holds shards made with another config ({_diff(old, content)} "
                         "differs); choose another shards.out_dir or empty that folder")
    return None


def store_plan(out: Path, plan: dict) -> None:
    """Write ``plan.json`` unless a parallel part already has (create-or-compare).

    The plan is written to a temp file and hard-linked to ``plan.json``, which fails if the
    file exists: the plan on disk is then compared with ours. A stale plan of another config
    (no shards: :func:`load_plan_file` checked) is replaced; every part of one config
    writes the same plan, so racing replacements agree.
    """
    f = out / PLAN_FILE
    tmp = out / f".{PLAN_FILE}.{os.getpid()}.tmp"
    tmp.write_text(dumps(plan))
    try:
        try:
            os.link(tmp, f)
            return
        except FileExistsError:
            pass
        old = read_json(f)
        if old == json.loads(dumps(plan)):
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


__all__ = ["NOT_CONTENT", "PLAN_FILE", "Item", "dumps", "fingerprint", "load_plan_file",
           "make_plan", "read_json", "shard_name", "split_of", "store_plan", "write_json"]
