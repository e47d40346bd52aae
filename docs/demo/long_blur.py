"""docs/demo/long_blur.png: three hand-made photos, each under one straight motion 35-61 px
long (longer than the estimator reads), blurry | `blurfield deblur` as it is (`--scale auto`:
1 for a 512 px photo, estimated again at 2 when the refined kernel is cut off and the
second one is long and elongated) | at `--scale 3` | sharp, with PSNR against the sharp
photo and what `deblur` decided (README: Long blur). Run from the repository root:

    python -m data_prep handmade --one-motion --lengths 35,61 --kernel-size 65 --size 512 \
        --draws 2 --pairs --out data/handmade_long1_512
    python docs/demo/long_blur.py
"""

import numpy as np
from common import psnr

from blurfield.api import deblur, estimate, load_estimator
from blurfield.imageio import read_image
from blurfield.viz import save_png, side_by_side

ROOT = "data/handmade_long1_512/pairs/handmade"
PHOTOS = ("0008_astronaut", "0007_gravel", "0004_camera")  # auto retried: two taken, one not
OUT = "docs/demo/long_blur.png"
BORDER = 32  # px left out of the PSNR at each side (the blur's reach)


model = load_estimator()
rows = []
for stem in PHOTOS:
    blurry, _ = read_image(f"{ROOT}/blur/{stem}.png")
    sharp, _ = read_image(f"{ROOT}/sharp/{stem}.png")
    panels, titles = [blurry], [f"{stem[5:]}: blurry, {psnr(blurry, sharp, BORDER):.1f} dB"]
    for scale in ("auto", 3):
        field = estimate(blurry, model, scale)
        restored, result = deblur(blurry, field, restore_scale="field", return_result=True)
        panels.append(restored)
        name = f"auto (at {field.scale:g})" if scale == "auto" else f"--scale {scale}"
        titles.append(f"{name}: {result.decision.decision}, "
                      f"{psnr(restored, sharp, BORDER):.1f} dB")
    rows.append(side_by_side([*panels, sharp], [*titles, "sharp"], height=256))
width = max(r.shape[1] for r in rows)
rows = [np.pad(r, ((0, 6), (0, width - r.shape[1]), (0, 0))) for r in rows]
save_png(OUT, np.concatenate(rows, 0))
