"""docs/demo/one_motion.png: three hand-made photos under one camera shake each, blurry |
`blurfield deblur`'s output (shipped model, defaults) | sharp, with PSNR against the sharp
photo and what `deblur` decided (README: Refining the kernel). Run from the repository root:

    python -m data_prep handmade --one-motion --out data/handmade1
    python docs/demo/one_motion.py
"""

import numpy as np
import torch

from blurfield.api import deblur, estimate, load_estimator
from blurfield.data.schema import decode_sample
from blurfield.evaluation import metrics
from blurfield.evaluation.readers import load_raw_sample, read_benchmark
from blurfield.viz import save_png, side_by_side

PHOTOS = ("coffee", "chelsea", "brick")  # refined kernel right; field kept: border test, margin
BORDER = 16  # px left out of the PSNR at each side (the blur's reach)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR of two (H, W, 3) display images in [0, 1], their borders left out."""
    a, b = (torch.from_numpy(np.asarray(x, dtype=np.float64)[BORDER:-BORDER, BORDER:-BORDER])
            .permute(2, 0, 1) for x in (a, b))
    return float(metrics.psnr(a, b))


model = load_estimator()
rows = []
for item in read_benchmark("synthetic", "data/handmade1/handmade-000000.tar"):
    sample = decode_sample(load_raw_sample(item))
    name = sample.meta["image_id"].removeprefix("skimage.")
    if name not in PHOTOS:
        continue
    blurry, sharp = sample.blurry / 255.0, sample.sharp / 255.0
    field = estimate(blurry, model)
    restored, result = deblur(blurry, field, return_result=True)
    kernel = "refined kernel" if field.refinement.startswith("refined") else "network's field"
    rows.append(side_by_side(
        [blurry, restored, sharp],
        [f"{name}: blurry, {psnr(blurry, sharp):.1f} dB",
         f"deblur ({result.decision.decision}, {kernel}), {psnr(restored, sharp):.1f} dB",
         "sharp"], height=256))
width = max(r.shape[1] for r in rows)
rows = [np.pad(r, ((0, 6), (0, width - r.shape[1]), (0, 0))) for r in rows]
save_png("docs/demo/one_motion.png", np.concatenate(rows, 0))
