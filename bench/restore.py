"""Richardson–Lucy speed and the memory of deblurring a 12-megapixel photo.

1. A 512 x 512 RGB photo (scikit-image's astronaut) blurred by a field of B = 25 line
   kernels, K = 33: 30 iterations (no early stop) of the plain update and of the
   saturation-aware update (with TV), on the fft path and on the direct (Kornia) path, in
   one process, best of ``--repeats`` runs. The direct path is slow (seconds per iteration):
   it runs ``--direct-iterations`` iterations and its 30-iteration time is extrapolated as
   set-up + 30 x (time of one iteration), both read from RL's callback; the fft rows print
   the same extrapolation beside the measured time, to show that it holds.
2. ``blurfield deblur`` on a 4000 x 3000 RGB photo with a given field (B = 25, K = 33,
   estimated at scale sqrt(12 / 1.5), so full-size kernels are 91 x 91), in a subprocess:
   wall seconds and peak resident memory (``ru_maxrss`` of the child), for 0 and
   ``--big-iterations`` iterations; the 30-iteration time is extrapolated from the two.

"CPU s" is the process CPU time of the run (all threads): on a loaded machine, run with
``--threads 1`` and read it as the uncontended time.

Usage: python bench/restore.py [--repeats 3] [--direct-iterations 1] [--big-iterations 2]
       [--threads 2] [--skip-512] [--skip-direct] [--skip-big] [--tile 1024]
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
import torch.nn.functional as F

from blurfield.physics import blur, saturate, to_linear
from blurfield.restore import richardson_lucy

ITERATIONS = 30


def line_kernels(b: int, k: int, seed: int = 0) -> torch.Tensor:
    """(b, k, k) straight motion blurs of random angle and length (bilinear splats)."""
    rng = np.random.default_rng(seed)
    out = np.zeros((b, k, k))
    c = k // 2
    for i in range(b):
        angle, length = rng.uniform(0, np.pi), rng.uniform(3, k - 3)
        for t in np.linspace(-length / 2, length / 2, 4 * k):
            y, x = c + t * np.sin(angle), c + t * np.cos(angle)
            y0, x0 = int(np.floor(y)), int(np.floor(x))
            fy, fx = y - y0, x - x0
            for dy, wy in ((0, 1 - fy), (1, fy)):
                for dx, wx in ((0, 1 - fx), (1, fx)):
                    out[i, y0 + dy, x0 + dx] += wy * wx
    out /= out.sum((1, 2), keepdims=True)
    return torch.tensor(out, dtype=torch.float32)


def smooth_mixing(b: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """(b, h, w) softmax of smooth random logits."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(1, b, 6, 8, generator=g) * 3
    return torch.softmax(F.interpolate(logits, size=(h, w), mode="bicubic",
                                       align_corners=False), 1)[0]


def photo(size: int) -> torch.Tensor:
    import skimage.data
    import skimage.transform

    img = skimage.transform.resize(skimage.data.astronaut(), (size, size), anti_aliasing=True)
    return torch.tensor(img, dtype=torch.float32).permute(2, 0, 1)[None]


def time_rl(v, kernels, mixing, method: str, saturation: bool, iterations: int):
    """(measured s, set-up s, s per iteration, CPU s of the whole run) of one RL run."""
    stamps = []
    c0, t0 = time.process_time(), time.perf_counter()
    richardson_lucy(v, kernels, mixing, iterations=iterations, saturation=saturation,
                    tv_weight=1e-3 if saturation else 0.0, early_stop=False, method=method,
                    check=False, callback=lambda t, x, e: stamps.append(time.perf_counter()))
    total, cpu = time.perf_counter() - t0, time.process_time() - c0
    setup = stamps[0] - t0
    per_it = (stamps[-1] - stamps[0]) / max(1, len(stamps) - 1)
    return total, setup, per_it, cpu


