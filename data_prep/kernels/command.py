"""``python -m data_prep kernels``: write a camera-shake kernel bank (resumable)."""

from __future__ import annotations

import argparse

from omegaconf import DictConfig

HELP = "write a bank of camera-shake kernels to kernels.out_dir (resumes an unfinished one)"
ALIASES = {
    "--out": "kernels.out_dir",
    "--count": "kernels.count",
    "--generator": "kernels.generator",
    "--seed": "kernels.seed",
}


def run(cfg: DictConfig, args: argparse.Namespace) -> int:
    from blurfield.config import as_config
    from blurfield.errors import UserError

    from .bank import check_cfg, write_bank

    if args.inputs:
        raise UserError(f"unexpected argument '{args.inputs[0]}' (expected key=value)")
    kc = as_config(cfg.kernels)  # typed from here on
    try:
        check_cfg(kc)
        out, written = write_bank(kc, progress=not getattr(args, "quiet", False))
    except ValueError as e:
        raise UserError(str(e)) from None
    skipped = (kc.count + kc.chunk_size - 1) // kc.chunk_size - written
    print(f"{kc.count} {kc.generator} kernels ({kc.kernel_size} x {kc.kernel_size}) in {out}: "
          f"{written} chunk(s) written, {skipped} already there")
    return 0
