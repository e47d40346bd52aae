"""Blur-field operator speed: the fft path against a plain conv2d and the transform floor.

For RGB images of each size, B = 25, K = 33, "same" padding, one table of seconds (minimum
of ``--repeats`` runs in one process) and ratios, forward and adjoint:

- ``conv2d``: one plain conv2d call, channels as the batch, the B kernels as outputs, then
  mask and sum (the adjoint: conv_transpose2d);
- ``direct`` (``--direct``): Kornia filter2d per basis kernel;
- ``fft``: ``blur`` / ``blur_adjoint`` (kernel spectra computed in the call);
- ``full``: a ``BlurField`` applied repeatedly, kernel spectra cached (as in Richardson-Lucy),
  full mixing (softmax of Gaussian logits: every element everywhere);
- ``peaky``: the same operator with ``skip_tol`` (default 1e-3) on a peaky field, 4 elements
  carrying the field and 21 with mixing below 1e-4 (an estimated field's softmax tail);
  ``eps`` is its error bound, the largest skipped mixing mass at a pixel
  (``|H u - H_skip u| <= eps (max u - min u)``, BlurField docstring);
- ``floor``: the B x C inverse real transforms (irfft2) alone at the same 5-smooth size, the
  faster of one batched call and B calls of C;
- ``mem/mix`` (unless ``--no-memory``): peak extra memory of one ``fft`` call (resident
  set, output excluded), in a fresh process, over the mixing tensor's size.

Targets (issue 17, 1024², quiet machine): conv/full >= 5, full/floor <= 1.2, full/peaky >= 3.
``--field FILE`` also times full against skipped on a saved field (``torch.save`` of a dict
with ``kernels`` (1, B, K, K) and ``mixing`` (1, B, H, W)). ``--clock thread`` measures the
CPU time of the calling thread instead of wall time: with ``--threads 1`` it gives relative
figures that survive other jobs on the machine (not the figures for the README).

Usage: python bench/blur.py [--sizes 256 512 1024] [--repeats 5] [--direct] [--no-memory]
           [--threads N] [--clock wall|thread] [--skip-tol 1e-3] [--field FILE]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import threading
import time

import torch
import torch.nn.functional as F

from blurfield.physics import BlurField, blur, blur_adjoint, pad, pad_adjoint, smooth_size

CLOCKS = {"wall": time.perf_counter, "thread": time.thread_time}


def best_of(fn, repeats: int, clock=time.perf_counter) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = clock()
        fn()
        times.append(clock() - t)
    return min(times)


def conv2d_reference(u, kernels, mixing, k):
    """Plain conv2d: channels as the batch, the B kernels as output channels; mask, sum."""
    n, c, h, w = u.shape
    b = kernels.shape[1]
    xp = pad(u, k, "same").reshape(n * c, 1, h + k - 1, w + k - 1)
    y = F.conv2d(xp, kernels.reshape(b, 1, k, k)).reshape(n, c, b, h, w)
    return (y * mixing[:, None]).sum(2)


def conv2d_reference_adjoint(y, kernels, mixing, k):
    n, c, h, w = y.shape
    b = kernels.shape[1]
    z = (mixing[:, None] * y[:, :, None]).reshape(n * c, b, h, w)
    x = F.conv_transpose2d(z, kernels.reshape(b, 1, k, k)).reshape(n, c, h + k - 1, w + k - 1)
    return pad_adjoint(x, k, "same")


def make_inputs(s: int, b: int, k: int, c: int = 3):
    g = torch.Generator().manual_seed(0)
    kernels = torch.rand(1, b, k, k, generator=g)
    kernels /= kernels.sum((-1, -2), keepdim=True)
    mixing = torch.randn(1, b, s, s, generator=g).softmax(1)
    return kernels, mixing, torch.rand(1, c, s, s, generator=g)


def peaky_mixing(s: int, b: int, strong: int = 4) -> torch.Tensor:
    """(1, B, s, s): ``strong`` elements carry the field with smooth regions (logits
    upsampled from 8 x 8); the other B - strong get logits at least 10 below the largest
    (mixing < 5e-5 each)."""
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(1, b, 8, 8, generator=g).mul(3)
    logits = F.interpolate(logits, size=(s, s), mode="bicubic", align_corners=False)
    top = logits[:, :strong].amax(1, keepdim=True)
    logits[:, strong:] = top - 10.0 - logits[:, strong:].abs()
    return logits[:, torch.randperm(b, generator=g)].softmax(1)


def floor_time(b: int, c: int, size: tuple[int, int], repeats: int, clock) -> float:
    """B x C irfft2 at ``size``: the faster of one batched call and B calls of C."""
    spec = torch.fft.rfft2(torch.rand(1, b, c, *size))
    batched = best_of(lambda spec=spec: torch.fft.irfft2(spec, s=size), repeats, clock)
    one = spec[:, 0].clone()
    del spec
    per_kernel = best_of(lambda: [torch.fft.irfft2(one, s=size) for _ in range(b)], repeats,
                         clock)
    return min(batched, per_kernel)


def peak_extra_memory(s: int, b: int, k: int, op: str) -> float:
    """Peak RSS growth of one fft call, in a fresh process, over the mixing tensor's size."""
    out = subprocess.run([sys.executable, __file__, "--mem-child", str(s), str(b), str(k), op],
                         capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _mem_child(s: int, b: int, k: int, op: str) -> None:
    """Sample the resident set every millisecond while one call runs; print peak growth."""
    kernels, mixing, x = make_inputs(s, b, k)
    field = BlurField(kernels, mixing, "same", "fft", check=False, cache=False, skip_tol=None)
    small = make_inputs(64, b, k)  # warm up FFT plans and the allocator on a small problem
    getattr(BlurField(small[0], small[1], "same", "fft", check=False), op)(small[2])
    before, peak, done = _rss(), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.001)

    t = threading.Thread(target=sample)
    t.start()
    out = getattr(field, op)(x)
    done.set()
    t.join()
    extra = max(peak[0], _rss()) - before - out.numel() * out.element_size()
    print(max(extra, 0) / (mixing.numel() * mixing.element_size()))


