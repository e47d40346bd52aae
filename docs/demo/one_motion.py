"""docs/demo/one_motion.png: three hand-made photos under one straight motion each, blurry |
`blurfield deblur`'s output (shipped model, defaults) | sharp, with PSNR against the sharp
photo and what `deblur` decided (README: Refining the kernel); with ``--shake``,
docs/demo/shake.png: three under one camera-shake trajectory each (README: Results). Run
from the repository root:

    python -m data_prep handmade --one-motion --out data/handmade1
    python docs/demo/one_motion.py
    python -m data_prep handmade --shake --draws 4 --out data/handmade_shake
    python docs/demo/one_motion.py --shake
"""

import sys

import numpy as np
from common import psnr

from blurfield.api import deblur, estimate, load_estimator
from blurfield.data.schema import decode_sample
from blurfield.evaluation.readers import load_raw_sample, read_benchmark
from blurfield.viz import save_png, side_by_side
from data_prep.handmade import PHOTOS as ALL_PHOTOS

SHAKE = "--shake" in sys.argv[1:]
# one motion: refined kernel right; field kept by the border test, by the margin.
# shake (first draw): two gain; brick's 256² evaluation window is one of the three of 32 made worse
PHOTOS = ("coffee", "camera", "brick") if SHAKE else ("coffee", "chelsea", "brick")
ROOT = "data/handmade_shake" if SHAKE else "data/handmade1"
OUT = "docs/demo/shake.png" if SHAKE else "docs/demo/one_motion.png"
BORDER = 16  # px left out of the PSNR at each side (the blur's reach)


model = load_estimator()
rows = []
for item in read_benchmark("synthetic", f"{ROOT}/handmade-000000.tar"):
    sample = decode_sample(load_raw_sample(item))
    name = sample.meta["image_id"].removeprefix("skimage.")
    if name not in PHOTOS or int(sample.key.split("_")[0]) >= len(ALL_PHOTOS):
        continue  # the first draw only (`--draws N` writes N per photo)
    blurry, sharp = sample.blurry / 255.0, sample.sharp / 255.0
    field = estimate(blurry, model)
    restored, result = deblur(blurry, field, return_result=True)
    kernel = "refined" if field.refinement.startswith("refined") else "field"
    rows.append(side_by_side(
        [blurry, restored, sharp],
        [f"{name}: blurry, {psnr(blurry, sharp, BORDER):.1f} dB",
         f"deblur: {result.decision.decision} ({kernel}), {psnr(restored, sharp, BORDER):.1f} dB",
         "sharp"], height=256))
width = max(r.shape[1] for r in rows)
rows = [np.pad(r, ((0, 6), (0, width - r.shape[1]), (0, 0))) for r in rows]
save_png(OUT, np.concatenate(rows, 0))
