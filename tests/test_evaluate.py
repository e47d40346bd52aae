"""`blurfield evaluate` end to end on tiny benchmark trees, with tiny random models.

Scores are checked against direct re-implementations of the protocols here (skimage,
numpy), not against numbers the code produced before.
"""

from __future__ import annotations

import csv
import io
import json
import math
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from blurfield.cli import main
from blurfield.config import load_config
from blurfield.data.schema import Sample, encode_sample, gt_field, hard_masks, make_meta
from blurfield.evaluation import benchmark
from blurfield.evaluation.protocols import PROTOCOLS
from blurfield.evaluation.synthetic import centre_window, evaluate_sample
from blurfield.models import KernelEstimator, save_estimator
from blurfield.physics import reblur, smooth_masks, to_linear
from blurfield.restore import noise, refine

K = 33


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "tiny.pt"
    save_estimator(KernelEstimator(n_basis=4, kernel_size=K, base_width=4), path)
    return path


def _evaluate(*argv: str) -> int:
    return main(["evaluate", *map(str, argv)])


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def _photo(y: int, x: int, h: int, w: int) -> np.ndarray:
    return data.astronaut()[y : y + h, x : x + w].copy()


def _box_blur(img: np.ndarray, r: int = 2) -> np.ndarray:
    from scipy.ndimage import uniform_filter

    out = uniform_filter(img.astype(np.float64), size=(1, 2 * r + 1, 1), mode="reflect")
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _save(path: Path, img: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)
    return path


def _line_kernel(length: int, angle: float) -> np.ndarray:
    ker = np.zeros((K, K), np.float32)
    c = K // 2
    for t in np.linspace(-length / 2, length / 2, 4 * length + 1):
        ker[int(round(c + t * np.sin(angle))), int(round(c + t * np.cos(angle)))] += 1
    return ker / ker.sum()


