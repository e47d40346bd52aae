"""The uniform-blur curriculum's batches (blurfield.data.uniform) against a direct conv2d."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from blurfield.data.uniform import uniform_batch
from blurfield.physics import reblur, saturate, to_display


def _batch(n=3, j=3, k=9, c=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    kernels = torch.softmax(2 * torch.randn(n, j, k * k, generator=g), -1).reshape(n, j, k, k)
    masks = torch.softmax(torch.randn(n, j, c, c, generator=g), 1)
    return {
        "blurry": torch.rand(n, 3, c, c, generator=g),
        "sharp_linear": 1.3 * torch.rand(n, 3, c + k - 1, c + k - 1, generator=g),
        "kernels": kernels,
        "masks": masks,
        "layer_valid": torch.ones(n, j, dtype=torch.bool),
        "weights": torch.rand(n, c, c, generator=g) + 0.1,
        "has_field": torch.tensor([True, False, True]),
    }


def test_field_crops_are_reblurred_by_their_background_kernel():
    b = _batch()
    out = uniform_batch(b, gamma=2.2)
    for i in (0, 2):
        # Direct reference: each channel correlated with layer 0's kernel, "valid".
        ref = F.conv2d(b["sharp_linear"][i][:, None].double(),
                       b["kernels"][i, 0][None, None].double())[:, 0]
        ref = torch.round(to_display(saturate(ref), 2.2).clamp(0, 1) * 255) / 255
        assert (out["blurry"][i].double() - ref).abs().max() <= 1 / 255 + 1e-6
        assert torch.equal(out["masks"][i, 0], torch.ones(16, 16))
        assert float(out["masks"][i, 1:].abs().max()) == 0
        assert out["layer_valid"][i].tolist() == [True, False, False]
        assert torch.equal(out["weights"][i], torch.ones(16, 16))
    # The DESIGN §8 invariant holds for the new batch: its field reproduces its blurry crop.
    again = reblur(out["sharp_linear"], out["kernels"], out["masks"], padding="valid")
    assert (again[[0, 2]] - out["blurry"][[0, 2]]).abs().max() <= 1 / 255 + 1e-6
    # A pair without a field passes through untouched; the input batch is not modified.
    for key in ("blurry", "masks", "layer_valid", "weights"):
        assert torch.equal(out[key][1], b[key][1])
    assert not torch.equal(out["blurry"][0], b["blurry"][0])
    assert b["layer_valid"].all()
