"""``blurfield train``: train the kernel estimator or the reblur fine-tune (docs/design.md §4, §6).

    blurfield train --config experiment/tiny [key=value ...]
    blurfield train --config experiment/paper train.devices=4 train.resume=true

The Trainer, its callbacks and the run directory's layout are
:mod:`blurfield.tasks.train`'s; this module is the command line around them.
"""

from __future__ import annotations

import argparse

from omegaconf import DictConfig

from blurfield.config import Task
from blurfield.errors import UserError

HELP = "train the kernel estimator: blurfield train --config experiment/tiny [key=value ...]"
ALIASES = {
    "--out": "train.out_dir",
    "--name": "train.run_name",
    "--epochs": "train.epochs",
    "--devices": "train.devices",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--resume``: the same as ``train.resume=true``."""
    parser.add_argument("--resume", action="store_true", help="same as train.resume=true")


def run(cfg: DictConfig, args: argparse.Namespace) -> int:
    """Train as configured; print where the run lives. A bad setup is a :class:`UserError`."""
    from blurfield.tasks.train import fit, prepare

    if getattr(args, "inputs", None):
        raise UserError(f"unexpected arguments {args.inputs}: train takes --config FILE and "
                        "key=value overrides only")
    if getattr(args, "resume", False):
        cfg.train.resume = True
    try:
        setup = prepare(cfg)
    except ValueError as e:
        raise UserError(str(e)) from None
    run_dir = fit(setup)
    if setup["trainer"].is_global_zero:
        weights = "generator.pt" if cfg.train.task == Task.deblurgan else "estimator.pt"
        print(f"blurfield train: run in {run_dir} (summary.json, checkpoints/, {weights})")
    return 0
