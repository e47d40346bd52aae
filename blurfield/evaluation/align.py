"""Alignment of a restored image to its ground truth before scoring (docs/design.md §7).

Coordinates are pixel centres, 0-based, ``(x, y) = (column, row)``. A homography ``W``
(3, 3) float64 maps a **target** (ground-truth) pixel ``p`` to the position ``W p`` in the
image being aligned, so the aligned image is ``z_r(p) = z(W p)`` (an inverse map).

- :func:`intensity_match`: ``z_s = (sum x z / sum z^2) z`` (least squares, all channels).
- :func:`ecc_homography`: the enhanced correlation coefficient maximisation of Evangelidis
  & Psarakis (2008), forward-additive Gauss–Newton on the 8 homography parameters,
  on grayscale images pre-smoothed by a 5 x 5 Gaussian (sigma 1.1), central-difference
  gradients, optional coarse-to-fine pyramid (``levels``). Two differences from OpenCV's
  ``findTransformECC``, both for accuracy: bicubic (not bilinear) sampling of the warped
  image and gradients, and pixels within the smoothing radius of either image's border
  are left out (there the smoothing saw mirrored content that differs between the two
  images). A known homography (corners moved 3-8 px) is recovered to ~0.01 px.
- :func:`align_homography` (RealBlur): intensity match, ECC on grayscale
  (0.299 R + 0.587 G + 0.114 B), bicubic warp with symmetric borders, and the valid mask
  ``c`` = nearest-neighbour warp of ones with zeros outside; returns ``z_r c``, ``x c``, ``c``.
- :func:`register_translation` / :func:`align_translation` (Köhler): intensity match, the
  integer shift at the peak of the circular cross-correlation of the channel means, and a
  zero-filled shift of the image and of a mask of ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

GRAY = (0.299, 0.587, 0.114)


class AlignmentError(RuntimeError):
    """ECC diverged (images uncorrelated or not overlapping)."""


@dataclass
class Aligned:
    """An image aligned to its target: ``image`` = z_r c, ``target`` = x c, ``mask`` = c.

    Tensors (C, H, W) float64 (mask (1, H, W)); ``warp`` the (3, 3) homography (or the
    translation as a homography); ``scale`` the intensity-match factor.
    """

    image: Tensor
    target: Tensor
    mask: Tensor
    warp: Tensor
    scale: float


def rgb_to_gray(x: Tensor) -> Tensor:
    """(3, H, W) -> (H, W) with ITU-R 601 weights; (1, H, W) or (H, W) pass through."""
    if x.dim() == 2:
        return x
    if x.shape[0] == 1:
        return x[0]
    w = torch.tensor(GRAY, dtype=x.dtype, device=x.device)
    return (x * w[:, None, None]).sum(0)


def intensity_match(z: Tensor, x: Tensor) -> tuple[Tensor, float]:
    """``(a z, a)`` with ``a = sum(x z) / sum(z^2)``: the least-squares scale of z onto x."""
    zz = (z.double() * z.double()).sum()
    a = float((x.double() * z.double()).sum() / zz) if zz > 0 else 1.0
    return z.double() * a, a


# --------------------------------------------------------------------------- homographies


def apply_homography(w: Tensor, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Map points (any shape) by the (3, 3) homography: ``(W [x, y, 1]) / last``."""
    w = w.to(x)
    d = w[2, 0] * x + w[2, 1] * y + w[2, 2]
    return (w[0, 0] * x + w[0, 1] * y + w[0, 2]) / d, (w[1, 0] * x + w[1, 1] * y + w[1, 2]) / d


def homography_from_points(src: Tensor, dst: Tensor) -> Tensor:
    """The homography mapping 4 points ``src`` (4, 2) onto ``dst`` (4, 2), H[2, 2] = 1."""
    src, dst = src.double(), dst.double()
    rows, rhs = [], []
    for (x, y), (u, v) in zip(src.tolist(), dst.tolist()):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs += [u, v]
    p = torch.linalg.solve(torch.tensor(rows, dtype=torch.float64),
                           torch.tensor(rhs, dtype=torch.float64))
    return torch.cat([p, p.new_ones(1)]).view(3, 3)


