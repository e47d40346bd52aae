"""``python -m data_prep gopro --root GOPRO_DIR --out DIR``: GoPro pairs -> shards
(docs/design.md §8).

Reads the GoPro (Nah et al. 2017) layout ``GOPRO_Large/{train,test}/<sequence>/{blur,
blur_gamma,sharp}/NNNNNN.png`` and writes ``DIR/{split}-NNNNNN.tar`` shards in the sample
schema of ``blurfield.data.schema`` with ``has_field: false``: members ``blurry.png``,
``sharp.png`` and ``meta.json`` only (brightness 1, no kernels, ``kernel_ids`` []). The key
is ``<sequence>_<frame>``; ``image_id`` is ``<split>/<sequence>/<frame>``; ``source`` is
``gopro/blur`` or ``gopro/blur_gamma`` (``--blur``: ``blur`` averages the gamma-encoded
frames, ``blur_gamma`` averages in linear light).

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

HELP = "convert the GoPro dataset (GOPRO_Large layout) into has_field=false shards"
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
    p.add_argument("--root", required=True, help="GoPro root holding train/ and test/")
    p.add_argument("--out", required=True, help="output folder for the shards")
    p.add_argument("--blur", choices=BLUR_DIRS, default="blur",
                   help="which blurry frames to use (default: blur)")
    p.add_argument("--splits", default="train,test", help="comma-separated (default: train,test)")
    p.add_argument("--shard-size", type=int, default=64, help="samples per shard (default 64)")
    p.add_argument("--limit", type=int, default=0, help="pairs per split at most (0 = all)")
    p.add_argument("--kernel-size", type=int, default=33,
                   help="meta kernel_size (the sharp margin the DataModule crops; default 33)")
    p.add_argument("--gamma", type=float, default=2.2, help="meta gamma (default 2.2)")


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


def convert(root: str | Path, out: str | Path, *, blur: str = "blur",
            splits: tuple[str, ...] = SPLITS, shard_size: int = 64, limit: int = 0,
            kernel_size: int = 33, gamma: float = 2.2, progress: bool = True
            ) -> dict[str, tuple[int, int, int]]:
    """Convert each split; returns {split: (pairs written, shards, pairs skipped)}."""
    if blur not in BLUR_DIRS:
        raise ValueError(f"--blur {blur}: expected one of {BLUR_DIRS}")
    if shard_size < 1:
        raise ValueError(f"--shard-size {shard_size}: must be >= 1")
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
    from blurfield.errors import UserError

    if args.inputs:
        raise UserError(f"unexpected argument '{args.inputs[0]}'")
    splits = tuple(s.strip() for s in args.splits.split(",") if s.strip())
    bad = [s for s in splits if s not in SPLITS]
    if bad or not splits:
        raise UserError(f"--splits {args.splits}: expected some of {','.join(SPLITS)}")
    try:
        report = convert(args.root, args.out, blur=args.blur, splits=splits,
                         shard_size=args.shard_size, limit=args.limit,
                         kernel_size=args.kernel_size, gamma=args.gamma,
                         progress=not getattr(args, "quiet", False))
    except ValueError as e:
        raise UserError(str(e)) from None
    for split, (n, s, missing) in report.items():
        extra = f", {missing} skipped (no sharp frame)" if missing else ""
        print(f"gopro {split}: {n} pairs in {s} shard(s) under {args.out}{extra}")
    return 0


__all__ = ["Pair", "convert", "encode_pair", "find_pairs", "run", "write_shards"]