def _row(cells: list[tuple[str, int, object]]) -> str:
    return " ".join(f"{v:>{w}}" if isinstance(v, str) else f"{v:>{w}{f}}"
                    for f, w, v in cells)


def bench_field(path: str, tol: float, repeats: int, clock) -> None:
    """Full against skipped on a saved field (the field's own size, RGB)."""
    field = torch.load(path, map_location="cpu")
    kernels, mixing = field["kernels"].float(), field["mixing"].float()
    full = BlurField(kernels, mixing, "same", "fft", check=False, skip_tol=None)
    skip = BlurField(kernels, mixing, "same", "fft", check=False, skip_tol=tol)
    u = torch.rand(1, 3, *mixing.shape[-2:])
    print(f"\nfield {path}: B={kernels.shape[1]}, K={kernels.shape[-1]}, "
          f"{tuple(mixing.shape[-2:])}; skip_tol={tol:g} keeps {skip.active.numel()} elements, "
          f"eps={skip.skip_error.max().item():.2e}")
    for op in ("forward", "adjoint"):
        t_full = best_of(lambda op=op: getattr(full, op)(u), repeats, clock)
        t_skip = best_of(lambda op=op: getattr(skip, op)(u), repeats, clock)
        print(f"  {op}: full {t_full:.3f} s, skipped {t_skip:.3f} s, full/skipped "
              f"{t_full / t_skip:.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--n-basis", type=int, default=25)
    ap.add_argument("--kernel-size", type=int, default=33)
    ap.add_argument("--skip-tol", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--clock", choices=sorted(CLOCKS), default="wall")
    ap.add_argument("--direct", action="store_true", help="also time the (slow) direct path")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory column")
    ap.add_argument("--field", help="also time full vs skipped on a saved field")
    ap.add_argument("--mem-child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.mem_child:
        s, b, k, op = args.mem_child
        return _mem_child(int(s), int(b), int(k), op)
    if args.threads:
        torch.set_num_threads(args.threads)
    clock, rep = CLOCKS[args.clock], args.repeats
    b, k, c = args.n_basis, args.kernel_size, 3
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, clock {args.clock}, "
          f"B={b}, K={k}, RGB, 'same'; seconds, best of {rep}")
    cols = [("size", 6), ("op", 8), ("conv2d", 8), ("direct", 8), ("fft", 8), ("full", 8),
            ("peaky", 8), ("floor", 8), ("conv/full", 9), ("full/floor", 10),
            ("full/peaky", 10), ("peaky/floor", 11), ("eps", 8), ("mem/mix", 8)]
    print(" ".join(f"{name:>{w}}" for name, w in cols))
    for s in args.sizes:
        kernels, mixing, u = make_inputs(s, b, k, c)
        y = torch.rand_like(u)
        peaky = peaky_mixing(s, b)
        full = BlurField(kernels, mixing, "same", "fft", check=False, skip_tol=None)
        skip = BlurField(kernels, peaky, "same", "fft", check=False, skip_tol=args.skip_tol)
        direct = BlurField(kernels, mixing, "same", "direct", check=False, cache=False,
                           skip_tol=None)
        size = (smooth_size(s + k - 1), smooth_size(s + k - 1))
        floor = floor_time(b, c, size, rep, clock)
        eps = skip.skip_error.max().item()
        for op, x, fn, ref in (("forward", u, blur, conv2d_reference),
                               ("adjoint", y, blur_adjoint, conv2d_reference_adjoint)):
            t_ref = best_of(lambda f=ref, x=x: f(x, kernels, mixing, k), 1, clock)
            t_dir = (best_of(lambda op=op, x=x: getattr(direct, op)(x), 1, clock)
                     if args.direct else float("nan"))
            t_fft = best_of(lambda f=fn, x=x: f(x, kernels, mixing, "same", "fft", check=False),
                            rep, clock)
            t_full = best_of(lambda op=op, x=x: getattr(full, op)(x), rep, clock)
            t_peaky = best_of(lambda op=op, x=x: getattr(skip, op)(x), rep, clock)
            mem = float("nan") if args.no_memory else peak_extra_memory(s, b, k, op)
            print(_row([("", 6, s), ("", 8, op), (".3f", 8, t_ref), (".3f", 8, t_dir),
                        (".3f", 8, t_fft), (".3f", 8, t_full), (".3f", 8, t_peaky),
                        (".3f", 8, floor), (".1f", 9, t_ref / t_full),
                        (".2f", 10, t_full / floor), (".1f", 10, t_full / t_peaky),
                        (".2f", 11, t_peaky / floor), (".1e", 8, eps), (".2f", 8, mem)]))
        print(f"{'':>6} peaky keeps {skip.active.numel()} of {b} elements at skip_tol "
              f"{args.skip_tol:g}")
    print("targets at 1024 (issue 17): conv/full >= 5, full/floor <= 1.2, full/peaky >= 3; "
          "mem/mix < 3")
    if args.field:
        bench_field(args.field, args.skip_tol, rep, clock)


if __name__ == "__main__":
    main()