def corner_error(w1: Tensor, w2: Tensor, height: int, width: int) -> float:
    """Largest distance (px) between the images of the 4 corners under two homographies."""
    xs = torch.tensor([0.0, width - 1, width - 1, 0.0], dtype=torch.float64)
    ys = torch.tensor([0.0, 0.0, height - 1, height - 1], dtype=torch.float64)
    x1, y1 = apply_homography(w1.double(), xs, ys)
    x2, y2 = apply_homography(w2.double(), xs, ys)
    return float(torch.hypot(x1 - x2, y1 - y2).max())


def _grid(h: int, w: int, ref: Tensor) -> tuple[Tensor, Tensor]:
    ys, xs = torch.meshgrid(torch.arange(h, dtype=ref.dtype, device=ref.device),
                            torch.arange(w, dtype=ref.dtype, device=ref.device), indexing="ij")
    return xs, ys


def _sample(img: Tensor, x: Tensor, y: Tensor, mode: str = "bilinear",
            padding_mode: str = "zeros") -> Tensor:
    """Sample (C, H, W) at pixel positions x, y (h, w) -> (C, h, w)."""
    h, w = img.shape[-2:]
    gx = 2 * x / max(w - 1, 1) - 1
    gy = 2 * y / max(h - 1, 1) - 1
    grid = torch.stack([gx, gy], -1)[None].to(img.dtype)
    return F.grid_sample(img[None], grid, mode=mode, padding_mode=padding_mode,
                         align_corners=True)[0]


def _symmetric_pad(img: Tensor, p: int) -> Tensor:
    """Pad (C, H, W) by p with edge-including mirroring (numpy 'symmetric', OpenCV REFLECT)."""
    img = torch.cat([img[..., :p, :].flip(-2), img, img[..., -p:, :].flip(-2)], -2)
    return torch.cat([img[..., :p].flip(-1), img, img[..., -p:].flip(-1)], -1)


def warp_homography(img: Tensor, w: Tensor, size: tuple[int, int] | None = None
                    ) -> tuple[Tensor, Tensor]:
    """``(z(W p), c(p))`` on a (h, w) grid: bicubic with symmetric borders, and the mask.

    ``c`` is 1 where the nearest pixel of ``W p`` lies inside ``img`` (the nearest-neighbour
    warp of ones, zeros outside). ``img`` (C, H, W) -> ((C, h, w), (1, h, w)).
    """
    h, wd = size or tuple(img.shape[-2:])
    xs, ys = _grid(h, wd, img.double())
    sx, sy = apply_homography(w.double(), xs, ys)
    pad = 2
    padded = _symmetric_pad(img.double(), pad)
    out = _sample(padded, sx + pad, sy + pad, mode="bicubic", padding_mode="border")
    H, W = img.shape[-2:]
    rx, ry = torch.round(sx), torch.round(sy)
    mask = ((rx >= 0) & (rx <= W - 1) & (ry >= 0) & (ry <= H - 1)).to(out.dtype)[None]
    return out, mask


# --------------------------------------------------------------------------- ECC


def _gauss_blur(img: Tensor, size: int) -> Tensor:
    """OpenCV's GaussianBlur(size, sigma=0) with reflect-101 borders on (H, W)."""
    if size <= 1:
        return img
    sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8
    t = torch.arange(size, dtype=img.dtype, device=img.device) - (size - 1) / 2
    g = torch.exp(-0.5 * (t / sigma) ** 2)
    g = g / g.sum()
    r = size // 2
    x = F.pad(img[None, None], (r, r, r, r), mode="reflect")
    x = F.conv2d(x, g.view(1, 1, size, 1))
    return F.conv2d(x, g.view(1, 1, 1, size))[0, 0]


def _gradients(img: Tensor) -> tuple[Tensor, Tensor]:
    """Central differences (x[i+1] - x[i-1]) / 2, reflect-101 at the borders."""
    p = F.pad(img[None, None], (1, 1, 1, 1), mode="reflect")[0, 0]
    gx = (p[1:-1, 2:] - p[1:-1, :-2]) / 2
    gy = (p[2:, 1:-1] - p[:-2, 1:-1]) / 2
    return gx, gy


