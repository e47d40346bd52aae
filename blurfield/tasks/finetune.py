"""DeblurGAN fine-tune with reblur consistency (docs/design.md §6; paper §7.3).

Per batch (manual optimisation, as DeblurGAN): ``Ŝ = G(B)`` once; ``n_critic`` critic steps
on that batch, then one generator step:

    critic     L_D = mean D(Ŝ) - mean D(S) + λ_gp GP                (WGAN-GP, λ_gp = 10)
    generator  L_G = -mean D(Ŝ) + c · content(Ŝ, S) + λ · reblur(Ŝ, B)

    content    perceptual: MSE of VGG19 conv3_3 features (c = 100, DeblurGAN);
               mse: MSE of display pixels (when no VGG19 weights are at hand); none
    reblur     B̂ = to_display(R(Σ_b m^b ⊙ (k^b ⋆ to_linear(Ŝ)))), (k, m) = E(B) from the
               frozen estimator E; ``l1``: mean |B̂ - B|, ``l2``: mean (B̂ - B)^2

``B`` is the batch's ``blurry`` (display); the target ``S`` is the centre ``crop_size`` of
``sharp_linear``, ``to_display`` and clamped to [0, 1]. Images are in [-1, 1] at the
networks' boundaries. λ = 0 is plain DeblurGAN and the estimator is not loaded.
The terms are :func:`blurfield.losses.gradient_penalty` and
:func:`blurfield.losses.reblur_consistency`; this module wires them.

The estimator and VGG19 are frozen helpers, not submodules: Lightning's ``train()``,
``state_dict()`` and DDP never see them (they stay in eval mode, get no gradients and are
moved to the batch's device here). Checkpoints store their paths and sha256 hashes.

Note on ``trainer.global_step``: with manual optimisation Lightning counts every
``optimizer.step()`` of both optimisers, so one batch advances it by ``n_critic + 1``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import Tensor, nn

from blurfield.config import FinetuneCfg
from blurfield.evaluation.metrics import batch_psnr
from blurfield.losses import gradient_penalty, reblur_consistency
from blurfield.models.deblurgan import (
    DeblurGenerator,
    PatchCritic,
    from_gan,
    load_deblurrer,
    to_gan,
)
from blurfield.models.estimator import pad_to_multiple
from blurfield.physics.camera import to_display

# --------------------------------------------------------------------------- helpers


def sharp_target(batch: dict[str, Tensor], gamma: float = 2.2) -> Tensor:
    """The display target of a batch: the centre (H, W) of ``sharp_linear`` (N, 3, H + K -
    1, W + K - 1) around ``blurry`` (N, 3, H, W), ``to_display`` and clamped to [0, 1]."""
    blurry, sharp = batch["blurry"], batch["sharp_linear"]
    h, w = blurry.shape[-2:]
    top, left = (sharp.shape[-2] - h) // 2, (sharp.shape[-1] - w) // 2
    if top < 0 or left < 0:
        raise ValueError(f"sharp_linear {tuple(sharp.shape)} is smaller than blurry "
                         f"{tuple(blurry.shape)}")
    return to_display(sharp[..., top : top + h, left : left + w], gamma).clamp(0, 1)


def estimate_field(estimator: nn.Module, blurry: Tensor) -> tuple[Tensor, Tensor]:
    """Run the frozen estimator on ``blurry`` (N, 3, H, W) display, any H, W.

    Pads bottom/right by reflection up to multiples of 32 and crops the mixing back.
    Returns kernels (N, B, K, K) and mixing (N, B, H, W), without gradients.
    """
    h, w = blurry.shape[-2:]
    with torch.no_grad():
        kernels, mixing = estimator(pad_to_multiple(blurry))
    return kernels.float(), mixing[..., :h, :w].float()


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _load_estimator(path: str) -> nn.Module:
    """blurfield.api.load_estimator when present, else the models' loader (same formats)."""
    try:
        from blurfield.api import load_estimator
    except ImportError:
        from blurfield.models.io import load_any_estimator as load_estimator
    return load_estimator(path)


# --------------------------------------------------------------------------- module


