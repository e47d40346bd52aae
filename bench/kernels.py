"""Kernels per second of the two camera-shake generators (data_prep/kernels), one process.

    .venv/bin/python bench/kernels.py [--n 8192] [--batch 1024] [--repeat 3]

Prints, per generator, the best of ``repeat`` timings (wall clock and process CPU time,
since the 2 cores are shared) of ``n`` kernels made in batches of
``batch`` (the bank writer's loop without the disk), and the bank statistics of that run
next to docs/kernels.md's table (tremor at f = 2,000 px).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from blurfield.config import load_config
from data_prep.kernels.bank import generate

TABLE = {  # docs/kernels.md, tremor at f = 2,000 px, p5 p25 p50 p75 p95
    "extent": (3, 6, 9, 15, 26),
    "path_length": (3, 9.6, 19, 33, 63),
}


def run(overrides: list[str], n: int, batch: int, repeat: int) -> tuple[float, float, dict]:
    """Kernels per wall second and per CPU second (the machine is shared), and the records."""
    cfg = load_config(None, overrides).kernels
    generate(cfg, 0, np.arange(64))  # warm-up
    wall = cpu = float("inf")
    params: dict = {}
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        parts = [generate(cfg, 0, np.arange(i, min(i + batch, n)))[1] for i in range(0, n, batch)]
        wall = min(wall, time.perf_counter() - t)
        cpu = min(cpu, time.process_time() - c)
        params = {k: np.concatenate([p[k] for p in parts]) for k in parts[0].dtype.names}
    return n / wall, n / cpu, params


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=8192)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    f2000 = ["kernels.tremor.focal_min=2000", "kernels.tremor.focal_max=2000"]
    runs = {
        "tremor (f 1000-3000)": ["kernels.generator=tremor"],
        "tremor (f 2000)": ["kernels.generator=tremor", *f2000],
        "boracchi": ["kernels.generator=boracchi"],
    }
    print(f"{a.n} kernels, K = 33, batches of {a.batch}, best of {a.repeat}\n")
    print(f"{'generator':<22}{'kernels/s':>10}{'per CPU s':>10}{'redrawn':>9}"
          f"{'extent p50':>12}{'length p50':>12}")
    stats = {}
    for name, ov in runs.items():
        rate, cpu_rate, p = run(ov, a.n, a.batch, a.repeat)
        stats[name] = p
        print(f"{name:<22}{rate:>10.0f}{cpu_rate:>10.0f}{np.mean(p['attempts'] > 1):>9.1%}"
              f"{np.median(p['extent']):>12.1f}{np.median(p['path_length']):>12.1f}")
    p = stats["tremor (f 2000)"]
    print("\ntremor at f = 2,000 px vs docs/kernels.md (px):   p5    p25    p50    p75    p95")
    for key, ref in TABLE.items():
        q = np.percentile(p[key], [5, 25, 50, 75, 95])
        print(f"  {key:<12} here    " + "".join(f"{v:>7.1f}" for v in q))
        print(f"  {key:<12} table   " + "".join(f"{v:>7.1f}" for v in ref))


if __name__ == "__main__":
    main()
