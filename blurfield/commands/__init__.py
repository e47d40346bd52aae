"""The ``blurfield estimate`` and ``blurfield deblur`` commands, and what they share."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig
from PIL import Image

from blurfield.errors import UserError

PREVIEW_MAX_SIDE = 1024  # photos are shown at most this large in the pictures


def photo_paths(inputs: list[str], command: str) -> list[Path]:
    """The photos named on the command line; duplicate file stems are refused (their
    outputs would overwrite each other)."""
    if not inputs:
        raise UserError(f"no photos given; usage: blurfield {command} PHOTO... --out DIR")
    paths = [Path(p) for p in inputs]
    dup = sorted(s for s, n in Counter(p.stem for p in paths).items() if n > 1)
    if dup:
        raise UserError(f"photos with the same file name stem would overwrite each other's "
                        f"outputs: {', '.join(dup)}; rename or run them separately")
    return paths


def parse_scale(value: Any) -> float | str:
    """``restore.scale``: "auto" or a number >= 1 (:func:`blurfield.restore.parse_scale`),
    refused as a :class:`UserError` that names the option."""
    from blurfield.restore import parse_scale as parse

    try:
        return parse(value)
    except ValueError as e:
        raise UserError(f"restore.scale (--scale): {e}") from None


def estimate_options(rc: Any, rl: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The keyword arguments of :func:`blurfield.api.estimate` (and, all but
    ``long_blur_scale``, of :func:`blurfield.restore.refine.estimate_field`) from the
    ``restore`` section:
    ``estimate_tile`` (0 or a positive multiple of 32), ``estimate_elements`` (a count >= 0),
    ``refine_iterations``, ``refine_margin``, ``refine_window``, ``long_blur_scale``, and the
    no-harm rule's ``no_harm_probe``, ``no_harm_window`` and RL options (``rl`` by name, None: the
    section's own), with which the refinement compares its kernel to the network's field
    as the rule will; a bad value is refused as a :class:`UserError` that names the
    option."""
    from blurfield.config import RLOptions
    from blurfield.models.tiled import check_tile
    from blurfield.restore.refine import check_refine

    try:
        tile = check_tile(rc.estimate_tile, rc.estimate_elements)
        check_refine(rc.refine_iterations, rc.refine_window, rc.no_harm_probe,
                     rc.no_harm_window, rc.long_blur_scale)
        probe_rl = RLOptions.make(rc).rl_kwargs() if rl is None else rl
    except (TypeError, ValueError) as e:
        raise UserError(f"restore.{e}") from None
    return {"tile": tile, "elements": int(rc.estimate_elements),
            "refine": int(rc.refine_iterations), "refine_margin": float(rc.refine_margin),
            "refine_window": int(rc.refine_window), "probe": int(rc.no_harm_probe),
            "probe_window": int(rc.no_harm_window), "long_blur_scale": float(rc.long_blur_scale),
            "rl": dict(probe_rl)}


def load_model(rc: DictConfig):
    """The estimator named by ``restore.checkpoint`` (None: the shipped model)."""
    from blurfield.api import load_estimator

    try:
        return load_estimator(rc.checkpoint, device=rc.device)
    except ValueError as e:
        raise UserError(str(e)) from None


def restore_options(rc: DictConfig) -> dict:
    """The keyword arguments of :func:`blurfield.api.restore` from the restore section: its
    :class:`~blurfield.config.RestoreOptions` fields (``restore_scale`` checked by
    :func:`parse_restore_scale`) and ``device``."""
    import dataclasses

    from blurfield.config import RestoreOptions

    opts = RestoreOptions.make(rc, restore_scale=parse_restore_scale(rc.restore_scale))
    return {**dataclasses.asdict(opts), "device": rc.device}


def parse_restore_scale(value: Any) -> float | str:
    """``restore.restore_scale``: "full", "field" or a number >= 1 (checked by
    :func:`blurfield.api.restore_scale_factor`, the one place that reads it)."""
    from blurfield.api import restore_scale_factor

    try:
        restore_scale_factor(value, float("inf"))
    except ValueError:
        raise UserError(f"restore.restore_scale: {value!r} is not 'full', 'field' or a "
                        "number >= 1") from None
    return str(value) if str(value) in ("full", "field") else float(value)


def apply_threads(rc: DictConfig) -> int:
    """``torch.set_num_threads`` from ``restore.threads`` (:func:`blurfield.api.set_threads`:
    "auto" = ``OMP_NUM_THREADS``, else the cores available)."""
    from blurfield.api import set_threads

    try:
        return set_threads(rc.get("threads", "auto"))
    except ValueError as e:
        raise UserError(f"restore.{e}") from None


def preview(image: np.ndarray, max_side: int = PREVIEW_MAX_SIDE) -> np.ndarray:
    """(H, W, C) float display image shrunk (box filter) so its longer side is <= max_side."""
    h, w = image.shape[:2]
    f = max_side / max(h, w)
    if f >= 1:
        return image
    size = (max(1, round(w * f)), max(1, round(h * f)))
    chans = [np.asarray(Image.fromarray(image[..., c].astype(np.float32), mode="F")
                        .resize(size, Image.BOX)) for c in range(image.shape[-1])]
    return np.stack(chans, -1)


def read_photo(path: Path, min_size: int, command: str):
    """:func:`blurfield.imageio.read_image`, its warnings (alpha dropped) printed as one
    note line each."""
    import warnings

    from tqdm import tqdm

    from blurfield.imageio import read_image

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = read_image(path, min_size=min_size)
    for w in caught:
        tqdm.write(f"blurfield {command}: note: {w.message}", file=sys.stderr)
    return out


def prefiltered(image: Any, rc: Any, jpeg: bool = False) -> tuple[Any, str]:
    """The photo as estimate and deblur take it: denoised first when it is noisy
    (``restore.denoise_above``), else, read from a JPEG file (``jpeg``), smoothed by the
    same filter at ``restore.jpeg_smooth`` (:func:`blurfield.api.prefilter`); and the start
    of its line ("denoised first (noise σ); ", "JPEG smoothed first; " or "")."""
    from blurfield.api import prefilter

    photo, sigma, smoothed = prefilter(image, above=rc.denoise_above,
                                       jpeg=rc.jpeg_smooth if jpeg else None, gamma=rc.gamma)
    if sigma is not None:
        return photo, f"denoised first (noise {sigma:.2g}); "
    return photo, "JPEG smoothed first; " if smoothed else ""
