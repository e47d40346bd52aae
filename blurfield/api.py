"""The Python face of blurfield: load an estimator, estimate a blur field, deblur a photo.

    model = load_estimator("runs/estimator/last.ckpt")     # or None: the shipped model
    photo, sigma = denoise(photo)                          # a noisy photo denoised first
    field = estimate(photo, model, scale="auto")          # photo: (H, W, 3) display in [0, 1]
    sharp = deblur(photo, field)                           # display in, display out
    save_field("photo_field.npz", field); field = load_field("photo_field.npz")

A :class:`Field` holds the basis kernels (B, K, K) (correlation orientation) and the mixing
(B, h, w) at the resolution the estimator saw: the photo downscaled by ``scale`` (>= 1).
Restoration brings it to full size (kernels about s·K, mixing bilinear; see
:mod:`blurfield.restore.scale`). Field files (:mod:`blurfield.fieldfile`, re-exported
here) follow docs/design.md §8 exactly.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from blurfield.config import RestoreOptions, RLOptions
from blurfield.fieldfile import Field, load_decision, load_field, save_field  # noqa: F401
from blurfield.physics import to_display, to_linear
from blurfield.restore import (
    Decision,
    RLResult,
    auto_overlap,
    choose_scale,
    downscale_image,
    noharm,
    noise,
    progress_bar,
    restore_tiled,
    richardson_lucy,
    scaled_size,
    upscale_kernels,
    upscale_mixing,
)
from blurfield.restore.refine import (
    CUT_OFF,
    MARGIN,
    check_refine,
    estimate_field,
    long_blur,
    rl_iterations,
)

SHIPPED_WEIGHTS = Path(__file__).resolve().parent / "weights" / "compact.pt"


# --------------------------------------------------------------------------- helpers


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """"auto"/None: CUDA when present, else the CPU; "cuda" without a GPU is a ValueError."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: 'cuda' was asked for but no CUDA GPU is available; "
                         "use device=cpu or auto")
    return device


def count_or_auto(value: Any, key: str) -> int | None:
    """A setting that is "auto" (or None), returned as None, or a whole number >= 1, returned
    as an int; anything else is a ValueError naming ``key``."""
    if value is None or str(value) == "auto":
        return None
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if n < 1 or str(n) != str(value).strip():
        raise ValueError(f"{key}: {value!r} is neither 'auto' nor a whole number >= 1")
    return n


def resolve_threads(threads: int | str | None = "auto") -> int:
    """``restore.threads``: a number >= 1 as is; "auto"/None: ``OMP_NUM_THREADS`` when it is
    set to a number >= 1, else the cores this process may run on
    (``os.sched_getaffinity``)."""
    n = count_or_auto(threads, "threads")
    if n is not None:
        return n
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.strip().isdigit() and int(env) >= 1:
        return int(env)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def set_threads(threads: int | str | None = "auto") -> int:
    """``torch.set_num_threads(resolve_threads(threads))``; returns the number set."""
    n = resolve_threads(threads)
    torch.set_num_threads(n)
    return n


def restore_scale_factor(restore_scale: float | str, field_scale: float) -> float:
    """``restore.restore_scale`` as a downscale factor in [1, field_scale]: "full" = 1,
    "field" = the field's own scale, a number >= 1 = itself, at most the field's scale."""
    if str(restore_scale) == "full":
        return 1.0
    if str(restore_scale) == "field":
        return max(1.0, float(field_scale))
    try:
        r = float(restore_scale)
    except (TypeError, ValueError):
        r = float("nan")
    if not r >= 1:
        raise ValueError(f"restore_scale: {restore_scale!r} is not 'full', 'field' or a "
                         "number >= 1")
    return max(1.0, min(r, float(field_scale)))


