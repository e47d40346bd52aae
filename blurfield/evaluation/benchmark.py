"""Running one method over a benchmark's images, one image at a time (docs/design.md §7).

A :class:`Method` turns a blurry display image into a restoration (the estimator then
Richardson–Lucy, or a DeblurGAN generator alone); :func:`evaluate_photo` and
:func:`evaluate_synthetic` restore one benchmark item and score it with its protocol
(:mod:`blurfield.evaluation.protocols`), returning the row, the picture panels and the
seconds the restoration took. The command around them is :mod:`blurfield.commands.evaluate`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from blurfield.config import EvalCfg
from blurfield.errors import UserError


@dataclass
class Settings:
    """What one run needs, resolved from the config and the protocol."""

    benchmark: str
    metric: str
    out: Path
    device: torch.device
    gamma: float | None
    saturation: bool
    rl: dict[str, Any]
    scale: Any
    max_megapixels: float
    estimate: dict[str, Any]  # blurfield.api.estimate's tile, elements, refine...
    ev: EvalCfg
    denoise_above: float | None = None  # restore.denoise_above: noisy photos denoised first
    jpeg_smooth: float | None = None  # restore.jpeg_smooth with eval.jpeg: the others smoothed


def load_image(path: Path) -> Tensor:
    """(3, H, W) float32 display values; grayscale is repeated to 3 channels."""
    from blurfield.imageio import read_image

    a, _ = read_image(path)
    t = torch.from_numpy(a).permute(2, 0, 1).contiguous()
    return t.expand(3, -1, -1).contiguous() if t.shape[0] == 1 else t


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --------------------------------------------------------------------------- methods


class Method:
    """Turns a blurry display image into a restoration (and its field and the no-harm
    rule's decision, if any)."""

    name = "method"

    def restore(self, blurry: Tensor, s: Settings) -> tuple[Tensor, Any, Any]:
        """(3, H, W) display -> (restored (3, H, W) display, its field or None, the
        :class:`blurfield.restore.noharm.Decision` or None)."""
        raise NotImplementedError


class EstimateAndRestore(Method):
    """The estimator, then Richardson–Lucy with the estimated field (:mod:`blurfield.api`)."""

    name = "estimate + RL"

    def __init__(self, path: str | None, device: torch.device):
        from blurfield.api import load_estimator

        try:
            self.model = load_estimator(path, device=device)
        except (ValueError, FileNotFoundError) as e:
            raise UserError(f"--checkpoint: {e}") from None
        self.path = path

    def field(self, blurry: Tensor, s: Settings, gamma: float):
        from blurfield.api import estimate

        return estimate(blurry, self.model, s.scale, max_megapixels=s.max_megapixels,
                        gamma=gamma, **s.estimate)

    def restore(self, blurry: Tensor, s: Settings) -> tuple[Tensor, Any, Any]:
        from blurfield.api import deblur, prefilter

        g = float(s.gamma if s.gamma is not None else 2.2)
        photo, _, _ = prefilter(blurry, above=s.denoise_above, jpeg=s.jpeg_smooth, gamma=g)
        field = self.field(photo, s, g)
        out, res = deblur(photo, field, gamma=g, device=s.device, return_result=True, **s.rl)
        return out.float().cpu(), field, res.decision


class Generator(Method):
    """A DeblurGAN generator alone (``--deblurrer``)."""

    name = "DeblurGAN generator"

    def __init__(self, path: str, device: torch.device):
        from blurfield.models.deblurgan import load_deblurrer

        try:
            self.g = load_deblurrer(path).to(device)
        except (ValueError, FileNotFoundError) as e:
            raise UserError(f"--deblurrer: {e}") from None
        self.device = device

    def restore(self, blurry: Tensor, s: Settings) -> tuple[Tensor, Any, Any]:
        from blurfield.models.deblurgan import run_generator

        return run_generator(self.g, blurry[None].to(self.device))[0].float().cpu(), None, None


def reblur_psnr(restored: Tensor, blurry: Tensor, field: Any, gamma: float,
                device: torch.device | str = "cpu") -> float:
    """No-reference consistency: the restoration reblurred by its field (eq. 3, "same"
    padding) vs the blurry photo, PSNR in display values — at the resolution the field was
    estimated at (both images downscaled by ``field.scale``), which keeps it cheap."""
    from blurfield.evaluation.metrics import psnr
    from blurfield.physics import reblur, to_linear
    from blurfield.restore import downscale_image

    r = downscale_image(restored[None].to(device), field.scale)
    b = downscale_image(blurry[None].to(device), field.scale)
    h, w = field.mixing.shape[-2:]
    r, b = r[..., :h, :w], b[..., :h, :w]
    rb = reblur(to_linear(r, gamma), field.kernels[None].to(device),
                field.mixing[None].to(device), gamma=gamma, padding="same")
    return float(psnr(b[0].cpu(), rb[0].cpu()))


# --------------------------------------------------------------------------- one image


def _frames(paths: tuple[Path, ...]) -> Iterator[Tensor]:
    for p in paths:
        yield load_image(p)


def evaluate_photo(item, method: Method, s: Settings) -> tuple[dict, list, float]:
    """One benchmark photo: restore, score with the protocol. (row, panels, seconds); with
    the no-harm rule the row ends with its ``decision``, ``blend``, ``kernel_scale`` and
    ``decision_reason`` (the field file's keys)."""
    from blurfield.evaluation import metrics, protocols

    blurry = load_image(item.blurry)
    _sync(s.device)
    t0 = time.perf_counter()
    restored, field, decision = method.restore(blurry, s)
    _sync(s.device)
    seconds = time.perf_counter() - t0
    scored = metrics.quantize(restored) if s.ev.quantize else restored
    row: dict[str, Any] = {}
    sharp_panel = None
    if s.metric == "realblur":
        sharp = load_image(item.sharp[0])
        row |= protocols.score_realblur(scored, sharp, iterations=s.ev.ecc_iterations,
                                        eps=s.ev.ecc_eps, gauss_size=s.ev.ecc_gauss,
                                        levels=s.ev.ecc_levels, device=s.device)
        row |= protocols.prefix(protocols.score_plain(blurry, sharp), "blurry")
        sharp_panel = sharp
    elif s.metric == "koehler":
        res = protocols.score_koehler({"restored": scored, "blurry": blurry},
                                      _frames(item.sharp), s.ev.koehler_ssim, s.device)
        row |= res["restored"]
        row |= protocols.prefix(res["blurry"], "blurry")
        sharp_panel = load_image(item.sharp[int(res["restored"]["best_frame"])])
    elif s.metric == "plain":
        sharp = load_image(item.sharp[0])
        row |= protocols.score_plain(scored, sharp)
        row |= protocols.prefix(protocols.score_plain(blurry, sharp), "blurry")
        sharp_panel = sharp
    if field is not None:
        row["reblur_psnr"] = reblur_psnr(scored, blurry, field, float(s.gamma or 2.2),
                                         s.device)
    if decision is not None:
        row |= decision.columns()
    panels = [("blurry", blurry), ("restored", restored)]
    if sharp_panel is not None:
        panels.append(("sharp", sharp_panel))
    if field is not None:
        from blurfield.viz import psf_overlay

        panels.append(("PSFs", psf_overlay(blurry.permute(1, 2, 0).numpy(), field.kernels,
                                           field.mixing)))
    if s.benchmark == "folder":
        _save_outputs(s.out / "restored", item.id, restored, field, decision)
    return row, panels, seconds


def _save_outputs(folder: Path, stem: str, restored: Tensor, field: Any,
                  decision: Any = None) -> None:
    from blurfield.api import save_field
    from blurfield.imageio import write_image

    write_image(folder / f"{stem}_restored.png", restored.permute(1, 2, 0).numpy(), 8)
    if field is not None:
        save_field(folder / f"{stem}_field.npz", field, decision)


def evaluate_synthetic(item, method: Method, s: Settings) -> tuple[dict, list, float]:
    """One sample of synthetic shards: kernel error and RL with the estimated, true and
    uniform fields (:func:`blurfield.evaluation.synthetic.evaluate_sample`)."""
    from blurfield.data.schema import decode_sample
    from blurfield.evaluation.readers import load_raw_sample
    from blurfield.evaluation.synthetic import evaluate_sample
    from blurfield.restore.refine import estimate_field

    assert isinstance(method, EstimateAndRestore)
    try:
        sample = decode_sample(load_raw_sample(item))
    except ValueError as e:
        raise UserError(f"{item.shard}: sample {item.id}: {e}") from None
    if not sample.has_field:
        raise UserError(f"{item.shard}: sample {item.id} has no blur field (has_field "
                        "false); the synthetic benchmark needs shards with fields")
    rl = {k: v for k, v in s.rl.items() if k not in ("tile", "tile_overlap")}
    g = float(s.gamma if s.gamma is not None else sample.meta["gamma"])

    # kernels are scored at the sample's own scale: no restore.scale, no long-blur retry
    options = {k: v for k, v in s.estimate.items() if k != "long_blur_scale"}

    def estimate(v: Tensor) -> tuple[Tensor, Tensor, str]:
        return estimate_field(method.model, v, gamma=g, **options)

    res = evaluate_sample(sample, estimate, window=s.ev.window, gamma=s.gamma, rl=rl,
                          device=s.device, denoise_above=s.denoise_above,
                          smooth=s.jpeg_smooth)
    return res.row, res.panels, res.seconds
