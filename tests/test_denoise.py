"""A noisy photo denoised first (``restore.denoise_above``): which photos count as noisy, what
the bilateral filter does to them, and that estimate, deblur and evaluate take the
denoised photo while scoring against the photo as it was."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import skimage.data
import torch
from kornia.filters import bilateral_blur, gaussian_blur2d

from blurfield import api
from blurfield.config_schema import RestoreCfg
from blurfield.physics import to_display, to_linear
from blurfield.restore.noise import WHITE, denoise, noise_sigma, prefilter, smooth, whiteness

pytestmark = pytest.mark.usefixtures("one_thread")


def grey_with_noise(sigma: float, size: int = 128, seed: int = 0) -> torch.Tensor:
    """(1, 3, size, size) linear mid-grey with white Gaussian noise of ``sigma``."""
    g = torch.Generator().manual_seed(seed)
    return 0.2 + sigma * torch.randn(1, 3, size, size, generator=g)


def to_smooth(x: torch.Tensor) -> torch.Tensor:
    return gaussian_blur2d(x, (9, 9), (1.5, 1.5), border_type="reflect")


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(-10 * torch.log10((a - b).square().mean()))


def test_white_noise_is_white_and_smooth_detail_is_not():
    """Averaging 2 x 2 halves white noise, so its whiteness is near 1; noise blurred by a
    Gaussian of 1.5 px (detail that grows with scale, as texture and blur do) has far
    less at 1 px than at 2 px."""
    noisy = grey_with_noise(0.01)
    assert 0.8 < whiteness(noisy, gamma=1.0) < 1.25
    smooth = 0.2 + 40 * (to_smooth(noisy - 0.2))
    assert noise_sigma(smooth, gamma=1.0) > 0.002  # the level alone would denoise it
    assert whiteness(smooth, gamma=1.0) < WHITE


def test_a_noisy_photo_is_denoised_and_comes_closer_to_the_clean_one():
    """White noise of σ = 0.006 in linear light (about 2 grey levels at mid-grey) on a
    photo whose values lie in [0.1, 0.9] (none clipped): the level read is that noise
    (within the estimator's 20% low bias and 10% of the photo's own detail), and the filtered
    photo is at least 3 dB closer to the clean photo than the noisy one was."""
    clean = torch.from_numpy(skimage.data.astronaut()[::2, ::2].copy()).permute(2, 0, 1)[None]
    clean = 0.1 + 0.8 * clean.float() / 255
    g = torch.Generator().manual_seed(1)
    noisy = to_display((to_linear(clean) + 0.006 * torch.randn(clean.shape, generator=g))
                       .clamp(0, 1))
    out, sigma = denoise(noisy, 0.002)
    assert sigma is not None and 0.7 * 0.006 < sigma < 1.1 * 0.006
    assert out.shape == noisy.shape and 0 <= out.min() and out.max() <= 1
    assert psnr(out, clean) > psnr(noisy, clean) + 3


def _skimage_photo(name: str, step: int = 1) -> torch.Tensor:
    a = getattr(skimage.data, name)()
    a = a.astype(np.uint8) * 255 if a.dtype == bool else a
    a = np.repeat(a[..., None], 3, 2) if a.ndim == 2 else a
    return torch.from_numpy(a[::step, ::step].copy()).permute(2, 0, 1)[None].float() / 255


def test_noise_free_photos_are_left_as_they_are():
    """Sharp 8-bit photos (scikit-image's, textured `grass` among them, and the binary
    `horse`, whose 8-bit rounding alone reads 0.002) pass the shipped threshold untouched:
    the same object, no noise level. `brick` is a real photo with grain (its level reads
    0.002, its detail white): it is denoised, and stays above 45 dB PSNR to itself."""
    above = RestoreCfg().denoise_above
    for name in ("camera", "astronaut", "coffee", "grass", "gravel", "horse", "moon", "page"):
        photo = _skimage_photo(name)[..., :256, :256]
        out, sigma = denoise(photo, above)
        assert out is photo and sigma is None, name
    brick = _skimage_photo("brick")[..., :256, :256]
    out, sigma = denoise(brick, above)
    assert sigma is not None and psnr(out, brick) > 45
    noisy = to_display(grey_with_noise(0.01).clamp(min=0))
    assert denoise(noisy, None) == (noisy, None)  # None: never
    assert denoise(noisy, 0.1) == (noisy, None)  # below the threshold


def test_poisson_gaussian_noise_over_dark_flat_squares_is_denoised():
    """Sensor noise (Poisson-Gaussian, variance 0.0002 x + 0.002^2 in linear light, about
    two grey levels at mid-grey) on a photo whose flattest squares are dark, where only
    the Gaussian part is left: its level reads between 0.001 and 0.002, so the shipped
    threshold denoises it (0.002 did not), and the filtered photo is closer to the clean
    one by more than 1 dB."""
    clean = _skimage_photo("coffee", 2)
    g = torch.Generator().manual_seed(1)
    linear = to_linear(clean)
    noisy = to_display((0.0002 * torch.poisson(linear / 0.0002, generator=g)
                        + 0.002 * torch.randn(linear.shape, generator=g)).clamp(0, 1))
    assert denoise(noisy, 0.002) == (noisy, None)
    out, sigma = denoise(noisy, RestoreCfg().denoise_above)
    assert sigma is not None and 0.001 < sigma < 0.002
    assert psnr(out, clean) > psnr(noisy, clean) + 1


def test_the_filter_in_strips_is_the_filter_on_the_whole_photo(monkeypatch):
    """Strips of 16 rows with their halo give kornia's bilateral filter of the whole
    photo's linear values, with the range σ six times the noise level read; by default
    the strips hold ``STRIP_PIXELS`` pixels, as many rows as that makes."""
    from blurfield.restore import noise

    noisy = to_display((grey_with_noise(0.01, 80) + torch.linspace(0, 0.3, 80)[:, None])
                       .clamp(0, 1))  # a ramp: the rows differ
    out, sigma = denoise(noisy, 0.002, strip=16)
    assert sigma == noise_sigma(to_linear(noisy), bits=16)
    whole = bilateral_blur(to_linear(noisy), 5, 6 * sigma, (1.0, 1.0))
    torch.testing.assert_close(out, to_display(whole.clamp(0, 1)), atol=1e-6, rtol=0)
    seen = []
    real = noise.bilateral_blur
    monkeypatch.setattr(noise, "bilateral_blur", lambda x, *a: seen.append(x.shape[-2])
                        or real(x, *a))
    monkeypatch.setattr(noise, "STRIP_PIXELS", 20 * 80)  # 20 rows of the 80 px photo
    by_width, _ = denoise(noisy, 0.002)
    assert seen == [22, 24, 24, 22]  # 20 rows each and their 2-row halo, inside the photo
    torch.testing.assert_close(by_width, out, atol=0, rtol=0)


def test_api_denoise_keeps_the_callers_type_and_the_commands_default():
    noisy = to_display(grey_with_noise(0.01, 64).clamp(min=0))[0].permute(1, 2, 0).numpy()
    out, sigma = api.denoise(noisy)
    assert isinstance(out, np.ndarray) and out.shape == noisy.shape and sigma is not None
    grey = 0.2 ** (1 / 2.2)  # the clean photo, in display values
    assert np.abs(out - grey).mean() < 0.5 * np.abs(noisy - grey).mean()
    clean = np.full((64, 64, 3), 0.5, np.float32)
    assert api.denoise(clean)[0] is clean
    default = inspect.signature(api.denoise).parameters["above"].default
    assert default == RestoreCfg().denoise_above


def test_deblur_and_estimate_say_a_noisy_photo_was_denoised_first(tmp_path, tiny_path, capsys):
    """The commands' lines start with "denoised first (noise σ)" for a noisy photo, and
    with ``restore.denoise_above=null`` they do not; the compare picture shows the photo
    as it was."""
    from blurfield.cli import main
    from blurfield.imageio import write_image

    clean = 0.1 + 0.8 * skimage.data.astronaut()[:256:4, :256:4].astype(np.float32) / 255
    lin = clean ** 2.2 + 0.01 * np.random.default_rng(0).standard_normal(clean.shape)
    write_image(tmp_path / "n.png", np.clip(lin, 0, 1) ** (1 / 2.2))
    args = [str(tmp_path / "n.png"), "--checkpoint", str(tiny_path), "--iterations", "1"]
    assert main(["deblur", *args, "--out", str(tmp_path / "d")]) == 0
    assert capsys.readouterr().out.startswith(f"{tmp_path / 'n.png'}: denoised first (noise ")
    assert main(["deblur", *args, "--out", str(tmp_path / "p"),
                 "restore.denoise_above=null"]) == 0
    assert "denoised" not in capsys.readouterr().out
    assert main(["estimate", *args[:3], "--out", str(tmp_path / "e")]) == 0
    assert capsys.readouterr().out.startswith(f"{tmp_path / 'n.png'}: denoised first (noise ")


def test_smooth_is_the_same_filter_at_the_level_given():
    """A JPEG photo's filter (``restore.jpeg_smooth``) is kornia's bilateral filter of its
    linear values with the range six times the level given, whatever its own noise (here
    none: a clean ramp with an edge), in strips as on the whole photo; the API keeps the
    caller's type and defaults to the config's level."""
    ramp = torch.linspace(0.1, 0.8, 80)[None, :].expand(80, 80).clone()
    ramp[:, 40:] += 0.1
    photo = to_display(ramp.expand(1, 3, 80, 80))
    out = smooth(photo, 0.002, strip=16)
    whole = bilateral_blur(to_linear(photo), 5, 6 * 0.002, (1.0, 1.0))
    torch.testing.assert_close(out, to_display(whole.clamp(0, 1)), atol=1e-6, rtol=0)
    assert not torch.equal(out, photo)
    a = photo[0].permute(1, 2, 0).numpy()
    b = api.smooth(a)
    assert isinstance(b, np.ndarray) and b.shape == a.shape
    np.testing.assert_allclose(b, out[0].permute(1, 2, 0).numpy(), atol=1e-6)
    default = inspect.signature(api.smooth).parameters["sigma"].default
    assert default == RestoreCfg().jpeg_smooth


def test_a_jpeg_file_is_known_by_its_bytes_and_smoothed_first(tmp_path, tiny_path, capsys):
    """``is_jpeg`` reads the file's first bytes, not its name; ``deblur`` and ``estimate``
    start a JPEG photo's line with "JPEG smoothed first" (not a noisy one's: that is
    denoised), not a PNG's, and not with ``restore.jpeg_smooth=null``."""
    from PIL import Image

    from blurfield.cli import main
    from blurfield.imageio import is_jpeg, write_image

    a = skimage.data.astronaut()[:256:4, :256:4]
    Image.fromarray(a).save(tmp_path / "j.png", "JPEG", quality=90)  # a JPEG, misnamed
    write_image(tmp_path / "p.png", a.astype(np.float32) / 255)
    assert is_jpeg(tmp_path / "j.png") and not is_jpeg(tmp_path / "p.png")
    args = ["--checkpoint", str(tiny_path), "--iterations", "1"]
    assert main(["deblur", str(tmp_path / "j.png"), *args, "--out", str(tmp_path / "d")]) == 0
    assert capsys.readouterr().out.startswith(f"{tmp_path / 'j.png'}: JPEG smoothed first; ")
    assert main(["estimate", str(tmp_path / "j.png"), *args[:2], "--out",
                 str(tmp_path / "e")]) == 0
    assert capsys.readouterr().out.startswith(f"{tmp_path / 'j.png'}: JPEG smoothed first; ")
    assert main(["deblur", str(tmp_path / "j.png"), *args, "--out", str(tmp_path / "n"),
                 "restore.jpeg_smooth=null"]) == 0
    assert "smoothed" not in capsys.readouterr().out
    assert main(["deblur", str(tmp_path / "p.png"), *args, "--out", str(tmp_path / "p")]) == 0
    assert "smoothed" not in capsys.readouterr().out


