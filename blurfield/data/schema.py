"""The shard sample schema (docs/design.md §8), shared by the writer (data_prep) and the DataModule.

A sample is one webdataset key with these members:

======================  =======================================================  ========
member                  content                                                  field?
======================  =======================================================  ========
``blurry.png``          (H, W, 3) uint8 display values                           always
``sharp.png``           (H, W, 3) uint8 display values, the original image        always
``kernels.npy``         (J, K, K) float32 correlation kernels, 0 = background    has_field
``layers.png``          (H, W) uint8 instance map: value j is layer j            has_field
``meta.json``           exactly :data:`META_KEYS`                                always
======================  =======================================================  ========

The blurry image has the sharp image's size: it is the "same"-padded blur of the whole
scene, so any window at least ``K // 2`` from the border equals the "valid" blur of the
sharp window ``K - 1`` larger around it. The linear sharp image is
``to_linear(sharp / 255, gamma) * brightness`` (scale after linearising).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

SCHEMA_VERSION = 1
META_KEYS = (
    "version",
    "has_field",
    "brightness",
    "gamma",
    "kernel_size",
    "normalize_masks",
    "noise",
    "seed",
    "kernel_ids",
    "image_id",
    "source",
)
FIELD_MEMBERS = ("blurry.png", "sharp.png", "kernels.npy", "layers.png", "meta.json")
PAIR_MEMBERS = ("blurry.png", "sharp.png", "meta.json")


class SampleError(ValueError):
    """A sample that does not follow the schema (the message names the key and member)."""


@dataclass
class Sample:
    """One decoded sample. ``kernels`` and ``layers`` are None when ``has_field`` is false."""

    key: str
    blurry: np.ndarray  # (H, W, 3) uint8
    sharp: np.ndarray  # (H, W, 3) uint8
    meta: dict[str, Any]
    kernels: np.ndarray | None = None  # (J, K, K) float32, correlation orientation
    layers: np.ndarray | None = None  # (H, W) uint8, 0 = background

    @property
    def has_field(self) -> bool:
        return bool(self.meta["has_field"])

    @property
    def num_layers(self) -> int:
        return 0 if self.kernels is None else int(self.kernels.shape[0])


# --------------------------------------------------------------------------- bytes


def encode_png(image: np.ndarray, compress_level: int = 1) -> bytes:
    """uint8 (H, W) or (H, W, 3) -> PNG bytes (level 1: ~3x faster than the default)."""
    if image.dtype != np.uint8:
        raise SampleError(f"PNG members are 8-bit, got {image.dtype}")
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im)


def encode_npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def decode_npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False).copy()  # writable copy


def make_meta(**values: Any) -> dict[str, Any]:
    """A ``meta.json`` dict with exactly :data:`META_KEYS` (``version`` filled in)."""
    meta = {"version": SCHEMA_VERSION, **values}
    validate_meta(meta)
    return {k: meta[k] for k in META_KEYS}


def validate_meta(meta: dict[str, Any], key: str = "?") -> None:
    missing = [k for k in META_KEYS if k not in meta]
    extra = [k for k in meta if k not in META_KEYS]
    if missing or extra:
        raise SampleError(f"sample {key}: meta.json keys wrong (missing {missing}, extra {extra})")
    if meta["version"] != SCHEMA_VERSION:
        raise SampleError(f"sample {key}: schema version {meta['version']} is not "
                          f"{SCHEMA_VERSION}; rebuild the shards with this blurfield")


def encode_sample(sample: Sample) -> dict[str, Any]:
    """Sample -> the dict a webdataset ``TarWriter`` writes (members as bytes)."""
    validate_meta(sample.meta, sample.key)
    out: dict[str, Any] = {
        "__key__": sample.key,
        "blurry.png": encode_png(sample.blurry),
        "sharp.png": encode_png(sample.sharp),
        "meta.json": json.dumps(sample.meta, sort_keys=True).encode(),
    }
    if sample.has_field:
        if sample.kernels is None or sample.layers is None:
            raise SampleError(f"sample {sample.key}: has_field but no kernels/layers")
        out["kernels.npy"] = encode_npy(sample.kernels.astype(np.float32))
        out["layers.png"] = encode_png(sample.layers.astype(np.uint8))
    return out


def required_members(meta: dict[str, Any]) -> tuple[str, ...]:
    return FIELD_MEMBERS if meta.get("has_field") else PAIR_MEMBERS


def decode_sample(raw: dict[str, Any]) -> Sample:
    """A webdataset raw sample (members as bytes) -> :class:`Sample`, validated.

    Raises :class:`SampleError` naming the key and the member when anything is missing or
    inconsistent (sizes, layer count vs kernels, kernel size vs meta).
    """
    key = str(raw.get("__key__", "?"))
    if "meta.json" not in raw:
        raise SampleError(f"sample {key}: no meta.json")
    meta = json.loads(raw["meta.json"])
    validate_meta(meta, key)
    missing = [m for m in required_members(meta) if m not in raw]
    if missing:
        raise SampleError(f"sample {key}: missing {missing}")
    s = Sample(key, decode_png(raw["blurry.png"]), decode_png(raw["sharp.png"]), meta)
    if s.blurry.shape != s.sharp.shape or s.blurry.ndim != 3:
        raise SampleError(f"sample {key}: blurry {s.blurry.shape} and sharp {s.sharp.shape} "
                          "must be the same (H, W, 3)")
    if s.has_field:
        s.kernels = decode_npy(raw["kernels.npy"]).astype(np.float32)
        s.layers = decode_png(raw["layers.png"])
        k = int(meta["kernel_size"])
        if s.kernels.ndim != 3 or s.kernels.shape[1:] != (k, k):
            raise SampleError(f"sample {key}: kernels.npy shape {s.kernels.shape}, "
                              f"expected (J, {k}, {k})")
        if s.layers.shape != s.sharp.shape[:2]:
            raise SampleError(f"sample {key}: layers.png {s.layers.shape} vs image "
                              f"{s.sharp.shape[:2]}")
        if int(s.layers.max()) >= s.kernels.shape[0]:
            raise SampleError(f"sample {key}: layers.png has layer {int(s.layers.max())} but "
                              f"only {s.kernels.shape[0]} kernels")
    return s


# --------------------------------------------------------------------------- tensors


def image_tensor(image: np.ndarray) -> Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float32 display values in [0, 1]."""
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255.0