def _as_batch(image: Any) -> tuple[Tensor, Any]:
    """Display image -> ((1, C, H, W) float32 tensor, function turning a result back into
    the caller's type and layout). Accepts numpy (H, W) / (H, W, C) (float in [0, 1],
    uint8 or uint16) and tensors (C, H, W) / (1, C, H, W)."""
    if isinstance(image, Tensor):
        if image.dim() == 3:
            return image[None].float(), lambda t: t[0]
        if image.dim() == 4 and image.shape[0] == 1:
            return image.float(), lambda t: t
        raise ValueError(f"image: expected a (C, H, W) or (1, C, H, W) tensor, "
                         f"got {tuple(image.shape)}")
    a = np.asarray(image)
    if a.dtype == np.uint8:
        a = a.astype(np.float32) / 255.0
    elif a.dtype == np.uint16:
        a = a.astype(np.float32) / 65535.0
    squeeze = a.ndim == 2
    if squeeze:
        a = a[..., None]
    if a.ndim != 3 or a.shape[-1] not in (1, 3):
        raise ValueError(f"image: expected (H, W), (H, W, 1) or (H, W, 3), got {a.shape}")
    t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).permute(2, 0, 1)[None]

    def back(x: Tensor) -> np.ndarray:
        out = x[0].permute(1, 2, 0).cpu().numpy()
        return out[..., 0] if squeeze else out

    return t, back


