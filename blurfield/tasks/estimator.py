"""KernelEstimatorModule: trains the two-head kernel estimator (docs/design.md §3-§4).

A thin LightningModule: the network is ``blurfield.models.KernelEstimator`` (kept at
``self.model``), the losses are ``blurfield.losses``; this file wires them to the batch
format of docs/design.md §8 and to the schedule of the paper:

- loss = reblur_weight * reblur loss (eq. 5) + kernel_weight * kernel loss (eq. 6, p-norm);
- p = 2 until ``kernel_loss_p_switch_epoch``, then 1 (set by :class:`KernelLossSwitch`);
  with ``l1_stride`` s > 1 the training p = 1 loss is scored on every s-th pixel per axis
  from a random offset (``blurfield.losses.pixel_grid``);
- the kernel head's gradients are zeroed for the first ``freeze_kernels_epochs`` epochs
  (with ``init_kernels: lines`` the basis then stays a line dictionary while the mixing
  head learns to select from it: ``blurfield.models.basis_init``);
- Adam (lr 1e-4), StepLR halving every ``lr_halve_every`` epochs (stepped per epoch).

Checkpoints carry ``hyper_parameters = {"model": {n_basis, kernel_size, base_width,
gamma_in}, "train": {...TrainCfg...}}`` (read by ``blurfield.models.io.load_any_estimator``)
and ``kernel_loss_p``.

Logged: ``train/loss``, ``train/reblur``, ``train/kernel`` (step and epoch means),
``train/kernel_loss_p``; ``val/loss`` (with the **L2** kernel loss whatever p is, so the best
checkpoint compares like with like across the switch), ``val/reblur``, ``val/kernel``
(weighted L2), ``val/kernel_l1`` (once p = 1), ``val/reblur_psnr`` (display, dB),
``val/kernel_error`` (plain mean over pixels of the per-pixel L2 kernel error) and
``val/direction`` (whether the field's blur directions are right, in [-1, 1], 0 = none:
``blurfield.evaluation.metrics.direction_agreement``, mean over samples with a field).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from enum import Enum
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torchmetrics import MeanMetric

from blurfield.config import ModelCfg, TrainCfg
from blurfield.data.uniform import uniform_batch
from blurfield.evaluation.metrics import direction_agreement
from blurfield.losses import (
    kernel_error,
    kernel_loss,
    mixing_entropy,
    mixing_usage,
    moment_loss,
    pixel_grid,
    reblur_loss,
    reblur_psnr,
    weighted_mean,
)
from blurfield.models.estimator import KernelEstimator
from blurfield.physics.moments import field_covariance

MODEL_KEYS = ("n_basis", "kernel_size", "base_width", "gamma_in", "kernel_code")
INIT_GAIN = 0.5  # KernelEstimator's default (the authors' code)


def _plain(cfg: Any) -> dict:
    """A plain dict from a dict / dataclass / OmegaConf node, Enum members as their values
    (checkpoints stay pickle-free)."""
    if cfg is None:
        return {}
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        out = dataclasses.asdict(cfg)
    elif isinstance(cfg, Mapping):
        from omegaconf import DictConfig, OmegaConf

        if isinstance(cfg, DictConfig):
            out = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
        else:
            out = {str(k): _plain(v) if isinstance(v, Mapping) else v for k, v in cfg.items()}
    else:
        raise TypeError(f"expected a mapping, a dataclass or a DictConfig, got "
                        f"{type(cfg).__name__}")
    return {k: v.value if isinstance(v, Enum) else v for k, v in out.items()}


def model_hparams(model: Any) -> dict:
    """The four estimator hyperparameters, defaults filled in from :class:`ModelCfg`."""
    m = {**_plain(ModelCfg()), **_plain(model)}
    return {k: m[k] for k in MODEL_KEYS}


def train_hparams(train: Any) -> dict:
    """TrainCfg as a plain dict, defaults filled in."""
    t = {**_plain(TrainCfg()), **_plain(train)}
    unknown = sorted(set(t) - {f.name for f in dataclasses.fields(TrainCfg)})
    if unknown:
        raise ValueError(f"train: unknown keys {unknown}")
    return t


def kernel_loss_p_at(epoch: int, switch_epoch: int) -> int:
    """The paper's schedule: p = 2 for epochs [0, switch_epoch), then p = 1."""
    return 2 if epoch < switch_epoch else 1


