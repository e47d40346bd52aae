"""Restoration speed (issue 17): RL per iteration as ratios, the no-harm probes' share, end to
end ``blurfield deblur`` on 1 MP and 12 MP photos, and what restoring at a reduced scale costs.

1. ``rl``: a ``--size`` x ``--size`` RGB photo (scikit-image's astronaut, highlights
   clipped) blurred by B = 25 line kernels, K = 33; Richardson-Lucy with saturation and TV,
   seconds per iteration (read from RL's callback, best of ``--repeats``) for the update
   with the blur applied by
   - ``conv2d``: a plain conv2d (channels as batch, the B kernels as outputs; adjoint:
     conv_transpose2d), ``--conv-iterations`` iterations;
   - ``full``: the fft ``BlurField`` without skipping (``skip_tol=None``), full mixing
     (smooth random softmax: every element everywhere);
   - ``peaky``: the fft path with ``skip_tol`` on a peaky field (4 elements carry it, the
     other 21 a softmax tail < 5e-5, as in bench/blur.py), and ``peaky0`` the same field
     unskipped; ``dB`` = PSNR of the skipped against the unskipped restoration;
   - ``principal``: the full field on its principal kernels (``rank_tol``, default 0.05):
     how many elements, seconds per iteration, and dB from the full field's restoration;
     the same for the shipped model's field of the blurry photo (estimated here);
   - ``floor``: the transforms an iteration cannot avoid, 2 x (B x C inverse real
     transforms at the same 5-smooth size) (bench/blur.py's floor, forward and adjoint);
   - the saturation ``R(Hx)`` of an iteration (no autograd) against the same by
     ``F.softplus``.
2. ``e2e``: ``blurfield deblur`` (shipped model, estimate + ``--iterations`` iterations,
   saturation and TV, no-harm rule on, defaults otherwise) of a 1 MP (1200 x 834) and a
   12 MP (4000 x 3000) 8-bit photo (``--photos``: and a 48 MP one, 8000 x 6000), in a
   subprocess: wall seconds and peak resident memory
   (``ru_maxrss`` of the child). The photos are scikit-image's astronaut upscaled
   (bicubic) to full size after blurring at the size the estimator sees (1.5 MP) by line
   kernels mixed left to right, i.e. blurred by about s x K at full size. With ``--compare``
   each photo also runs with ``restore.skip_tol=null restore.rank_tol=null`` (the exact
   operator) and the PSNR between the two outputs is printed (must be >= 40 dB).
   ``--e2e-args`` adds config overrides (e.g. ``restore.restore_scale=field``).
3. ``probes``: for the same two photos, in this process, the time of the no-harm probes
   (``api._assess``, at the field's scale) against the time of the restoration alone
   (``no_harm=False``): the probes' share of the deblur time; and the estimate's time, in
   tiles (``restore.estimate_tile``, the default) against the whole photo at once, and
   what the kernel refinement (``restore.refine_iterations``) adds; the estimate in tiles
   with the estimator's weights in the file's layout against channels-last (what
   ``api.load_estimator`` gives); the noise test of ``restore.denoise_above`` on the photo
   and, with white linear noise of 0.006 added, the test and the bilateral filter
   (``api.denoise``), and a JPEG photo's smoothing (``api.smooth``) against the estimate's
   time.
4. ``scale`` (``--handmade DIR``, a folder of ``*.blurry.png`` / ``*.sharp.png`` from
   ``python -m data_prep handmade`` unpacked): each photo estimated by the shipped model at
   ``--field-scale`` (2), restored at full size and at the field's scale (correction
   upsampled); PSNR against the sharp photo and seconds of each.

5. ``long`` (``--long FILE...``, blurry photos): ``blurfield deblur`` of each in a child
   process with ``restore.long_blur_scale=1`` (never estimated again) and with the default
   (a refined kernel cut off by its window: estimated again at half size), alternated
   ``--repeats`` times: wall seconds (best of), their ratio, and the field's scale and
   refinement note with the default (README, "Long blur").

Timings are wall seconds; take them on a quiet machine (``uptime`` load below ~0.7). All
sections print the load average they started at.

Usage: python bench/restore.py [--sections rl e2e probes scale long] [--size 512] [--repeats 2]
       [--threads 1] [--skip-tol 1e-3] [--iterations 10] [--compare] [--handmade DIR]
       [--long FILE...]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from blur import conv2d_reference, conv2d_reference_adjoint, floor_time, peaky_mixing  # noqa: E402

from blurfield.config import RestoreCfg, RestoreOptions  # noqa: E402
from blurfield.evaluation import metrics  # noqa: E402
from blurfield.physics import blur, saturate, smooth_size, to_display, to_linear  # noqa: E402
from blurfield.physics.camera import SATURATION_A  # noqa: E402
from blurfield.restore import richardson_lucy, rl  # noqa: E402

ITERATIONS = RestoreOptions().iterations  # what deblur runs by default


def load() -> str:
    return f"load average {os.getloadavg()[0]:.2f}"


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


def photo(h: int, w: int | None = None) -> torch.Tensor:
    """(1, 3, h, w) display values of scikit-image's astronaut, resized."""
    import skimage.data
    import skimage.transform

    img = skimage.transform.resize(skimage.data.astronaut(), (h, w or h), anti_aliasing=True)
    return torch.tensor(img, dtype=torch.float32).permute(2, 0, 1)[None]


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR (dB, peak 1) of two images as the evaluation computes it (inf when equal)."""
    return float(metrics.psnr(a, b))


# --------------------------------------------------------------------------- 1. RL


class ConvField:
    """The blur operator by plain conv2d (bench/blur.py's reference), for RL."""

    def __init__(self, kernels, mixing, padding="same", method="auto", check=True,
                 skip_tol=None):
        self.kernels, self.mixing, self.kernel_size = kernels, mixing, kernels.shape[-1]

    def forward(self, u):
        return conv2d_reference(u, self.kernels, self.mixing, self.kernel_size)

    def adjoint(self, y):
        return conv2d_reference_adjoint(y, self.kernels, self.mixing, self.kernel_size)

    def ht_one(self, channels=1):
        return self.adjoint(self.mixing.new_ones(1, 1, *self.mixing.shape[-2:]))


def per_iteration(v, kernels, mixing, iterations: int, repeats: int, skip_tol, conv=False,
                  rank_tol=None):
    """(seconds per iteration, the restored image) of RL with saturation and TV."""
    best, image = float("inf"), None
    real = rl.BlurField
    if conv:
        rl.BlurField = ConvField
    try:
        for _ in range(repeats):
            stamps = []
            res = richardson_lucy(v, kernels, mixing, iterations=iterations, early_stop=False,
                                  check=False, skip_tol=skip_tol, rank_tol=rank_tol,
                                  callback=lambda t, x, e: stamps.append(time.perf_counter()))
            best = min(best, (stamps[-1] - stamps[0]) / max(1, len(stamps) - 1))
            image = res.image
    finally:
        rl.BlurField = real
    return best, image


def best_of(fn, repeats: int) -> float:
    """The best wall seconds of ``repeats`` calls of ``fn`` (after one warm-up call)."""
    fn()
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def softplus_saturate(x: torch.Tensor, a: float = SATURATION_A) -> torch.Tensor:
    """The saturation of eq. 4 as F.softplus writes it (the baseline of RL's path)."""
    return (x - F.softplus(a * (x - 1.0)) / a).clamp(min=0)


def bench_rl(size: int, repeats: int, tol: float, iterations: int, conv_iterations: int,
             rank_tol: float = 0.05) -> None:
    b, k, c = 25, 33, 3
    kernels = line_kernels(b, k)[None]
    sharp = to_linear(photo(size)) * 1.3  # some highlights clip
    full_mix = smooth_mixing(b, size, size)[None]
    peaky = peaky_mixing(size, b)
    v_full = saturate(blur(sharp, kernels, full_mix, padding="same")).clamp(0, 1)
    v_peaky = saturate(blur(sharp, kernels, peaky, padding="same")).clamp(0, 1)
    n = smooth_size(size + k - 1)
    print(f"\n1. RL per iteration, {size}x{size} RGB, B = {b}, K = {k}, saturation + TV, "
          f"{torch.get_num_threads()} threads, best of {repeats}; {load()}")
    t_floor = 2 * floor_time(b, c, (n, n), repeats, time.perf_counter)
    t_conv, _ = per_iteration(v_full, kernels, full_mix, conv_iterations, 1, None, conv=True)
    t_full, x_full = per_iteration(v_full, kernels, full_mix, iterations, repeats, None)
    t_rank, x_rank = per_iteration(v_full, kernels, full_mix, iterations, repeats, None,
                                   rank_tol=rank_tol)
    t_p0, x0 = per_iteration(v_peaky, kernels, peaky, iterations, repeats, None)
    t_p, x1 = per_iteration(v_peaky, kernels, peaky, iterations, repeats, tol)
    from blurfield.physics import BlurField, principal_kernels

    op = BlurField(kernels, peaky, skip_tol=tol, check=False)
    pf = principal_kernels(kernels, full_mix, rank_tol)
    print(f"{'conv2d':>8} {'full':>8} {'peaky0':>8} {'peaky':>8} {'floor':>8} | "
          f"{'conv/full':>9} {'full/floor':>10} {'full/peaky':>10} {'peaky/floor':>11} "
          f"{'conv/peaky':>10} {'dB':>6} kept  eps")
    print(f"{t_conv:8.3f} {t_full:8.3f} {t_p0:8.3f} {t_p:8.3f} {t_floor:8.3f} | "
          f"{t_conv / t_full:9.1f} {t_full / t_floor:10.2f} {t_full / t_p:10.1f} "
          f"{t_p / t_floor:11.2f} {t_conv / t_p:10.1f} "
          f"{psnr(to_display(x1.clamp(0, 1)), to_display(x0.clamp(0, 1))):6.1f} "
          f"{op.active.numel():>4}  {float(op.skip_error.max()):.1e}")
    print(f"(seconds per iteration; {iterations} iterations of the fft rows, "
          f"{conv_iterations} of conv2d; skip_tol {tol:g})")
    elements = b if pf is None else pf.rank + 1
    print(f"principal kernels (rank_tol {rank_tol:g}) on the full field: {elements} of {b} "
          f"elements, {t_rank:.3f} s per iteration, full/principal "
          f"{t_full / t_rank:.1f}x, principal/floor {t_rank / t_floor:.2f}, "
          f"{psnr(to_display(x_rank.clamp(0, 1)), to_display(x_full.clamp(0, 1))):.1f} dB "
          "from the full field's restoration")
    t_sat = best_of(lambda: saturate(v_full * 1.2), repeats)
    t_soft = best_of(lambda: softplus_saturate(v_full * 1.2), repeats)
    print(f"R(Hx) without autograd (an RL iteration's saturation): {1e3 * t_sat:.1f} ms "
          f"against {1e3 * t_soft:.1f} ms with F.softplus ({t_soft / t_sat:.1f}x)")
    from blurfield import api

    field = api.estimate(to_display(v_full)[0].permute(1, 2, 0).numpy(), api.load_estimator())
    km, mm = field.kernels[None], field.mixing[None]
    t_mf, x_mf = per_iteration(v_full, km, mm, iterations, repeats, None)
    t_mr, x_mr = per_iteration(v_full, km, mm, iterations, repeats, None, rank_tol=rank_tol)
    pf = principal_kernels(km, mm, rank_tol)
    elements = b if pf is None else pf.rank + 1
    print(f"the shipped model's field of that photo: {elements} of {b} elements, "
          f"{t_mf:.3f} s per iteration full, {t_mr:.3f} principal ({t_mf / t_mr:.1f}x), "
          f"principal/floor {t_mr / t_floor:.2f}, "
          f"{psnr(to_display(x_mr.clamp(0, 1)), to_display(x_mf.clamp(0, 1))):.1f} dB apart")


# --------------------------------------------------------------------------- 2./3. photos


SIZES = {"1 MP": (834, 1200), "12 MP": (3000, 4000), "48 MP": (6000, 8000)}


def make_photo(path: Path, height: int, width: int) -> None:
    """Blurred at the estimator's size (1.5 MP at most), then upscaled to full size."""
    from PIL import Image

    from blurfield.restore import choose_scale, scaled_size

    s = choose_scale(height, width, "auto", 1.5)
    h, w = scaled_size(height, width, s)
    sharp = to_linear(photo(h, w))
    kernels = line_kernels(2, 25, seed=4)[None]
    a = torch.sigmoid(torch.linspace(-4, 4, w)).expand(h, w)
    v = to_display(saturate(blur(sharp, kernels, torch.stack([a, 1 - a])[None],
                                 padding="same")))
    small = (v[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(small).resize((width, height), Image.BICUBIC).save(path, compress_level=1)


def deblur_subprocess(src: Path, out: Path, iterations: int, extra: list[str]):
    """(exit code, wall s, peak RSS bytes) of ``blurfield deblur`` in a child process."""
    cmd = [sys.executable, "-m", "blurfield", "deblur", str(src), "--out", str(out),
           "--iterations", str(iterations), "--device", "cpu", *extra]
    code = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
            "rc = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL, "
            "stderr=subprocess.DEVNULL); dt = time.perf_counter() - t; "
            "r = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss; print(rc, dt, r)")
    out_ = subprocess.run([sys.executable, "-c", code, *cmd], capture_output=True, text=True,
                          check=True).stdout.split()
    return int(out_[0]), float(out_[1]), int(out_[2]) * 1024


def bench_e2e(tmp: Path, iterations: int, compare: bool, extra: list[str],
              names: list[str]) -> None:
    from blurfield.imageio import read_image

    print(f"\n2. blurfield deblur end to end (shipped model, {iterations} iterations, "
          f"saturation + TV, no-harm on unless overridden), {torch.get_num_threads()} threads "
          f"here, "
          f"child OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; {load()}"
          + (f"; {' '.join(extra)}" if extra else ""))
    for name in names:
        h, w = SIZES[name]
        src = tmp / f"photo{h}.png"
        if not src.exists():
            make_photo(src, h, w)
        rc, secs, rss = deblur_subprocess(src, tmp / f"out{h}", iterations, extra)
        print(f"  {name:>5} ({w}x{h}): exit {rc}, {secs:6.1f} s, peak RSS {rss / 2**30:.2f} GiB")
        if compare:
            rc0, secs0, rss0 = deblur_subprocess(src, tmp / f"out{h}_exact", iterations,
                                                 [*extra, "restore.skip_tol=null",
                                                  "restore.rank_tol=null"])
            a, _ = read_image(tmp / f"out{h}" / f"{src.stem}_restored.png")
            b, _ = read_image(tmp / f"out{h}_exact" / f"{src.stem}_restored.png")
            db = psnr(torch.tensor(a), torch.tensor(b))
            print(f"  {name:>5} exact operator: exit {rc0}, {secs0:6.1f} s, peak RSS "
                  f"{rss0 / 2**30:.2f} GiB; default vs exact {db:.1f} dB, "
                  f"exact / default time {secs0 / secs:.2f}")


def bench_probes(tmp: Path, iterations: int, names: list[str], rl_iterations: int,
                 restore_scale: str) -> None:
    from blurfield import api
    from blurfield.imageio import read_image
    from blurfield.physics import to_linear as lin

    print(f"\n3. no-harm probes against the restoration (restore_scale {restore_scale}; RL "
          f"timed over {rl_iterations} iterations, scaled to {iterations}), in this process, "
          f"{torch.get_num_threads()} threads; {load()}")
    model = api.load_estimator()  # channels-last weights
    plain = copy.deepcopy(model).to(memory_format=torch.contiguous_format)  # the file's
    for name in names:
        h, w = SIZES[name]
        src = tmp / f"photo{h}.png"
        if not src.exists():
            make_photo(src, h, w)
        image, _ = read_image(src)
        t0 = time.perf_counter()
        api.estimate(image, model, scale="auto", tile=0, refine=0)
        t_whole = time.perf_counter() - t0
        t0 = time.perf_counter()
        api.estimate(image, model, scale="auto", refine=0)
        t_tiles = time.perf_counter() - t0
        t_plain = best_of(lambda: api.estimate(image, plain, scale="auto", refine=0), 0)
        t0 = time.perf_counter()
        field = api.estimate(image, model, scale="auto")
        t_est = time.perf_counter() - t0
        x = lin(torch.from_numpy(image).permute(2, 0, 1)[None].float())
        low = field.mixing[None]
        o = RestoreOptions()
        options = {k: v for k, v in o.rl_kwargs().items() if k not in ("iterations",
                                                                      "early_stop")}
        t_probes = {}
        for window in (o.no_harm_window, 0):  # the default squares, the whole photo
            t0 = time.perf_counter()
            a = api._assess(x, field, low, torch.device("cpu"), 2.2,
                            dataclasses.replace(o, no_harm_window=window), options, 10)
            t_probes[window] = time.perf_counter() - t0
        t_probe = t_probes[o.no_harm_window]
        t0 = time.perf_counter()
        api.restore(x, field, iterations=rl_iterations, no_harm=False, device="cpu",
                    restore_scale=restore_scale)
        t_rl = (time.perf_counter() - t0) * iterations / max(1, rl_iterations)
        total = t_est + t_probe + t_rl
        g = torch.Generator().manual_seed(0)
        noisy = to_display((x + 0.006 * torch.randn(x.shape, generator=g)).clamp(0, 1))
        noisy = noisy[0].permute(1, 2, 0).numpy()
        t_gate = best_of(lambda: api.denoise(image), 0)
        t_filter = best_of(lambda: api.denoise(noisy), 0)
        t_smooth = best_of(lambda: api.smooth(image), 0)
        print(f"  {name:>5}: the noise test of restore.denoise_above {t_gate:.1f} s "
              f"(noise-free: {api.denoise(image)[1] is None}), with linear noise of 0.006 "
              f"the test and the bilateral filter {t_filter:.1f} s, a JPEG's smoothing "
              f"(restore.jpeg_smooth) {t_smooth:.1f} s; against the estimate "
              f"{t_gate / t_est:.0%}, {t_filter / t_est:.0%} and {t_smooth / t_est:.0%}")
        print(f"  {name:>5}: estimate {t_est:.1f} s (in tiles of {RestoreCfg().estimate_tile} "
              f"{t_tiles:.1f} s, the whole photo at once {t_whole:.1f} s, the kernel "
              f"refinement {t_est - t_tiles:.1f} s, {t_est / t_tiles:.2f}x the tiles alone: "
              f"{field.refinement}; in tiles with the weights in the file's layout "
              f"{t_plain:.1f} s, {t_plain / t_tiles:.2f}x channels-last), probes "
              f"{t_probe:.1f} s (blend "
              f"{a.blend:.2f}; on the whole photo {t_probes[0]:.1f} s, "
              f"{t_probes[0] / t_probe:.1f}x), RL {t_rl:.1f} s; probes' share "
              f"{t_probe / total:.0%}, estimate's {t_est / total:.0%}")


# --------------------------------------------------------------------------- 4. scale


def bench_scale(folder: Path, field_scale: float, iterations: int) -> None:
    """PSNR against the sharp photo of full-size RL and of RL at the field's scale."""
    from blurfield import api
    from blurfield.imageio import read_image
    from blurfield.restore import upscale_kernels, upscale_mixing

    print(f"\n4. restoring at the field's scale {field_scale:g} instead of full size, "
          f"{iterations} iterations, no-harm off (it leaves most of these as is); PSNR (dB) "
          f"against the sharp photo, seconds; {load()}")
    model = api.load_estimator()
    opts = dict(iterations=iterations, device="cpu", no_harm=False)
    head = (f"  {'photo':<15} {'field':<9} {'blurry':>7} {'full':>7} {'at scale':>8} "
            f"{'full s':>7} {'scale s':>7}")
    print(head)
    rows: dict[str, list] = {"estimated": [], "true": []}
    for path in sorted(folder.glob("*.blurry.png")):
        blurry, _ = read_image(path)
        sharp, _ = read_image(path.with_name(path.name.replace(".blurry.", ".sharp.")))
        h, w = blurry.shape[:2]
        top, left = (sharp.shape[0] - h) // 2, (sharp.shape[1] - w) // 2
        sharp = sharp[top:top + h, left:left + w]
        # the true field is known at the reduced scale: line kernels of K = 17 there
        hs, ws = round(h / field_scale), round(w / field_scale)
        kernels = line_kernels(4, 17, seed=len(rows["true"]))
        mixing = smooth_mixing(4, hs, ws, seed=len(rows["true"]))
        sl = to_linear(torch.tensor(sharp).permute(2, 0, 1)[None])
        v = saturate(blur(sl, upscale_kernels(kernels, field_scale)[None],
                          upscale_mixing(mixing[None], (h, w)), padding="same"))
        synthetic = (to_display(v)[0].permute(1, 2, 0).clamp(0, 1) * 255).round() / 255
        cases = {
            "estimated": (blurry, api.estimate(blurry, model, scale=field_scale)),
            "true": (synthetic.numpy(), api.Field(kernels, mixing, field_scale, (h, w))),
        }
        for name, (photo_, field) in cases.items():
            row = [psnr(torch.tensor(photo_), torch.tensor(sharp))]
            for rs in ("full", "field"):
                t0 = time.perf_counter()
                out = api.deblur(photo_, field, restore_scale=rs, **opts)
                row.append(psnr(torch.tensor(out), torch.tensor(sharp)))
                row.append(time.perf_counter() - t0)
            rows[name].append(row)
            print(f"  {path.name.split('.')[0]:<15} {name:<9} {row[0]:7.2f} {row[1]:7.2f} "
                  f"{row[3]:8.2f} {row[2]:7.2f} {row[4]:7.2f}")
    for name, r in rows.items():
        m = np.array(r).mean(0)
        print(f"  {'mean':<15} {name:<9} {m[0]:7.2f} {m[1]:7.2f} {m[3]:8.2f} {m[2]:7.2f} "
              f"{m[4]:7.2f}  gain: full {m[1] - m[0]:+.2f} dB, at scale {m[3] - m[0]:+.2f} "
              f"dB; time full / at scale {m[2] / m[4]:.1f}")


def bench_long(paths: list[Path], tmp: Path, iterations: int, repeats: int) -> None:
    """``deblur`` without and with the long-blur retry: best wall seconds of each."""
    from blurfield.api import load_field

    print(f"\n5. blurfield deblur without / with the long-blur retry, {iterations} iterations, "
          f"best of {repeats}, child OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', 'unset')}; {load()}")
    print(f"  {'photo':<22} {'without s':>9} {'with s':>7} {'with / without':>14}  field (with)")
    for path in paths:
        best = {1: float("inf"), 2: float("inf")}
        for _ in range(repeats):
            for factor in best:
                out = tmp / f"long{factor}"
                rc, secs, _ = deblur_subprocess(path, out, iterations,
                                                [f"restore.long_blur_scale={factor}"])
                if rc != 0:
                    raise SystemExit(f"{path}: blurfield deblur exited {rc}")
                best[factor] = min(best[factor], secs)
        field = load_field(tmp / "long2" / f"{path.stem}_field.npz")
        print(f"  {path.name:<22} {best[1]:9.1f} {best[2]:7.1f} {best[2] / best[1]:14.2f}  "
              f"scale {field.scale:g}: {field.refinement[:60]}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sections", nargs="+", default=["rl", "e2e", "probes"],
                   choices=["rl", "e2e", "probes", "scale", "long"])
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--iterations", type=int, default=ITERATIONS)
    p.add_argument("--rl-iterations", type=int, default=10)
    p.add_argument("--conv-iterations", type=int, default=2)
    p.add_argument("--skip-tol", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--photos", nargs="+", default=["1 MP", "12 MP"], choices=list(SIZES))
    p.add_argument("--compare", action="store_true")
    p.add_argument("--probe-rl-iterations", type=int, default=ITERATIONS,
                   help="section 3: RL iterations timed (scaled to --iterations)")
    p.add_argument("--restore-scale", default="full", help="section 3: restore_scale of RL")
    p.add_argument("--e2e-args", nargs="*", default=[])
    p.add_argument("--handmade", type=Path)
    p.add_argument("--field-scale", type=float, default=2.0)
    p.add_argument("--long", nargs="+", type=Path, default=[])
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} "
          f"CPUs; {load()}")
    if "rl" in a.sections:
        bench_rl(a.size, a.repeats, a.skip_tol, a.rl_iterations, a.conv_iterations)
    with tempfile.TemporaryDirectory(prefix="bench_restore_") as tmp:
        if "e2e" in a.sections:
            bench_e2e(Path(tmp), a.iterations, a.compare, a.e2e_args, a.photos)
        if "probes" in a.sections:
            bench_probes(Path(tmp), a.iterations, a.photos, a.probe_rl_iterations,
                         a.restore_scale)
        if "long" in a.sections:
            if not a.long:
                p.error("--sections long needs --long FILE...")
            bench_long(a.long, Path(tmp), a.iterations, a.repeats)
    if "scale" in a.sections:
        if a.handmade is None:
            p.error("--sections scale needs --handmade DIR")
        bench_scale(a.handmade, a.field_scale, a.iterations)


if __name__ == "__main__":
    main()