def _file_id(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return f"{path.name}:{h.hexdigest()[:12]}"


def denoise(image: Any, *, above: float | None = 0.001, gamma: float = 2.2
            ) -> tuple[Any, float | None]:
    """A noisy photo denoised before it is estimated and restored, as ``blurfield deblur``
    does (``restore.denoise_above``, whose default ``above`` is): display values in, the
    same type and layout out (float), with its noise level σ (linear light); the photo
    itself and None when it is not noisy (σ at most ``above``, or detail that is texture
    rather than white noise; None: never). :func:`blurfield.restore.noise.denoise`."""
    x, back = _as_batch(image)
    out, sigma = noise.denoise(x, above, gamma)
    return (image, None) if sigma is None else (back(out), sigma)


def smooth(image: Any, sigma: float = 0.002, *, gamma: float = 2.2) -> Any:
    """A JPEG photo smoothed before it is estimated and restored, as ``blurfield deblur``
    does to JPEG files that :func:`denoise` leaves as they are (``restore.jpeg_smooth``,
    whose default ``sigma`` is): :func:`denoise`'s filter at noise level ``sigma`` (linear
    light), display values in, the same type and layout out (float).
    :func:`blurfield.restore.noise.smooth`."""
    x, back = _as_batch(image)
    return back(noise.smooth(x, sigma, gamma))


def prefilter(image: Any, *, above: float | None = 0.001, jpeg: float | None = None,
              gamma: float = 2.2) -> tuple[Any, float | None, bool]:
    """The photo as ``blurfield deblur`` estimates and restores it: denoised (:func:`denoise`)
    when it is noisy, else, for a JPEG photo (``jpeg``: its level, ``restore.jpeg_smooth``;
    None: not a JPEG), smoothed (:func:`smooth`), else the photo itself. Returns it (the
    caller's type and layout), σ when it was denoised (else None) and whether it was
    smoothed.
    :func:`blurfield.restore.noise.prefilter`."""
    x, back = _as_batch(image)
    out, sigma, smoothed = noise.prefilter(x, above, jpeg, gamma)
    return (back(out) if sigma is not None or smoothed else image), sigma, smoothed


# --------------------------------------------------------------------------- estimator


def load_estimator(path: str | Path | None = None, device: str | torch.device = "cpu"):
    """A :class:`~blurfield.models.KernelEstimator` in eval mode on ``device``, its weights
    channels-last.

    ``path``: a Lightning checkpoint, a blurfield-estimator weight file (embedded
    hyperparameters) or the authors' released state dict; None = the shipped model
    ``blurfield/weights/compact.pt``. The model gets a ``model_id`` attribute (file name and
    hash prefix) that :func:`estimate` records in the field.
    """
    from blurfield.models import load_any_estimator

    if path is None:
        if not SHIPPED_WEIGHTS.is_file():
            raise ValueError(f"no shipped estimator weights at {SHIPPED_WEIGHTS}; pass "
                             "--checkpoint PATH (a Lightning .ckpt, a blurfield-estimator "
                             ".pt, or the authors' released state dict)")
        path = SHIPPED_WEIGHTS
    path = Path(path)
    model = load_any_estimator(path, map_location=resolve_device(device))
    model.model_id = _file_id(path)
    # channels-last weights: the convolutions run 1.6x faster on the CPU (outputs equal to
    # float rounding; README, Speed)
    return model.to(memory_format=torch.channels_last).eval()


@torch.inference_mode()
def estimate(
    image: Any,
    model: torch.nn.Module,
    scale: float | str = 1,
    *,
    device: str | torch.device | None = None,
    max_megapixels: float = 1.5,
    gamma: float = 2.2,
    tile: int = 128,
    elements: int = 0,
    refine: int = 10,
    refine_margin: float = MARGIN,
    refine_window: int = 384,
    probe: int = 10,
    probe_window: int = 256,
    rl: Mapping[str, Any] | None = None,
    long_blur_scale: float = 2,
) -> Field:
    """Estimate the blur field of one photo.

    Args:
        image: display values, numpy (H, W, 3) / (H, W) / (H, W, 1) or a tensor
            (C, H, W) / (1, C, H, W); C in {1, 3}.
        model: a KernelEstimator (from :func:`load_estimator`).
        scale: downscale factor >= 1 before estimating, or "auto" (the estimator sees at
            most ``max_megapixels``).
        device: where to run (None: where the model is; the model is moved there).
        gamma: the photo's data gamma, recorded in the field for :func:`deblur`.
        tile: a photo larger than this (at the estimator's scale) is estimated in
            overlapping tiles of this side (:func:`blurfield.models.tiled.estimate_tiled`);
            0: the whole photo at once.
        elements: the tiles' basis elements are merged into at most this many (0: the
            model's B).
        refine, refine_margin, refine_window: the kernel refinement's iterations (0: off),
            the margin by which it must explain the photo better than the network's field,
            and the side of the centre square it runs on
            (:func:`blurfield.restore.refine.refine_field`; README, "Refining the kernel").
        probe, probe_window: the RL iterations and the windows of the probes with which
            the refinement compares the two fields (the no-harm rule's
            ``restore.no_harm_probe`` and ``no_harm_window``).
        rl: the RL options of those probes by name, as the no-harm rule takes them
            (:data:`blurfield.restore.noharm.PROBE_OPTIONS`; other names are ignored);
            None: :class:`~blurfield.config.RLOptions`' defaults.
        long_blur_scale: with ``scale="auto"``, when the refined kernel is cut off by its
            window (a blur longer than the estimator reads), the photo is estimated again
            downscaled this many times more, and that field taken if its refined kernel is
            a long, elongated one (:func:`blurfield.restore.refine.long_blur`; README,
            "Long blur"); 1: never.
    Returns:
        :class:`Field` with mixing (B', h, w) at the estimated resolution: B' = B for a
        photo estimated whole, at most ``elements`` (or B) in tiles. The photo or each tile
        is reflect-padded to a multiple of 32 for the network and the mixing cropped back.
    """
    x, _ = _as_batch(image)
    height, width = x.shape[-2:]
    s = choose_scale(height, width, scale, max_megapixels)
    if device is not None:
        model = model.to(resolve_device(device))
    dev = next(model.parameters()).device

    def field_at(scale: float) -> tuple[Tensor, Tensor, str]:
        return estimate_field(model, downscale_image(x.to(dev), scale), tile, elements,
                              gamma=gamma, refine=refine, refine_margin=refine_margin,
                              refine_window=refine_window, probe=probe,
                              probe_window=probe_window,
                              rl=RLOptions().rl_kwargs() if rl is None else rl)

    check_refine(refine, refine_window, probe, probe_window, long_blur_scale)
    retry = float(long_blur_scale)
    kernels, mixing, note = field_at(s)
    if (retry > 1 and str(scale) == "auto" and CUT_OFF in note
            and min(height, width) / (s * retry) >= 64):
        wide = field_at(s * retry)
        why = long_blur(wide[0], wide[2], retry)
        if why is None:
            kernels, mixing, s = wide[0], wide[1], s * retry
            note = (f"{wide[2]} at scale {s:.3g} (at scale {s / retry:.3g} the refined kernel ran "
                    "into its window's border: a long blur)")
        else:
            note = f"{note}; estimated again at scale {s * retry:.3g}, not taken: {why}"
    return Field(
        kernels=kernels[0].float().cpu(),
        mixing=mixing[0].float().cpu(),
        scale=float(s),
        image_size=(int(height), int(width)),
        gamma=float(gamma),
        model_id=str(getattr(model, "model_id", type(model).__name__)),
        refinement=note,
    )


# --------------------------------------------------------------------------- restoration


def restore(
    blurry_linear: Tensor,
    field: Field,
    options: RestoreOptions | None = None,
    *,
    device: str | torch.device | None = "auto",
    progress: bool = False,
    gamma: float | None = None,
    **overrides: Any,
) -> RLResult:
    """Richardson–Lucy of (1, C, H, W) linear light with ``field`` brought to full size.

    ``options``: :class:`blurfield.config.RestoreOptions` — Richardson–Lucy's options
    (:class:`~blurfield.config.RLOptions`) and the ones below; the ``restore`` section of
    a config does (its other keys are not read); None: the defaults. ``overrides``: any of
    its fields by name (choices may be strings), e.g. ``restore(v, f, iterations=10)``.
    ``device``: where RL runs (:func:`resolve_device`).

    Photos larger than ``tile`` in either dimension are restored in overlapping tiles
    with exactly ``iterations`` updates (``early_stop`` does not apply);
    ``tile_overlap="auto"`` is :func:`blurfield.restore.auto_overlap` of the full-size K.
    The result lives on ``blurry_linear``'s device.

    ``skip_tol`` (default 1e-3): per tile (or for the whole photo), basis elements whose
    mixing is <= it everywhere there are dropped and the kept mixing renormalised
    (:class:`blurfield.physics.BlurField`): each application of the blur is then within
    ``eps (max x - min x)`` of the full one at every pixel, ``eps`` the largest dropped
    mixing mass, at most ``(B - kept) skip_tol``; 0: exact, None: no inspection.

    ``restore_scale`` (default "full"): "full" runs RL on the photo itself; "field" (the
    scale the field was estimated at) or a factor ``r`` in [1, field.scale] runs it on the
    photo downscaled by ``r`` (kernels upscaled by ``field.scale / r`` only) and adds the
    bicubically upsampled correction ``up(x_r - v_r)`` to the full photo (clamped >= 0):
    about ``r²`` times less work, and detail finer than ``r`` pixels stays as blurry as it
    was.

    ``no_harm`` (default on): the rule of :mod:`blurfield.restore.noharm` decides, at the
    resolution the field was estimated at, how much of the restoration to keep and at what
    kernel size (the ``no_harm_*`` options; ``min_blur`` in full-size px; ``gamma``: the
    photo's data gamma for the noise floor, None = the field's); the restoration uses the
    kernels at the decision's ``kernel_scale``; untiled restorations also stop at the noise
    level. The result's ``decision`` says what was decided and why;
    a photo left as is is returned unchanged, with ``iterations == 0`` and no
    ``reblur_error``.

    ``field_iterations`` (default 10): with the network's own field (``field.refinement``
    says so: the refinement kept it or was off) RL runs at most this many iterations
    instead of ``iterations``: its soft kernels' errors grow with every iteration, while a
    refined kernel or a field from elsewhere keeps gaining (README, "Iterations").

    ``progress``: a bar with the time left over the RL iterations (of every tile).
    """
    if blurry_linear.dim() != 4 or blurry_linear.shape[0] != 1:
        raise ValueError(f"blurry_linear: expected (1, C, H, W), got "
                         f"{tuple(blurry_linear.shape)}")
    o = RestoreOptions.make(options, **overrides)
    iterations = rl_iterations(field.refinement, o.iterations, o.field_iterations)
    tile = o.tile
    height, width = blurry_linear.shape[-2:]
    if (height, width) != tuple(field.image_size):
        raise ValueError(f"field: made for a {field.image_size[1]}x{field.image_size[0]} "
                         f"photo, this one is {width}x{height}")
    dev = resolve_device(device)
    r = restore_scale_factor(o.restore_scale, field.scale)
    work_size = scaled_size(height, width, r) if r > 1 else (height, width)
    if work_size == (height, width):
        r = 1.0
    kernels = upscale_kernels(field.kernels.to(dev, torch.float32), field.scale / r)[None]
    k = kernels.shape[-1]
    if min(work_size) <= k:
        raise ValueError(f"image: {work_size[1]}x{work_size[0]} pixels is not larger than the "
                         f"{k}x{k} kernels at {'full size' if r == 1 else f'scale {r:.2f}'}")
    low = field.mixing.to(dev, torch.float32)[None]

    def mixing_at(window):
        return upscale_mixing(low, work_size, window)

    options = {k: v for k, v in o.rl_kwargs().items() if k not in ("iterations", "early_stop")}
    tiled = tile > 0 and max(work_size) > tile
    work = blurry_linear if r == 1 else downscale_image(blurry_linear.to(dev), r)
    judged = None
    stops: dict[str, Any] = {}
    if o.no_harm:
        g = field.gamma if gamma is None else float(gamma)
        probe = min(o.no_harm_probe, iterations)
        bar = progress_bar(noharm.max_probes(o.no_harm_shrink) * probe, "no-harm probes",
                           progress)
        try:
            judged = _assess(blurry_linear, field, low, dev, g, o, options, probe,
                             callback=lambda t, x, e: bar.update(t > 0))
        finally:
            bar.close()
        if judged.blend <= 0:
            return RLResult(blurry_linear, [], 0, judged)
        if judged.kernel_scale < 1:
            kernels = noharm.rescaled(kernels, judged.kernel_scale)
        if not tiled:
            stops = _stops(work.to(dev), g, o)
        elif o.no_harm_spread > 0:  # every tile runs as many iterations as RL on the probes'
            iterations = _probe_iterations(work.to(dev), kernels, mixing_at, iterations,
                                           o.no_harm_window, g, o, options)
    if tiled:
        overlap = auto_overlap(k) if str(o.tile_overlap) == "auto" else int(o.tile_overlap)
        res = restore_tiled(work, kernels, mixing_at, tile=tile, overlap=overlap,
                            iterations=iterations, device=dev, progress=progress, **options)
    else:
        bar = progress_bar(iterations, "RL", progress)
        try:
            res = richardson_lucy(work.to(dev), kernels, mixing_at(None),
                                  iterations=iterations, early_stop=o.early_stop,
                                  callback=lambda t, x, e: bar.update(t > 0), **stops,
                                  **options)
        finally:
            bar.close()
        res = res._replace(image=res.image.to(blurry_linear.device))
    if r > 1:
        correction = F.interpolate(res.image - work.to(res.image.device), size=(height, width),
                                   mode="bicubic", align_corners=False)
        res = res._replace(image=correction.to(blurry_linear.device).add_(blurry_linear)
                           .clamp_(min=0))
    if judged is None:
        return res
    return res._replace(image=noharm.blend(blurry_linear, res.image, judged.blend),
                        decision=dataclasses.replace(judged, iterations=res.iterations))


def _stops(work: Tensor, gamma: float, o: RestoreOptions) -> dict[str, Any]:
    """RL's stops under the no-harm rule (:func:`blurfield.restore.noise.rl_stops`) for the
    photo ``work`` at the restoration's scale."""
    return noise.rl_stops(work, o.no_harm_noise, o.no_harm_spread, gamma)


def _probe_squares(image: Tensor, mixing_at: Any, window: int, device: torch.device
                   ) -> tuple[Tensor, Tensor]:
    """The (1, C, H, W) ``image``'s ``window``² squares the no-harm rule probes
    (:func:`blurfield.restore.noharm.probe_boxes`; the whole image when small), (N, C, h, w)
    on ``device``, and the field's mixing on each, ``mixing_at(box)`` (N, B, h, w)."""
    boxes = noharm.probe_boxes(*image.shape[-2:], window)
    return (torch.cat([image[..., y0:y1, x0:x1].to(device) for y0, y1, x0, x1 in boxes]),
            torch.cat([mixing_at(box) for box in boxes]))


def _probe_iterations(work: Tensor, kernels: Tensor, mixing_at: Any, iterations: int,
                      window: int, gamma: float, o: RestoreOptions, options: dict) -> int:
    """The iterations of a tiled restoration with the spread stop on: those RL with the
    rule's stops (:func:`_stops`) takes on the four ``window``² squares the rule probes
    (:func:`blurfield.restore.noharm.probe_boxes`), at the restoration's scale."""
    v, mixing = _probe_squares(work, mixing_at, window, work.device)
    res = richardson_lucy(v, kernels.expand(len(v), *kernels.shape[1:]), mixing,
                          iterations=iterations, early_stop=o.early_stop,
                          **_stops(v, gamma, o), **options)
    return res.iterations


def _assess(blurry_linear: Tensor, field: Field, low: Tensor, dev: torch.device,
            gamma: float, o: RestoreOptions, options: dict, probe: int,
            callback=None) -> Decision:
    """The no-harm rule's steps 1-4 with the field as estimated: steps 1-2 on the photo at
    the field's resolution (downscaled by ``field.scale``); the probes of steps 3-4 on the
    photo itself, in its four ``no_harm_window``² squares (or whole) at full size with the
    field brought there (kernels grown by ``field.scale``, the mixing upsampled on those
    squares only), where the detail the downscale removed tells a sharp photo from a
    blurred one (README, "Deblur does no harm")."""
    small = downscale_image(blurry_linear.to(dev), field.scale)
    mixing = low
    if tuple(small.shape[-2:]) != tuple(low.shape[-2:]):
        mixing = upscale_mixing(low, tuple(small.shape[-2:]))
    rule = {**noharm.rule_kwargs(vars(o)), "probe": probe}
    rule.pop("spread", None)  # the restoration's (_stops), not the assessment's
    full = None
    if field.scale > 1:
        size = tuple(blurry_linear.shape[-2:])
        full = _probe_squares(blurry_linear, lambda box: upscale_mixing(low, size, box),
                              o.no_harm_window, dev)
    return noharm.assess(small, field.kernels.to(dev, torch.float32)[None], mixing,
                         gamma=gamma, pixel_scale=field.scale, callback=callback, full=full,
                         **rule, **options)


def deblur(image: Any, field: Field, *, gamma: float | None = None,
           return_result: bool = False, **options) -> Any:
    """Deblur a photo with its field: display in, display out (same type and layout).

    ``to_linear`` with ``gamma`` (None: the field's), :func:`restore` with ``options``
    (iterations, saturation, tv_weight, early_stop, padding, method, sat_threshold,
    z_dilate, tile, tile_overlap, device, progress, skip_tol, restore_scale, and the no-harm
    rule's no_harm_* options),
    ``to_display``, clipped to [0, 1]. ``return_result=True`` returns ``(image, RLResult)``; its
    ``decision`` (:class:`blurfield.restore.noharm.Decision`, None with ``no_harm=False``)
    says whether the photo was restored or left nearly as is, and why.
    """
    x, back = _as_batch(image)
    g = field.gamma if gamma is None else float(gamma)
    res = restore(to_linear(x, g), field, gamma=g, **options)
    out = back(to_display(res.image, g).clamp_(0, 1))
    return (out, res) if return_result else out
