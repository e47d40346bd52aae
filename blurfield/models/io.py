"""Estimator weight files: our format with embedded hyperparameters, and format detection.

Our format (``torch.save`` of a plain dict, loadable with ``weights_only=True``):

    {"format": "blurfield-estimator", "version": 1,
     "hparams": {"n_basis", "kernel_size", "base_width", "gamma_in", "kernel_code"},
     "state_dict": KernelEstimator.state_dict()}

:func:`load_any_estimator` also reads Lightning checkpoints (``state_dict`` keys prefixed
``model.``, hyperparameters somewhere under ``hyper_parameters``) and the authors'
released bare state dict (see ``blurfield.models.authors``).
"""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from blurfield.fileio import write_atomic
from blurfield.models.authors import (
    authors_hparams,
    convert_authors_state_dict,
    is_authors_state_dict,
)
from blurfield.models.estimator import KernelEstimator

FORMAT = "blurfield-estimator"
VERSION = 1
HPARAM_NAMES = ("n_basis", "kernel_size", "base_width", "gamma_in", "kernel_code")
OPTIONAL = {"kernel_code": "bottleneck"}  # added later: files without it are the paper's


def save_estimator(model: KernelEstimator, path: str | Path) -> None:
    """Write ``model`` with its hyperparameters to ``path`` (temp file, then rename)."""
    path = Path(path)
    blob = {
        "format": FORMAT,
        "version": VERSION,
        "hparams": dict(model.hparams_dict),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
    }
    write_atomic(path, lambda f: torch.save(blob, f))


def _torch_load(path: Path, map_location: Any) -> Any:
    """torch.load, safe mode first; pickled objects (e.g. a dataclass config in a Lightning
    checkpoint's hyper_parameters) fall back to full unpickling: load trusted files only."""
    if not path.is_file():
        raise ValueError(f"{path}: estimator weight file not found")
    try:
        try:
            return torch.load(path, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError:
            return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # not a torch file at all
        raise ValueError(f"{path}: cannot be read as a torch file ({e})") from e


def _build(hparams: Mapping[str, Any], sd: Mapping[str, Tensor], path: Path,
           map_location: Any) -> KernelEstimator:
    """A KernelEstimator with ``hparams`` holding exactly the tensors of ``sd``."""
    try:
        # Built on the CPU: on the meta device, init's normal_ pulls in torch._dynamo (~4 s).
        model = KernelEstimator(**{k: hparams.get(k, OPTIONAL.get(k)) for k in HPARAM_NAMES})
        model.load_state_dict(sd, strict=True)
    except (ValueError, RuntimeError, TypeError) as e:
        raise ValueError(f"{path}: weights do not fit KernelEstimator({hparams}): {e}") from e
    if isinstance(map_location, (str, torch.device)):
        model = model.to(map_location)
    return model.eval()


def _from_ours(blob: Mapping, path: Path, map_location: Any) -> KernelEstimator:
    if blob.get("version") != VERSION:
        raise ValueError(
            f"{path}: {FORMAT} version {blob.get('version')!r} is not supported "
            f"(this blurfield reads version {VERSION})"
        )
    return _build(blob["hparams"], blob["state_dict"], path, map_location)


def _as_dict(obj: Any) -> dict | None:
    """A mapping view of a dict / dataclass / OmegaConf node / namespace, else None."""
    if isinstance(obj, Mapping):
        return dict(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(obj, DictConfig):
            return OmegaConf.to_container(obj, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    if hasattr(obj, "__dict__") and not isinstance(obj, type):
        return dict(vars(obj))
    return None


def _find_hparams(hp: Any) -> dict:
    """The estimator hyperparameters inside a Lightning ``hyper_parameters`` entry: at the
    top level, under ``model``, or under ``cfg``/``config`` then ``model``."""
    root = _as_dict(hp) or {}
    candidates = [root]
    for key in ("model", "cfg", "config"):
        sub = _as_dict(root.get(key))
        if sub is not None:
            candidates.append(sub)
            inner = _as_dict(sub.get("model"))
            if inner is not None:
                candidates.append(inner)
    for c in candidates:
        if any(name in c for name in HPARAM_NAMES):
            return {k: c[k] for k in HPARAM_NAMES if k in c}
    return {}


def _from_lightning(ckpt: Mapping, path: Path, map_location: Any) -> KernelEstimator:
    sd = ckpt["state_dict"]
    if any(k.startswith("model.") for k in sd):
        sd = {k[len("model."):]: v for k, v in sd.items() if k.startswith("model.")}
    hparams = _find_hparams(ckpt["hyper_parameters"])
    # Anything not recorded: read B and w off the tensors, the defaults for K and gamma_in.
    inferred = {
        "n_basis": sd["mix_out.weight"].shape[0] if "mix_out.weight" in sd else 25,
        "kernel_size": 33,
        "base_width": sd["stem_rgb.weight"].shape[0] if "stem_rgb.weight" in sd else 64,
        "gamma_in": 2.2,
    }
    return _build({**inferred, **hparams}, sd, path, map_location)


def load_estimator_file(path: str | Path, map_location: Any = "cpu") -> KernelEstimator:
    """Read a file written by :func:`save_estimator` (eval mode)."""
    path = Path(path)
    blob = _torch_load(path, map_location)
    if not (isinstance(blob, Mapping) and blob.get("format") == FORMAT):
        raise ValueError(f"{path}: not a {FORMAT} weight file (write one with save_estimator)")
    return _from_ours(blob, path, map_location)


def load_any_estimator(path: str | Path, map_location: Any = "cpu") -> KernelEstimator:
    """A KernelEstimator (eval mode) from any of the three weight formats at ``path``:
    our weight file, a Lightning checkpoint, or the authors' released state dict."""
    path = Path(path)
    blob = _torch_load(path, map_location)
    if isinstance(blob, Mapping) and blob.get("format") == FORMAT:
        return _from_ours(blob, path, map_location)
    if isinstance(blob, Mapping) and "state_dict" in blob and "hyper_parameters" in blob:
        return _from_lightning(blob, path, map_location)
    if is_authors_state_dict(blob):
        try:
            sd = convert_authors_state_dict(blob)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from e
        return _build(authors_hparams(blob), sd, path, map_location)
    raise ValueError(
        f"{path}: not an estimator weight file (expected a blurfield-estimator file, a "
        "Lightning checkpoint with state_dict and hyper_parameters, or the authors' "
        "TwoHeads state dict)"
    )