def test_prefilter_denoises_a_noisy_photo_else_smooths_a_jpeg_else_leaves_it():
    """One decision for every caller: a noisy photo is denoised (the JPEG level is then not
    used), a clean JPEG photo is smoothed at its level (as :func:`smooth` gives), a clean
    photo that is not a JPEG comes back as it is; the API does the same on numpy arrays."""
    noisy = to_display(grey_with_noise(0.01, 64).clamp(min=0))
    out, sigma, smoothed = prefilter(noisy, 0.001, 0.002)
    torch.testing.assert_close(out, denoise(noisy, 0.001)[0])
    assert sigma == denoise(noisy, 0.001)[1] and not smoothed
    clean = to_display(torch.linspace(0.1, 0.8, 64).expand(1, 3, 64, 64).clone())
    out, sigma, smoothed = prefilter(clean, 0.001, 0.002)
    assert sigma is None and smoothed
    torch.testing.assert_close(out, smooth(clean, 0.002))
    assert prefilter(clean, 0.001, None) == (clean, None, False)
    a = clean[0].permute(1, 2, 0).numpy()
    photo, sigma, smoothed = api.prefilter(a, jpeg=0.002)
    assert isinstance(photo, np.ndarray) and smoothed and sigma is None
    assert api.prefilter(a)[0] is a