def _ecc_level(template: Tensor, image: Tensor, w: Tensor, iterations: int, eps: float,
               border: int = 0) -> tuple[Tensor, float]:
    """Forward-additive ECC iterations at one resolution; returns (W, correlation).

    Pixels within ``border`` of either image's edge are left out (there the pre-smoothing
    saw mirrored content, which differs between the two images).
    """
    h, wd = template.shape
    H, W = image.shape
    xs, ys = _grid(h, wd, template)
    inner = ((xs >= border) & (xs <= wd - 1 - border) & (ys >= border)
             & (ys <= h - 1 - border)).to(template.dtype)
    gx, gy = _gradients(image)
    stack = torch.stack([image, gx, gy])
    p = w.flatten()[:8].clone()
    rho, last = float("nan"), float("-inf")
    eye = torch.eye(8, dtype=p.dtype, device=p.device)
    for _ in range(iterations):
        wm = torch.cat([p, p.new_ones(1)]).view(3, 3)
        d = wm[2, 0] * xs + wm[2, 1] * ys + 1
        u = (wm[0, 0] * xs + wm[0, 1] * ys + wm[0, 2]) / d
        v = (wm[1, 0] * xs + wm[1, 1] * ys + wm[1, 2]) / d
        iw, gxw, gyw = _sample(stack, u, v, mode="bicubic")
        valid = ((u >= border) & (u <= W - 1 - border) & (v >= border)
                 & (v <= H - 1 - border)).to(p.dtype) * inner
        n = valid.sum()
        if n < 16:
            raise AlignmentError("ECC: the warped image no longer overlaps the target")
        t = (template - (template * valid).sum() / n) * valid
        i = (iw - (iw * valid).sum() / n) * valid
        # Jacobian of the warped image with respect to the 8 parameters, (8, P):
        # dI/dp = gx du/dp + gy dv/dp with du/dp = (x, y, 1, 0, 0, 0, -x u, -y u) / d.
        a, b = gxw * valid / d, gyw * valid / d
        c = -(a * u + b * v)
        jac = torch.stack([a * xs, a * ys, a, b * xs, b * ys, b, c * xs, c * ys]).reshape(8, -1)
        hess = jac @ jac.T + 1e-12 * eye
        tf, i_f = t.flatten(), i.flatten()
        ip, tp = jac @ i_f, jac @ tf
        hinv_ip = torch.linalg.solve(hess, ip)
        corr = tf @ i_f
        rho = float(corr / (tf.norm() * i_f.norm()).clamp(min=1e-300))
        lam_n = i_f @ i_f - ip @ hinv_ip
        lam_d = corr - tp @ hinv_ip
        if lam_d <= 0:
            raise AlignmentError("ECC: correlation would be minimised; images may be "
                                 "uncorrelated or not overlapping")
        err = (lam_n / lam_d) * tf - i_f
        p = p + torch.linalg.solve(hess, jac @ err)
        if abs(rho - last) < eps:
            break
        last = rho
    return torch.cat([p, p.new_ones(1)]).view(3, 3), rho


def _down2(img: Tensor) -> Tensor:
    return F.avg_pool2d(img[None, None], 2)[0, 0]


