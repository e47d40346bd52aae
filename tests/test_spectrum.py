"""The spectral test of the no-harm rule (blurfield.restore.spectrum): a photo's power follows
the power of the blur it has with slope 1, of a blur it does not have with slope near 0."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.fields import line_kernel
from helpers.images import astronaut

from blurfield.physics import to_linear
from blurfield.restore import no_harm_richardson_lucy
from blurfield.restore.noharm import turned
from blurfield.restore.spectrum import field_power, periodogram, rings, spectral_slope

pytestmark = pytest.mark.usefixtures("one_thread")


def circular_blur(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """(N, C, h, w) circularly convolved with a centred (K, K) kernel, through numpy."""
    h, w = x.shape[-2:]
    k = kernel.shape[-1]
    otf = np.zeros((h, w))
    otf[:k, :k] = kernel.numpy()
    otf = np.fft.fft2(np.roll(otf, (-(k // 2), -(k // 2)), (0, 1)))
    return torch.from_numpy(np.fft.ifft2(np.fft.fft2(x.double().numpy()) * otf).real)


def white(n: int = 1, size: int = 256, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).random((n, 3, size, size)))


def test_periodogram_of_white_noise_is_its_variance():
    sigma = 0.03
    x = torch.from_numpy(np.random.default_rng(1).normal(0.5, sigma, (2, 3, 128, 128)))
    p = periodogram(x)
    assert p.shape == (2, 128, 128)
    assert p[:, 8:-8, 8:-8].mean().item() == pytest.approx(sigma**2, rel=0.05)


def test_field_power_is_the_squared_otf_and_mixes_like_the_blur():
    a, b = line_kernel(15, 0.3, 9), line_kernel(15, 1.4, 5)
    pad = np.zeros((64, 64))
    pad[:15, :15] = a.numpy()
    direct = np.abs(np.fft.fft2(np.roll(pad, (-7, -7), (0, 1)))) ** 2
    one = field_power(a[None, None], torch.ones(1, 1, 64, 64))
    assert np.allclose(one[0].numpy(), direct, atol=1e-6)
    # constant weights (0.3, 0.7) at every pixel: the power of the mixed kernel
    mixing = torch.tensor([0.3, 0.7]).view(1, 2, 1, 1).expand(1, 2, 64, 64)
    mixed = field_power(torch.stack([a, b])[None], mixing)
    assert torch.allclose(mixed, field_power((0.3 * a + 0.7 * b)[None, None],
                                             torch.ones(1, 1, 64, 64)), atol=1e-6)
    # half the pixels each: the mean of the two powers
    halves = torch.zeros(1, 2, 64, 64)
    halves[:, 0, :32], halves[:, 1, 32:] = 1, 1
    both = field_power(torch.stack([a, b])[None], halves)
    mean = (field_power(a[None, None], torch.ones(1, 1, 64, 64))
            + field_power(b[None, None], torch.ones(1, 1, 64, 64))) / 2
    assert torch.allclose(both, mean, atol=1e-6)


def test_rings_cover_the_band_between_low_and_high():
    r = rings(64, 64)
    fy = np.fft.fftfreq(64)[:, None]
    rho = np.sqrt(fy**2 + np.fft.fftfreq(64)[None] ** 2)
    inside = (rho >= 0.05) & (rho < 0.45)
    assert np.array_equal(r.numpy() >= 0, inside)
    assert r.max().item() == 15 and r[0, 6].item() == int((6 / 64 - 0.05) / 0.025)


def test_slope_is_1_for_the_photos_blur_0_for_a_sharp_photo_negative_turned():
    line = line_kernel(15, 0.0, 13)[None, None]
    ones = torch.ones(1, 1, 256, 256)
    x = white()
    y = circular_blur(x, line[0, 0])
    # 1 up to the window's leakage and the kernel floor (|K|^2 below 1e-3 is read as 1e-3
    # while the photo's power goes on falling: a little above 1)
    assert spectral_slope(y, line, ones, 0.0).item() == pytest.approx(1.0, abs=0.1)
    assert abs(spectral_slope(x, line, ones, 0.0).item()) < 0.05
    assert spectral_slope(y, turned(line), ones, 0.0).item() < -0.2
    # blurred twice: |K|^4, slope 2 (where |K|^2 is above the kernel floor)
    yy = circular_blur(y, line[0, 0])
    assert spectral_slope(yy, line, ones, 0.0).item() == pytest.approx(2.0, abs=0.25)


def test_slope_subtracts_the_noise_floor():
    line = line_kernel(15, 0.7, 11)[None, None]
    ones = torch.ones(1, 1, 256, 256)
    y = circular_blur(white(seed=3), line[0, 0])
    noisy = y + torch.from_numpy(np.random.default_rng(4).normal(0, 0.01, y.shape))
    with_floor = spectral_slope(noisy, line, ones, 0.01).item()
    without = spectral_slope(noisy, line, ones, 0.0).item()
    assert with_floor == pytest.approx(1.0, abs=0.1) and without < with_floor - 0.1


def test_the_rule_leaves_a_photo_whose_spectrum_does_not_follow_the_field():
    """The astronaut blurred by a 13 px line: restored with the slope recorded (about 1);
    the same photo and field with a threshold above that slope: left as it is, with the
    slope in the reason; the test off (None): no slope."""
    sharp = astronaut(128)
    line = line_kernel(15, 0.4, 13)[None, None]
    v = circular_blur(to_linear(sharp), line[0, 0]).float().clamp(min=0)
    ones = torch.ones(1, 1, 128, 128)
    d = no_harm_richardson_lucy(v, line, ones, iterations=10).decision
    assert d.restored and d.slope > 0.6, d
    d = no_harm_richardson_lucy(v, line, ones, iterations=10, slope=d.slope + 0.1).decision
    assert not d.restored and d.blend == 0 and "spectrum" in d.reason, d
    d = no_harm_richardson_lucy(v, line, ones, iterations=10, slope=None).decision
    assert d.restored and np.isnan(d.slope)