class ReblurFinetuneModule(L.LightningModule):
    """DeblurGAN generator + critic trained with WGAN-GP, content and reblur losses.

    Args:
        cfg: the full blurfield config (``finetune`` and ``data`` sections are used).
        estimator: a frozen estimator to use instead of loading ``finetune.estimator``
            (tests, notebooks); any module mapping blurry display -> (kernels, mixing).
        content_net: a feature extractor to use instead of loading ``finetune.vgg_path``.
    """

    def __init__(self, cfg: Any, estimator: nn.Module | None = None,
                 content_net: nn.Module | None = None):
        super().__init__()
        from blurfield.config import Config, as_config

        cfg = OmegaConf.merge(OmegaConf.structured(Config), cfg)
        self.save_hyperparameters({"cfg": OmegaConf.to_container(cfg, resolve=True,
                                                                 enum_to_str=True)})
        self.automatic_optimization = False
        ft: FinetuneCfg = as_config(cfg.finetune)
        self.ft = ft
        self._check(ft)
        self.generator = DeblurGenerator(ft.ngf, ft.n_blocks, ft.dropout)
        if ft.generator_init:
            self._init_generator(ft.generator_init)
        self.critic = PatchCritic(ft.ndf, ft.critic_layers)
        self.frozen_info: dict[str, dict[str, str] | None] = {"estimator": None, "vgg": None}
        # Frozen helpers bypass nn.Module registration (see the module docstring).
        object.__setattr__(self, "_estimator", None)
        object.__setattr__(self, "_content_net", None)
        if ft.reblur_weight > 0:
            if estimator is None:
                estimator = _load_estimator(ft.estimator)
                self.frozen_info["estimator"] = _info(ft.estimator)
            object.__setattr__(self, "_estimator", _freeze(estimator))
        if ft.content_loss == "perceptual":
            if content_net is None:
                from blurfield.models.vgg import load_vgg19_conv33

                content_net = load_vgg19_conv33(ft.vgg_path)
                self.frozen_info["vgg"] = _info(ft.vgg_path)
            object.__setattr__(self, "_content_net", _freeze(content_net))

    @staticmethod
    def _check(ft: FinetuneCfg) -> None:
        """What the schema's types cannot check (its Enums check the choices)."""
        if ft.content_loss == "perceptual" and not ft.vgg_path:
            raise ValueError("finetune.vgg_path is not set: the perceptual content loss needs "
                             "a local VGG19 state dict (keys features.N.weight); set "
                             "finetune.vgg_path=FILE, or finetune.content_loss=mse for plain "
                             "pixel MSE")
        if ft.reblur_weight > 0 and not ft.estimator:
            raise ValueError(f"finetune.reblur_weight={ft.reblur_weight} needs "
                             "finetune.estimator=FILE (kernel estimator weights); set "
                             "finetune.reblur_weight=0 for plain DeblurGAN")
        if ft.n_critic < 1:
            raise ValueError(f"finetune.n_critic={ft.n_critic}: must be >= 1")

    def _init_generator(self, path: str) -> None:
        loaded = load_deblurrer(path)
        mine = {k: v.shape for k, v in self.generator.state_dict().items()}
        theirs = {k: v.shape for k, v in loaded.state_dict().items()}
        if mine != theirs:
            raise ValueError(f"finetune.generator_init={path}: its generator (ngf="
                             f"{loaded.hparams_dict['ngf']}, n_blocks="
                             f"{loaded.hparams_dict['n_blocks']}) does not match finetune.ngf/"
                             "n_blocks")
        self.generator.load_state_dict(loaded.state_dict())

    # ----------------------------------------------------------------- frozen helpers

    @property
    def estimator(self) -> nn.Module | None:
        return self._estimator

    def _frozen(self, name: str, device: torch.device) -> nn.Module | None:
        m = getattr(self, name)
        if m is not None:
            m.to(device).eval()
        return m

    def content(self, restored: Tensor, target: Tensor) -> Tensor:
        """Content loss (without its weight) between display images."""
        if self.ft.content_loss == "none":
            return restored.new_zeros(())
        if self.ft.content_loss == "mse":
            return F.mse_loss(restored, target)
        net = self._frozen("_content_net", restored.device)
        with torch.no_grad():
            f_target = net(target)
        return F.mse_loss(net(restored), f_target)

    def reblur_loss(self, blurry: Tensor, restored: Tensor) -> Tensor:
        """Reblur consistency (without its weight) of ``restored`` with ``blurry``."""
        est = self._frozen("_estimator", blurry.device)
        kernels, mixing = estimate_field(est, blurry)
        return reblur_consistency(restored, blurry, kernels, mixing, gamma=self.ft.gamma,
                                  padding=self.ft.reblur_padding, norm=self.ft.reblur_norm)

    def forward(self, blurry: Tensor) -> Tensor:
        """Display (N, 3, H, W) -> restored display, H and W multiples of 4."""
        return from_gan(self.generator(to_gan(blurry)))

    # ----------------------------------------------------------------- training

    def configure_optimizers(self):
        betas = (self.ft.beta1, self.ft.beta2)
        opt_g = torch.optim.Adam(self.generator.parameters(), lr=self.ft.lr, betas=betas)
        opt_d = torch.optim.Adam(self.critic.parameters(), lr=self.ft.lr, betas=betas)
        return [opt_g, opt_d]

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        ft = self.ft
        opt_g, opt_d = self.optimizers()
        blurry = batch["blurry"]
        target = sharp_target(batch, ft.gamma)
        real = to_gan(target)
        fake = self.generator(to_gan(blurry))

        self.toggle_optimizer(opt_d)
        for _ in range(ft.n_critic):
            alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
            fake_d = fake.detach()
            wdist = self.critic(real).mean() - self.critic(fake_d).mean()
            gp = gradient_penalty(self.critic, real, fake_d, alpha)
            loss_d = -wdist + ft.gp_weight * gp
            opt_d.zero_grad(set_to_none=True)
            self.manual_backward(loss_d)
            opt_d.step()
        self.untoggle_optimizer(opt_d)

        self.toggle_optimizer(opt_g)
        adversarial = -self.critic(fake).mean()
        restored = from_gan(fake)
        content = self.content(restored, target)
        reblur_term = (self.reblur_loss(blurry, restored) if ft.reblur_weight > 0
                       else restored.new_zeros(()))
        loss_g = adversarial + ft.content_weight * content + ft.reblur_weight * reblur_term
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(loss_g)
        opt_g.step()
        self.untoggle_optimizer(opt_g)

        n = blurry.shape[0]
        self.log_dict({"train/loss_g": loss_g.detach(), "train/loss_d": loss_d.detach(),
                       "train/wasserstein": wdist.detach(), "train/gp": gp.detach(),
                       "train/adversarial": adversarial.detach(),
                       "train/content": content.detach(), "train/reblur": reblur_term.detach()},
                      prog_bar=False, batch_size=n, sync_dist=False)
        self.log("train/psnr", batch_psnr(restored.detach(), target), prog_bar=True,
                 batch_size=n)
        if batch_idx == 0:
            self._log_samples("train/samples", blurry, restored.detach(), target)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        blurry = batch["blurry"]
        target = sharp_target(batch, self.ft.gamma)
        restored = self(blurry)
        n = blurry.shape[0]
        values = {"val/loss": F.mse_loss(restored, target),  # the checkpoint monitor
                  "val/psnr": batch_psnr(restored, target),
                  "val/psnr_blurry": batch_psnr(blurry, target),
                  "val/content": self.content(restored, target)}
        if self.ft.reblur_weight > 0:
            values["val/reblur"] = self.reblur_loss(blurry, restored)
        self.log_dict(values, batch_size=n, sync_dist=True)
        if batch_idx == 0:
            self._log_samples("val/samples", blurry, restored, target)

    def _log_samples(self, key: str, blurry: Tensor, restored: Tensor, target: Tensor) -> None:
        """Rows of blurry | restored | sharp to a logger with ``log_image`` (W&B)."""
        every = max(1, self.ft.image_every_n_epochs)
        logger = self.logger
        if (logger is None or not hasattr(logger, "log_image") or self.current_epoch % every
                or self.global_rank != 0):
            return
        k = min(self.ft.num_images, blurry.shape[0])
        rows = torch.cat([blurry[:k], restored[:k], target[:k]], dim=-1)  # (k, 3, H, 3W)
        images = [(r.permute(1, 2, 0).clamp(0, 1).float().cpu().numpy() * 255).round()
                  .astype(np.uint8) for r in rows]
        logger.log_image(key=key, images=images, step=self.global_step,
                         caption=["blurry | restored | sharp"] * len(images))

    # ----------------------------------------------------------------- checkpoints

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """The frozen helpers are referenced, not stored: path and sha256 of each."""
        checkpoint["frozen_models"] = dict(self.frozen_info)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = (checkpoint.get("frozen_models") or {}).get("estimator")
        now = self.frozen_info.get("estimator")
        if saved and now and saved["sha256"] != now["sha256"]:
            from lightning.pytorch.utilities import rank_zero_warn

            rank_zero_warn(f"the fine-tune checkpoint was made with estimator {saved['path']} "
                           f"(sha256 {saved['sha256'][:12]}), now {now['path']} "
                           f"(sha256 {now['sha256'][:12]})")


def _freeze(module: nn.Module) -> nn.Module:
    return module.requires_grad_(False).eval()


def _info(path: str) -> dict[str, str]:
    return {"path": str(Path(path).resolve()), "sha256": file_sha256(path)}


__all__ = ["ReblurFinetuneModule", "estimate_field", "sharp_target"]
