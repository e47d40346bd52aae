"""Training speed of the estimator: one full step, the losses' share of it, the DataModule.

One training step = forward of KernelEstimatorModule, reblur loss + kernel loss (p = 2 or
p = 1), backward, Adam step, on a synthetic batch of the binding format (docs/design.md §8) with
J = 3 layers (``--l1-stride`` S > 1: the p = 1 step scores its kernel loss on every S-th
pixel per axis, ``train.l1_stride``). The losses are also timed alone (forward + backward
from leaf kernels and mixing) and given as a share of the step with the same p. The
DataModule is timed alone (one process, no loader workers) on shards if there are any.

Usage: python bench/train.py [--device cpu|cuda] [--batch 4] [--size 256] [--width 64]
       [--n-basis 25] [--steps 3] [--precision 32-true|bf16-mixed] [--channels-last]
       [--compile] [--l1-stride S] [--shards PATTERN]
Defaults: the paper's network (B = 25, K = 33, w = 64), batch 4, 256², the GPU if any.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import time

import torch

from blurfield.losses import kernel_loss, reblur_loss
from blurfield.physics import reblur
from blurfield.tasks.estimator import KernelEstimatorModule

K = 33


def synthetic_batch(n: int, crop: int, j: int = 3, device: str = "cpu",
                    seed: int = 0) -> dict[str, torch.Tensor]:
    """A batch of the binding format: J Gaussian-blob layer kernels, soft vertical bands as
    masks, blurry = reblur(sharp, kernels, masks)."""
    g = torch.Generator().manual_seed(seed)
    s = crop + K - 1
    yy, xx = torch.meshgrid(torch.arange(K) - K // 2, torch.arange(K) - K // 2, indexing="ij")
    sig = 1 + 4 * torch.rand(n, j, 2, generator=g)
    kernels = torch.exp(-(yy**2 / sig[..., :1, None] ** 2 + xx**2 / sig[..., 1:, None] ** 2) / 2)
    kernels = kernels / kernels.sum((-1, -2), keepdim=True)
    centres = torch.rand(n, j, 1, generator=g) * crop
    logits = -((torch.arange(crop) - centres) / (crop / 4)) ** 2
    masks = torch.softmax(logits, 1)[..., None, :].expand(n, j, crop, crop).contiguous()
    sharp = torch.rand(n, 3, s, s, generator=g) * 1.2
    blurry = reblur(sharp, kernels, masks)
    area = masks.sum((-1, -2))
    weights = 1 / (torch.einsum("njhw,nj->nhw", masks, area) + 1)
    b = {"blurry": blurry, "sharp_linear": sharp, "kernels": kernels, "masks": masks,
         "layer_valid": torch.ones(n, j, dtype=torch.bool), "weights": weights,
         "has_field": torch.ones(n, dtype=torch.bool)}
    return {k: v.to(device) for k, v in b.items()}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, steps: int, device: str) -> float:
    """Seconds per call: one warm-up call, then the mean of ``steps`` calls."""
    fn()
    _sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        fn()
    _sync(device)
    return (time.perf_counter() - t) / steps


def bench(args: argparse.Namespace) -> list[tuple[str, float, float, str]]:
    dev = args.device
    torch.manual_seed(0)
    batch = synthetic_batch(args.batch, args.size, device=dev)
    module = KernelEstimatorModule(
        {"n_basis": args.n_basis, "base_width": args.width},
        {"channels_last": args.channels_last, "compile": args.compile,
         "l1_stride": args.l1_stride}).to(dev)
    opt = torch.optim.Adam(module.parameters(), lr=1e-4)
    bf16 = args.precision.startswith("bf16")
    amp = (torch.autocast(device_type=dev.split(":")[0], dtype=torch.bfloat16) if bf16
           else contextlib.nullcontext())

    def step(p: int):
        def run() -> None:
            with amp:
                kernels, mixing = module(batch["blurry"])
                loss = module.losses(batch, kernels, mixing, p)["loss"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return run

    rows = []
    n = args.batch
    steps = {p: timed(step(p), args.steps, dev) for p in (2, 1)}
    with torch.no_grad():
        kernels, mixing = module(batch["blurry"])
    k = kernels.float().detach().requires_grad_()
    m = mixing.float().detach().requires_grad_()

    def loss_fn(which: str):
        def run() -> None:
            k.grad = m.grad = None
            if which == "reblur":
                loss = reblur_loss(k, m, batch["sharp_linear"], batch["blurry"],
                                   batch["weights"])
            else:
                loss = kernel_loss(k, m, batch["kernels"], batch["masks"], batch["weights"],
                                   p=1 if which == "kernel L1" else 2,
                                   layer_valid=batch["layer_valid"])
            loss.backward()
        return run

    losses = {w: timed(loss_fn(w), args.steps, dev) for w in ("reblur", "kernel L2", "kernel L1")}
    for p in (2, 1):
        note = f"l1_stride {args.l1_stride}" if p == 1 and args.l1_stride > 1 else ""
        rows.append((f"full training step, kernel loss p = {p}", steps[p], n / steps[p], note))
    for name, t in losses.items():
        p = 1 if name == "kernel L1" else 2
        rows.append((f"  {name} loss fwd+bwd", t, n / t, f"{100 * t / steps[p]:.1f}% of step"))
    for p, kl in ((2, "kernel L2"), (1, "kernel L1")):
        both = losses["reblur"] + losses[kl]
        rows.append((f"  both losses, p = {p}", both, n / both,
                     f"{100 * both / steps[p]:.1f}% of step"))
    shards = args.shards or _default_shards()
    if shards:
        from blurfield.data.throughput import datamodule_throughput

        r = datamodule_throughput(shards, kernel_size=K, crop_size=args.size,
                                  batch_size=args.batch, n_samples=8 * args.batch)
        rows.append(("DataModule alone (1 process, 0 workers)", args.batch / r["samples_per_s"],
                     r["samples_per_s"], f"{r['samples_per_cpu_s']:.1f} samples per CPU-s"))
    else:
        rows.append(("DataModule alone", float("nan"), float("nan"),
                     "no shards: run `make shards` or pass --shards"))
    return rows


def _default_shards() -> str | None:
    found = sorted(glob.glob("data/shards/builtin/train-*.tar"))
    return "::".join(found) if found else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--n-basis", type=int, default=25)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--precision", default="32-true", choices=("32-true", "bf16-mixed"))
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--l1-stride", type=int, default=1)
    p.add_argument("--shards", default=None)
    args = p.parse_args()
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    print(f"estimator B={args.n_basis} K={K} w={args.width}, batch {args.batch}, "
          f"{args.size}x{args.size}, {args.precision}, channels_last={args.channels_last}, "
          f"compile={args.compile}, {name}, {torch.get_num_threads()} threads")
    rows = bench(args)
    print(f"{'what':44s} {'ms':>10s} {'samples/s':>10s}  note")
    for what, sec, sps, note in rows:
        print(f"{what:44s} {1000 * sec:10.1f} {sps:10.2f}  {note}")


if __name__ == "__main__":
    main()
