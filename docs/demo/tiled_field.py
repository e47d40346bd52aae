"""docs/demo/tiled_field.png: a hand-made photo's per-pixel PSFs, true | estimated whole |
estimated in 128 px tiles (README: Estimating in tiles). Run from the repository root:

    python -m data_prep handmade --out data/handmade512 --size 512
    python docs/demo/tiled_field.py
"""

from blurfield.api import estimate, load_estimator
from blurfield.data.schema import decode_sample, gt_field
from blurfield.evaluation.readers import load_raw_sample, read_benchmark
from blurfield.evaluation.synthetic import centre_window
from blurfield.viz import psf_overlay, save_png, side_by_side

item = read_benchmark("synthetic", "data/handmade512/handmade-000000.tar")[0]  # astronaut
sample = decode_sample(load_raw_sample(item))
top, left, h, w = centre_window(*sample.sharp.shape[:2], int(sample.meta["kernel_size"]), 480)
blurry = sample.blurry[top:top + h, left:left + w]
true = gt_field(sample, (top, left, h, w))
model = load_estimator()
panels = [psf_overlay(blurry, true.kernels, true.masks / true.masks.sum(0, keepdim=True))]
for tile in (0, 128):
    field = estimate(blurry, model, tile=tile, refine=0)
    panels.append(psf_overlay(blurry, field.kernels, field.mixing))
save_png("docs/demo/tiled_field.png", side_by_side(
    panels, ["true field", "estimated whole (estimate_tile=0)", "estimated in 128 px tiles"]))
