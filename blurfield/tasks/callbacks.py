"""Callbacks of the estimator training: the kernel-loss switch, the run summary, pictures.

- :class:`KernelLossSwitch` sets ``module.kernel_loss_p`` from the epoch (2, then 1 from
  ``switch_epoch``), so a resumed run gets the right p whatever it resumes from.
- :class:`RunSummary` keeps ``<run_dir>/summary.json`` (hyperparameters, per-epoch metrics,
  final and best values) up to date after every epoch; its history is also saved in the
  checkpoint, so a resumed run continues it. ``blurfield report`` reads these files.
- :class:`FieldPictures` draws, every ``every_n_epochs``, the basis PSFs, the mixing map
  and the per-pixel PSFs over the image beside the ground truth, for the first validation
  sample; to W&B (``wandb.Image``) when the logger is W&B, else as PNG files in
  ``<run_dir>/pictures``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from blurfield.fileio import write_atomic, write_text_atomic
from blurfield.tasks.estimator import kernel_loss_p_at

SUMMARY_NAME = "summary.json"
PICTURE_MIN_SIDE = 256  # per-pixel PSF pictures of smaller crops are enlarged to this


def write_json_atomic(path: Path, obj: Any) -> None:
    """``obj`` as indented JSON (NaN allowed), written atomically."""
    write_text_atomic(path, json.dumps(obj, indent=1, allow_nan=True))


class KernelLossSwitch(Callback):
    """p = 2 for epochs ``[0, switch_epoch)``, then p = 1 (paper §5.2: 300 epochs of L2)."""

    def __init__(self, switch_epoch: int):
        self.switch_epoch = int(switch_epoch)

    def _set(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pl_module.kernel_loss_p = kernel_loss_p_at(trainer.current_epoch, self.switch_epoch)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._set(trainer, pl_module)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._set(trainer, pl_module)


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    out = {}
    for k, v in metrics.items():
        if k.endswith("_step"):
            continue
        if isinstance(v, torch.Tensor):
            if v.numel() != 1:
                continue
            v = v.item()
        if isinstance(v, (int, float)):
            out[k.removesuffix("_epoch")] = float(v)
    return out


class RunSummary(Callback):
    """Writes ``summary.json``: ``info`` (run name, group, n_basis, schedule ...) plus

    ``epochs_completed``, ``global_step``, ``finished``, ``final`` (the last epoch's
    metrics), ``best`` (lowest ``monitor`` with its epoch and the best checkpoint) and
    ``history`` (one dict of metrics per epoch).
    """

    def __init__(self, path: str | Path, info: dict[str, Any], monitor: str = "val/loss"):
        self.path, self.info, self.monitor = Path(path), dict(info), monitor
        self.history: list[dict[str, float]] = []

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))

    def summary(self, trainer: L.Trainer, finished: bool = False) -> dict[str, Any]:
        best: dict[str, Any] = {}
        scored = [h for h in self.history if math.isfinite(h.get(self.monitor, math.nan))]
        if scored:
            top = min(scored, key=lambda h: h[self.monitor])
            best = {self.monitor: top[self.monitor], "epoch": int(top["epoch"])}
        ckpt = trainer.checkpoint_callback
        if ckpt is not None and getattr(ckpt, "best_model_path", ""):
            best["checkpoint"] = str(ckpt.best_model_path)
        final = {k: v for k, v in (self.history[-1] if self.history else {}).items()
                 if k not in ("epoch", "step")}
        return {
            **self.info,
            "epochs_completed": len(self.history),
            "global_step": int(trainer.global_step),
            "finished": finished,
            "final": final,
            "best": best,
            "history": self.history,
        }

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # the lr this epoch trains with (Lightning steps epoch schedulers before
        # on_train_epoch_end)
        self._lr = float(trainer.optimizers[0].param_groups[0]["lr"])

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule
                                ) -> None:
        if not trainer.sanity_checking:
            self._validated = trainer.current_epoch

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = _scalars(trainer.callback_metrics)
        if getattr(self, "_validated", None) != trainer.current_epoch:
            # no validation this epoch (val_every_n_epochs): the val/ values are old ones
            metrics = {k: v for k, v in metrics.items() if not k.startswith("val/")}
        entry = {"epoch": trainer.current_epoch, "step": trainer.global_step, **metrics}
        entry["lr"] = getattr(self, "_lr", math.nan)
        entry["kernel_loss_p"] = float(getattr(pl_module, "kernel_loss_p", math.nan))
        self.history = [h for h in self.history if h["epoch"] < trainer.current_epoch]
        self.history.append(entry)
        if trainer.is_global_zero:
            write_json_atomic(self.path, self.summary(trainer))

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            done = trainer.current_epoch >= (trainer.max_epochs or 0) or (
                trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps)
            write_json_atomic(self.path, self.summary(trainer, finished=bool(done)))


# --------------------------------------------------------------------------- pictures


def field_pictures(batch: dict[str, torch.Tensor], kernels: torch.Tensor,
                   mixing: torch.Tensor) -> dict[str, np.ndarray]:
    """Pictures of sample 0 as (H, W, 3) uint8 arrays: ``basis`` (the B basis PSFs),
    ``mixing`` (the mixing map), ``psfs`` (per-pixel PSFs over the blurry image, estimate
    beside ground truth when the sample has a field)."""
    from blurfield import viz

    k, m = kernels[:1].float().cpu(), mixing[:1].float().cpu()
    image = batch["blurry"][0].float().cpu().permute(1, 2, 0).clamp(0, 1)  # (H, W, 3)
    zoom = max(1, -(-PICTURE_MIN_SIDE // min(image.shape[:2])))  # small crops: enlarge
    image = image.repeat_interleave(zoom, 0).repeat_interleave(zoom, 1)
    out = {"basis": viz.psf_grid(k[0]), "mixing": viz.mixing_map(m[0])}
    est = viz.psf_overlay(image, k[0], m[0])
    if bool(batch["layer_valid"][0].any()):
        valid = batch["layer_valid"][0].cpu()
        gt = viz.psf_overlay(image, batch["kernels"][0].cpu()[valid].float(),
                             batch["masks"][0].cpu()[valid].float())
        out["psfs"] = viz.side_by_side([est, gt], ["estimate", "ground truth"])
    else:
        out["psfs"] = est
    return {name: _uint8(a) for name, a in out.items()}


def _uint8(a: Any) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype != np.uint8:
        a = (np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    return a


class FieldPictures(Callback):
    """Pictures of the first validation sample every ``every_n_epochs`` epochs (and at the
    last epoch); W&B images when the logger is a WandbLogger, else PNGs in ``out_dir``."""

    def __init__(self, every_n_epochs: int, out_dir: str | Path):
        self.every = int(every_n_epochs)
        self.out_dir = Path(out_dir)

    def _due(self, trainer: L.Trainer) -> bool:
        if self.every <= 0 or trainer.sanity_checking or not trainer.is_global_zero:
            return False
        e = trainer.current_epoch
        return e % self.every == 0 or e + 1 == trainer.max_epochs

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                                outputs: Any, batch: Any, batch_idx: int,
                                dataloader_idx: int = 0) -> None:
        if batch_idx != 0 or not self._due(trainer) or not isinstance(outputs, dict):
            return
        pics = field_pictures(batch, outputs["kernels"], outputs["mixing"])
        self.emit(trainer, pics)

    def emit(self, trainer: L.Trainer, pics: dict[str, np.ndarray]) -> None:
        from lightning.pytorch.loggers import WandbLogger

        wandb_loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        if wandb_loggers:
            for name, img in pics.items():
                wandb_loggers[0].log_image(f"pictures/{name}", [img], step=trainer.global_step)
            return
        from PIL import Image

        self.out_dir.mkdir(parents=True, exist_ok=True)
        for name, img in pics.items():
            path = self.out_dir / f"epoch{trainer.current_epoch:04d}_{name}.png"
            write_atomic(path, lambda f, img=img: Image.fromarray(img).save(f, format="PNG"))
