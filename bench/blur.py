"""Blur-field operator speed: direct (Kornia) and fft paths against a plain grouped conv2d.

For RGB 256², 512², 1024², B = 25, K = 33, "same" padding, prints the forward and adjoint
seconds (minimum of 5 runs in one process), the ratios, and the peak extra memory of the
fft path (resident set, output excluded) relative to the mixing tensor. The fft forward is
compared with the B x C inverse transforms alone, the adjoint with the B x C forward
transforms alone, at the same padded size.

Usage: python bench/blur.py [--sizes 256 512 1024] [--repeats 5] [--no-direct]
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

from blurfield.physics import BlurField, pad, pad_adjoint, smooth_size


def best_of(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
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
    field = BlurField(kernels, mixing, "same", "fft", check=False, cache=False)
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--n-basis", type=int, default=25)
    ap.add_argument("--kernel-size", type=int, default=33)
    ap.add_argument("--no-direct", action="store_true", help="skip the slow direct path")
    ap.add_argument("--mem-child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.mem_child:
        s, b, k, op = args.mem_child
        return _mem_child(int(s), int(b), int(k), op)
    b, k, c = args.n_basis, args.kernel_size, 3
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, B={b}, K={k}, RGB")
    head = (f"{'size':>6} {'op':>8} {'conv2d':>8} {'direct':>8} {'fft':>8} {'cached':>8} "
            f"{'BxC fft':>8} {'conv/fft':>8} {'dir/fft':>8} {'fft/BxC':>8} {'cach/BxC':>8} "
            f"{'mem/mix':>8}")
    print(head)
    for s in args.sizes:
        kernels, mixing, u = make_inputs(s, b, k, c)
        y = torch.rand_like(u)
        size = (smooth_size(s + k - 1), smooth_size(s + k - 1))
        fft_field = BlurField(kernels, mixing, "same", "fft", check=False, cache=False)
        cached = BlurField(kernels, mixing, "same", "fft", check=False, cache=True)
        dir_field = BlurField(kernels, mixing, "same", "direct", check=False, cache=False)
        real = torch.rand(1, b, c, *size)
        spec = torch.fft.rfft2(real)
        ref_inv = best_of(lambda spec=spec, size=size: torch.fft.irfft2(spec, s=size),
                          args.repeats)
        ref_fwd = best_of(lambda real=real: torch.fft.rfft2(real), args.repeats)
        del real, spec
        for op, x, fn_ref, ref in (
            ("forward", u, conv2d_reference, ref_inv),
            ("adjoint", y, conv2d_reference_adjoint, ref_fwd),
        ):
            t_fft = best_of(lambda op=op, x=x: getattr(fft_field, op)(x), args.repeats)
            t_cached = best_of(lambda op=op, x=x: getattr(cached, op)(x), args.repeats)
            t_ref = best_of(lambda f=fn_ref, x=x: f(x, kernels, mixing, k), 1)
            t_dir = (float("nan") if args.no_direct else
                     best_of(lambda op=op, x=x: getattr(dir_field, op)(x), 1))
            mem = peak_extra_memory(s, b, k, op)
            print(f"{s:>6} {op:>8} {t_ref:8.3f} {t_dir:8.3f} {t_fft:8.3f} {t_cached:8.3f} "
                  f"{ref:8.3f} {t_ref / t_fft:8.1f} {t_dir / t_fft:8.1f} {t_fft / ref:8.2f} "
                  f"{t_cached / ref:8.2f} {mem:8.2f}")
    print("conv2d: one plain conv2d call, channels as the batch, the B kernels as outputs;"
          " direct: Kornia filter2d (a grouped conv2d) per basis kernel;"
          " cached: BlurField with the B kernel spectra kept between calls (as in RL);"
          " fft/BxC: time over the B x C transforms alone (target <= 1.3);"
          " mem/mix: peak extra memory over the mixing tensor (target < 3)")


if __name__ == "__main__":
    main()