class KernelEstimatorModule(L.LightningModule):
    """Lightning wrapper of :class:`KernelEstimator`.

    Args:
        model: ModelCfg-like mapping (n_basis, kernel_size, base_width, gamma_in).
        train: TrainCfg-like mapping (missing keys take TrainCfg's defaults).
    """

    def __init__(self, model: Any = None, train: Any = None):
        super().__init__()
        m, t = model_hparams(model), train_hparams(train)
        self.save_hyperparameters({"model": m, "train": t})
        self.cfg = t
        self.model = KernelEstimator(**m)
        self.val_direction = MeanMetric(nan_strategy="ignore")
        if t["init_upsampling"] not in ("random", "nearest"):
            raise ValueError(f"train.init_upsampling: {t['init_upsampling']!r} is not "
                             "'random' or 'nearest'")
        nearest = t["init_upsampling"] == "nearest"
        if t["init_gain"] != INIT_GAIN or nearest:
            self.model.reset_parameters(t["init_gain"], nearest_up=nearest)
        self.kernel_loss_p = kernel_loss_p_at(0, t["kernel_loss_p_switch_epoch"])
        if t["channels_last"]:
            self.model = self.model.to(memory_format=torch.channels_last)
        if t["compile"]:
            self.model.compile()  # in place: state_dict keys stay those of KernelEstimator

    # ------------------------------------------------------------------ forward / losses

    def forward(self, blurry: Tensor) -> tuple[Tensor, Tensor]:
        """blurry (N, 3, H, W) display -> kernels (N, B, K, K), mixing (N, B, H, W)."""
        if self.cfg["channels_last"]:
            blurry = blurry.contiguous(memory_format=torch.channels_last)
        kernels, mixing = self.model(blurry)
        return kernels, mixing.contiguous()

    def losses(self, batch: Mapping[str, Tensor], kernels: Tensor, mixing: Tensor,
               p: int) -> dict[str, Tensor]:
        """reblur, kernel (p-norm), the moment term and (from ``mixing_entropy_from_epoch``
        on) the mixing-entropy and usage terms where their weights are > 0, and ``loss``:
        their weighted sum, the usage subtracted. Scalars."""
        t = self.cfg
        rb = reblur_loss(kernels, mixing, batch["sharp_linear"], batch["blurry"],
                         batch["weights"], gamma=t["reblur_gamma"], space=t["reblur_space"])
        masks, weights, sub = batch["masks"], batch["weights"], mixing
        if p == 1 and self.training and t["l1_stride"] > 1:
            offset = tuple(torch.randint(t["l1_stride"], (2,)).tolist())
            sub, masks, weights = pixel_grid(t["l1_stride"], offset, mixing, masks, weights)
        kl = kernel_loss(kernels, sub, batch["kernels"], masks, weights,
                         p=p, layer_valid=batch["layer_valid"], chunk=t["l1_chunk"])
        loss = t["reblur_loss_weight"] * rb + t["kernel_loss_weight"] * kl
        out = {"loss": loss, "reblur": rb, "kernel": kl}
        if t["moment_loss_weight"] > 0:
            out["moment"] = moment_loss(kernels, mixing, batch["kernels"], batch["masks"],
                                        batch["weights"], layer_valid=batch["layer_valid"],
                                        size_weight=t["moment_size_weight"])
            out["loss"] = out["loss"] + t["moment_loss_weight"] * out["moment"]
        entropy_on = self.current_epoch >= t["mixing_entropy_from_epoch"]
        if t["mixing_entropy_weight"] > 0 and entropy_on:
            out["entropy"] = mixing_entropy(mixing, batch["weights"])
            out["loss"] = out["loss"] + t["mixing_entropy_weight"] * out["entropy"]
        if t["mixing_usage_weight"] > 0 and entropy_on:
            out["usage"] = mixing_usage(mixing, batch["weights"])
            out["loss"] = out["loss"] - t["mixing_usage_weight"] * out["usage"]
        return out

    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        if self.current_epoch < self.cfg["uniform_epochs"]:
            batch = uniform_batch(batch, gamma=self.cfg["reblur_gamma"])
        kernels, mixing = self(batch["blurry"])
        out = self.losses(batch, kernels, mixing, self.kernel_loss_p)
        n = batch["blurry"].shape[0]
        self.log("train/loss", out["loss"], on_step=True, on_epoch=True, prog_bar=True,
                 batch_size=n)
        self.log_dict({f"train/{k}": v for k, v in out.items() if k != "loss"},
                      on_step=True, on_epoch=True, batch_size=n)
        self.log("train/kernel_loss_p", float(self.kernel_loss_p), on_step=False,
                 on_epoch=True, batch_size=n)
        return out["loss"]

    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> dict:
        kernels, mixing = self(batch["blurry"])
        out = self.losses(batch, kernels, mixing, 2)
        t = self.cfg
        err = kernel_error(kernels, mixing, batch["kernels"], batch["masks"], p=2,
                           layer_valid=batch["layer_valid"])
        has = batch["layer_valid"].any(1)
        logs = {
            "val/loss": out["loss"],
            "val/reblur": out["reblur"],
            "val/kernel": out["kernel"],
            **({"val/moment": out["moment"]} if "moment" in out else {}),
            "val/reblur_psnr": reblur_psnr(kernels, mixing, batch["sharp_linear"],
                                           batch["blurry"], gamma=t["reblur_gamma"]),
            "val/kernel_error": weighted_mean(err, None, has),
            "val/mixing_entropy": mixing_entropy(mixing),  # 1: every pixel blends all B
            "val/mixing_usage": mixing_usage(mixing),  # 0: one kernel everywhere (uniform)
        }
        direction = direction_agreement(field_covariance(kernels, mixing),
                                        field_covariance(batch["kernels"], batch["masks"]))
        self.val_direction.update(direction[has])  # NaN (round ground truth) is skipped
        self.log("val/direction", self.val_direction, on_epoch=True)
        if self.kernel_loss_p == 1:
            logs["val/kernel_l1"] = kernel_loss(
                kernels, mixing, batch["kernels"], batch["masks"], batch["weights"], p=1,
                layer_valid=batch["layer_valid"], chunk=t["l1_chunk"])
        self.log_dict(logs, on_epoch=True, sync_dist=True, batch_size=batch["blurry"].shape[0])
        return {"loss": out["loss"], "kernels": kernels.detach(), "mixing": mixing.detach()}

    # ------------------------------------------------------------------ optimisation

    def configure_optimizers(self) -> dict:
        t = self.cfg
        params = [p for p in self.model.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=t["lr"])
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=t["lr_halve_every"], gamma=0.5)
        return {"optimizer": opt,
                "lr_scheduler": {"scheduler": sched, "interval": "epoch", "frequency": 1}}

    # ------------------------------------------------------------------ checkpoint state

    def on_after_backward(self) -> None:
        """While ``current_epoch < freeze_kernels_epochs`` the kernel head's gradients are
        zeroed, so Adam leaves it (and its moments) untouched: the basis stays fixed and
        only the encoder and the mixing head learn. Zeroing rather than
        ``requires_grad_(False)`` keeps DDP's gradient buckets unchanged."""
        if self.current_epoch < self.cfg["freeze_kernels_epochs"]:
            for p in self.model.kernel_head_parameters():
                if p.grad is not None:
                    p.grad.zero_()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["kernel_loss_p"] = int(self.kernel_loss_p)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.kernel_loss_p = int(checkpoint.get("kernel_loss_p", self.kernel_loss_p))
