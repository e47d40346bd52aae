"""data_prep handmade: skimage photos blurred by hand-made fields (a held-out check)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import webdataset as wds
from helpers.moments import axes

from blurfield.data.schema import decode_sample, gt_field, sharp_linear
from blurfield.physics import blur
from blurfield.physics.camera import to_display
from data_prep.__main__ import main
from data_prep.handmade import MIN_ANGLE, PHOTOS, angles, layer_map, motion_kernel


def read_shard(folder):
    """The samples of ``folder``/handmade-000000.tar, in order."""
    return [decode_sample(r) for r in wds.WebDataset(str(folder / "handmade-000000.tar"),
                                                     shardshuffle=False)]


@pytest.mark.parametrize("length", [9, 17, 25])
def test_motion_kernel_is_a_centred_line_of_that_length(length):
    k = motion_kernel(length, 37.0, 33)
    assert k.shape == (33, 33) and k.min() >= 0 and k.sum() == pytest.approx(1, abs=1e-6)
    np.testing.assert_allclose(k, k[::-1, ::-1], atol=1e-6)  # centred on (16, 16)
    vals, _ = axes(k)
    # a uniform segment of n unit samples has variance (n^2 - 1) / 12 along it
    assert vals[1] == pytest.approx((length**2 - 1) / 12, rel=0.15)
    assert vals[0] < 0.05 * vals[1]


def test_motion_kernels_at_angles_90_apart_are_perpendicular():
    _, a = axes(motion_kernel(21, 20.0, 33))
    _, b = axes(motion_kernel(21, 110.0, 33))
    assert abs(float(a[:, 1] @ b[:, 1])) < 0.05


def test_angles_are_pairwise_apart():
    rng = np.random.default_rng(3)
    for _ in range(20):
        a = angles(rng, 3)
        for i in range(3):
            for j in range(i):
                d = abs(a[i] - a[j])
                assert min(d, 180 - d) >= MIN_ANGLE


def test_layer_map_has_three_layers():
    m = layer_map(128, np.random.default_rng(0))
    assert m.dtype == np.uint8 and set(np.unique(m)) == {0, 1, 2}


def test_command_writes_samples_whose_blur_is_their_field(tmp_path):
    assert main(["handmade", "--out", str(tmp_path), "--size", "96", "--seed", "5"]) == 0
    samples = read_shard(tmp_path)
    assert [s.meta["image_id"] for s in samples] == [f"skimage.{n}" for n in PHOTOS]
    s = samples[0]
    assert s.blurry.shape == s.sharp.shape == (96, 96, 3) and s.kernels.shape == (3, 33, 33)
    # inside the valid window the blurry photo is the field applied to the linear sharp one
    k = 33
    win = (k // 2, k // 2, 96 - k + 1, 96 - k + 1)
    gt = gt_field(s, win)
    v = blur(sharp_linear(s)[None], gt.kernels[None].float(), gt.masks[None].float(),
             padding="valid")
    ref = to_display(v.clamp(0, 1), 2.2)[0].permute(1, 2, 0).numpy() * 255
    got = s.blurry[k // 2 : k // 2 + win[2], k // 2 : k // 2 + win[3]].astype(np.float64)
    assert np.abs(got - ref).max() <= 1.0  # 8-bit rounding


@pytest.mark.parametrize("flag", ["--one-motion", "--shake"])
def test_one_layer_sets_blur_the_whole_photo_by_one_kernel(tmp_path, flag):
    """``--one-motion``: the same photos and background kernels, one layer each;
    ``--shake``: the same photos under one camera-shake trajectory each (a different one
    per photo, not a straight line). Either way the blurry photo is that one kernel applied
    everywhere (a uniform blur, direct formula)."""
    three, one = tmp_path / "three", tmp_path / "one"
    for out, flags in ((three, []), (one, [flag])):
        assert main(["handmade", "--out", str(out), "--size", "96", "--seed", "5", *flags]) == 0
    shakes = []
    for a, b in zip(read_shard(three), read_shard(one), strict=True):
        assert b.kernels.shape == (1, 33, 33) and not b.layers.any()
        np.testing.assert_array_equal(b.sharp, a.sharp)
        k = b.kernels[0]
        if flag == "--one-motion":
            np.testing.assert_array_equal(k, a.kernels[0])
            continue
        assert k.min() >= 0 and k.sum() == pytest.approx(1, abs=1e-5)
        yy, xx = np.mgrid[:33, :33]
        assert (k * yy).sum() == pytest.approx(16, abs=0.5)  # centroid on the centre tap
        assert (k * xx).sum() == pytest.approx(16, abs=0.5)
        shakes.append(k)
    if shakes:
        assert not any(np.allclose(shakes[0], k) for k in shakes[1:])
        # curved paths: a straight line (or a delta) is symmetric about its centre
        assert sum(np.abs(k - k[::-1, ::-1]).sum() > 0.2 for k in shakes) >= len(shakes) // 2
    s, k = b, 33
    x = sharp_linear(s).double()  # (3, H, W) linear
    ref = torch.nn.functional.conv2d(x[:, None], torch.from_numpy(s.kernels[:1]).double()
                                     [None], padding=0)[:, 0]  # correlation, valid
    ref = to_display(ref.clamp(0, 1), 2.2).permute(1, 2, 0).numpy() * 255
    got = s.blurry[k // 2 : 96 - k // 2, k // 2 : 96 - k // 2].astype(np.float64)
    assert np.abs(got - ref).max() <= 1.0  # 8-bit rounding


def test_one_motion_and_shake_exclude_each_other(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["handmade", "--out", str(tmp_path), "--one-motion", "--shake"])
    assert "not allowed with" in capsys.readouterr().err


def test_command_rejects_an_even_kernel_size(tmp_path, capsys):
    assert main(["handmade", "--out", str(tmp_path), "--kernel-size", "32"]) == 2
    assert "shards.kernel_size=32 (--kernel-size)" in capsys.readouterr().err
    assert main(["handmade", "--out", str(tmp_path), "shards.kernel_size=23"]) == 2
    assert "shards.kernel_size=23" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_seed_and_kernel_size_are_shard_keys(tmp_path):
    """--seed/--kernel-size are aliases of shards.seed/shards.kernel_size."""
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["handmade", "--out", str(a), "--size", "64", "--seed", "3",
                 "--kernel-size", "25"]) == 0
    assert main(["handmade", "--out", str(b), "--size", "64", "shards.seed=3",
                 "shards.kernel_size=25"]) == 0
    name = "handmade-000000.tar"
    assert (a / name).read_bytes() == (b / name).read_bytes()


def test_draws_add_fields_after_the_first_draw(tmp_path):
    """``--draws 2``: 16 samples with distinct keys; the first eight are the one-draw set,
    the next eight the same photos under other fields."""
    one, two = tmp_path / "one", tmp_path / "two"
    for out, n in ((one, "1"), (two, "2")):
        assert main(["handmade", "--out", str(out), "--size", "64", "--shake",
                     "--draws", n]) == 0
    a, b = read_shard(one), read_shard(two)
    assert len(a) == 8 and len(b) == 16 and len({s.key for s in b}) == 16
    for x, y, z in zip(a, b[:8], b[8:], strict=True):
        assert x.key == y.key
        np.testing.assert_array_equal(x.blurry, y.blurry)
        np.testing.assert_array_equal(x.sharp, z.sharp)
        assert not np.allclose(x.kernels, z.kernels)
    assert main(["handmade", "--out", str(tmp_path / "bad"), "--draws", "0"]) == 2


def test_noise_is_added_to_the_same_blur_at_its_poisson_gaussian_variance(tmp_path):
    """``--noise A,S``: the same fields; in linear light the noisy photo minus the clean
    one has variance ``A v + S²`` (``v`` the clean linear value; Poisson–Gaussian), so the
    standardised difference has variance 1 (8-bit rounding adds under 1% at these levels)."""
    clean, noisy = tmp_path / "clean", tmp_path / "noisy"
    a, s = 0.002, 0.01
    for out, flags in ((clean, []), (noisy, ["--noise", f"{a},{s}"])):
        assert main(["handmade", "--out", str(out), "--size", "128", "--shake", *flags]) == 0
    z = []
    for c, n in zip(read_shard(clean), read_shard(noisy), strict=True):
        np.testing.assert_array_equal(c.kernels, n.kernels)
        assert c.meta["noise"] is None and n.meta["noise"] == {"poisson": a, "gauss": s}
        v, y = ((im.astype(np.float64) / 255) ** 2.2 for im in (c.blurry, n.blurry))
        ok = (v > 0.05) & (v < 0.6)  # away from clipping at 0 and 1
        z.append(((y - v) / np.sqrt(a * v + s**2))[ok])
    z = np.concatenate(z)
    assert abs(z.mean()) < 0.02
    assert z.var() == pytest.approx(1.0, rel=0.08)


@pytest.mark.parametrize("flag, bad", [
    *(("--noise", v) for v in ("0.1", "a,b", "-1,0.01", "0,0")),
    *(("--jpeg", v) for v in ("0", "96", "high")),
    *(("--lengths", v) for v in ("36,60", "61,35", "long")),
])
def test_bad_flag_values_are_refused_naming_the_flag(tmp_path, capsys, flag, bad):
    with pytest.raises(SystemExit):
        main(["handmade", "--out", str(tmp_path), flag, bad])
    assert flag in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_jpeg_saves_the_same_blurry_photo_through_pillows_encoder(tmp_path):
    """``--jpeg Q``: the same fields, kernels and sharp photos; each blurry photo is the
    lossless one encoded by Pillow at quality Q and decoded (a direct computation), close to
    it (above 30 dB at Q = 90) but not equal."""
    from PIL import Image

    png, jpg = tmp_path / "png", tmp_path / "jpg"
    for out, flags in ((png, []), (jpg, ["--jpeg", "90"])):
        assert main(["handmade", "--out", str(out), "--size", "96", "--shake", *flags]) == 0
    for p, j in zip(read_shard(png), read_shard(jpg), strict=True):
        np.testing.assert_array_equal(p.kernels, j.kernels)
        np.testing.assert_array_equal(p.sharp, j.sharp)
        buf = io.BytesIO()
        Image.fromarray(p.blurry).save(buf, "JPEG", quality=90)
        np.testing.assert_array_equal(j.blurry, np.asarray(Image.open(buf).convert("RGB")))
        err = np.mean((p.blurry.astype(np.float64) - j.blurry) ** 2) / 255**2
        assert 0 < err and -10 * np.log10(err) > 30


def test_lengths_draws_longer_lines_in_a_larger_window(tmp_path):
    """``--lengths 35,61 --kernel-size 65``: every layer's kernel is a line whose major-axis
    variance is that of a uniform segment of an odd length in 35..61 ((n² - 1) / 12, a
    closed form), in 65 x 65; without the flag the lengths stay in 9..25 (the default draws
    are unchanged: the same kernels as ``LENGTHS`` given explicitly)."""
    out, default, given = tmp_path / "long", tmp_path / "default", tmp_path / "given"
    assert main(["handmade", "--out", str(out), "--size", "96", "--lengths", "35,61",
                 "--kernel-size", "65"]) == 0
    assert main(["handmade", "--out", str(default), "--size", "96"]) == 0
    assert main(["handmade", "--out", str(given), "--size", "96", "--lengths", "9,25"]) == 0
    for folder, lo, hi, k in ((out, 35, 61, 65), (default, 9, 25, 33)):
        for s in read_shard(folder):
            assert s.kernels.shape[-2:] == (k, k)
            for kernel in s.kernels:
                major = axes(kernel)[0][1]
                n = np.sqrt(12 * major + 1)
                assert lo * 0.9 <= n <= hi * 1.1
    for a, b in zip(read_shard(default), read_shard(given), strict=True):
        np.testing.assert_array_equal(a.kernels, b.kernels)


def test_lengths_longer_than_the_kernel_window_are_refused(tmp_path, capsys):
    assert main(["handmade", "--out", str(tmp_path), "--lengths", "35,61"]) != 0
    err = capsys.readouterr().err
    assert "--lengths 35,61" in err and "--kernel-size 65" in err
    assert list(tmp_path.iterdir()) == []


def test_pairs_are_the_shards_photos_in_gopros_layout(tmp_path):
    """``--pairs``: ``OUT/pairs/handmade/{blur,sharp}/<key>.png`` hold exactly the shard's
    blurry and sharp photos (read back and compared), and the GoPro reader that
    ``eval/gopro`` uses lists each pair under ``--root OUT/pairs``."""
    from blurfield.evaluation.readers import gopro
    from blurfield.imageio import read_image

    assert main(["handmade", "--out", str(tmp_path), "--size", "64", "--pairs"]) == 0
    samples = read_shard(tmp_path)
    items = {it.id: it for it in gopro(tmp_path / "pairs")}
    assert sorted(items) == sorted(f"handmade_{s.key}" for s in samples)
    for s in samples:
        it = items[f"handmade_{s.key}"]
        for path, want in ((it.blurry, s.blurry), (it.sharp[0], s.sharp)):
            got, depth = read_image(path)
            assert depth == 8
            np.testing.assert_array_equal(np.round(got * 255).astype(np.uint8), want)
