"""Non-uniform Richardson–Lucy (blurfield.restore): against a textbook FFT RL, the Poisson
objective, a known photo and field, saturation, tiling and the scale option."""

from __future__ import annotations

import kornia
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers.images import astronaut, psnr
from helpers.moments import splat_line

from blurfield.physics import blur, saturate, to_display, to_linear
from blurfield.restore import (
    bright_split,
    choose_scale,
    parse_scale,
    reliable_mask,
    restore_tiled,
    richardson_lucy,
    sobel,
    tile_grid,
    tv_denominator,
    upscale_kernels,
    upscale_mixing,
    upscaled_kernel_size,
)
from blurfield.restore.rl import box3, erode3
from blurfield.restore.tiles import auto_overlap

pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------- helpers


def smooth_field(size: int, kernel_size: int, lengths=(0.8, 0.6, 0.35)):
    """Three line kernels mixed by smooth sigmoids across the image: (1, 3, K, K), (1, 3, S, S)."""
    k = kernel_size
    ks = np.stack([splat_line(k, 0.3, lengths[0] * k), splat_line(k, 1.2, lengths[1] * k),
                   splat_line(k, 2.2, lengths[2] * k)])
    t = torch.linspace(-1, 1, size)
    a = torch.sigmoid(4 * t)[None, :].expand(size, size)
    b = torch.sigmoid(3 * t)[:, None].expand(size, size)
    mixing = torch.stack([a * b, (1 - a) * b, 1 - b])[None]
    return torch.tensor(ks, dtype=torch.float32)[None], mixing


# --------------------------------------------------------------------------- textbook RL


def _circular_rl(v: np.ndarray, k: np.ndarray, iterations: int) -> list[np.ndarray]:
    """Textbook RL with numpy FFTs: x <- x * H^T(v / Hx), H = circular correlation with k
    placed so that (Hx)_i = sum_j k_j x_{i + j - (K-1)//2}; every iterate, x0 = v."""
    h, w = v.shape[-2:]
    kk = k.shape[0]
    c = (kk - 1) // 2
    kp = np.zeros((h, w))
    for a in range(kk):
        for b in range(kk):
            kp[(a - c) % h, (b - c) % w] += k[a, b]
    spec = np.fft.fft2(kp)

    def fwd(x):
        return np.real(np.fft.ifft2(np.fft.fft2(x) * np.conj(spec)))

    def adj(y):
        return np.real(np.fft.ifft2(np.fft.fft2(y) * spec))

    xs = [v.copy()]
    for _ in range(iterations):
        xs.append(xs[-1] * adj(v / fwd(xs[-1])))
    return xs


@pytest.mark.parametrize("method", ["fft", "direct"])
@pytest.mark.parametrize("kernel_size", [5, 6])
def test_equals_textbook_fft_rl_iteration_by_iteration(method, kernel_size):
    rng = np.random.default_rng(kernel_size)
    k = rng.random((kernel_size, kernel_size)) ** 3
    k /= k.sum()
    v = rng.random((2, 24, 20)) + 0.05
    ref = _circular_rl(v, k, 6)
    kernels = torch.tensor(k)[None, None]
    mixing = torch.ones(1, 1, 24, 20, dtype=torch.float64)
    got = []
    res = richardson_lucy(torch.tensor(v)[None], kernels, mixing, iterations=6,
                          saturation=False, tv_weight=0, early_stop=False, padding="circular",
                          method=method, callback=lambda t, x, e: got.append(x[0].numpy()))
    assert len(got) == 7 and res.iterations == 6
    for t, (a, b) in enumerate(zip(got, ref)):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12, err_msg=f"iterate {t}")
    np.testing.assert_allclose(res.image[0].numpy(), ref[-1], rtol=1e-9)


def test_plain_updates_never_increase_the_poisson_objective():
    g = torch.Generator().manual_seed(1)
    n_basis, k, h, w = 4, 9, 40, 36
    kernels = torch.rand(1, n_basis, k, k, generator=g, dtype=torch.float64) ** 4
    kernels /= kernels.sum((-1, -2), keepdim=True)
    logits = F.interpolate(torch.randn(1, n_basis, 5, 5, generator=g, dtype=torch.float64) * 3,
                           size=(h, w), mode="bilinear", align_corners=False)
    mixing = torch.softmax(logits, 1)
    sharp = torch.rand(1, 2, h, w, generator=g, dtype=torch.float64) ** 2 + 0.01
    v = blur(sharp, kernels, mixing, padding="same") * (
        1 + 0.2 * torch.rand(1, 2, h, w, generator=g, dtype=torch.float64))

    def objective(x):  # sum(Hx - v log Hx), H from the physics module
        hx = blur(x, kernels, mixing, padding="same")
        return float((hx - v * torch.log(hx)).sum())

    values = []
    richardson_lucy(v, kernels, mixing, iterations=25, saturation=False, tv_weight=0,
                    early_stop=False, callback=lambda t, x, e: values.append(objective(x)))
    steps = np.diff(values)
    assert len(values) == 26
    assert steps.max() <= 1e-9 * abs(values[0]), steps.max()
    assert values[-1] < values[0] - 1e-3  # it did move


