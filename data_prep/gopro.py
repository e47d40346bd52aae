"""``python -m data_prep gopro --root GOPRO_DIR --out DIR [--config FILE] [shards.key=value]``:
GoPro pairs -> shards (docs/design.md §8).

Reads the GoPro (Nah et al. 2017) layout ``GOPRO_Large/{train,test}/<sequence>/{blur,
blur_gamma,sharp}/NNNNNN.png`` and writes ``DIR/{split}-NNNNNN.tar`` shards in the sample
schema of ``blurfield.data.schema`` with ``has_field: false``: members ``blurry.png``,
``sharp.png`` and ``meta.json`` only (brightness 1, no kernels, ``kernel_ids`` []). The key
is ``<sequence>_<frame>``; ``image_id`` is ``<split>/<sequence>/<frame>``; ``source`` is
``gopro/blur`` or ``gopro/blur_gamma`` (``--blur``: ``blur`` averages the gamma-encoded
frames, ``blur_gamma`` averages in linear light).

Samples per shard and the meta ``kernel_size`` (the sharp margin the DataModule crops) and
``gamma`` are the ``shards`` section's keys, with their schema defaults: ``--shard-size``,
``--kernel-size`` and ``--gamma`` are aliases of ``shards.shard_size``,
``shards.kernel_size`` and ``shards.gamma``, ``--root`` of ``shards.root``.

Shards are written by :class:`blurfield.data.writer.ShardWriter` (a temporary name,
renamed when complete; fixed member mtime: byte-identical reruns). Pairs whose sharp frame
is missing are skipped and counted.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import DictConfig
from PIL import Image

from blurfield.config import as_config
from blurfield.errors import UserError

HELP = "convert the GoPro dataset (GOPRO_Large layout) into has_field=false shards"
ALIASES = {
    "--root": "shards.root",  # GOPRO_Large, holding train/ and test/ (required)
    "--shard-size": "shards.shard_size",
    "--kernel-size": "shards.kernel_size",  # meta kernel_size: the sharp margin of the crops
    "--gamma": "shards.gamma",  # meta gamma
}
SPLITS = ("train", "test")
BLUR_DIRS = ("blur", "blur_gamma")


@dataclass
class Pair:
    split: str
    sequence: str
    frame: str  # file stem, e.g. 000047
    blurry: Path
    sharp: Path

    @property
    def key(self) -> str:
        return re.sub(r"[^A-Za-z0-9_-]", "_", f"{self.sequence}_{self.frame}")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """gopro's own flags; shard size, kernel size and gamma are ``shards.*`` keys
    (:data:`ALIASES`)."""
    p.add_argument("--out", required=True,
                   help="output folder for the shards (required; not shards.out_dir, whose "
                        "default is the synthetic set's folder)")
    p.add_argument("--blur", choices=BLUR_DIRS, default="blur",
                   help="which blurry frames to use (default: blur)")
    p.add_argument("--splits", default="train,test", help="comma-separated (default: train,test)")
    p.add_argument("--limit", type=int, default=0, help="pairs per split at most (0 = all)")


def find_pairs(root: Path, split: str, blur: str = "blur") -> tuple[list[Pair], int]:
    """Every (blurry, sharp) pair of one split, sorted by sequence and frame, and the
    number of blurry frames without a sharp frame."""
    base = root / split
    if not base.is_dir():
        raise ValueError(f"--root {root}: no '{split}' folder (expected "
                         f"{root}/{split}/<sequence>/{blur}/NNNNNN.png)")
    pairs, missing = [], 0
    for seq in sorted(d for d in base.iterdir() if d.is_dir()):
        bdir, sdir = seq / blur, seq / "sharp"
        if not bdir.is_dir():
            continue
        for b in sorted(bdir.glob("*.png")):
            s = sdir / b.name
            if s.is_file():
                pairs.append(Pair(split, seq.name, b.stem, b, s))
            else:
                missing += 1
    if not pairs:
        raise ValueError(f"--root {root}: no pairs in {base}/<sequence>/{blur}/*.png with a "
                         "matching sharp/ frame")
    return pairs, missing


def read_rgb(path: Path) -> np.ndarray:
    """(H, W, 3) uint8; refuses 16-bit files (Pillow would read them as 8-bit silently)."""
    with Image.open(path) as im:
        if im.mode not in ("RGB", "RGBA", "L", "P"):
            raise ValueError(f"{path}: PNG mode {im.mode}; only 8-bit images are converted")
        return np.asarray(im.convert("RGB"))


def encode_pair(pair: Pair, blur: str, kernel_size: int, gamma: float) -> dict:
    """One pair -> the member dict of a has_field=false sample."""
    from blurfield.data.schema import Sample, encode_sample, make_meta

    blurry, sharp = read_rgb(pair.blurry), read_rgb(pair.sharp)
    if blurry.shape != sharp.shape:
        raise ValueError(f"{pair.blurry}: size {blurry.shape[:2]} differs from its sharp "
                         f"frame {sharp.shape[:2]}")
    meta = make_meta(has_field=False, brightness=1.0, gamma=float(gamma),
                     kernel_size=int(kernel_size), normalize_masks=False, noise=0.0, seed=0,
                     kernel_ids=[], image_id=f"{pair.split}/{pair.sequence}/{pair.frame}",
                     source=f"gopro/{blur}")
    return encode_sample(Sample(pair.key, blurry, sharp, meta))


def write_shards(pairs: list[Pair], out: Path, prefix: str, shard_size: int, blur: str,
                 kernel_size: int, gamma: float, progress: bool = True) -> list[Path]:
    """Write ``out/{prefix}-NNNNNN.tar`` (each via a temp file, then renamed)."""
    from tqdm import tqdm

    from blurfield.data.writer import write_shard

    out.mkdir(parents=True, exist_ok=True)
    written = []
    bar = tqdm(total=len(pairs), desc=f"gopro {prefix}", unit="pair", disable=not progress)

    def encoded(chunk: list[Pair]) -> Iterator[dict]:
        for pair in chunk:
            yield encode_pair(pair, blur, kernel_size, gamma)
            bar.update(1)

    for start in range(0, len(pairs), shard_size):
        path = out / f"{prefix}-{start // shard_size:06d}.tar"
        write_shard(path, encoded(pairs[start : start + shard_size]))
        written.append(path)
    bar.close()
    return written


def convert(root: str | Path, out: str | Path, *, shard_size: int, kernel_size: int,
            gamma: float, blur: str = "blur", splits: tuple[str, ...] = SPLITS, limit: int = 0,
            progress: bool = True) -> dict[str, tuple[int, int, int]]:
    """Convert each split; returns {split: (pairs written, shards, pairs skipped)}.

    ``shard_size``, ``kernel_size`` and ``gamma`` are the ``shards`` section's (the command
    passes them from the config)."""
    if blur not in BLUR_DIRS:
        raise ValueError(f"--blur {blur}: expected one of {BLUR_DIRS}")
    if shard_size < 1:
        raise ValueError(f"shards.shard_size={shard_size}: must be >= 1")
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"shards.kernel_size={kernel_size}: must be odd and >= 1")
    if gamma <= 0:
        raise ValueError(f"shards.gamma={gamma}: must be > 0")
    root, out = Path(root), Path(out)
    if not root.is_dir():
        raise ValueError(f"--root {root}: not a folder (point it at GOPRO_Large)")
    report = {}
    for split in splits:
        pairs, missing = find_pairs(root, split, blur)
        if limit > 0:
            pairs = pairs[:limit]
        shards = write_shards(pairs, out, split, shard_size, blur, kernel_size, gamma, progress)
        report[split] = (len(pairs), len(shards), missing)
    return report


def run(cfg: DictConfig, args: argparse.Namespace) -> int:
    """Convert the splits of ``shards.root`` (``--root``) into ``--out``, with
    ``shards.shard_size``, ``shards.kernel_size`` and ``shards.gamma``."""
    sc = as_config(cfg.shards)
    if args.inputs:
        raise UserError(f"unexpected argument '{args.inputs[0]}' (expected shards.key=value)")
    if not sc.root:
        raise UserError("--root (shards.root) is required: the GOPRO_Large folder holding "
                        "train/ and test/")
    splits = tuple(s.strip() for s in args.splits.split(",") if s.strip())
    bad = [s for s in splits if s not in SPLITS]
    if bad or not splits:
        raise UserError(f"--splits {args.splits}: expected some of {','.join(SPLITS)}")
    try:
        report = convert(sc.root, args.out, shard_size=sc.shard_size,
                         kernel_size=sc.kernel_size, gamma=sc.gamma, blur=args.blur,
                         splits=splits, limit=args.limit,
                         progress=not getattr(args, "quiet", False))
    except ValueError as e:
        raise UserError(str(e)) from None
    for split, (n, s, missing) in report.items():
        extra = f", {missing} skipped (no sharp frame)" if missing else ""
        print(f"gopro {split}: {n} pairs in {s} shard(s) under {args.out}{extra}")
    return 0

__all__ = ["Pair", "convert", "encode_pair", "find_pairs", "run", "write_shards"]
