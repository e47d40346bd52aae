"""The Python API (blurfield.api), photo I/O (blurfield.imageio) and pictures (blurfield.viz)."""

from __future__ import annotations

import warnings

import numpy as np
import png
import pytest
import skimage.data
import torch
from helpers.images import psnr
from PIL import Image, ImageOps

from blurfield import api, viz
from blurfield.api import Field, deblur, estimate, load_estimator, load_field, save_field
from blurfield.imageio import apply_orientation, read_image, write_image
from blurfield.physics import blur, saturate, to_display, to_linear
from blurfield.restore import upscaled_kernel_size

pytestmark = pytest.mark.usefixtures("one_thread")


def camera(h: int, w: int) -> np.ndarray:
    """(h, w, 3) float display values from scikit-image's camera photo."""
    g = skimage.data.camera()[:h * 2:2, :w * 2:2].astype(np.float32) / 255
    return np.repeat(g[..., None], 3, -1)


def random_field(n_basis=3, k=9, h=20, w=24, seed=0, **kw) -> Field:
    g = torch.Generator().manual_seed(seed)
    kernels = torch.rand(n_basis, k, k, generator=g) ** 4
    mixing = torch.softmax(3 * torch.randn(n_basis, h, w, generator=g), 0)
    return Field(kernels / kernels.sum((-1, -2), keepdim=True), mixing, **kw)


# --------------------------------------------------------------------------- field files


def test_field_file_round_trip_and_format(tmp_path):
    f = random_field(scale=2.5, image_size=(50, 60), gamma=1.0, model_id="tiny.pt:abc")
    path = tmp_path / "x_field.npz"
    save_field(path, f)
    assert [p.name for p in tmp_path.iterdir()] == ["x_field.npz"]  # no temp file left
    with np.load(path, allow_pickle=False) as z:  # exactly the keys and dtypes of docs/design.md §8
        assert sorted(z.files) == sorted(["kernels", "mixing", "scale", "image_size", "gamma",
                                          "model_id", "convention", "version"])
        assert z["kernels"].dtype == np.float32 and z["kernels"].shape == (3, 9, 9)
        assert z["mixing"].dtype == np.float16 and z["mixing"].shape == (3, 20, 24)
        assert str(z["convention"]) == "correlation, mask after"
        assert list(z["image_size"]) == [50, 60]
    g = load_field(path)
    assert g.kernels.dtype == torch.float32 and g.mixing.dtype == torch.float32
    assert (g.mixing - f.mixing).abs().max() < 1e-3
    torch.testing.assert_close(g.kernels, f.kernels)
    torch.testing.assert_close(g.mixing.sum(0), torch.ones(20, 24), atol=1e-6, rtol=0)
    assert (g.scale, g.image_size, g.gamma, g.model_id) == (2.5, (50, 60), 1.0, "tiny.pt:abc")


def test_bad_field_files_are_one_line_errors(tmp_path):
    junk = tmp_path / "junk.npz"
    junk.write_text("not a zip")
    with pytest.raises(ValueError, match="junk.npz"):
        load_field(junk)
    partial = tmp_path / "partial.npz"
    np.savez(partial, kernels=np.ones((1, 3, 3), np.float32))
    with pytest.raises(ValueError, match="partial.npz.*missing"):
        load_field(partial)
    with pytest.raises(ValueError, match="not found"):
        load_field(tmp_path / "none.npz")


# --------------------------------------------------------------------------- estimator


def test_load_estimator_without_shipped_weights_asks_for_a_checkpoint(monkeypatch, tmp_path):
    monkeypatch.setattr(api, "SHIPPED_WEIGHTS", tmp_path / "compact.pt")
    with pytest.raises(ValueError, match="--checkpoint"):
        load_estimator(None)


