"""Uniform-blur crops: a training batch re-blurred with one kernel per crop (a curriculum).

The first stage of the ``train.uniform_epochs`` curriculum: every crop with a field gets
the blur of its background layer everywhere, so the network first learns what a blur looks
like (its size and direction) on the easiest case, one kernel per image, before the
non-uniform layers::

    blurry = round(255 to_display(R(k_0 ⋆ u))) / 255     ("valid": the sharp crop is K - 1 larger)
    masks  = [1, 0, ..., 0],  layer_valid = [true, false, ...],  weights = 1

the same camera model and 8-bit quantisation as the shards (``data_prep.synth``), so with
noise off the DESIGN §8 invariant holds for the new batch. Pairs without a field pass
through unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from blurfield.physics import reblur


def uniform_batch(batch: Mapping[str, Tensor], gamma: float = 2.2) -> dict[str, Tensor]:
    """The batch (DESIGN §8 layout) with every field crop re-blurred by its layer-0 kernel."""
    out = dict(batch)
    has = batch["has_field"].bool()
    if not has.any():
        return out
    k0 = batch["kernels"][:, :1]
    ones = torch.ones_like(batch["masks"][:, :1])
    with torch.no_grad():
        v = reblur(batch["sharp_linear"], k0, ones, gamma=gamma, padding="valid", check=False)
        v = torch.round(v.clamp(0, 1) * 255) / 255
    sel = has[:, None, None, None]
    out["blurry"] = torch.where(sel, v, batch["blurry"])
    masks = torch.zeros_like(batch["masks"])
    masks[:, 0] = 1
    out["masks"] = torch.where(sel, masks, batch["masks"])
    valid = torch.zeros_like(batch["layer_valid"])
    valid[:, 0] = True
    out["layer_valid"] = torch.where(has[:, None], valid, batch["layer_valid"])
    out["weights"] = torch.where(has[:, None, None], torch.ones_like(batch["weights"]),
                                 batch["weights"])
    return out