def sharp_linear(sample: Sample) -> Tensor:
    """The sharp image in linear light, (3, H, W): ``to_linear(sharp) * brightness``."""
    from blurfield.physics.camera import to_linear

    lin = to_linear(image_tensor(sample.sharp), float(sample.meta["gamma"]))
    return lin * float(sample.meta["brightness"])


@dataclass
class GTField:
    """Ground truth for one blurry window (h, w) (docs/design.md §8).

    ``kernels`` (J, K, K); ``masks`` (J, h, w) smoothed (and normalised if the sample was
    made so); ``counts`` (J,) hard-mask pixel counts of each layer inside the window;
    ``sharp_window`` (top, left, h + K - 1, w + K - 1) of the sharp crop around it.
    """

    kernels: Tensor
    masks: Tensor
    counts: Tensor
    sharp_window: tuple[int, int, int, int]


def hard_masks(layers: Tensor, num_layers: int) -> Tensor:
    """(H, W) integer instance map -> (J, H, W) float32 one-hot masks (sum 1 over J)."""
    j = torch.arange(num_layers, device=layers.device)[:, None, None]
    return (layers.long()[None] == j).float()


def sharp_window(window: tuple[int, int, int, int], kernel_size: int) -> tuple[int, ...]:
    """The sharp crop (top, left, h + K - 1, w + K - 1) whose "valid" blur is ``window``."""
    top, left, h, w = window
    o = (kernel_size - 1) // 2
    return (top - o, left - o, h + kernel_size - 1, w + kernel_size - 1)


def gt_field(sample: Sample, window: tuple[int, int, int, int]) -> GTField:
    """Masks and kernels of the blurry crop ``window = (top, left, h, w)``.

    The hard masks of the sharp window are smoothed by their own kernels with "valid"
    padding (equal, inside the image, to the "same" smoothing the synthesiser applied to
    the whole scene) and normalised when ``meta.normalize_masks``. The window must lie at
    least ``K // 2`` from every border.
    """
    from blurfield.physics.fields import smooth_masks

    if not sample.has_field or sample.kernels is None or sample.layers is None:
        raise SampleError(f"sample {sample.key}: has no blur field")
    k = int(sample.meta["kernel_size"])
    top, left, h, w = window
    st, sl, sh, sw = sharp_window(window, k)
    H, W = sample.layers.shape
    if st < 0 or sl < 0 or st + sh > H or sl + sw > W:
        raise SampleError(f"sample {sample.key}: window {window} is closer than K//2 = "
                          f"{k // 2} to the border of the {H} x {W} image")
    kernels = torch.from_numpy(sample.kernels)
    j = kernels.shape[0]
    layers = torch.from_numpy(np.array(sample.layers[st : st + sh, sl : sl + sw]))
    hard = hard_masks(layers, j)
    masks = smooth_masks(hard[None], kernels[None], padding="valid",
                         normalize=bool(sample.meta["normalize_masks"]))[0]
    o = (k - 1) // 2
    counts = hard[:, o : o + h, o : o + w].sum((-1, -2))
    return GTField(kernels, masks, counts, (st, sl, sh, sw))
