"""Batches of photos (issue 17): ``blurfield deblur`` over several photos in one process at
several threads against worker processes at one thread each (``restore.workers``).

``--photos`` (4) photos of 480 x 640 (0.31 MP: scikit-image's astronaut, coffee, rocket and
immunohistochemistry, resized) blurred by two line kernels mixed left to right, 8-bit PNG,
go through ``blurfield deblur`` (shipped model, ``--iterations`` iterations, defaults
otherwise, CPU) in a subprocess once per configuration ``WORKERSxTHREADS``: ``1x2`` is one
process at 2 torch threads (photo after photo), ``2x1`` two worker processes at 1 thread
each. Printed per configuration: wall seconds of the whole command (worker start-up
included), the ratio to the first configuration, the largest difference of the restored
photos from the first configuration's (8-bit levels; 0 when the per-process thread counts
agree) and whether the stdout lines (the no-harm decisions) are the same.

Timings are wall seconds; compare ratios from one run. The load average at the start is
printed.

Usage: python bench/batch.py [--configs 1x2 2x1 [1x1 ...]] [--photos 4] [--iterations 30]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from restore import line_kernels  # noqa: E402

from blurfield.physics import blur, saturate, to_display, to_linear  # noqa: E402

SAMPLES = ("astronaut", "coffee", "rocket", "immunohistochemistry")
SIZE = (480, 640)


def make_photos(folder: Path, count: int) -> list[Path]:
    """``count`` blurred 8-bit photos of ``SIZE`` in ``folder`` (module doc)."""
    import skimage.data
    from PIL import Image

    h, w = SIZE
    kernels = line_kernels(2, 15, seed=4)[None]
    a = torch.sigmoid(torch.linspace(-4, 4, w)).expand(h, w)
    mixing = torch.stack([a, 1 - a])[None]
    paths = []
    for i in range(count):
        name = SAMPLES[i % len(SAMPLES)]
        img = Image.fromarray(getattr(skimage.data, name)()[..., :3]).resize((w, h),
                                                                             Image.BICUBIC)
        sharp = torch.from_numpy(np.asarray(img, np.float32) / 255).permute(2, 0, 1)[None]
        v = to_display(saturate(blur(to_linear(sharp), kernels, mixing, padding="same")))
        out = (v[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)
        paths.append(folder / f"{i}_{name}.png")
        Image.fromarray(out).save(paths[-1])
    return paths


def deblur(photos: list[Path], out: Path, workers: int, threads: int,
           iterations: int) -> tuple[float, str]:
    """(wall seconds, stdout) of ``blurfield deblur`` over ``photos`` in a subprocess."""
    cmd = [sys.executable, "-m", "blurfield", "deblur", *map(str, photos), "--out", str(out),
           "--iterations", str(iterations), "--device", "cpu",
           f"restore.workers={workers}", f"restore.threads={threads}"]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    secs = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr}")
    return secs, done.stdout


def restored(out: Path) -> dict[str, np.ndarray]:
    """The restored photos of one run, by name."""
    from PIL import Image

    return {p.name: np.asarray(Image.open(p), np.int16)
            for p in sorted(out.glob("*_restored.png"))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", default=["1x2", "2x1"],
                   help="WORKERSxTHREADS per configuration (threads per worker)")
    p.add_argument("--photos", type=int, default=4)
    p.add_argument("--iterations", type=int, default=30)
    args = p.parse_args()
    configs = [tuple(int(v) for v in c.split("x")) for c in args.configs]
    print(f"load average {os.getloadavg()[0]:.2f}; {args.photos} photos of "
          f"{SIZE[1]}x{SIZE[0]}, {args.iterations} iterations")
    print(f"| workers x threads | wall s | / {args.configs[0]} | max diff (levels) | same lines |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        photos = make_photos(tmp, args.photos)
        first = None
        for workers, threads in configs:
            out = tmp / f"out{workers}x{threads}"
            secs, lines = deblur(photos, out, workers, threads * workers, args.iterations)
            images = restored(out)
            if first is None:
                first = secs, lines, images
            diff = max(int(np.abs(images[k] - first[2][k]).max()) for k in images)
            print(f"| {workers} x {threads} | {secs:.1f} | {secs / first[0]:.2f} | {diff} | "
                  f"{'yes' if lines == first[1] else 'no'} |", flush=True)


if __name__ == "__main__":
    main()