def bench_512(repeats: int, direct_iterations: int, skip_direct: bool) -> None:
    b, k, s = 25, 33, 512
    kernels, mixing = line_kernels(b, k)[None], smooth_mixing(b, s, s)[None]
    sharp = to_linear(photo(s)) * 1.3  # some highlights clip
    v = saturate(blur(sharp, kernels, mixing, padding="same")).clamp(0, 1)
    print(f"RL, {s}x{s} RGB, B = {b}, K = {k}, {ITERATIONS} iterations, "
          f"{torch.get_num_threads()} threads, best of {repeats}; "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'update':<18} {'path':<7} {'measured s':>16} {'set-up s':>9} {'s / it.':>8} "
          f"{'30 it. s (extrap.)':>19} {'CPU s':>8}")
    rows = {}
    for saturation in (False, True):
        name = "saturation + TV" if saturation else "plain"
        for method in ("fft", "direct"):
            if method == "direct" and skip_direct:
                continue
            its = ITERATIONS if method == "fft" else direct_iterations
            runs = [time_rl(v, kernels, mixing, method, saturation, its) for _ in range(repeats)]
            total = min(r[0] for r in runs)
            setup = min(r[1] for r in runs)
            per_it = min(r[2] for r in runs)
            cpu = min(r[3] for r in runs)
            extrap = setup + ITERATIONS * per_it
            rows[name, method] = extrap
            measured = f"{total:.2f}" if method == "fft" else f"({its} it.) {total:.1f}"
            print(f"{name:<18} {method:<7} {measured:>16} {setup:>9.2f} {per_it:>8.3f} "
                  f"{extrap:>19.2f} {cpu:>8.1f}")
    for name in ("plain", "saturation + TV"):
        if (name, "direct") in rows:
            print(f"{name}: fft is {rows[name, 'direct'] / rows[name, 'fft']:.1f}x faster "
                  "than direct")


def bench_12mp(iterations: int, tile: int) -> None:
    from PIL import Image

    from blurfield.api import Field, save_field
    from blurfield.restore import choose_scale, scaled_size, upscaled_kernel_size

    height, width, b, k = 3000, 4000, 25, 33
    s = choose_scale(height, width, "auto", 1.5)
    h, w = scaled_size(height, width, s)
    with tempfile.TemporaryDirectory(prefix="bench_restore_") as tmp:
        tmp = Path(tmp)
        small = (photo(768)[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        Image.fromarray(small).resize((width, height), Image.BICUBIC).save(
            tmp / "big.png", compress_level=1)
        save_field(tmp / "big_field.npz", Field(line_kernels(b, k), smooth_mixing(b, h, w),
                                                scale=s, image_size=(height, width)))
        print(f"\nblurfield deblur, {width}x{height} RGB 8-bit PNG, field B = {b}, K = {k} "
              f"at scale {s:.2f} (mixing {w}x{h}, full-size kernels "
              f"{upscaled_kernel_size(k, s)}), tile {tile}, saturation + TV")
        results = {}
        for its in (0, iterations):
            cmd = [sys.executable, "-m", "blurfield", "deblur", str(tmp / "big.png"),
                   "--field", str(tmp / "big_field.npz"), "--out", str(tmp / f"out{its}"),
                   "--iterations", str(its), "--device", "cpu", f"restore.tile={tile}"]
            code = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
                    "rc = subprocess.call(sys.argv[1:]); dt = time.perf_counter() - t; "
                    "r = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss; "
                    "print(rc, dt, r)")
            out = subprocess.run([sys.executable, "-c", code, *cmd], capture_output=True,
                                 text=True, check=True).stdout.split()
            rc, secs, rss_kb = int(out[0]), float(out[1]), int(out[2])
            results[its] = secs
            print(f"  {its:>2} iterations: exit {rc}, {secs:7.1f} s, peak RSS "
                  f"{rss_kb / 2**20:.2f} GiB")
        per_it = (results[iterations] - results[0]) / max(1, iterations)
        print(f"  per iteration (all tiles) {per_it:.1f} s; {ITERATIONS} iterations "
              f"extrapolated: {results[0] + ITERATIONS * per_it:.0f} s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--direct-iterations", type=int, default=1)
    p.add_argument("--big-iterations", type=int, default=2)
    p.add_argument("--tile", type=int, default=1024)
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--skip-direct", action="store_true")
    p.add_argument("--skip-big", action="store_true")
    p.add_argument("--skip-512", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    if not a.skip_512:
        bench_512(a.repeats, a.direct_iterations, a.skip_direct)
    if not a.skip_big:
        bench_12mp(a.big_iterations, a.tile)


if __name__ == "__main__":
    main()