# --------------------------------------------------------------------------- photos


def _blurry(sharp_linear, kernels, mixing):
    """R(H u), quantised to 8 bits in display: (blurry linear)."""
    hu = blur(sharp_linear, kernels, mixing, padding="same")
    return to_linear(torch.round(to_display(saturate(hu)) * 255) / 255)


def test_restores_a_known_photo_and_field_by_3_db():
    sharp = astronaut(128)
    kernels, mixing = smooth_field(128, 15, lengths=(0.8, 0.65, 0.4))
    v = _blurry(to_linear(sharp), kernels, mixing)
    before = psnr(to_display(v), sharp)
    res = richardson_lucy(v, kernels, mixing, iterations=30)
    after = psnr(to_display(res.image.clamp(0, 1)), sharp)
    assert after >= before + 3, (before, after)  # measured 17.6 -> 22.9 dB
    assert res.reblur_error[res.iterations] == min(res.reblur_error)
    assert res.reblur_error[res.iterations] < 0.2 * res.reblur_error[0]


def test_saturation_aware_beats_plain_on_clipped_highlights():
    size = 96
    sharp = to_linear(astronaut(size)) * 0.6
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    for cy, cx in ((24, 29), (58, 67), (77, 24), (38, 77)):  # lamps 8x brighter than white
        sharp = sharp + ((yy - cy) ** 2 + (xx - cx) ** 2 <= 12).float()[None, None] * 8.0
    kernels, mixing = smooth_field(size, 11)
    hu = blur(sharp, kernels, mixing, padding="same")
    assert (hu > 1).float().mean() > 0.01  # a few percent of pixels clip
    v = to_linear(torch.round(to_display(hu.clamp(0, 1)) * 255) / 255)
    ref = to_display(sharp.clamp(0, 1))
    scores = {}
    for sat in (False, True):
        out = richardson_lucy(v, kernels, mixing, saturation=sat, tv_weight=0).image
        scores[sat] = psnr(to_display(out.clamp(0, 1)), ref)
    assert scores[True] > scores[False] + 0.5, scores  # measured 20.9 vs 22.1 dB


def test_early_stop_keeps_the_best_iterate():
    sharp = astronaut(48)
    kernels, mixing = smooth_field(48, 7)
    v = _blurry(to_linear(sharp), kernels, mixing)
    seen = {}
    # an absurd TV weight makes the very first update worse: RL must return the blurry image
    res = richardson_lucy(v, kernels, mixing, tv_weight=0.3, iterations=10,
                          callback=lambda t, x, e: seen.setdefault(t, x))
    assert res.iterations == 0 and len(res.reblur_error) == 2
    assert res.reblur_error[1] > res.reblur_error[0]
    assert torch.equal(res.image, v)
    full = richardson_lucy(v, kernels, mixing, tv_weight=0.3, iterations=3, early_stop=False)
    assert full.iterations == 3 and len(full.reblur_error) == 4


# --------------------------------------------------------------------------- pieces


def test_refuses_a_bad_field_or_photo_once_up_front():
    """RL checks its inputs at the start (its operator then checks nothing per iteration)."""
    size = 40
    kernels = torch.full((1, 1, 9, 9), 1 / 81)
    mixing = torch.ones(1, 1, size, size)
    v = torch.full((1, 3, size, size), 0.5)
    with pytest.raises(ValueError, match="does not sum to 1"):
        richardson_lucy(v, kernels * 2, mixing, iterations=1)
    with pytest.raises(ValueError, match="finite and >= 0"):
        richardson_lucy(-v, kernels, mixing, iterations=1)
    with pytest.raises(ValueError, match="does not match mixing"):
        richardson_lucy(v[..., :-1], kernels, mixing, iterations=1)
    small = torch.ones(1, 1, 8, 8)
    with pytest.raises(ValueError, match=r"image \(8, 8\) is smaller than the kernel 9"):
        richardson_lucy(v[..., :8, :8], kernels, small, iterations=1)
    assert richardson_lucy(v[..., :9, :9], kernels, small[..., :1, :1].expand(1, 1, 9, 9),
                           iterations=1).image.shape == (1, 3, 9, 9)


