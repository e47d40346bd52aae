"""``blurfield estimate`` and ``blurfield deblur``: the files they write and how they fail."""

from __future__ import annotations

import numpy as np
import png
import pytest
import skimage.data
import torch
from helpers.fields import line_field

from blurfield import api
from blurfield.api import load_field, save_field
from blurfield.cli import main
from blurfield.imageio import read_image, write_image

pytestmark = pytest.mark.usefixtures("one_thread")


def photo(h: int = 48, w: int = 64) -> np.ndarray:
    return skimage.data.astronaut()[: h * 4 : 4, : w * 4 : 4].astype(np.float32) / 255




def listing(d) -> set[str]:
    return {p.name for p in d.iterdir()}


def test_deblur_with_a_field_writes_exactly_three_files(tmp_path):
    write_image(tmp_path / "shot.png", photo(), bit_depth=16)
    save_field(tmp_path / "given.npz", line_field(48, 64))
    out = tmp_path / "out"
    rc = main(["deblur", str(tmp_path / "shot.png"), "--field", str(tmp_path / "given.npz"),
               "--out", str(out), "--iterations", "2"])
    assert rc == 0
    assert listing(out) == {"shot_restored.png", "shot_compare.png", "shot_field.npz"}
    w, h, _, info = png.Reader(filename=str(out / "shot_restored.png")).read()
    assert (w, h, info["bitdepth"], info["planes"]) == (64, 48, 16, 3)  # size and depth kept
    field = load_field(out / "shot_field.npz")
    assert field.image_size == (48, 64) and field.kernels.shape == (2, 7, 7)
    compare, depth = read_image(out / "shot_compare.png")
    assert depth == 8 and compare.shape[1] >= 3 * 64


def test_deblur_of_a_16_bit_tiff_writes_a_16_bit_png(tmp_path):
    """A raw developer's 16-bit TIFF is restored at 16 bits: with a field that changes
    nothing (a delta kernel) the restored PNG holds the TIFF's own 16-bit values."""
    import tifffile

    data = np.round(photo() * 65535).astype(np.uint16)
    data[..., 1] += np.arange(64, dtype=np.uint16)  # detail below an 8-bit step
    tifffile.imwrite(tmp_path / "raw.tif", data, photometric="rgb")
    delta = line_field(48, 64)
    delta.kernels.zero_()
    delta.kernels[:, 3, 3] = 1
    save_field(tmp_path / "delta.npz", delta)
    out = tmp_path / "out"
    assert main(["deblur", str(tmp_path / "raw.tif"), "--field", str(tmp_path / "delta.npz"),
                 "--out", str(out), "--iterations", "2", "restore.no_harm=false",
                 "restore.tv_weight=0", "restore.saturation=false"]) == 0
    w, h, rows, info = png.Reader(filename=str(out / "raw_restored.png")).read()
    assert (w, h, info["bitdepth"], info["planes"]) == (64, 48, 16, 3)
    got = np.vstack([np.asarray(r) for r in rows]).reshape(48, 64, 3).astype(int)
    assert np.abs(got - data.astype(int)).max() <= 1


def test_estimate_and_deblur_with_a_checkpoint(tmp_path, tiny_path):
    write_image(tmp_path / "a.png", photo())
    write_image(tmp_path / "b.jpg", photo(40, 52))
    gray = (photo()[..., 1] * 255).astype(np.uint8)
    write_image(tmp_path / "c.png", gray)
    inputs = [str(tmp_path / n) for n in ("a.png", "b.jpg", "c.png")]
    rc = main(["estimate", *inputs, "--checkpoint", str(tiny_path), "--out", str(tmp_path / "e")])
    assert rc == 0
    assert listing(tmp_path / "e") == {f"{s}_{kind}" for s in "abc"
                                       for kind in ("field.npz", "kernels.png")}
    assert load_field(tmp_path / "e" / "b_field.npz").image_size == (40, 52)
    rc = main(["deblur", *inputs, "--checkpoint", str(tiny_path), "--out", str(tmp_path / "d"),
               "--iterations", "1", "restore.tv_weight=0"])
    assert rc == 0
    assert listing(tmp_path / "d") == {f"{s}_{kind}" for s in "abc"
                                       for kind in ("restored.png", "compare.png", "field.npz")}
    img, depth = read_image(tmp_path / "d" / "c_restored.png")
    assert depth == 8 and img.shape == (48, 64, 1)  # grayscale stays grayscale


