"""docs/demo/refined_kernel.png: held-out synthetic windows restored with the network's field
and with its refined kernel, and the kernels: true (mean over the window) | the network's
mean | refined (README: Refining the kernel). Run from the repository root after
`make compact` (or `python -m data_prep shards --config shards/compact`) has built the
compact shards:

    python docs/demo/refined_kernel.py
"""

import numpy as np
from common import psnr

from blurfield.api import deblur, estimate, load_estimator
from blurfield.data.schema import decode_sample, gt_field, image_tensor, sharp_linear
from blurfield.evaluation.readers import load_raw_sample, read_benchmark
from blurfield.evaluation.synthetic import centre_window
from blurfield.physics import mean_kernel, to_display
from blurfield.viz import psf_tile, save_png, side_by_side

IDS = ("00003241", "00003261", "00003339")  # of val-000004, the tuning shard


model = load_estimator()
rows = []
for item in read_benchmark("synthetic", "data/shards/compact/val-000004.tar"):
    if item.id not in IDS:
        continue
    sample = decode_sample(load_raw_sample(item))
    box = centre_window(*sample.sharp.shape[:2], int(sample.meta["kernel_size"]), 256)
    top, left, h, w = box
    blurry = image_tensor(sample.blurry)[:, top:top + h, left:left + w].permute(1, 2, 0).numpy()
    sharp = to_display(sharp_linear(sample)[:, top:top + h, left:left + w].clamp(0, 1))
    sharp = sharp.permute(1, 2, 0).numpy()
    true = gt_field(sample, box)
    network, refined = estimate(blurry, model, refine=0), estimate(blurry, model)
    panels, labels = [blurry], [f"blurry, {psnr(blurry, sharp):.1f} dB"]
    for name, field in (("network's field", network), ("refined kernel", refined)):
        x = deblur(blurry, field, iterations=10, no_harm=False)
        panels.append(x)
        labels.append(f"{name}, {psnr(x, sharp):.1f} dB")
    kernels = [mean_kernel(true.kernels, true.masks), mean_kernel(network.kernels,
               network.mixing), mean_kernel(refined.kernels, refined.mixing)]
    strip = np.concatenate([np.pad(psf_tile(k, 66), 2) for k in kernels], 1)
    panels.append(strip)
    labels.append("true | network | refined")
    rows.append(side_by_side(panels, labels, height=200))
width = max(r.shape[1] for r in rows)
rows = [np.pad(r, ((0, 6), (0, width - r.shape[1]), (0, 0))) for r in rows]
save_png("docs/demo/refined_kernel.png", np.concatenate(rows, 0))