def test_reliable_mask_is_a_dilated_hole_around_clipped_pixels():
    v = torch.full((1, 3, 9, 9), 0.5)
    v[0, 1, 4, 4] = 0.995  # one channel of one pixel clipped
    z = reliable_mask(v, 0.99, 3)
    assert z.shape == (1, 1, 9, 9)
    assert z[0, 0, 3:6, 3:6].eq(0).all() and z.sum() == 81 - 9
    assert reliable_mask(v, 0.99, 1).sum() == 80


def test_bright_split_is_zero_in_the_dark_and_one_inside_bright_areas():
    x = torch.full((1, 1, 12, 12), 0.3)
    assert bright_split(x).eq(0).all()
    x[..., 3:8, 3:8] = 1.5
    s = bright_split(x)
    assert s.min() >= 0 and s.max() <= 1
    assert s[..., 3:8, 3:8].eq(1).all()
    assert 0.5 < s[0, 0, 2, 5] < 1 and 0 < s[0, 0, 1, 5] < 0.5  # grown by one pixel, smoothed
    assert s[..., 0, :].eq(0).all() and s[..., 10:, :].eq(0).all()


def test_erode3_and_box3_equal_kornia():
    x = torch.rand(2, 3, 13, 17, dtype=torch.float64)
    binary = (x < 0.7).double()
    for image in (x, binary):
        torch.testing.assert_close(erode3(image),
                                   kornia.morphology.erosion(image, image.new_ones(3, 3)),
                                   rtol=0, atol=0)
        torch.testing.assert_close(box3(image),
                                   kornia.filters.box_blur(image, 3, border_type="replicate"),
                                   rtol=0, atol=1e-12)


def test_sobel_equals_kornia():
    x = torch.rand(2, 3, 13, 17, dtype=torch.float64)
    ref = kornia.filters.spatial_gradient(x, mode="sobel", normalized=False)
    torch.testing.assert_close(sobel(x), ref, rtol=0, atol=1e-12)


def test_tv_denominator_equals_the_divergence_by_kornia():
    x = torch.rand(2, 3, 13, 17, dtype=torch.float64)
    g = kornia.filters.spatial_gradient(x, mode="sobel", normalized=False)  # (N, C, 2, H, W)
    unit = g / g.square().sum(2, keepdim=True).sqrt().clamp(min=1e-9)
    div = (kornia.filters.spatial_gradient(unit[:, :, 0], normalized=False)[:, :, 0]
           + kornia.filters.spatial_gradient(unit[:, :, 1], normalized=False)[:, :, 1])
    expected = (1 - 0.3 * div).clamp(min=0.1)
    torch.testing.assert_close(tv_denominator(x, 0.3), expected, rtol=0, atol=1e-12)


def test_tv_denominator_shrinks_peaks_and_leaves_ramps():
    yy, xx = torch.meshgrid(torch.arange(15.0), torch.arange(15.0), indexing="ij")
    bump = torch.exp(-((yy - 7) ** 2 + (xx - 7) ** 2) / 8)[None, None]
    assert tv_denominator(bump, 1e-2)[0, 0, 7, 7] > 1  # a peak is divided down
    assert tv_denominator(-bump, 1e-2)[0, 0, 7, 7] < 1  # a pit is lifted
    ramp = (0.1 * xx + 0.05 * yy)[None, None]
    torch.testing.assert_close(tv_denominator(ramp, 1e-2)[..., 2:-2, 2:-2],
                               torch.ones(1, 1, 11, 11))


# --------------------------------------------------------------------------- tiles


