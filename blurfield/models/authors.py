"""Import of the authors' released estimator weights (TwoHeadsNetwork state dict).

The authors' file (``TwoHeads.pkl``) is a bare ``state_dict`` saved with ``torch.save``,
possibly with a ``module.`` prefix from DataParallel. Their module names map onto ours
one to one (same layers, same order; docs/design.md §3):

    theirs                              ours
    inc_rgb.0 / inc_gray.0              stem_rgb / stem_gray
    down{i}.double_conv.{0,2}           down{i}.conv{1,2}              i = 1..5
    feat.0                              bottleneck
    up{i}.up / .double_conv.{0,2} / .feat.0
                                        mix_up{i}.up / .conv{1,2} / .fuse
    masks_end.{0,2,4}                   mix_conv1, mix_conv2, mix_out
    kernel_up{i}.(as up{i})             ker_up{i}.(as mix_up{i})
    kernels_end.{0,2,4}                 ker_conv1, ker_conv2, ker_out

Their files have no ``gray_trained`` flag: it is set False (1-channel input is repeated to
RGB), because nothing in the release says their grayscale stem was trained.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from blurfield.models.estimator import KernelEstimator

GAMMA_IN = 2.2  # the authors' inference default (--gamma_factor)


def _module_map() -> dict[str, str]:
    """Their module prefix -> our module prefix."""
    m = {
        "inc_rgb.0": "stem_rgb",
        "inc_gray.0": "stem_gray",
        "feat.0": "bottleneck",
        "masks_end.0": "mix_conv1",
        "masks_end.2": "mix_conv2",
        "masks_end.4": "mix_out",
        "kernels_end.0": "ker_conv1",
        "kernels_end.2": "ker_conv2",
        "kernels_end.4": "ker_out",
    }
    for i in range(1, 6):
        m[f"down{i}.double_conv.0"] = f"down{i}.conv1"
        m[f"down{i}.double_conv.2"] = f"down{i}.conv2"
        for theirs, ours in ((f"up{i}", f"mix_up{i}"), (f"kernel_up{i}", f"ker_up{i}")):
            m[f"{theirs}.up"] = f"{ours}.up"
            m[f"{theirs}.double_conv.0"] = f"{ours}.conv1"
            m[f"{theirs}.double_conv.2"] = f"{ours}.conv2"
            m[f"{theirs}.feat.0"] = f"{ours}.fuse"
    return m


KEY_MAP: dict[str, str] = {
    f"{t}.{p}": f"{o}.{p}" for t, o in _module_map().items() for p in ("weight", "bias")
}
"""Every key of the authors' state dict (K = 33) -> our key."""


def _strip_module(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    if sd and all(k.startswith("module.") for k in sd):
        return {k[len("module."):]: v for k, v in sd.items()}
    return dict(sd)


def is_authors_state_dict(sd: object) -> bool:
    """True if ``sd`` looks like the authors' TwoHeadsNetwork state dict."""
    if not isinstance(sd, Mapping) or not sd:
        return False
    if not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in sd.items()):
        return False
    return "inc_rgb.0.weight" in _strip_module(sd)


def convert_authors_state_dict(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The authors' state dict (their key names) -> ours, with ``gray_trained`` = False.

    Raises ValueError listing missing and unexpected keys (e.g. ``kernel_up6`` from their
    K = 65 network, which we do not implement).
    """
    sd = _strip_module(sd)
    missing = sorted(set(KEY_MAP) - set(sd))
    unexpected = sorted(set(sd) - set(KEY_MAP))
    if missing or unexpected:
        hint = ""
        if any(k.startswith("kernel_up6.") for k in unexpected):
            hint = " (kernel_up6 means their K = 65 network; only K = 33 is implemented)"
        raise ValueError(
            "not the authors' K = 33 TwoHeadsNetwork state dict: "
            f"missing keys {missing[:10]}{' ...' if len(missing) > 10 else ''}, "
            f"unexpected keys {unexpected[:10]}{' ...' if len(unexpected) > 10 else ''}"
            + hint
        )
    out = {KEY_MAP[k]: v for k, v in sd.items()}
    out["gray_trained"] = torch.tensor(False)
    return out


def authors_hparams(sd: Mapping[str, Tensor]) -> dict:
    """KernelEstimator arguments implied by the authors' tensors' shapes."""
    sd = _strip_module(sd)
    return {
        "n_basis": int(sd["masks_end.4.weight"].shape[0]),
        "kernel_size": 33,
        "base_width": int(sd["inc_rgb.0.weight"].shape[0]),
        "gamma_in": GAMMA_IN,
    }


def load_authors_weights(model: KernelEstimator, path: str | Path) -> KernelEstimator:
    """Load the authors' released file at ``path`` into ``model`` (in place; returned)."""
    sd = torch.load(path, map_location="cpu", weights_only=True)
    if not is_authors_state_dict(sd):
        raise ValueError(f"{path}: not the authors' TwoHeadsNetwork state dict")
    try:
        model.load_state_dict(convert_authors_state_dict(sd))
    except (ValueError, RuntimeError) as e:
        raise ValueError(f"{path}: {e}") from e
    return model
