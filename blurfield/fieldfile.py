"""Field files (docs/design.md §8): the :class:`Field` an estimator gives, written and read
as ``.npz`` (kernels float32, mixing float16, the scale, the photo's size and gamma, the
model's id), with the no-harm decision ``deblur`` took beside it."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from torch import Tensor

from blurfield.fileio import write_atomic
from blurfield.restore import Decision

FIELD_VERSION = 1
CONVENTION = "correlation, mask after"
FIELD_KEYS = ("kernels", "mixing", "scale", "image_size", "gamma", "model_id", "convention",
              "version")


@dataclass
class Field:
    """A blur field as estimated.

    kernels: (B, K, K) float32, each >= 0 summing to 1 (correlation orientation).
    mixing: (B, h, w) float32 on the simplex over B, at the estimated resolution.
    scale: downscale factor (>= 1) of the photo the estimator saw.
    image_size: (H, W) of the full photo.
    gamma: the data gamma of the photo (1 for linear data).
    model_id: which estimator produced it (file name and hash prefix), "" if unknown.
    refinement: what the kernel refinement did (blurfield.restore.refine's note: "network's
        field ..." when the field is the network's own), "" for a field from elsewhere;
        written to field files as the optional key ``refinement`` when not "".
    """

    kernels: Tensor
    mixing: Tensor
    scale: float
    image_size: tuple[int, int]
    gamma: float = 2.2
    model_id: str = ""
    refinement: str = ""

    @property
    def n_basis(self) -> int:
        return int(self.kernels.shape[0])

    @property
    def kernel_size(self) -> int:
        return int(self.kernels.shape[-1])


# --------------------------------------------------------------------------- files


def save_field(path: str | Path, field: Field, decision: Decision | None = None) -> None:
    """Write ``field`` as a field file (docs/design.md §8: kernels float32, mixing float16),
    atomically, with ``refinement`` when the field has a note. ``decision`` (what
    ``deblur`` did with it) adds the keys ``decision``,
    ``decision_reason``, ``blend``, ``iterations``, ``noise_sigma``, ``blur_px`` and
    ``evidence`` (:meth:`Decision.arrays`; read back by :func:`load_decision`)."""
    path = Path(path)
    arrays = {
        "kernels": field.kernels.detach().cpu().numpy().astype(np.float32),
        "mixing": field.mixing.detach().cpu().numpy().astype(np.float16),
        "scale": np.float64(field.scale),
        "image_size": np.asarray(field.image_size, dtype=np.int64),
        "gamma": np.float64(field.gamma),
        "model_id": np.str_(field.model_id),
        "convention": np.str_(CONVENTION),
        "version": np.int64(FIELD_VERSION),
    }
    if field.refinement:
        arrays["refinement"] = np.str_(field.refinement)
    if decision is not None:
        arrays |= decision.arrays()
    write_atomic(path, lambda f: _savez(f, arrays))


def _savez(file: BinaryIO, arrays: dict[str, Any]) -> None:
    """``np.savez_compressed`` at zlib level 1: a 1 MP field's file comes out the same
    size (36 MB; float16 mixing does not compress further) in half the time."""
    with zipfile.ZipFile(file, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        for name, a in arrays.items():
            with z.open(f"{name}.npy", "w", force_zip64=True) as entry:
                np.lib.format.write_array(entry, np.asanyarray(a), allow_pickle=False)


def _simplex(a: np.ndarray, axes) -> Tensor:
    t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).clamp(min=0)
    return t / t.sum(axes, keepdim=True).clamp(min=1e-12)


def load_field(path: str | Path) -> Field:
    """Read a field ``.npz``; kernels and mixing are cast to float32 and renormalised onto
    the simplex (float16 sums are off by up to 4e-4). ``ValueError`` naming the file if it
    is not a field file of this version."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: field file not found")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except Exception as e:
        raise ValueError(f"{path}: not a field .npz file ({e})") from None
    missing = [k for k in FIELD_KEYS if k not in data]
    if missing:
        raise ValueError(f"{path}: not a blurfield field file (missing {', '.join(missing)})")
    if str(data["convention"]) != CONVENTION:
        raise ValueError(f"{path}: convention {str(data['convention'])!r} is not "
                         f"{CONVENTION!r}")
    if int(data["version"]) > FIELD_VERSION:
        raise ValueError(f"{path}: field file version {int(data['version'])} is newer than "
                         f"this blurfield reads ({FIELD_VERSION})")
    kernels, mixing = data["kernels"], data["mixing"]
    if kernels.ndim != 3 or mixing.ndim != 3 or kernels.shape[0] != mixing.shape[0]:
        raise ValueError(f"{path}: kernels {kernels.shape} and mixing {mixing.shape} are not "
                         "(B, K, K) and (B, h, w)")
    h, w = (int(v) for v in data["image_size"])
    return Field(
        kernels=_simplex(kernels, (-2, -1)),
        mixing=_simplex(mixing, (0,)),
        scale=float(data["scale"]),
        image_size=(h, w),
        gamma=float(data["gamma"]),
        model_id=str(data["model_id"]),
        refinement=str(data.get("refinement", "")),
    )


def load_decision(path: str | Path) -> Decision | None:
    """The no-harm decision stored in a field file by ``deblur``, or None (a file from
    ``estimate``, an older file, or ``restore.no_harm=false``)."""
    try:
        with np.load(Path(path), allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except Exception as e:
        raise ValueError(f"{path}: not a field .npz file ({e})") from None
    return Decision.from_arrays(data)