def test_estimate_tile_reaches_the_estimator(tmp_path, tiny_path, capsys):
    """``restore.estimate_tile`` is the ``tile`` of :func:`blurfield.api.estimate`."""
    write_image(tmp_path / "a.png", photo(96, 160))
    image, _ = read_image(tmp_path / "a.png")
    model = api.load_estimator(tiny_path)
    for tile in (0, 64):
        out = tmp_path / f"t{tile}"
        assert main(["estimate", str(tmp_path / "a.png"), "--checkpoint", str(tiny_path),
                     "--out", str(out), f"restore.estimate_tile={tile}"]) == 0
        got = load_field(out / "a_field.npz")
        want = api.estimate(image, model, tile=tile)
        torch.testing.assert_close(got.kernels, want.kernels, atol=1e-4, rtol=1e-3)
        torch.testing.assert_close(got.mixing, want.mixing, atol=1e-4, rtol=1e-3)
    k0, k64 = (load_field(tmp_path / t / "a_field.npz").kernels for t in ("t0", "t64"))
    assert k0.shape != k64.shape or float((k0 - k64).abs().max()) > 1e-3
    for command in ("estimate", "deblur"):  # a tile the network cannot take: one line
        assert main([command, str(tmp_path / "a.png"), "--checkpoint", str(tiny_path),
                     "--out", str(tmp_path / "bad"), "restore.estimate_tile=100"]) == 2
        assert "restore.estimate_tile: 100 is not 0 or a positive multiple of 32" in \
            capsys.readouterr().err
        assert main([command, str(tmp_path / "a.png"), "--checkpoint", str(tiny_path),
                     "--out", str(tmp_path / "bad"), "restore.estimate_elements=-1"]) == 2
        assert "restore.estimate_elements: -1 is not a count >= 0" in capsys.readouterr().err
        assert main([command, str(tmp_path / "a.png"), "--checkpoint", str(tiny_path),
                     "--out", str(tmp_path / "bad"), "restore.refine_window=16"]) == 2
        assert "restore.refine_window: 16 is not a side >= 64" in capsys.readouterr().err
        assert main([command, str(tmp_path / "a.png"), "--checkpoint", str(tiny_path),
                     "--out", str(tmp_path / "bad"), "restore.no_harm_probe=0"]) == 2
        assert "restore.no_harm_probe: 0 is not a count >= 1" in capsys.readouterr().err
        assert main([command, str(tmp_path / "a.png"), "--checkpoint", str(tiny_path),
                     "--out", str(tmp_path / "bad"), "restore.long_blur_scale=0.5"]) == 2
        assert "restore.long_blur_scale: 0.5 is not a factor >= 1" in capsys.readouterr().err


def test_refinement_is_reported_and_can_be_switched_off(tmp_path, tiny_path, capsys):
    """``restore.refine_iterations`` reaches :func:`blurfield.api.estimate`: ``deblur``'s and
    ``estimate``'s lines say what the refinement did, and with 0 the field is the tiles';
    the note goes into the field file and back."""
    write_image(tmp_path / "a.png", photo(96, 160))
    image, _ = read_image(tmp_path / "a.png")
    model = api.load_estimator(tiny_path)
    for n in (10, 0):
        assert main(["deblur", str(tmp_path / "a.png"), "--checkpoint", str(tiny_path),
                     "--out", str(tmp_path / f"r{n}"), f"restore.refine_iterations={n}"]) == 0
        kernel = capsys.readouterr().out.split("; kernel: ")[1]
        assert kernel.startswith(("refined kernel", "network's field kept") if n
                                 else "network's field (refinement off)")
    assert main(["estimate", str(tmp_path / "a.png"), "--checkpoint", str(tiny_path),
                 "--out", str(tmp_path / "e")]) == 0
    assert capsys.readouterr().out.startswith(f"{tmp_path / 'a.png'}: kernel: ")
    got = load_field(tmp_path / "r0" / "a_field.npz")
    want = api.estimate(image, model, refine=0)
    torch.testing.assert_close(got.kernels, want.kernels, atol=1e-4, rtol=1e-3)
    assert want.refinement == "network's field (refinement off)" == got.refinement  # kept
    assert api.estimate(image, model).refinement != want.refinement