def test_loaded_estimator_is_channels_last_and_gives_the_plain_models_field(tiny_path):
    from blurfield.models import load_any_estimator

    model = load_estimator(tiny_path)
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    plain = load_any_estimator(tiny_path).eval()  # the file's layout, as trained
    first = next(m for m in plain.modules() if isinstance(m, torch.nn.Conv2d))
    assert not first.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.rand(3, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        (k, m), (k0, m0) = model(x), plain(x)
    torch.testing.assert_close(k, k0, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(m, m0, rtol=1e-4, atol=1e-6)


def test_estimate_shapes_scale_and_padding(tiny_path):
    model = load_estimator(tiny_path)
    assert model.model_id.startswith("tiny.pt:")
    image = camera(45, 70)  # not multiples of 32; the network's own field (no refinement)
    f = estimate(image, model, refine=0)
    assert f.kernels.shape == (25, 33, 33) and f.mixing.shape == (25, 45, 70)
    assert (f.scale, f.image_size) == (1.0, (45, 70)) and f.model_id == model.model_id
    torch.testing.assert_close(f.mixing.sum(0), torch.ones(45, 70))
    # a multiple of 32 goes to the network as it is
    sq = camera(64, 96)
    k, m = model(torch.from_numpy(sq).permute(2, 0, 1)[None])
    f = estimate(sq, model, refine=0)
    torch.testing.assert_close(f.mixing, m[0]) and torch.testing.assert_close(f.kernels, k[0])
    f2 = estimate(camera(90, 140), model, scale=2)
    assert f2.mixing.shape == (25, 45, 70) and f2.scale == 2 and f2.image_size == (90, 140)
    fa = estimate(camera(90, 140), model, scale="auto", max_megapixels=0.003)
    h, w = fa.mixing.shape[-2:]
    assert h * w <= 3000 * 1.05 and fa.scale > 1
    gray = estimate(camera(40, 40)[..., :1], model)  # 1-channel input works
    assert gray.mixing.shape == (25, 40, 40)


# --------------------------------------------------------------------------- deblur


def _line(k: int, length: int) -> torch.Tensor:
    kern = torch.zeros(k, k)
    c = k // 2
    kern[c, c - length // 2: c - length // 2 + length] = 1
    return kern / kern.sum()


def test_deblur_with_a_downscaled_field_restores_the_full_photo():
    """A field estimated at half size (a 9 px blur seen as 5 px) restores the full photo."""
    sharp = camera(96, 96)
    blur_full = _line(17, 9)[None, None]
    mix_full = torch.ones(1, 1, 96, 96)
    lin = to_linear(torch.from_numpy(sharp).permute(2, 0, 1)[None])
    blurry = to_display(saturate(blur(lin, blur_full, mix_full, padding="same")))
    blurry = blurry[0].permute(1, 2, 0).numpy()
    # the half-size field: a 5-tap line in a 9 x 9 kernel, two bases with uneven mixing
    half = Field(torch.stack([_line(9, 5), _line(9, 5)]),
                 torch.stack([torch.full((48, 48), 0.3), torch.full((48, 48), 0.7)]),
                 scale=2.0, image_size=(96, 96))
    assert upscaled_kernel_size(9, 2.0) == 17
    out = deblur(blurry, half, iterations=20)
    assert out.shape == blurry.shape and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 1
    assert psnr(out, sharp) > psnr(blurry, sharp) + 3  # measured +5.5 dB (-0.2 at scale 1)
    # display in, display out: tensors and 2-D arrays keep their layout
    t = deblur(torch.from_numpy(blurry).permute(2, 0, 1), half, iterations=1)
    assert t.shape == (3, 96, 96)
    assert deblur(blurry[..., 0], half, iterations=1).shape == (96, 96)
    with pytest.raises(ValueError, match="96x96"):
        deblur(blurry[:80], half)


def test_the_networks_own_field_is_restored_with_at_most_field_iterations():
    """A field whose note says it is the network's (kept by the refinement or the refinement
    off) runs ``field_iterations``; a refined kernel or a field from elsewhere runs
    ``iterations``. Reference: RL itself with that many iterations."""
    from blurfield.restore import richardson_lucy

    sharp = camera(64, 64)
    lin = to_linear(torch.from_numpy(sharp).permute(2, 0, 1)[None])
    k = _line(9, 7)[None, None]
    v = saturate(blur(lin, k, torch.ones(1, 1, 64, 64), padding="same"))
    opts = dict(iterations=12, field_iterations=4, early_stop=False, no_harm=False)
    for note, n in (("network's field kept (refined kernel: 40% vs 38% ...)", 4),
                    ("network's field (refinement off)", 4),
                    ("refined kernel (17% vs 21% ...)", 12), ("", 12)):
        f = Field(k[0], torch.ones(1, 64, 64), scale=1.0, image_size=(64, 64), refinement=note)
        res = api.restore(v, f, device="cpu", **opts)
        ref = richardson_lucy(v, k, torch.ones(1, 1, 64, 64), iterations=n, early_stop=False)
        assert res.iterations == n, note
        torch.testing.assert_close(res.image, ref.image)
    with pytest.raises(ValueError, match="field_iterations"):
        api.restore(v, f, device="cpu", field_iterations=0)


# --------------------------------------------------------------------------- imageio


def test_read_rejects_non_images_truncated_and_tiny_files(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("hello")
    with pytest.raises(ValueError, match="notes.png.*not a readable image") as e:
        read_image(text)
    assert "HEIC" not in str(e.value)
    phone = tmp_path / "IMG_0001.HEIC"  # an iPhone's photo (here only its container box)
    phone.write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic")
    with pytest.raises(ValueError, match="IMG_0001.HEIC.*convert it to JPEG or PNG"):
        read_image(phone)
    good = tmp_path / "good.png"
    write_image(good, camera(40, 50))
    cut = tmp_path / "cut.png"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match="cut.png"):
        read_image(cut)
    jpg = tmp_path / "cut.jpg"
    write_image(jpg, camera(40, 50))
    jpg.write_bytes(jpg.read_bytes()[:300])
    with pytest.raises(ValueError, match="cut.jpg"):
        read_image(jpg)
    with pytest.raises(ValueError, match="good.png.*smaller than the 64x64"):
        read_image(good, min_size=64)
    with pytest.raises(ValueError, match="not found"):
        read_image(tmp_path / "missing.png")
    for bad in (text, cut, jpg):  # one line each
        with pytest.raises(ValueError) as e:
            read_image(bad)
        assert "\n" not in str(e.value)


def test_16_bit_png_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 65536, size=(30, 20, 3), dtype=np.uint16)
    path = tmp_path / "deep.png"
    write_image(path, data.astype(np.float32) / 65535, bit_depth=16)
    # an independent reader sees a 16-bit RGB file with exactly these values
    w, h, rows, info = png.Reader(filename=str(path)).read()
    assert (w, h, info["bitdepth"], info["planes"]) == (20, 30, 16, 3)
    assert np.array_equal(np.vstack([np.asarray(r) for r in rows]).reshape(30, 20, 3), data)
    img, depth = read_image(path)
    assert depth == 16 and img.dtype == np.float32
    assert np.array_equal(np.round(img * 65535).astype(np.uint16), data)
    # 16-bit grayscale written by pypng directly
    gpath = tmp_path / "gray16.png"
    with open(gpath, "wb") as fh:
        png.Writer(20, 30, greyscale=True, bitdepth=16).write(fh, data[..., 0])
    g, depth = read_image(gpath)
    assert depth == 16 and g.shape == (30, 20, 1)
    assert np.array_equal(np.round(g[..., 0] * 65535).astype(np.uint16), data[..., 0])


def test_tiff_keeps_16_bits_planar_float_and_orientation(tmp_path):
    """A raw developer's 16-bit RGB TIFF reads at 16 bits (Pillow alone gives 8), with the
    file's exact values, whatever its sample layout; 8-bit stays 8; floating point is read
    as 16-bit display values clipped to [0, 1]; the Orientation tag is applied."""
    import tifffile

    rng = np.random.default_rng(1)
    data = rng.integers(0, 65536, size=(30, 20, 3), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "dev.tif", data, photometric="rgb")
    tifffile.imwrite(tmp_path / "planar.tiff", np.moveaxis(data, -1, 0), photometric="rgb",
                     planarconfig="separate")
    tifffile.imwrite(tmp_path / "big.tif", data.byteswap().view(data.dtype.newbyteorder()),
                     photometric="rgb")  # big-endian ("MM") file of the same values
    for name in ("dev.tif", "planar.tiff", "big.tif"):
        img, depth = read_image(tmp_path / name)
        assert depth == 16 and img.dtype == np.float32 and img.shape == (30, 20, 3), name
        assert np.array_equal(np.round(img * 65535).astype(np.uint16), data), name
    tifffile.imwrite(tmp_path / "g8.tif", (data[..., 0] >> 8).astype(np.uint8))
    g, depth = read_image(tmp_path / "g8.tif")
    assert depth == 8 and g.shape == (30, 20, 1)
    assert np.array_equal(np.round(g[..., 0] * 255).astype(np.uint8), data[..., 0] >> 8)
    f = np.linspace(-0.5, 1.5, 30 * 20 * 3, dtype=np.float32).reshape(30, 20, 3)
    tifffile.imwrite(tmp_path / "f.tif", f, photometric="rgb")
    img, depth = read_image(tmp_path / "f.tif")
    assert depth == 16 and np.array_equal(img, np.clip(f, 0, 1))
    tifffile.imwrite(tmp_path / "o.tif", data, photometric="rgb",
                     extratags=[(0x0112, 3, 1, 6, True)])  # rotate 90 cw to display
    img, _ = read_image(tmp_path / "o.tif")
    assert np.array_equal(np.round(img * 65535).astype(np.uint16), apply_orientation(data, 6))
    with pytest.warns(UserWarning, match="a.tif: alpha channel dropped"):
        tifffile.imwrite(tmp_path / "a.tif", np.dstack([data, data[..., :1]]),
                         photometric="rgb", extrasamples=["unassalpha"])
        img, _ = read_image(tmp_path / "a.tif")
    assert img.shape == (30, 20, 3)
    # 8-bit colour spaces other than RGB stay Pillow's: CMYK converted, not cut to 3 planes
    cmyk = rng.integers(0, 256, size=(10, 12, 4), dtype=np.uint8)
    Image.fromarray(cmyk, "CMYK").save(tmp_path / "c.tif")
    img, depth = read_image(tmp_path / "c.tif")
    want = np.asarray(Image.fromarray(cmyk, "CMYK").convert("RGB"))
    assert depth == 8 and np.array_equal(np.round(img * 255).astype(np.uint8), want)
    tifffile.imwrite(tmp_path / "cmyk16.tif", np.dstack([data, data[..., :1]]),
                     photometric="separated")
    with pytest.raises(ValueError, match="cmyk16.tif: .*save it as RGB"):
        read_image(tmp_path / "cmyk16.tif")


def test_grayscale_alpha_and_palette(tmp_path):
    gray = (np.arange(40 * 30) % 256).astype(np.uint8).reshape(40, 30)
    Image.fromarray(gray, "L").save(tmp_path / "g.png")
    img, depth = read_image(tmp_path / "g.png")
    assert depth == 8 and img.shape == (40, 30, 1)  # kept 1-channel
    assert np.array_equal(np.round(img[..., 0] * 255).astype(np.uint8), gray)
    rgba = np.dstack([np.full((10, 12, 3), 200, np.uint8), np.full((10, 12), 7, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    with pytest.warns(UserWarning, match="a.png: alpha channel dropped"):
        img, _ = read_image(tmp_path / "a.png")
    assert img.shape == (10, 12, 3) and np.allclose(img, 200 / 255)
    pal = Image.fromarray(np.full((10, 12), 1, np.uint8), "P")
    pal.putpalette([0, 0, 0, 90, 120, 250] + [0] * 762)
    pal.save(tmp_path / "p.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        img, _ = read_image(tmp_path / "p.png")
    assert img.shape == (10, 12, 3)
    assert np.allclose(img, np.array([90, 120, 250]) / 255)


def test_exif_orientation_is_applied(tmp_path):
    a = np.zeros((20, 30, 3), np.uint8)
    a[:8, :8] = (255, 0, 0)  # red top-left corner in the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 cw to display"
    Image.fromarray(a).save(tmp_path / "r.jpg", exif=exif, quality=100)
    img, _ = read_image(tmp_path / "r.jpg")
    assert img.shape == (30, 20, 3)
    assert img[:6, -6:, 0].mean() > 0.8 and img[:6, :6, 0].mean() < 0.1  # now top-right
    # the numpy orientation table (used for 16-bit PNGs) agrees with Pillow's exif_transpose
    b = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    for o in range(1, 9):
        im = Image.fromarray(b)
        ex = im.getexif()
        ex[0x0112] = o
        im.info["exif"] = ex.tobytes()
        ref = np.asarray(ImageOps.exif_transpose(im))
        assert np.array_equal(apply_orientation(b, o), ref), o


def test_16_bit_png_with_exif_orientation(tmp_path):
    data = np.zeros((8, 12, 3), np.uint16)
    data[:2, :2] = 65535
    path = tmp_path / "o.png"
    write_image(path, data, bit_depth=16)
    # add an eXIf chunk (orientation 3 = rotate 180) through pypng's chunk API
    exif = Image.Exif()
    exif[0x0112] = 3
    chunks = list(png.Reader(filename=str(path)).chunks())
    chunks.insert(1, (b"eXIf", exif.tobytes()[6:] if exif.tobytes().startswith(b"Exif")
                      else exif.tobytes()))
    with open(path, "wb") as fh:
        png.write_chunks(fh, chunks)
    img, depth = read_image(path)
    assert depth == 16 and img[-2:, -2:].min() == 1.0 and img[:2, :2].max() == 0.0


# --------------------------------------------------------------------------- viz


def test_psf_grid_draws_flipped_kernels_in_basis_colours():
    k = torch.zeros(2, 5, 5)
    k[0, 0, 0] = 1  # correlation tap top-left -> the PSF point is bottom-right
    k[1, 2, 2] = 1
    pic = viz.psf_grid(k, tile=10, frame=1)
    assert pic.dtype == np.uint8 and pic.ndim == 3 and pic.shape[-1] == 3
    cell = 10 + 2
    first = pic[1:cell - 1, 1:cell - 1, 0]
    assert first[-2:, -2:].min() == 255 and first[:-2, :].max() == 0
    assert np.array_equal(pic[0, 0], viz.palette(2)[0])


def test_mixing_map_overlay_and_side_by_side(tmp_path):
    m = torch.zeros(3, 8, 10)
    m[1] = 1
    mm = viz.mixing_map(m)
    assert mm.shape == (8, 10, 3) and (mm == viz.palette(3)[1]).all()
    f = random_field(scale=1.0, image_size=(20, 24))
    photo = camera(60, 72)
    over = viz.psf_overlay(photo, f.kernels, f.mixing, grid=3)
    assert over.shape == (60, 72, 3) and over.dtype == np.uint8
    assert not np.array_equal(over, np.round(photo * 255).astype(np.uint8))
    row = viz.side_by_side([photo, over[:40]], ["a", "b"])
    assert row.dtype == np.uint8 and row.shape[1] == 72 + 6 + 72 and row.shape[0] > 60
    same = viz.side_by_side([photo, over[:30]], ["a", "b"], height=30)
    assert same.shape[1] == 36 + 6 + 72
    viz.save_png(tmp_path / "row.png", row)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "row.png")), row)
    assert [p.name for p in tmp_path.iterdir()] == ["row.png"]
