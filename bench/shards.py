"""Shard synthesis throughput: samples/s per core and where the time goes.

Per sample, in one process with one torch thread (what a shard worker does): the built-in
dead-leaves scene, the on-the-fly kernels (tremor generator), the synthesis (to linear,
smooth masks, blur, to display) and the encoding (three PNGs at level 1 + npy + json).
Scenes are chosen with exactly ``--layers`` layers (default 4 = 3 objects + background).
Reports the median CPU time (``time.process_time``: what one core spends, robust to other
processes sharing the machine) and wall time of each part over ``--samples`` samples, and
samples/s per core = 1 / the median CPU total. The target is >= 10 samples/s per core at
512 x 512, 4 layers, K = 33. Like a shard worker, the process tunes glibc's malloc first
(``data_prep.shards.tune_malloc``; ``--no-malloc`` measures without).

``--e2e N`` also builds N samples with ``python -m data_prep shards``'s code path and
``--workers`` processes into a temp folder and prints the wall-clock rate and the workers'
CPU time per sample (process start and imports included: ~3 s of CPU per worker, so use
a few hundred samples, or subtract a run with few).

Usage: python bench/shards.py [--samples 20] [--size 512] [--kernel-size 33] [--layers 4]
                              [--e2e 0] [--workers 2]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time

import numpy as np
import torch

from blurfield.config import load_config
from blurfield.data.schema import Sample, encode_sample, make_meta
from data_prep.scenes.builtin import BuiltinSource, textures
from data_prep.shards import KernelSource, build, tune_malloc
from data_prep.synth import draw_kernel_ids, synthesize


def scenes_with_layers(src: BuiltinSource, layers: int, count: int) -> list[int]:
    """Indices of the first ``count`` scenes that have exactly ``layers`` layers."""
    out, i = [], 0
    while len(out) < count:
        if src.scene(i).num_layers == layers:
            out.append(i)
        i += 1
    return out


def per_sample(cfg, indices: list[int]) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """CPU and wall seconds of each part, per sample (after one warm-up sample)."""
    sc = cfg.shards
    src = BuiltinSource.from_cfg(sc)
    ks = KernelSource(sc, cfg.kernels)
    rng = np.random.default_rng(0)
    names = ("scene", "kernels", "synthesis", "encode")
    cpu: dict[str, list[float]] = {k: [] for k in names}
    wall: dict[str, list[float]] = {k: [] for k in names}

    def clocks() -> tuple[float, float]:
        return time.process_time(), time.perf_counter()

    for n, i in enumerate([indices[0]] + indices):
        t = [clocks()]
        scene = src.scene(i)
        t.append(clocks())
        ids = draw_kernel_ids(rng, scene.num_layers, ks.pool)
        kernels = ks.get(ids)
        t.append(clocks())
        s = float(rng.uniform(0.5, 1.5))
        blurry = synthesize(scene.image, scene.instances, kernels, s, 2.2, True)
        t.append(clocks())
        meta = make_meta(has_field=True, brightness=s, gamma=2.2, kernel_size=sc.kernel_size,
                         normalize_masks=True, noise=None, seed=0,
                         kernel_ids=[int(x) for x in ids], image_id=scene.image_id,
                         source="builtin")
        encode_sample(Sample(f"{i:08d}", blurry, scene.image, meta, kernels, scene.instances))
        t.append(clocks())
        if n:
            for j, k in enumerate(names):
                cpu[k].append(t[j + 1][0] - t[j][0])
                wall[k].append(t[j + 1][1] - t[j][1])
    return cpu, wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--kernel-size", type=int, default=33)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--e2e", type=int, default=0, help="also build this many samples")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--malloc", action=argparse.BooleanOptionalAction, default=True,
                    help="tune glibc malloc as shard workers do (--no-malloc: the default)")
    a = ap.parse_args()

    torch.set_num_threads(1)
    tuned = tune_malloc() if a.malloc else False
    crop = min(256, a.size - a.kernel_size + 1)
    cfg = load_config(None, [f"shards.scene_size={a.size}", f"shards.kernel_size={a.kernel_size}",
                             f"shards.crop_size={crop}",
                             f"shards.max_objects={max(3, a.layers - 1)}"])
    textures()
    idx = scenes_with_layers(BuiltinSource.from_cfg(cfg.shards), a.layers, a.samples)
    cpu, wall = per_sample(cfg, idx)
    mc = {k: statistics.median(v) for k, v in cpu.items()}
    mw = {k: statistics.median(v) for k, v in wall.items()}
    total, total_w = sum(mc.values()), sum(mw.values())
    print(f"shard synthesis, {a.size} x {a.size}, {a.layers} layers, K = {a.kernel_size}, "
          f"1 torch thread, median of {a.samples} samples, malloc tuned: {tuned}")
    print(f"{'part':<10} {'cpu ms':>8} {'share':>7} {'wall ms':>8}")
    for k in mc:
        print(f"{k:<10} {mc[k] * 1e3:8.1f} {mc[k] / total:7.1%} {mw[k] * 1e3:8.1f}")
    print(f"{'total':<10} {total * 1e3:8.1f} {'':>7} {total_w * 1e3:8.1f}")
    print(f"samples/s per core: {1 / total:.1f} from CPU time, {1 / total_w:.1f} from wall time "
          "(target >= 10)")
    if a.e2e:
        with tempfile.TemporaryDirectory() as d:
            c = load_config(None, [f"shards.out_dir={d}", f"shards.num_samples={a.e2e}",
                                   f"shards.workers={a.workers}", f"shards.scene_size={a.size}",
                                   f"shards.kernel_size={a.kernel_size}", "shards.shard_size=16",
                                   f"shards.crop_size={crop}", "shards.progress=false"])
            t = time.perf_counter()
            build(c, progress=False)
            dt = time.perf_counter() - t
        ch = resource.getrusage(resource.RUSAGE_CHILDREN)  # the joined worker processes
        cpu = ch.ru_utime + ch.ru_stime
        print(f"end to end: {a.e2e} samples, {a.workers} worker(s): {dt:.1f} s, "
              f"{a.e2e / dt:.1f} samples/s ({a.e2e / dt / max(1, a.workers):.1f} per worker)")
        if a.workers and cpu:
            print(f"  workers' CPU: {cpu / a.e2e * 1e3:.0f} ms/sample, start-up included")


if __name__ == "__main__":
    main()