def test_duplicate_stems_are_refused(tmp_path, tiny_path, capsys):
    (tmp_path / "x").mkdir()
    write_image(tmp_path / "a.png", photo())
    write_image(tmp_path / "x" / "a.jpg", photo())
    out = tmp_path / "out"
    rc = main(["deblur", str(tmp_path / "a.png"), str(tmp_path / "x" / "a.jpg"),
               "--checkpoint", str(tiny_path), "--out", str(out)])
    assert rc == 2 and not out.exists()
    err = capsys.readouterr().err
    assert "same file name stem" in err and len(err.strip().splitlines()) == 1


def test_a_bad_photo_fails_alone(tmp_path, tiny_path, capsys):
    write_image(tmp_path / "good.png", photo())
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    write_image(tmp_path / "small.png", photo()[:20, :20])
    out = tmp_path / "out"
    rc = main(["deblur", str(tmp_path / "bad.png"), str(tmp_path / "small.png"),
               str(tmp_path / "good.png"), "--checkpoint", str(tiny_path), "--out", str(out),
               "--iterations", "1"])
    assert rc == 1
    assert listing(out) == {"good_restored.png", "good_compare.png", "good_field.npz"}
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2
    assert "bad.png" in lines[0] and "small.png" in lines[1] and "smaller than" in lines[1]


def test_field_goes_with_one_photo_of_its_size(tmp_path, capsys):
    write_image(tmp_path / "a.png", photo())
    write_image(tmp_path / "b.png", photo())
    save_field(tmp_path / "f.npz", line_field(40, 64))
    args = ["--field", str(tmp_path / "f.npz"), "--out", str(tmp_path / "out")]
    assert main(["deblur", str(tmp_path / "a.png"), str(tmp_path / "b.png"), *args]) == 2
    assert "exactly one photo" in capsys.readouterr().err
    assert main(["deblur", str(tmp_path / "a.png"), *args]) == 2
    assert "64x40" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_missing_weights_and_bad_scale_are_one_line_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(api, "SHIPPED_WEIGHTS", tmp_path / "compact.pt")
    write_image(tmp_path / "a.png", photo())
    assert main(["estimate", str(tmp_path / "a.png"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--checkpoint" in err and len(err.splitlines()) == 1
    assert main(["deblur", str(tmp_path / "a.png"), "--scale", "0.5"]) == 2
    assert "scale" in capsys.readouterr().err
    assert main(["deblur", "--out", str(tmp_path / "o")]) == 2
    assert "no photos" in capsys.readouterr().err


def test_alpha_is_dropped_with_one_note(tmp_path, capsys):
    from PIL import Image

    rgba = np.dstack([(photo() * 255).astype(np.uint8), np.full((48, 64), 128, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    save_field(tmp_path / "f.npz", line_field(48, 64))
    rc = main(["deblur", str(tmp_path / "t.png"), "--field", str(tmp_path / "f.npz"),
               "--out", str(tmp_path / "out"), "--iterations", "1"])
    assert rc == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"blurfield deblur: note: {tmp_path / 't.png'}: alpha channel dropped"]
    img, _ = read_image(tmp_path / "out" / "t_restored.png")
    assert img.shape == (48, 64, 3)