def _sample(key: str, seed: int, size: int = 112, layers: int = 2) -> Sample:
    """A schema sample: a photo crop, an object layer, line kernels, the blurry image made
    as the synthesiser does (masks smoothed by their kernels, "same" blur of the scene)."""
    rng = np.random.default_rng(seed)
    y, x = rng.integers(0, 512 - size, 2)
    sharp = _photo(int(y), int(x), size, size)
    kernels = np.stack([_line_kernel(9, 0.3), _line_kernel(15, 1.6)][:layers])
    lay = np.zeros((size, size), np.uint8)
    if layers > 1:
        lay[size // 4 : size // 2 + 10, size // 4 : 3 * size // 4] = 1
    meta = make_meta(has_field=True, brightness=1.1, gamma=2.2, kernel_size=K,
                     normalize_masks=True, noise=None, seed=seed,
                     kernel_ids=list(range(layers)), image_id=key, source="test")
    s = Sample(key, sharp, sharp.copy(), meta, kernels, lay)
    u = to_linear(torch.from_numpy(sharp).permute(2, 0, 1).double() / 255) * 1.1
    kt = torch.from_numpy(kernels).double()[None]
    m = smooth_masks(hard_masks(torch.from_numpy(lay), layers).double()[None], kt,
                     padding="same")
    b = reblur(u[None], kt, m, gamma=2.2, padding="same")[0]
    s.blurry = np.round(b.clamp(0, 1).permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    return s


def _write_shard(path: Path, samples: list[Sample]) -> Path:
    with tarfile.open(path, "w") as tf:
        for s in samples:
            for member, blob in encode_sample(s).items():
                if not member.startswith("__"):
                    info = tarfile.TarInfo(f"{s.key}.{member}")
                    info.size = len(blob)
                    tf.addfile(info, io.BytesIO(blob))
    return path


# --------------------------------------------------------------------------- synthetic


def test_synthetic_scores_with_the_true_field_as_estimate():
    s = _sample("a", 0)
    win = centre_window(112, 112, K, 64)
    assert win == (24, 24, 64, 64)
    gt = gt_field(s, win)

    def oracle(v):
        return gt.kernels[None].float(), gt.masks[None].float()

    rl = dict(iterations=1)
    r = evaluate_sample(s, oracle, window=64, rl=rl).row
    assert r["kernel_error"] < 1e-6
    assert r["direction"] == pytest.approx(1.0, abs=1e-9)
    assert r["psnr_est"] == pytest.approx(r["psnr_gt"], abs=1e-3)
    assert r["psnr_uniform_est"] == pytest.approx(r["psnr_uniform_gt"], abs=1e-6)
    assert r["reblur_psnr_est"] > 45  # the field explains the 8-bit blurry window
    # psnr_blurry against the saturated linear sharp image, computed directly.
    u = np.clip((s.sharp / 255.0) ** 2.2 * 1.1, 0, 1)[24:88, 24:88]
    ref = u ** (1 / 2.2)
    blurry = s.blurry[24:88, 24:88] / 255.0
    assert r["psnr_blurry"] == pytest.approx(
        peak_signal_noise_ratio(ref, blurry, data_range=1.0), abs=1e-4)
    # A wrong estimate (the kernels swapped between the layers) scores worse.
    swapped = evaluate_sample(s, lambda v: (gt.kernels.flip(0)[None].float(),
                                            gt.masks[None].float()), window=64, rl=rl).row
    assert swapped["kernel_error"] > 0.05
    # The lines (17° and 92°) swapped: 75° off (cos 150° = -0.87) away from the smoothed
    # boundary, where the two layers mix.
    assert -0.87 < swapped["direction"] < -0.5
    assert swapped["reblur_psnr_est"] < r["reblur_psnr_est"] - 10



def test_synthetic_denoises_first_and_scores_against_the_window_as_it_was():
    """With ``denoise_above`` a noisy window (σ = 0.01 in linear light) is denoised before
    every restoration (the true field then restores it a little better: RL amplifies less
    noise),
    while ``psnr_blurry`` stays that of the noisy window."""
    s = _sample("n", 0)
    lin = (s.blurry / 255.0) ** 2.2 + 0.01 * np.random.default_rng(0).standard_normal(
        s.blurry.shape)
    s.blurry = np.round(np.clip(lin, 0, 1) ** (1 / 2.2) * 255).astype(np.uint8)
    gt = gt_field(s, centre_window(112, 112, K, 64))

    def oracle(v):
        return gt.kernels[None].float(), gt.masks[None].float()

    rl = dict(iterations=5, tv_weight=0.0)
    plain = evaluate_sample(s, oracle, window=64, rl=rl).row
    first = evaluate_sample(s, oracle, window=64, rl=rl, denoise_above=0.002).row
    assert first["psnr_blurry"] == plain["psnr_blurry"]
    assert first["psnr_gt"] > plain["psnr_gt"] + 0.05


def test_synthetic_smooths_a_jpeg_window_that_is_not_denoised():
    """With ``smooth`` (``restore.jpeg_smooth`` under ``eval.jpeg``) a window the noise
    test leaves as it is restores from the filtered window, exactly as from that window
    given as the sample's own, while ``psnr_blurry`` stays that of the window as it was."""
    s = _sample("j", 0)
    gt = gt_field(s, centre_window(112, 112, K, 64))

    def oracle(v):
        return gt.kernels[None].float(), gt.masks[None].float()

    rl = dict(iterations=3, tv_weight=0.0)
    plain = evaluate_sample(s, oracle, window=64, rl=rl).row
    smoothed = evaluate_sample(s, oracle, window=64, rl=rl, denoise_above=0.001,
                               smooth=0.002).row
    assert smoothed["psnr_blurry"] == plain["psnr_blurry"]
    assert smoothed["psnr_gt"] != plain["psnr_gt"]
    pre = noise.smooth(torch.from_numpy(s.blurry).permute(2, 0, 1)[None].float() / 255, 0.002)
    s.blurry = np.round(pre[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    assert abs(evaluate_sample(s, oracle, window=64, rl=rl).row["psnr_gt"]
               - smoothed["psnr_gt"]) < 0.05


def test_synthetic_uniform_blur_upper_bound_is_the_uniform_kernel():
    s = _sample("u", 1, layers=1)
    gt = gt_field(s, centre_window(112, 112, K, 64))
    r = evaluate_sample(s, lambda v: (gt.kernels[None].float(), gt.masks[None].float()),
                        window=64, rl=dict(iterations=1)).row
    assert r["psnr_uniform_gt"] == pytest.approx(r["psnr_gt"], abs=1e-6)


def test_synthetic_estimated_field_takes_field_iterations_when_it_is_the_networks():
    """With the note of the network's own field, the estimated field (and its mean kernel)
    are restored with ``field_iterations``, as ``deblur`` does; the true fields keep
    ``iterations``. Reference: the same sample scored at each count without a note."""
    s = _sample("f", 0)
    gt = gt_field(s, centre_window(112, 112, K, 64))
    field = (gt.kernels.flip(0)[None].float(), gt.masks[None].float())
    capped = evaluate_sample(s, lambda v: (*field, "network's field kept (...)"), window=64,
                             rl=dict(iterations=4, field_iterations=1)).row
    at_1 = evaluate_sample(s, lambda v: field, window=64, rl=dict(iterations=1)).row
    at_4 = evaluate_sample(s, lambda v: (*field, "refined kernel (...)"), window=64,
                           rl=dict(iterations=4, field_iterations=1)).row
    for key in ("psnr_est", "psnr_uniform_est"):
        assert capped[key] == at_1[key] != at_4[key], key
    for key in ("psnr_gt", "psnr_uniform_gt"):
        assert capped[key] == at_4[key] != at_1[key], key


def test_synthetic_restorations_go_through_the_no_harm_rule_with_its_options():
    """Every no-harm key of the restore section reaches the rule (an unknown name is
    refused): a minimum blur no field reaches leaves every restoration as the blurry input;
    at 1 px the true field restores."""
    s = _sample("n", 0)
    gt = gt_field(s, centre_window(112, 112, K, 64))

    def oracle(v):
        return gt.kernels[None].float(), gt.masks[None].float()

    rule = dict(no_harm=True, no_harm_probe=3, no_harm_evidence=0.2, no_harm_margin=0.25,
                no_harm_max_unexplained=0.45, no_harm_shrink=1, no_harm_window=0,
                no_harm_noise=1.5)
    capped = evaluate_sample(s, oracle, window=64, rl=dict(
        iterations=3, no_harm_min_blur=1e6, **rule)).row
    for key in ("psnr_est", "psnr_gt", "psnr_uniform_gt", "psnr_uniform_est"):
        assert capped[key] == pytest.approx(capped["psnr_blurry"], abs=0.05), key
    free = evaluate_sample(s, oracle, window=64, rl=dict(
        iterations=3, no_harm_min_blur=1.0, **rule)).row
    assert free["psnr_gt"] > capped["psnr_gt"] + 0.5
    # The row says what the rule decided for the estimated field (here the true one).
    assert (capped["decision"], capped["blend"]) == ("left nearly as is", 0.0)
    assert "blur" in capped["decision_reason"]
    assert free["decision"] == "restored" and free["blend"] >= 0.5
    assert free["psnr_est"] > free["psnr_blurry"] + 0.5
    assert "decision" not in evaluate_sample(s, oracle, window=64,
                                             rl=dict(iterations=1)).row  # no rule, no column


def test_synthetic_command_writes_and_resumes(tmp_path, weights, monkeypatch, capsys):
    shard = _write_shard(tmp_path / "val-000000.tar", [_sample("000000", 0),
                                                       _sample("000001", 2)])
    out = tmp_path / "out"
    args = ["--benchmark", "synthetic", "--root", shard, "--checkpoint", weights, "--out",
            out, "eval.window=64", "eval.iterations=1", "eval.device=cpu",
            "restore.no_harm_probe=3"]
    import blurfield.api  # noqa: F401  (imported before the patch: it binds estimate_field)

    seen, real = [], refine.estimate_field  # the restore section's estimate options are used
    monkeypatch.setattr(refine, "estimate_field",
                        lambda model, image, tile, **kw: seen.append(
                            (tile, kw["refine"], kw["probe"], kw["probe_window"]))
                        or real(model, image, tile, **kw))
    assert _evaluate(*args) == 0
    assert seen == [(128, 10, 3, 256), (128, 10, 3, 256)]
    rows = _rows(out)
    assert [r["id"] for r in rows] == ["000000", "000001"]
    for col in ("kernel_error", "psnr_est", "psnr_gt", "psnr_uniform_gt", "psnr_uniform_est",
                "psnr_blurry", "reblur_psnr_est", "seconds"):
        assert all(math.isfinite(float(r[col])) for r in rows), col
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mean"]["kernel_error"] == pytest.approx(
        np.mean([float(r["kernel_error"]) for r in rows]), rel=1e-5)
    assert summary["info"]["images"] == 2 and "CPU" in summary["info"]["hardware"]
    g = [float(r["psnr_est"]) - float(r["psnr_blurry"]) for r in rows]
    assert summary["info"]["gain over the blurry input"].startswith(
        f"mean {np.mean(g):+.2f} dB, worst {min(g):+.2f} dB")
    said = [r["decision"] for r in rows]
    assert set(said) <= {"restored", "left nearly as is"}
    assert all(f"{said.count(d)} {d}" in summary["info"]["no-harm rule"] for d in said)
    assert "blend" not in summary["mean"] or summary["mean"]["blend"] == pytest.approx(
        np.mean([float(r["blend"]) for r in rows]))
    assert "| kernel_error |" in (out / "summary.md").read_text()
    assert "| kernel_error |" in capsys.readouterr().out
    html = (out / "index.html").read_text()
    assert "pictures/000001.jpg" in html
    with Image.open(out / "pictures" / "000000.jpg") as im:
        assert im.format == "JPEG" and im.width > im.height
    assert not list(out.rglob("*.tmp"))

    # Resume: only the image without a row is evaluated again (a stub stands in for it).
    calls = []

    def stub(item, method, s):
        calls.append(item.id)
        return {"kernel_error": 9.0}, [("blurry", torch.zeros(3, 8, 8))], 0.5

    monkeypatch.setattr(benchmark, "evaluate_synthetic", stub)
    with open(out / "results.csv") as f:
        lines = f.readlines()
    (out / "results.csv").write_text("".join(lines[:2]))
    assert _evaluate(*args) == 0
    rows2 = _rows(out)
    assert calls == ["000001"] and [r["id"] for r in rows2] == ["000000", "000001"]
    assert rows2[0] == rows[0] and rows2[1]["kernel_error"] == "9"
    assert _evaluate(*args) == 0 and calls == ["000001"]  # everything done: nothing redone
    # A smaller --limit summarises fewer images but keeps the other rows in the CSV.
    assert _evaluate(*args, "--limit", 1) == 0 and calls == ["000001"]
    assert json.loads((out / "summary.json").read_text())["info"]["images"] == 1
    assert len(_rows(out)) == 2

    # Other settings into the same folder are refused, naming what differs.
    assert _evaluate(*args[:-2], "eval.iterations=2", "eval.device=cpu") == 2
    assert "iterations" in capsys.readouterr().err
    assert _evaluate(*args, "restore.estimate_tile=32") == 2
    assert "other settings (restore)" in capsys.readouterr().err


# --------------------------------------------------------------------------- RealBlur


def test_realblur_command_scores_the_blurry_input_like_the_reference(tmp_path, weights):
    folder = "RealBlur-J_ECC_IMCORR_centroid_itensity_ref"
    lines = []
    for n, (y, x) in enumerate([(60, 200), (250, 150)], 1):
        sharp = _photo(y, x, 64, 80)
        gt = _save(tmp_path / folder / "scene001" / "gt" / f"gt_{n}.png", sharp)
        bl = _save(tmp_path / folder / "scene001" / "blur" / f"blur_{n}.png", _box_blur(sharp))
        lines.append(f"{gt.relative_to(tmp_path)} {bl.relative_to(tmp_path)}")
    (tmp_path / "RealBlur_J_test_list.txt").write_text("\n".join(lines))
    out = tmp_path / "out"
    assert _evaluate("--benchmark", "realblur_j", "--root", tmp_path, "--checkpoint", weights,
                     "--out", out, "restore.iterations=2", "eval.device=cpu") == 0
    rows = _rows(out)
    assert [r["id"] for r in rows] == ["scene001_1", "scene001_2"]
    for r, n in zip(rows, (1, 2)):
        sharp = np.asarray(Image.open(tmp_path / folder / "scene001" / "gt" / f"gt_{n}.png"))
        blur = np.asarray(Image.open(tmp_path / folder / "scene001" / "blur" / f"blur_{n}.png"))
        s, b = sharp / 255.0, blur / 255.0
        assert float(r["blurry_psnr"]) == pytest.approx(
            peak_signal_noise_ratio(s, b, data_range=1.0), abs=1e-3)
        assert float(r["blurry_ssim"]) == pytest.approx(structural_similarity(
            s, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
            data_range=1.0, channel_axis=2), abs=1e-4)
        for col in ("psnr", "ssim", "reblur_psnr", "align_scale", "seconds"):
            assert math.isfinite(float(r[col])), col
        assert r["aligned"] in ("0", "1")
    info = json.loads((out / "summary.json").read_text())["info"]
    assert info["method"] == "estimate + RL"
    g = [float(r["psnr"]) - float(r["blurry_psnr"]) for r in rows]
    assert info["gain over the blurry input"].startswith(f"mean {np.mean(g):+.2f} dB, worst "
                                                         f"{min(g):+.2f} dB")
    said = [r["decision"] for r in rows]
    assert all(f"{said.count(d)} {d}" in info["no-harm rule"] for d in said)
    assert info["gain over the blurry input"] in (out / "summary.md").read_text()


def test_summary_counts_gains_and_decisions_from_the_rows():
    from blurfield.evaluation.report import decisions, gains

    rows = [{"psnr": "30", "blurry_psnr": "28", "decision": "restored"},
            {"psnr": "25", "blurry_psnr": "26", "decision": "left nearly as is"},
            {"psnr": "inf", "blurry_psnr": "inf", "decision": "left nearly as is"},  # sharp
            {"psnr": "27.5", "blurry_psnr": "27.6", "decision": "restored"},
            {"psnr_est": "31"}]  # a row without the columns
    assert gains(rows) == "mean +0.30 dB, worst -1.00 dB; 1 of 3 more than 0.5 dB worse"
    assert gains(rows, worse=0.05).endswith("2 of 3 more than 0.05 dB worse")
    # the synthetic protocol's columns: psnr_est - psnr_blurry
    synthetic = [{"psnr_est": "22", "psnr_blurry": "21.5", "psnr_gt": "40"},
                 {"psnr_est": "20", "psnr_blurry": "21", "psnr_gt": "40"}]
    assert gains(synthetic) == "mean -0.25 dB, worst -1.00 dB; 1 of 2 more than 0.5 dB worse"
    assert decisions(rows) == "2 restored, 2 left nearly as is"
    assert gains([{"psnr_est": "1"}]) is None and decisions([{"id": "a"}]) is None


# --------------------------------------------------------------------------- Köhler


def _koehler_reference(z: np.ndarray, frames: list[np.ndarray]) -> float:
    """Köhler's protocol written out directly: scale, best circular shift by brute force,
    zero-filled shift, luminance PSNR over the whole frame, max over frames."""
    lum = np.array([0.299, 0.587, 0.114])
    best = -np.inf
    for x in frames:
        zs = (x * z).sum() / (z * z).sum() * z
        xm, zm = x.mean(2), zs.mean(2)
        h, w = xm.shape
        scores = {(dy, dx): (xm * np.roll(zm, (dy, dx), (0, 1))).sum()
                  for dy in range(-h // 2, h // 2) for dx in range(-w // 2, w // 2)}
        dy, dx = max(scores, key=scores.get)
        zr = np.zeros_like(zs)
        c = np.zeros_like(zs)
        ys = slice(max(dy, 0), h + min(dy, 0))
        xs = slice(max(dx, 0), w + min(dx, 0))
        zr[ys, xs] = zs[max(-dy, 0) : h - max(dy, 0), max(-dx, 0) : w - max(dx, 0)]
        c[ys, xs] = 1
        err = ((x * c - zr) @ lum) ** 2
        best = max(best, 10 * np.log10(1 / err.mean()))
    return best


def test_koehler_command_takes_the_best_frame(tmp_path, weights):
    rng = np.random.default_rng(0)
    scene = _photo(100, 180, 80, 80)
    blurry = _box_blur(scene[8:72, 8:72])
    _save(tmp_path / "BlurryImages" / "Blurry1_1.png", blurry)
    frames = []
    for f, (dy, dx) in enumerate([(0, 5), (2, -3), (-4, 0)], 1):
        fr = scene[8 + dy : 72 + dy, 8 + dx : 72 + dx].astype(np.float64)
        fr = np.clip(fr + rng.normal(0, 2 + 4 * (f != 2), fr.shape), 0, 255).astype(np.uint8)
        frames.append(fr / 255.0)
        _save(tmp_path / "Image1" / "Kernel1" / f"GroundTruth1_1_{f}.png", fr)
    out = tmp_path / "out"
    assert _evaluate("--benchmark", "koehler", "--root", tmp_path, "--checkpoint", weights,
                     "--out", out, "restore.iterations=2", "eval.device=cpu") == 0
    (r,) = _rows(out)
    assert r["id"] == "1_1" and r["frames"] == "3"
    assert float(r["blurry_psnr"]) == pytest.approx(
        _koehler_reference(blurry / 255.0, frames), abs=1e-3)
    assert math.isfinite(float(r["psnr"])) and 0 <= float(r["best_frame"]) <= 2


# --------------------------------------------------------------------------- GoPro


def test_gopro_deblurrer_is_scored_alone(tmp_path):
    from blurfield.models.deblurgan import (
        DeblurGenerator,
        load_deblurrer,
        run_generator,
        save_generator,
    )

    torch.manual_seed(0)
    g_path = tmp_path / "g.pt"
    save_generator(DeblurGenerator(ngf=4, n_blocks=1), g_path)
    test = tmp_path / "GOPRO_Large" / "test"
    for n, seq in enumerate(["GOPR0384_11_00", "GOPR0410_11_00"]):
        sharp = _photo(40 + 90 * n, 100, 40, 48)
        _save(test / seq / "sharp" / "000001.png", sharp)
        _save(test / seq / "blur" / "000001.png", _box_blur(sharp))
    out = tmp_path / "out"
    assert _evaluate("--benchmark", "gopro", "--root", tmp_path / "GOPRO_Large",
                     "--deblurrer", g_path, "--out", out, "eval.device=cpu") == 0
    rows = _rows(out)
    g = load_deblurrer(g_path)
    for r, seq in zip(rows, ["GOPR0384_11_00", "GOPR0410_11_00"]):
        blur = np.asarray(Image.open(test / seq / "blur" / "000001.png")) / 255.0
        sharp = np.asarray(Image.open(test / seq / "sharp" / "000001.png")) / 255.0
        x = torch.from_numpy(blur).permute(2, 0, 1).float()[None]
        y = run_generator(g, x)[0].permute(1, 2, 0).double().numpy()
        y = np.round(y * 255) / 255
        assert float(r["psnr"]) == pytest.approx(
            peak_signal_noise_ratio(sharp, y, data_range=1.0), abs=1e-3)
        assert "reblur_psnr" not in r
    info = json.loads((out / "summary.json").read_text())["info"]
    assert info["method"] == "DeblurGAN generator" and info["deblurrer"] == str(g_path)


# --------------------------------------------------------------------------- folder


def test_folder_writes_fields_and_restorations(tmp_path, weights):
    from blurfield.api import load_decision, load_field

    photos = tmp_path / "photos"
    _save(photos / "boat.png", _box_blur(_photo(0, 0, 50, 70)))
    _save(photos / "night" / "street.jpg", _box_blur(_photo(300, 300, 64, 64)))
    out = photos / "out"  # inside the root: its files must not become inputs
    args = ["--benchmark", "folder", "--root", photos, "--checkpoint", weights, "--out", out,
            "restore.iterations=2", "eval.device=cpu"]
    assert _evaluate(*args) == 0
    rows = _rows(out)
    assert [r["id"] for r in rows] == ["boat", "night__street"]
    assert all(math.isfinite(float(r["reblur_psnr"])) for r in rows)
    with Image.open(out / "restored" / "boat_restored.png") as im:
        assert im.size == (70, 50)
    f = load_field(out / "restored" / "night__street_field.npz")
    assert f.image_size == (64, 64) and f.kernels.shape[-1] == K
    # each row says what the no-harm rule did, as the field file does, and truly: a blend
    # of 0 returns the photo itself, any other changes it
    for r in rows:
        d = load_decision(out / "restored" / f"{r['id']}_field.npz")
        assert (r["decision"], r["decision_reason"]) == (d.decision, d.reason)
        assert float(r["blend"]) == pytest.approx(d.blend, abs=1e-5)
        assert float(r["kernel_scale"]) == pytest.approx(d.kernel_scale, abs=1e-5)
        assert r["decision"] == ("restored" if d.blend >= 0.5 else "left nearly as is")
    (boat,) = [r for r in rows if r["id"] == "boat"]
    same = np.array_equal(np.asarray(Image.open(out / "restored" / "boat_restored.png")),
                          np.asarray(Image.open(photos / "boat.png")))
    assert same == (float(boat["blend"]) == 0)
    assert _evaluate(*args) == 0 and len(_rows(out)) == 2
    off = tmp_path / "off"
    assert _evaluate("--benchmark", "folder", "--root", photos, "--checkpoint", weights,
                     "--out", off, "restore.iterations=2", "eval.device=cpu",
                     "restore.no_harm=false") == 0
    assert all("decision" not in r and "blend" not in r for r in _rows(off))


# --------------------------------------------------------------------------- errors, configs


def test_errors_are_one_line(tmp_path, weights, capsys):
    assert _evaluate("--benchmark", "levin", "--root", tmp_path) == 2
    assert "not one of" in capsys.readouterr().err
    assert _evaluate("--benchmark", "koehler") == 2
    assert "--root" in capsys.readouterr().err
    assert _evaluate("--benchmark", "koehler", "--root", tmp_path, "--checkpoint",
                     weights) == 2
    assert "BlurryImages.zip" in capsys.readouterr().err
    shard = _write_shard(tmp_path / "s.tar", [_sample("000000", 0)])
    assert _evaluate("--benchmark", "synthetic", "--root", shard, "--deblurrer",
                     tmp_path / "none.pt", "--out", tmp_path / "o") == 2
    assert "--deblurrer" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_eval_configs_match_the_protocols(name):
    cfg = load_config([f"eval/{name}"])
    p = PROTOCOLS[name]
    assert cfg.eval.benchmark == name
    if p.gamma is not None:
        assert cfg.eval.gamma == p.gamma
    if p.saturation is not None and name != "synthetic":
        assert cfg.eval.saturation == p.saturation
