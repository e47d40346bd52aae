"""Evaluation metrics and alignment against direct implementations (numpy / skimage)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers.moments import covariance
from skimage import data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from blurfield.evaluation import align, metrics
from blurfield.physics.kernels import line_kernel


def _pair(seed: int = 0, h: int = 40, w: int = 52) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    photo = data.astronaut()[100 : 100 + h, 200 : 200 + w] / 255.0
    noisy = np.clip(photo + 0.08 * rng.standard_normal(photo.shape), 0, 1)
    return photo, noisy


def _t(a: np.ndarray) -> torch.Tensor:
    """(H, W, C) numpy -> (C, H, W) tensor."""
    return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)


def _sk_ssim(x: np.ndarray, y: np.ndarray, full: bool = False):
    return structural_similarity(x, y, gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False, data_range=1.0,
                                 channel_axis=2, full=full)


def test_psnr_matches_skimage():
    x, y = _pair()
    assert float(metrics.psnr(_t(x), _t(y))) == pytest.approx(
        peak_signal_noise_ratio(x, y, data_range=1.0), abs=1e-10)


def test_masked_psnr_is_the_realblur_formula():
    x, y = _pair(1)
    rng = np.random.default_rng(1)
    m = (rng.random(x.shape[:2]) > 0.3).astype(np.float64)
    m3 = np.repeat(m[..., None], 3, 2)
    direct = 10 * math.log10(1.0 / (np.sum(m3 * (x - y) ** 2) / np.sum(m3)))
    got = float(metrics.masked_psnr(_t(x), _t(y), torch.from_numpy(m)[None]))
    assert got == pytest.approx(direct, abs=1e-10)
    # Not the plain PSNR of the masked images (that counts masked pixels as perfect).
    assert abs(float(metrics.psnr(_t(x * m3), _t(y * m3))) - direct) > 0.5


def test_ssim_matches_skimage_gaussian_ssim():
    x, y = _pair(2)
    assert float(metrics.ssim(_t(x), _t(y))) == pytest.approx(_sk_ssim(x, y), abs=1e-10)
    _, full = _sk_ssim(x, y, full=True)
    got = metrics.ssim_map(_t(x), _t(y)).permute(1, 2, 0).numpy()
    np.testing.assert_allclose(got, full[5:-5, 5:-5], atol=1e-10)


def test_masked_ssim_is_the_realblur_formula():
    x, y = _pair(3)
    m = np.ones(x.shape[:2])
    m[:, :9] = 0  # a warped image's invalid border
    m[-6:, :] = 0
    m3 = np.repeat(m[..., None], 3, 2)
    _, smap = _sk_ssim(x * m3, y * m3, full=True)
    r = 5  # int(3.5 * 1.5 + 0.5)
    s, mc = (smap * m3)[r:-r, r:-r], m3[r:-r, r:-r]
    direct = float(np.mean(s.sum((0, 1)) / mc.sum((0, 1))))
    got = float(metrics.masked_ssim(_t(x), _t(y), torch.from_numpy(m)[None]))
    assert got == pytest.approx(direct, abs=1e-10)
    # The unmasked SSIM of the masked images is inflated by the perfect zero border.
    assert float(metrics.ssim(_t(x * m3), _t(y * m3))) > got + 0.01


def test_batched_metrics_are_per_image():
    x, y = _pair(4)
    xb = torch.stack([_t(x), _t(y)])
    yb = torch.stack([_t(y), _t(y)])
    p = metrics.psnr(xb, yb)
    assert p.shape == (2,) and math.isinf(float(p[1]))
    s = metrics.ssim(xb, yb)
    assert float(s[0]) == pytest.approx(_sk_ssim(x, y), abs=1e-10)
    assert float(s[1]) == pytest.approx(1.0, abs=1e-12)


def test_kernel_error_matches_per_pixel_kernels():
    g = torch.Generator().manual_seed(0)
    b, j, k, h, w = 4, 3, 7, 6, 5
    kern = torch.rand(b, k, k, generator=g, dtype=torch.float64)
    kern /= kern.sum((1, 2), keepdim=True)
    mix = torch.rand(b, h, w, generator=g, dtype=torch.float64).softmax(0)
    gtk = torch.rand(j, 5, 5, generator=g, dtype=torch.float64)  # smaller support: padded
    gtk /= gtk.sum((1, 2), keepdim=True)
    gtm = torch.rand(j, h, w, generator=g, dtype=torch.float64).softmax(0)
    est = np.einsum("bhw,bkl->hwkl", mix.numpy(), kern.numpy())
    gt = np.einsum("jhw,jkl->hwkl", gtm.numpy(), np.pad(gtk.numpy(), ((0, 0), (1, 1), (1, 1))))
    direct = np.sqrt(((est - gt) ** 2).sum((2, 3))).mean()
    assert float(metrics.kernel_error(kern, mix, gtk, gtm)) == pytest.approx(direct, rel=1e-9)
    # The ground truth scored against itself is ~0.
    assert float(metrics.kernel_error(gtk, gtm, gtk, gtm)) < 1e-6
    mean_direct = gt.reshape(-1, k, k).mean(0)
    got = metrics.mean_kernel(torch.nn.functional.pad(gtk, (1, 1, 1, 1)), gtm)
    np.testing.assert_allclose(got.numpy(), mean_direct, atol=1e-12)
    # batched over leading dimensions: each sample's mean kernel, as computed directly
    padded = torch.nn.functional.pad(gtk, (1, 1, 1, 1))
    both = metrics.mean_kernel(torch.stack([padded, padded.flip(-1)]), torch.stack([gtm, gtm]))
    np.testing.assert_allclose(both[0].numpy(), mean_direct, atol=1e-12)
    np.testing.assert_allclose(both[1].numpy(), mean_direct[:, ::-1], atol=1e-12)


def test_quantize_rounds_to_8_bit():
    x = torch.tensor([-0.1, 0.0, 0.5, 0.999, 1.2])
    np.testing.assert_allclose(metrics.quantize(x).numpy() * 255,
                               [0, 0, round(127.5), 255, 255], atol=1e-4)


# --------------------------------------------------------------------------- alignment


def _photo() -> torch.Tensor:
    return torch.from_numpy(data.astronaut()).permute(2, 0, 1).double() / 255


def _warped_pair(seed: int, size: int = 128, offset: tuple[int, int] = (150, 170)):
    """(target x, image z, W): z(q) = x(W^-1 q) sampled from the whole photo, W moving each
    corner of the target by 3-8 px in a random direction."""
    photo = _photo()
    g = torch.Generator().manual_seed(seed)
    s = size - 1
    corners = torch.tensor([[0, 0], [s, 0], [s, s], [0, s]], dtype=torch.float64)
    ang = torch.rand(4, generator=g, dtype=torch.float64) * 2 * math.pi
    mag = 3 + 5 * torch.rand(4, generator=g, dtype=torch.float64)
    moved = corners + torch.stack([mag * torch.cos(ang), mag * torch.sin(ang)], 1)
    w = align.homography_from_points(corners, moved)
    # Independent check of the DLT: the corners land where asked.
    cx, cy = align.apply_homography(w, corners[:, 0], corners[:, 1])
    assert torch.allclose(torch.stack([cx, cy], 1), moved, atol=1e-9)
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float64),
                            torch.arange(size, dtype=torch.float64), indexing="ij")
    sx, sy = align.apply_homography(torch.linalg.inv(w), xs, ys)
    oy, ox = offset
    hp, wp = photo.shape[-2:]
    grid = torch.stack([2 * (sx + ox) / (wp - 1) - 1, 2 * (sy + oy) / (hp - 1) - 1], -1)
    z = torch.nn.functional.grid_sample(photo[None], grid[None], mode="bicubic",
                                        align_corners=True)[0]
    x = photo[:, oy : oy + size, ox : ox + size]
    return x, z, w


@pytest.mark.parametrize("seed", [0, 1])
def test_ecc_recovers_a_known_homography(seed):
    x, z, w = _warped_pair(seed)
    est = align.ecc_homography(align.rgb_to_gray(x), align.rgb_to_gray(z), eps=1e-10)
    assert align.corner_error(torch.eye(3, dtype=torch.float64), w, *x.shape[-2:]) > 3
    assert align.corner_error(est, w, *x.shape[-2:]) < 0.1


def test_align_homography_matches_intensity_and_geometry():
    x, z, w = _warped_pair(2)
    a = align.align_homography(0.8 * z, x, levels=2, eps=1e-10)
    # Least-squares scale, computed (as in the protocol) before the geometric alignment.
    assert a.scale == pytest.approx(float((x * 0.8 * z).sum() / (0.64 * z * z).sum()), rel=1e-9)
    assert align.corner_error(a.warp, w, *x.shape[-2:]) < 0.1
    inside = a.mask[0] > 0
    assert 0.8 < float(inside.double().mean()) < 1.0  # the moved border is masked out
    assert float(metrics.masked_psnr(a.target, a.image, a.mask)) > 35
    assert torch.equal(a.image * a.mask, a.image) and torch.equal(a.target * a.mask, a.target)


def test_warp_identity_and_mask():
    x = _photo()[:, :20, :30]
    out, c = align.warp_homography(x, torch.eye(3, dtype=torch.float64))
    assert torch.allclose(out, x, atol=1e-12) and bool((c == 1).all())
    shift = torch.tensor([[1.0, 0, 2.4], [0, 1, -1.6], [0, 0, 1]], dtype=torch.float64)
    _, c = align.warp_homography(x, shift)
    # x + 2.4 rounds inside for columns 0..27 (27 + 2.4 = 29.4); y - 1.6 for rows 2..19.
    expect = torch.zeros(20, 30, dtype=torch.float64)
    expect[2:, :28] = 1
    assert torch.equal(c[0], expect)


@pytest.mark.parametrize("dy,dx", [(3, -5), (-7, 0), (0, 11)])
def test_translation_registration(dy, dx):
    x = _photo()[:, 100:228, 150:278]
    shifted = align.shift_zero(x, dy, dx)
    assert torch.equal(shifted[:, max(dy, 0) + 1, max(dx, 0) + 2],
                       x[:, max(dy, 0) + 1 - dy, max(dx, 0) + 2 - dx])
    assert align.register_translation(shifted, x) == (dy, dx)
    # Köhler alignment of a darker, displaced restoration z(q) = x(q + d) / 2 onto x.
    z = 0.5 * align.shift_zero(x, -dy, -dx)
    a = align.align_translation(z, x)
    assert torch.equal(a.warp[:2, 2], torch.tensor([-dx, -dy], dtype=torch.float64))
    assert float(a.mask.sum()) == (128 - abs(dy)) * (128 - abs(dx))
    assert torch.allclose(a.image, align.shift_zero(a.scale * z, dy, dx), atol=1e-12)
    assert torch.allclose(a.image * 2 / a.scale, a.target, atol=1e-9)
    assert float(a.target.sum()) < float(x.sum())  # the target is masked too


def test_koehler_ssim_modes():
    from blurfield.evaluation import protocols

    x = _photo()[:, 100:164, 150:214]
    g = torch.Generator().manual_seed(0)
    frames = [align.shift_zero(x, 1, -2) + 0.01 * torch.randn(x.shape, generator=g,
                                                              dtype=torch.float64),
              x + 0.05 * torch.randn(x.shape, generator=g, dtype=torch.float64)]
    cand = {"r": 0.9 * x}
    best = protocols.score_koehler(cand, frames, "best")["r"]
    top = protocols.score_koehler(cand, frames, "max")["r"]
    lum = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64)[:, None, None]
    direct = []
    for f in frames:
        a = align.align_translation(0.9 * x, f)
        yt, yz = (a.target * lum).sum(0).numpy(), (a.image * lum).sum(0).numpy()
        direct.append(structural_similarity(yt, yz, gaussian_weights=True, sigma=1.5,
                                            use_sample_covariance=False, data_range=1.0))
    assert best["psnr"] == top["psnr"] and best["frames"] == 2
    assert best["ssim"] == pytest.approx(direct[int(best["best_frame"])], abs=1e-10)
    assert top["ssim"] == pytest.approx(max(direct), abs=1e-10)
    with pytest.raises(ValueError, match="koehler_ssim"):
        protocols.score_koehler(cand, frames, "mean")


def test_field_covariance_matches_per_pixel_kernels():
    g = torch.Generator().manual_seed(1)
    b, k, h, w = 3, 9, 4, 5
    kern = torch.rand(b, k, k, generator=g, dtype=torch.float64) ** 4
    kern /= kern.sum((1, 2), keepdim=True)
    mix = torch.rand(b, h, w, generator=g, dtype=torch.float64).softmax(0)
    got = metrics.field_covariance(kern, mix)
    assert got.shape == (3, h, w)
    per_pixel = np.einsum("bhw,bkl->hwkl", mix.numpy(), kern.numpy())
    for i in range(h):
        for j in range(w):
            c = covariance(per_pixel[i, j])  # (y, x) order
            np.testing.assert_allclose(got[:, i, j].numpy(), [c[1, 1], c[0, 0], c[0, 1]],
                                       rtol=1e-9, atol=1e-12)
    # Batched input; a pixel with no mass (a padded ground-truth layer) gives 0.
    both = metrics.field_covariance(torch.stack([kern, kern]), torch.stack([mix, 0 * mix]))
    np.testing.assert_allclose(both[0].numpy(), got.numpy(), rtol=1e-12)
    assert float(both[1].abs().max()) == 0


def _uniform_line(length: int, angle: float, h: int = 6, w: int = 8) -> torch.Tensor:
    return metrics.field_covariance(line_kernel(length, angle, 33)[None],
                                    torch.ones(1, h, w))


def test_direction_agreement_closed_forms():
    gt = _uniform_line(17, 0.0)
    agree = metrics.direction_agreement
    # cos(2 Δθ) at every pixel: same axis 1, 45° off 0, 90° off -1, whatever the lengths.
    assert float(agree(_uniform_line(9, 0.0), gt)) == pytest.approx(1.0, abs=1e-9)
    assert float(agree(_uniform_line(9, 45.0), gt)) == pytest.approx(0.0, abs=1e-9)
    assert float(agree(_uniform_line(25, 90.0), gt)) == pytest.approx(-1.0, abs=1e-9)
    assert float(agree(_uniform_line(9, 30.0), _uniform_line(21, 30.0))) == pytest.approx(
        1.0, abs=1e-2)  # pixelised lines at 30°: the same axis to within a degree or two
    # A round estimate has no direction: 0; a round ground truth has none to get: NaN.
    yy, xx = torch.meshgrid(torch.arange(33.0) - 16, torch.arange(33.0) - 16, indexing="ij")
    disc = torch.exp(-(yy**2 + xx**2) / 8)[None]
    disc_cov = metrics.field_covariance(disc / disc.sum(), torch.ones(1, 6, 8))
    assert float(agree(disc_cov, gt)) == pytest.approx(0.0, abs=1e-5)
    # Below ROUND_PX2 the term fades linearly: a barely elongated Gaussian along the axis.
    ell = torch.exp(-(yy**2 / 1.0 + xx**2 / 1.02) / 2)[None]
    ell_cov = metrics.field_covariance(ell / ell.sum(), torch.ones(1, 6, 8))
    elong = float(ell_cov[0, 0, 0] - ell_cov[1, 0, 0])  # λ1 - λ2 = 0.02 px²
    assert 0.015 < elong < metrics.ROUND_PX2
    assert float(agree(ell_cov, gt)) == pytest.approx(elong / metrics.ROUND_PX2, rel=1e-3)
    assert math.isnan(float(agree(gt, disc_cov)))
    # Non-uniform: left half blurred along 0°, right half along 90°, both 15 px.
    gt2 = torch.cat([_uniform_line(15, 0.0, w=4), _uniform_line(15, 90.0, w=4)], -1)
    assert float(agree(gt2, gt2)) == pytest.approx(1.0, abs=1e-12)
    assert float(agree(_uniform_line(15, 0.0), gt2)) == pytest.approx(0.0, abs=1e-9)
    # Pixels weigh by the ground truth's elongation: make the 0° half longer.
    gt3 = torch.cat([_uniform_line(25, 0.0, w=4), _uniform_line(9, 90.0, w=4)], -1)
    l_long, l_short = (25**2 - 1) / 12, (9**2 - 1) / 12  # variance along a line of n px
    assert float(agree(_uniform_line(15, 0.0), gt3)) == pytest.approx(
        (l_long - l_short) / (l_long + l_short), abs=2e-2)
