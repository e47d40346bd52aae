"""``python -m data_prep shards [--config FILE ...] [shards.key=value ...]``: the command
of the shard generator (:mod:`data_prep.shards`)."""

from __future__ import annotations

import argparse

from omegaconf import DictConfig

from blurfield.config import Config, as_config
from blurfield.errors import UserError
from data_prep.shards.builder import build
from data_prep.shards.manifest import manifest_name

HELP = "build synthetic training shards (scenes x camera-shake kernels) in shards.out_dir"
ALIASES = {
    "--source": "shards.source",
    "--root": "shards.root",
    "--out": "shards.out_dir",
    "--num-samples": "shards.num_samples",
    "--seed": "shards.seed",
    "--workers": "shards.workers",
}


def run(cfg: DictConfig | Config, args: argparse.Namespace) -> int:
    """Build the shards of ``cfg`` and print where they are and the ``data.*_shards``
    patterns; a bad config, root or out_dir is a :class:`UserError` (one line, exit 2)."""
    if getattr(args, "inputs", None):
        raise UserError(f"unexpected argument '{args.inputs[0]}' (expected shards.key=value)")
    cfg = as_config(cfg)  # typed from here on
    progress = cfg.shards.progress and not getattr(args, "quiet", False)
    try:
        m = build(cfg, progress=progress)
    except ValueError as e:
        raise UserError(str(e)) from None
    c = m["counts"]
    ns = {s: sum(1 for r in m["shards"] if r["split"] == s) for s in ("train", "val")}
    part, parts = cfg.shards.part, cfg.shards.parts
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


__all__ = ["ALIASES", "HELP", "run"]