def ecc_homography(
    template: Tensor,
    image: Tensor,
    *,
    iterations: int = 100,
    eps: float = 0.0,
    gauss_size: int = 5,
    levels: int = 1,
    init: Tensor | None = None,
) -> Tensor:
    """The homography W (3, 3) float64 maximising the ECC between ``template`` and ``image``.

    Args:
        template, image: (H, W) grayscale; ``image(W p)`` is matched to ``template(p)``.
        iterations: Gauss–Newton steps at the finest level (half as many, at least 20, at
            each coarser level); stop early when the correlation changes by less than eps.
        gauss_size: odd size of the Gaussian pre-smoothing (OpenCV's gaussFiltSize); 1 = off.
        levels: 1 = full resolution only (OpenCV's findTransformECC); n > 1 starts on
            images downsampled n - 1 times by 2 (2 x 2 means), for larger motions.
    Raises:
        AlignmentError: when ECC diverges.
    """
    t0 = _gauss_blur(template.double(), gauss_size)
    i0 = _gauss_blur(image.double(), gauss_size)
    pyr = [(t0, i0)]
    for _ in range(levels - 1):
        t, i = pyr[-1]
        if min(*t.shape, *i.shape) < 64:
            break
        pyr.append((_down2(t), _down2(i)))
    # Coarse pixel x_c sits at fine position 2 x_c + 0.5: W_c = S^-1 W_f S per level.
    s = torch.tensor([[2.0, 0, 0.5], [0, 2.0, 0.5], [0, 0, 1]], dtype=torch.float64,
                     device=t0.device)
    s_inv = torch.linalg.inv(s)
    w = torch.eye(3, dtype=torch.float64, device=t0.device) if init is None else init.double()
    w = w / w[2, 2]
    for _ in range(len(pyr) - 1):
        w = s_inv @ w @ s
        w = w / w[2, 2]
    for lvl in range(len(pyr) - 1, -1, -1):
        t, i = pyr[lvl]
        n_it = iterations if lvl == 0 else max(20, iterations // 2)
        w, _ = _ecc_level(t, i, w, n_it, eps, border=gauss_size // 2 if lvl == 0 else 1)
        if lvl > 0:
            w = s @ w @ s_inv
            w = w / w[2, 2]
    return w


def align_homography(
    restored: Tensor,
    target: Tensor,
    *,
    iterations: int = 100,
    eps: float = 0.0,
    gauss_size: int = 5,
    levels: int = 1,
) -> Aligned:
    """RealBlur alignment of ``restored`` (C, H, W) to ``target`` (C, H, W), display values.

    Intensity match, ECC homography between the grayscale target and the grayscale
    matched image, bicubic warp, valid mask. Both outputs are multiplied by the mask.
    """
    x = target.double()
    zs, a = intensity_match(restored, x)
    w = ecc_homography(rgb_to_gray(x), rgb_to_gray(zs), iterations=iterations, eps=eps,
                       gauss_size=gauss_size, levels=levels)
    zr, c = warp_homography(zs, w, tuple(x.shape[-2:]))
    return Aligned(zr * c, x * c, c, w, a)


# --------------------------------------------------------------------------- translation


def register_translation(target: Tensor, image: Tensor) -> tuple[int, int]:
    """Integer shift (dy, dx) with ``target(p) ~ image(p - (dy, dx))``.

    The peak of the circular cross-correlation ``ifft(F(x) conj(F(z)))`` of the channel
    means; peaks past half the size wrap to negative shifts.
    """
    x = target.double().reshape(-1, *target.shape[-2:]).mean(0)
    z = image.double().reshape(-1, *image.shape[-2:]).mean(0)
    cc = torch.fft.ifft2(torch.fft.fft2(x) * torch.fft.fft2(z).conj()).real
    h, w = cc.shape
    r, c = divmod(int(cc.argmax()), w)
    dy = r - h if r >= h // 2 else r
    dx = c - w if c >= w // 2 else c
    return dy, dx


def shift_zero(img: Tensor, dy: int, dx: int) -> Tensor:
    """``out(p) = img(p - (dy, dx))``, zeros where that falls outside. (..., H, W)."""
    h, w = img.shape[-2:]
    out = torch.zeros_like(img)
    if abs(dy) >= h or abs(dx) >= w:
        return out
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[..., yd, xd] = img[..., ys, xs]
    return out


def align_translation(restored: Tensor, target: Tensor) -> Aligned:
    """Köhler alignment: intensity match, integer registration, zero-filled shift + mask."""
    x = target.double()
    zs, a = intensity_match(restored, x)
    dy, dx = register_translation(x, zs)
    c = shift_zero(torch.ones_like(zs[:1]), dy, dx)
    zr = shift_zero(zs, dy, dx)
    w = torch.tensor([[1.0, 0, -dx], [0, 1.0, -dy], [0, 0, 1]], dtype=torch.float64)
    return Aligned(zr, x * c, c, w, a)