def test_tiled_matches_untiled_at_the_default_overlap():
    size, k, tile = 96, 9, 32
    kernels, mixing = smooth_field(size, k)
    v = saturate(blur(to_linear(astronaut(size)), kernels, mixing, padding="same"))
    overlap = auto_overlap(k)
    grid = tile_grid(size, size, tile, overlap)
    assert len(grid) >= 4
    assert all((r[1] - r[0]) < size for _, r in grid)  # no tile sees the whole photo
    whole = richardson_lucy(v, kernels, mixing, iterations=30, early_stop=False)
    tiled = restore_tiled(v, kernels, mixing, tile=tile, iterations=30)
    assert tiled.iterations == 30 and len(tiled.reblur_error) == 31
    score = psnr(to_display(tiled.image.clamp(0, 1)), to_display(whole.image.clamp(0, 1)))
    assert score >= 40, score  # measured 87 dB; with overlap 0: 31 dB
    # the same with a callable mixing (what the API uses for large photos)
    tiled2 = restore_tiled(v, kernels, lambda w: mixing[..., w[0]:w[1], w[2]:w[3]], tile=tile,
                           iterations=2)
    tiled3 = restore_tiled(v, kernels, mixing, tile=tile, iterations=2)
    torch.testing.assert_close(tiled2.image, tiled3.image)


def test_tile_grid_partitions_the_photo():
    grid = tile_grid(100, 70, 32, 10)
    cover = torch.zeros(100, 70, dtype=torch.int64)
    for (y0, y1, x0, x1), (ry0, ry1, rx0, rx1) in grid:
        cover[y0:y1, x0:x1] += 1
        assert (ry0, ry1) == (max(0, y0 - 10), min(100, y1 + 10))
        assert (rx0, rx1) == (max(0, x0 - 10), min(70, x1 + 10))
    assert cover.eq(1).all() and len(grid) == 4 * 3


# --------------------------------------------------------------------------- scale


def test_choose_scale():
    assert choose_scale(3000, 4000, "auto", 1.5) == pytest.approx(np.sqrt(8))
    assert choose_scale(600, 800, "auto", 1.5) == 1.0
    assert choose_scale(100, 100, 2) == 2.0 and choose_scale(100, 100, "3") == 3.0
    for bad in (0.5, "big", float("nan"), None):
        with pytest.raises(ValueError, match="not a scale"):
            choose_scale(100, 100, bad)
    assert parse_scale("auto") == "auto" and parse_scale("1.5") == 1.5 and parse_scale(1) == 1.0


@pytest.mark.parametrize("scale", [2.0, 2.83])
def test_upscaled_kernels_stretch_by_the_scale(scale):
    k = 21
    yy, xx = torch.meshgrid(torch.arange(k) - 10.0, torch.arange(k) - 10.0, indexing="ij")
    sigma_y, sigma_x, shift = 1.5, 2.5, 2.0  # an off-centre anisotropic Gaussian PSF
    g = torch.exp(-((yy - shift) ** 2) / (2 * sigma_y**2) - xx**2 / (2 * sigma_x**2))
    g = (g / g.sum())[None]
    up = upscale_kernels(g, scale)[0]
    k2 = upscaled_kernel_size(k, scale)
    assert up.shape == (k2, k2) and k2 % 2 == 1 and abs(k2 / k - scale) < 0.15
    assert abs(float(up.sum()) - 1) < 1e-6 and up.min() >= 0
    c = (k2 - 1) / 2
    ys, xs = torch.meshgrid(torch.arange(k2) - c, torch.arange(k2) - c, indexing="ij")
    my, mx = float((up * ys).sum()), float((up * xs).sum())
    sy = float((up * (ys - my) ** 2).sum()) ** 0.5
    sx = float((up * (xs - mx) ** 2).sum()) ** 0.5
    factor = (k2 - 1) / (k - 1)  # the exact stretch of the grid
    assert my == pytest.approx(shift * factor, rel=0.02) and abs(mx) < 1e-4
    assert sy == pytest.approx(sigma_y * factor, rel=0.05)
    assert sx == pytest.approx(sigma_x * factor, rel=0.05)
    assert upscale_kernels(g, 1.0) is g


def test_upscaled_mixing_equals_interpolate_and_any_window_of_it():
    g = torch.Generator().manual_seed(3)
    low = torch.softmax(torch.randn(1, 4, 13, 17, generator=g), 1)
    size = (37, 50)
    ref = F.interpolate(low, size=size, mode="bilinear", align_corners=False)
    ref = ref / ref.sum(1, keepdim=True)
    full = upscale_mixing(low, size)
    torch.testing.assert_close(full, ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(full.sum(1), torch.ones(1, *size))
    win = upscale_mixing(low.half(), size, (5, 30, 11, 50))
    assert win.dtype == torch.float32 and win.shape == (1, 4, 25, 39)
    torch.testing.assert_close(win, ref[..., 5:30, 11:50], atol=2e-3, rtol=0)
    torch.testing.assert_close(upscale_mixing(low, size, (5, 30, 11, 50)),
                               ref[..., 5:30, 11:50], atol=1e-6, rtol=0)
