"""The no-harm rule (blurfield.restore.noharm): sharp photos and wrong fields are left
nearly as is, right fields restore, and the decision travels in the field file."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.fields import line_kernel
from helpers.images import astronaut, display, psnr

from blurfield.api import Field, deblur, load_decision, load_field, save_field
from blurfield.cli import main
from blurfield.imageio import read_image, write_image
from blurfield.physics import blur, saturate, to_display, to_linear
from blurfield.restore import no_harm_richardson_lucy, noise_sigma, richardson_lucy
from blurfield.restore.noharm import blur_extent, rescaled, turned
from blurfield.restore.noise import amplification_stop

pytestmark = pytest.mark.usefixtures("one_thread")


def two_layer_field(size: int, k: int = 15) -> tuple[torch.Tensor, torch.Tensor]:
    """Two line blurs (0.73 k px at 20°, 0.6 k px at 55°: 11 and 9 px for k = 15) mixed left
    to right: (1, 2, k, k), (1, 2, size, size)."""
    kernels = torch.stack([line_kernel(k, np.deg2rad(20), 0.73 * k),
                           line_kernel(k, np.deg2rad(55), 0.6 * k)])
    a = torch.sigmoid(torch.linspace(-4, 4, size))[None, :].expand(size, size)
    return kernels[None], torch.stack([a, 1 - a])[None]


def blurred(sharp_display: torch.Tensor, kernels, mixing) -> torch.Tensor:
    """Linear blurry photo, 8-bit rounded like a real one."""
    hu = blur(to_linear(sharp_display), kernels, mixing, padding="same")
    return to_linear(torch.round(to_display(saturate(hu)) * 255) / 255)


def blurred_astronaut():
    """The 96² astronaut (display), the two-layer field, the blurry linear photo and its
    PSNR (dB) against the sharp one."""
    sharp = astronaut(96)
    kernels, mixing = two_layer_field(96)
    v = blurred(sharp, kernels, mixing)
    return sharp, kernels, mixing, v, psnr(display(v), sharp)


# --------------------------------------------------------------------------- the rule


def test_a_sharp_photo_with_a_near_delta_field_is_left_as_is():
    sharp = astronaut(96)
    v = to_linear(sharp)
    k = torch.zeros(1, 1, 15, 15)
    k[0, 0, 7, 7] = 0.96  # variance 0.04 px²: a 0.7 px "blur"
    k[0, 0, 7, 6] = k[0, 0, 7, 8] = 0.02
    res = no_harm_richardson_lucy(v, k, torch.ones(1, 1, 96, 96), iterations=30)
    assert res.decision.decision == "left nearly as is"
    assert "below 1 px" in res.decision.reason and res.decision.blend == 0
    assert torch.equal(res.image, v)


def test_a_sharp_photo_with_a_real_blur_field_stays_close_to_itself():
    """The field claims 9-11 px of blur the photo does not have: plain RL sharpens the photo
    away from itself; the rule must keep it within 40 dB of the input."""
    sharp = astronaut(96)
    v = to_linear(sharp)
    kernels, mixing = two_layer_field(96)
    plain = richardson_lucy(v, kernels, mixing, iterations=30).image
    assert psnr(display(plain), sharp) < 30  # what the rule protects against
    res = no_harm_richardson_lucy(v, kernels, mixing, iterations=30)
    assert res.decision.decision == "left nearly as is"
    assert psnr(display(res.image), sharp) >= 40


def test_the_true_field_restores():
    sharp, kernels, mixing, v, before = blurred_astronaut()
    res = no_harm_richardson_lucy(v, kernels, mixing, iterations=30)
    assert res.decision.decision == "restored" and res.decision.blend > 0.5
    assert psnr(display(res.image), sharp) >= before + 3


def test_a_field_turned_90_degrees_does_no_harm():
    sharp, kernels, mixing, v, before = blurred_astronaut()
    wrong = turned(kernels)
    plain = richardson_lucy(v, wrong, mixing, iterations=30).image
    assert psnr(display(plain), sharp) < before - 1  # RL alone makes it worse
    res = no_harm_richardson_lucy(v, wrong, mixing, iterations=30)
    assert res.decision.decision == "left nearly as is"
    assert "does not show the blur" in res.decision.reason  # it leaves too much unexplained
    assert psnr(display(res.image), sharp) >= before - 0.1
    # with the size tests lifted, the direction tests catch it: the photo's spectrum falls
    # off across the field's blur, not along it (slope < 0) ...
    res = no_harm_richardson_lucy(v, wrong, mixing, iterations=30, max_unexplained=1.0,
                                  margin=10.0)
    assert res.decision.decision == "left nearly as is" and res.decision.slope < 0
    assert "spectrum" in res.decision.reason
    assert psnr(display(res.image), sharp) >= before - 0.1
    # ... and without the spectral test the right field (its turned copy) explains the
    # photo better
    res = no_harm_richardson_lucy(v, wrong, mixing, iterations=30, max_unexplained=1.0,
                                  margin=10.0, slope=None)
    assert res.decision.decision == "left nearly as is" and res.decision.evidence < 0
    assert "turned 90°" in res.decision.reason
    assert psnr(display(res.image), sharp) >= before - 0.1


def test_a_field_too_large_is_shrunk_and_restores():
    """A field 1.41 times the true blur: its half-size copy explains the photo better, the
    field at 0.71 of its size (the true one) passes, and the restoration gains."""
    sharp, kernels, mixing, v, before = blurred_astronaut()
    res = no_harm_richardson_lucy(v, rescaled(kernels, 2**0.5), mixing, iterations=30)
    d = res.decision
    assert d.kernel_scale == pytest.approx(2**-0.5) and d.restored, d
    assert "0.71 of its size" in d.reason
    u = d.unexplained
    assert np.log(u["0.50"] / u["1.00"]) < -0.25 <= np.log(u["0.35"] / u["0.71"])
    assert psnr(display(res.image), sharp) >= before + 2


def test_a_field_of_twice_the_blur_does_no_harm():
    sharp, kernels, mixing, v, before = blurred_astronaut()
    res = no_harm_richardson_lucy(v, rescaled(kernels, 2.0), mixing, iterations=30)
    assert psnr(display(res.image), sharp) >= before - 0.1


def test_a_photo_already_explained_at_the_noise_level_is_left_as_is():
    """A flat photo with white noise σ: a blur ``h`` leaves the reblur residual
    ``σ² |h - δ|²`` (0.06 σ² for taps 0.1, 0.8, 0.1), within ``noise_factor`` (0.5) of the
    noise variance, so the photo is left as is at step 2. A 7 px line leaves 0.86 σ², past
    the stop, and the probes leave the photo as is instead (nothing explains noise)."""
    g = torch.Generator().manual_seed(0)
    v = (0.4 + 0.01 * torch.randn(1, 3, 64, 64, generator=g)).clamp(min=0)
    small = torch.zeros(1, 1, 7, 7)
    small[0, 0, 3, 2:5] = torch.tensor([0.1, 0.8, 0.1])
    res = no_harm_richardson_lucy(v, small, torch.ones(1, 1, 64, 64), iterations=30)
    assert "noise level" in res.decision.reason and torch.equal(res.image, v)
    res = no_harm_richardson_lucy(v, line_kernel(9, 0.0, 7)[None, None],
                                  torch.ones(1, 1, 64, 64), iterations=30)
    assert not res.decision.restored and (res.image - v).abs().max() < 1e-3


# --------------------------------------------------------------------------- pieces


def test_probe_windows_are_the_four_quarter_centred_squares():
    from blurfield.restore.noharm import probe_windows

    v = torch.arange(2 * 200 * 300, dtype=torch.float32).reshape(1, 2, 200, 300)
    m = -v[:, :1]
    vw, mw = probe_windows(v, m, 64)
    assert vw.shape == (4, 2, 64, 64) and mw.shape == (4, 1, 64, 64)
    for i, (t, c) in enumerate([(18, 43), (18, 193), (118, 43), (118, 193)]):
        assert torch.equal(vw[i], v[0, :, t : t + 64, c : c + 64])  # centred on (50, 75) ...
        assert torch.equal(mw[i], m[0, :, t : t + 64, c : c + 64])
    assert probe_windows(v, m, 128)[0] is v  # 4 x 128² >= 200 x 300: the whole photo
    assert probe_windows(v, m, 0)[0] is v


def test_unexplained_over_windows_is_the_pooled_error_ratio():
    """U of a batch of windows = (sum of the final errors) / (sum of the first), each
    window restored on its own (RL treats the batch independently)."""
    from blurfield.restore.noharm import probe_windows, unexplained

    sharp = astronaut(160)
    kernels, mixing = two_layer_field(160, 9)
    v = blurred(sharp, kernels, mixing)
    vw, mw = probe_windows(v, mixing, 48)
    assert vw.shape[0] == 4
    opts = dict(saturation=True, tv_weight=1e-3)
    pooled = unexplained(vw, kernels, mw, 5, opts)
    errs = [richardson_lucy(vw[i : i + 1], kernels, mw[i : i + 1], iterations=5,
                            early_stop=False, padding="valid", **opts).reblur_error
            for i in range(4)]
    assert pooled == pytest.approx(sum(e[-1] for e in errs) / sum(e[0] for e in errs),
                                   rel=1e-4)


def test_noise_sigma_of_white_noise_and_its_8_bit_floor():
    """White noise: the 10th percentile of per-square median estimates sits a little below
    the true σ (each square's 64-sample median scatters by ~15%); a flat photo: the 8-bit
    rounding floor in closed form."""
    g = torch.Generator().manual_seed(1)
    noisy = 0.3 + 0.02 * torch.randn(1, 3, 128, 128, generator=g)
    assert 0.7 * 0.02 <= noise_sigma(noisy, gamma=1.0) <= 0.02
    flat = torch.full((1, 1, 64, 64), 0.5)  # linear 0.5 = display d = 0.5^(1/2.2)
    slope = 2.2 * (0.5 ** (1 / 2.2)) ** 1.2  # d(linear)/d(display) = gamma d^(gamma - 1)
    assert noise_sigma(flat) == pytest.approx(slope / 255 / np.sqrt(12), rel=1e-3)


def test_noise_sigma_reads_the_flat_part_not_the_texture():
    """Half the photo a 1 px checkerboard (texture whose Haar diagonal detail is 0.2 at every
    cell), half flat, the same white noise over both: the estimate stays near the noise,
    where the median over the whole photo reads the texture."""
    g = torch.Generator().manual_seed(2)
    x = 0.3 + 0.01 * torch.randn(1, 3, 128, 128, generator=g)
    yy, xx = torch.meshgrid(torch.arange(128), torch.arange(128), indexing="ij")
    x[..., 64:] += 0.2 * ((yy + xx) % 2).float()[:, 64:]
    d = (x[..., 0::2, 0::2] - x[..., 1::2, 0::2] - x[..., 0::2, 1::2] + x[..., 1::2, 1::2]) / 2
    whole = float(d.abs().median()) / 0.6745
    assert whole > 5 * 0.01
    assert 0.7 * 0.01 <= noise_sigma(x, gamma=1.0) <= 1.05 * 0.01


def test_blur_extent_is_the_line_length():
    for length in (3, 9, 15):
        k = torch.zeros(1, 1, 17, 17)
        k[0, 0, 8, 8 - length // 2: 8 - length // 2 + length] = 1 / length
        # a line of n taps has variance (n^2 - 1) / 12: sqrt(12 var) = sqrt(n^2 - 1)
        assert blur_extent(k, torch.ones(1, 1, 32, 32)) == pytest.approx(
            np.sqrt(length**2 - 1), rel=1e-4)


@pytest.mark.parametrize("factor", [0.5, 1.6])
def test_rescaled_keeps_mass_and_centre_and_scales_the_spread(factor):
    k = line_kernel(15, 0.5, 9)[None]
    out = rescaled(k, factor)[0].double()
    n = out.shape[-1]
    assert float(out.sum()) == pytest.approx(1.0, abs=1e-6) and float(out.min()) >= 0

    def moments(a):
        c = torch.arange(a.shape[-1], dtype=torch.float64) - (a.shape[-1] - 1) / 2
        my, mx = (a.sum(1) * c).sum(), (a.sum(0) * c).sum()
        return my, mx, (a.sum(1) * c**2).sum() + (a.sum(0) * c**2).sum()

    my0, mx0, var0 = moments(k[0].double())
    my, mx, var = moments(out)
    assert n >= 15
    assert float(my - factor * my0) == pytest.approx(0, abs=0.05)
    assert float(mx - factor * mx0) == pytest.approx(0, abs=0.05)
    # the spread grows by factor^2 (bilinear resampling adds < 1/3 px^2 per axis)
    assert float(var) == pytest.approx(factor**2 * float(var0), abs=0.7)


def test_discrepancy_stop_keeps_the_first_iterate_at_the_noise_level():
    sharp = astronaut(64)
    kernels, mixing = two_layer_field(64, 11)
    v = blurred(sharp, kernels, mixing)
    full = richardson_lucy(v, kernels, mixing, iterations=20, early_stop=False)
    stop = full.reblur_error[6] * 1.0001
    first = next(t for t, e in enumerate(full.reblur_error) if e <= stop)
    res = richardson_lucy(v, kernels, mixing, iterations=20, early_stop=False, stop_error=stop)
    assert res.iterations == first and len(res.reblur_error) == first + 1


def flat_and_textured(noise: float, seed: int = 0) -> torch.Tensor:
    """(1, 3, 64, 64) linear: grey 0.2 plus white noise of ``noise`` on the left half,
    uniform random texture in [0, 1] on the right."""
    g = torch.Generator().manual_seed(seed)
    v = 0.2 + noise * torch.randn(1, 3, 64, 64, generator=g)
    v[..., 32:] = torch.rand(1, 3, 64, 32, generator=g)
    return v


def test_amplification_stop_reads_the_flattest_squares_only():
    v = flat_and_textured(0.01)
    stop = amplification_stop(v, 1.2)  # the flattest 10% of 16² squares: all on the left
    amplified = v.clone()
    amplified[..., :32] = 0.2 + 1.1 * (v[..., :32] - 0.2)
    assert not stop(v) and not stop(amplified)  # spread x 1.1 <= 1.2
    amplified[..., :32] = 0.2 + 1.3 * (v[..., :32] - 0.2)
    assert stop(amplified)  # x 1.3 > 1.2
    wild = v.clone()
    wild[..., 32:] = 3 * v[..., 32:]  # the texture changed, the flat squares not
    assert not stop(wild)
    padded = torch.nn.functional.pad(amplified, (7, 7, 7, 7), value=5.0)
    assert stop(padded)  # RL's "valid" estimate: its centre 64 x 64 is read
    assert not stop(torch.nn.functional.pad(v, (7, 7, 7, 7), value=5.0))
    # a photo without noise: the spread it may reach is at least 1.2 x SPREAD_FLOOR
    clean = flat_and_textured(0.0)
    bumped = clean.clone()
    g = torch.Generator().manual_seed(1)
    bumped[..., :32] += 0.001 * torch.randn(1, 3, 64, 32, generator=g)
    assert not amplification_stop(clean, 1.2)(bumped)
    assert amplification_stop(clean, 1.2)(clean + 0.01 * (bumped - clean) / 0.001)


def test_reject_returns_the_iterate_before_the_first_rejected():
    sharp = astronaut(48)
    kernels, mixing = two_layer_field(48, 9)
    v = blurred(sharp, kernels, mixing)
    asked = []

    def reject(x):
        asked.append(x)
        return len(asked) == 3  # the iterate after the third update

    res = richardson_lucy(v, kernels, mixing, iterations=8, early_stop=False, reject=reject)
    two = richardson_lucy(v, kernels, mixing, iterations=2, early_stop=False)
    assert res.iterations == 2 and len(res.reblur_error) == 3
    assert torch.equal(res.image, two.image)


def test_the_spread_stop_ends_rl_before_the_flat_squares_pass_it():
    sharp, kernels, mixing, v, _ = blurred_astronaut()
    noisy = (v + 0.02 * torch.randn(v.shape, generator=torch.Generator().manual_seed(0))
             ).clamp(min=0)
    free = no_harm_richardson_lucy(noisy, kernels, mixing, iterations=30, spread=0)
    kept = no_harm_richardson_lucy(noisy, kernels, mixing, iterations=30, spread=1.2)
    assert free.decision.restored and kept.decision.restored
    stop = amplification_stop(noisy, 1.2)
    assert stop(free.image) and not stop(kept.image)  # RL alone passes it, the rule not
    assert 0 < kept.iterations < free.iterations == 30


# --------------------------------------------------------------------------- api, files, CLI


def test_api_deblur_exposes_the_decision_and_can_switch_the_rule_off():
    sharp = astronaut(64)[0].permute(1, 2, 0).numpy()
    kernels, mixing = two_layer_field(64, 11)
    field = Field(kernels[0], mixing[0], scale=1.0, image_size=(64, 64))
    out, res = deblur(sharp, field, iterations=20, return_result=True)
    assert res.decision is not None and res.decision.decision == "left nearly as is"
    assert np.array_equal(out, np.clip(sharp, 0, 1)) or np.abs(out - sharp).max() < 1e-5
    out2, res2 = deblur(sharp, field, iterations=20, return_result=True, no_harm=False)
    assert res2.decision is None and np.abs(out2 - sharp).max() > 0.05


def test_tiled_restoration_gets_the_decision_and_the_blend():
    sharp = astronaut(96)
    kernels, mixing = two_layer_field(96, 11)
    field = Field(kernels[0], mixing[0], scale=1.0, image_size=(96, 96))
    blurry = display(blurred(sharp, kernels, mixing))[0].permute(1, 2, 0).numpy()
    ref = sharp[0].permute(1, 2, 0).numpy()
    out, res = deblur(blurry, field, iterations=10, tile=48, return_result=True)
    assert res.decision.decision == "restored" and res.iterations == 10  # fixed count
    # with the spread stop, every tile runs the count RL with the rule's stops takes on
    # the probe squares: here the whole photo (smaller than four 256² squares), so that of
    # the untiled restoration
    _, cut = deblur(blurry, field, iterations=10, tile=48, no_harm_spread=1.2,
                    return_result=True)
    _, whole = deblur(blurry, field, iterations=10, tile=0, no_harm_spread=1.2,
                      return_result=True)
    assert cut.decision.restored and 0 < cut.iterations == whole.iterations < 10
    assert np.mean((out - ref) ** 2) < np.mean((blurry - ref) ** 2)
    out, res = deblur(ref, field, iterations=10, tile=48, return_result=True)
    assert res.decision.decision == "left nearly as is"
    assert np.abs(out - ref).max() < 1e-5


def test_deblur_writes_the_decision_into_the_field_file_and_prints_it(tmp_path, capsys):
    sharp = astronaut(64)
    kernels, mixing = two_layer_field(64, 11)
    blurry = display(blurred(sharp, kernels, mixing))[0].permute(1, 2, 0).numpy()
    write_image(tmp_path / "shot.png", blurry)
    write_image(tmp_path / "calm.png", sharp[0].permute(1, 2, 0).numpy())
    save_field(tmp_path / "f.npz", Field(kernels[0], mixing[0], scale=1.0, image_size=(64, 64)))
    for stem in ("shot", "calm"):
        rc = main(["deblur", str(tmp_path / f"{stem}.png"), "--field", str(tmp_path / "f.npz"),
                   "--out", str(tmp_path / stem)])
        assert rc == 0
    printed = capsys.readouterr().out
    shot, calm = load_decision(tmp_path / "shot" / "shot_field.npz"), load_decision(
        tmp_path / "calm" / "calm_field.npz")
    # the blurry photo is restored (its output differs from it and is sharper than it)...
    out, _ = read_image(tmp_path / "shot" / "shot_restored.png")
    ref = sharp[0].permute(1, 2, 0).numpy()
    assert shot.decision == "restored" and shot.iterations > 0 and shot.blend > 0.5
    assert np.mean((out - ref) ** 2) < 0.7 * np.mean((blurry - ref) ** 2)  # >= 1.5 dB
    # ...the sharp one comes back as it went in (8-bit round trip)
    out, _ = read_image(tmp_path / "calm" / "calm_restored.png")
    written, _ = read_image(tmp_path / "calm.png")
    assert calm.decision == "left nearly as is" and calm.blend == 0 and calm.iterations == 0
    assert np.array_equal(out, written)
    lines = [ln for ln in printed.splitlines() if ln.strip()]
    assert any("shot.png" in ln and ": restored (" in ln for ln in lines)
    assert any("calm.png" in ln and ": left nearly as is (" in ln for ln in lines)
    field = load_field(tmp_path / "shot" / "shot_field.npz")  # still a plain field file
    assert field.kernels.shape == (2, 11, 11)
    with np.load(tmp_path / "shot" / "shot_field.npz") as z:
        assert {"decision", "decision_reason", "blend", "iterations", "kernel_scale",
                "spectral_slope"} <= set(z.files)
        assert float(z["kernel_scale"]) == shot.kernel_scale == 1.0


def test_decisions_without_a_kernel_scale_or_slope_load_with_scale_1_and_no_slope():
    from blurfield.restore import Decision

    d = Decision(0.8, "why", 0.01, 5.0, kernel_scale=0.5, evidence=0.3, iterations=7,
                 slope=0.7)
    back = Decision.from_arrays(d.arrays())
    assert back == d and back.decision == "restored"
    old = {k: v for k, v in d.arrays().items() if k not in ("kernel_scale", "spectral_slope")}
    assert Decision.from_arrays(old).kernel_scale == 1.0
    assert np.isnan(Decision.from_arrays(old).slope)


def test_old_field_files_without_a_decision_still_load(tmp_path):
    kernels, mixing = two_layer_field(32, 7)
    save_field(tmp_path / "old.npz", Field(kernels[0], mixing[0], scale=1.0,
                                           image_size=(32, 32)))
    with np.load(tmp_path / "old.npz") as z:
        assert "decision" not in z.files  # what estimate (and older versions) wrote
    assert load_field(tmp_path / "old.npz").image_size == (32, 32)
    assert load_decision(tmp_path / "old.npz") is None


def test_every_no_harm_option_reaches_a_parameter_of_the_rule():
    """rule_kwargs maps each restore.no_harm_* key onto assess's and
    no_harm_richardson_lucy's keywords, with its value (no_harm itself is not one)."""
    import inspect

    from blurfield.config import RestoreOptions
    from blurfield.restore import noharm

    o = RestoreOptions()
    options = {k: v for k, v in vars(o).items() if k.startswith("no_harm_")}
    kw = noharm.rule_kwargs(vars(o))
    assert len(kw) == len(options) == 10 and "no_harm" not in kw
    assert set(kw) <= set(inspect.signature(no_harm_richardson_lucy).parameters)
    # the spread stop is the restoration's (step 5), every other key the assessment's too
    assert set(kw) - {"spread"} <= set(inspect.signature(noharm.assess).parameters)
    assert kw["spread"] == o.no_harm_spread
    assert kw["noise_factor"] == o.no_harm_noise and kw["min_blur_px"] == o.no_harm_min_blur
    assert kw["margin"] == o.no_harm_margin and kw["probe"] == o.no_harm_probe


# --------------------------------------------------------------------------- downscaled fields


def test_a_downscaled_fields_probes_run_on_the_full_size_windows(monkeypatch):
    """``assess(..., full=(windows, mixing))`` with ``pixel_scale`` s: every probe runs on
    the full-size windows given, with the kernels grown by s (the field's size at full size:
    2 (K - 1) + 1 taps for s = 2 and K = 9), their half-size copy being the field's own
    kernels; steps 1-2 still read the photo at the field's resolution."""
    from blurfield.restore import noharm

    seen = []

    def fake(v, kernels, mixing, probe, rl, callback=None):
        seen.append((tuple(v.shape), kernels.shape[-1], float(kernels.sum())))
        return {9: 0.2, 17: 0.1}.get(kernels.shape[-1], 0.3)  # the full-size field explains

    monkeypatch.setattr(noharm, "unexplained", fake)
    sharp = astronaut(64)
    kernels, mixing = two_layer_field(64, 9)
    v = blurred(sharp, kernels, mixing)
    windows = torch.rand(4, 3, 40, 40)
    mix = torch.full((4, 2, 40, 40), 0.5)
    d = noharm.assess(v, kernels, mixing, pixel_scale=2.0, full=(windows, mix))
    assert seen and all(shape == (4, 3, 40, 40) for shape, _, _ in seen)
    assert [k for _, k, _ in seen][:2] == [17, 9]  # the field at full size, then its half
    assert all(abs(total - 2.0) < 1e-4 for _, _, total in seen)  # two kernels, each sum 1
    assert d.kernel_scale == 1 and d.unexplained["1.00"] == 0.1 and d.unexplained["0.50"] == 0.2
    seen.clear()
    noharm.assess(v, kernels, mixing, pixel_scale=2.0)  # without: the photo itself, K as is
    assert seen[0][0] == (1, 3, 64, 64) and seen[0][1] == 9


def _psnr_np(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1 / np.mean((np.asarray(a, np.float64) - b) ** 2)))


def test_a_photo_estimated_at_half_size_is_judged_where_its_detail_is():
    """`gravel` under a small camera shake (`data_prep handmade --shake`, sample 7), estimated
    by the shipped model at ``scale=2``: at half size the texture looks blurred and the rule
    judged there restored it 12 dB worse; judged on the photo itself it is left within
    0.5 dB. A 33 px line on the astronaut, also estimated at half size, is still restored
    (the field's size at full size explains it better than half of it)."""
    from blurfield.api import estimate, load_estimator
    from blurfield.config_schema import ShardsCfg
    from data_prep.handmade import make

    model = load_estimator()
    s = make("gravel", 7, 384, 33, ShardsCfg().seed, shake=True)
    blurry, sharp = s.blurry / 255.0, s.sharp / 255.0
    out, res = deblur(blurry, estimate(blurry, model, 2), return_result=True)
    assert _psnr_np(out, sharp) > _psnr_np(blurry, sharp) - 0.5
    x = to_linear(astronaut(256))
    line = line_kernel(41, 0.5, 33)[None, None]
    long = display(blurred(astronaut(256), line, torch.ones(1, 1, 256, 256)))
    long = long[0].permute(1, 2, 0).numpy()
    out, res = deblur(long, estimate(long, model, 2), return_result=True)
    ref = to_display(x)[0].permute(1, 2, 0).numpy()
    assert res.decision.restored and _psnr_np(out, ref) > _psnr_np(long, ref) + 1


def test_a_nearly_sharp_photo_whose_spectrum_shows_no_direction_is_left_as_is():
    """`cell` under a shake of under a pixel (`data_prep handmade --shake`, sample 7, seed
    1235; 65 dB from its sharp original): the shipped model reads a blur with a direction,
    the probes let it through (RL then takes the photo 24 dB away from its original), the
    spectral test finds the photo's power does not follow the field's and leaves it."""
    from blurfield.api import estimate, load_estimator
    from data_prep.handmade import make

    s = make("cell", 7, 384, 33, 1235, shake=True)
    blurry, sharp = s.blurry / 255.0, s.sharp / 255.0
    field = estimate(blurry, load_estimator())
    out, res = deblur(blurry, field, return_result=True)
    assert not res.decision.restored and res.decision.slope < 0.1, res.decision
    assert "spectrum" in res.decision.reason
    assert _psnr_np(out, sharp) > _psnr_np(blurry, sharp) - 0.5
    out, res = deblur(blurry, field, return_result=True, no_harm_slope=None)
    assert res.decision.restored and _psnr_np(out, sharp) < _psnr_np(blurry, sharp) - 10


def test_a_blur_too_long_for_the_estimator_is_estimated_again_at_half_size():
    """A 41 px line on the astronaut (256 px), estimated by the shipped model at
    ``scale="auto"`` (1 here): the refined kernel runs into its 33 px window, the photo is
    estimated again at half size (``restore.long_blur_scale``), where the refined line is
    taken, and ``deblur`` restores it by more than 1 dB; without the retry (1) the field
    stays at scale 1 with the border note."""
    from blurfield.api import estimate, load_estimator

    model = load_estimator()
    x = to_linear(astronaut(256))
    line = line_kernel(41, 0.5, 41)[None, None]
    long = display(blurred(astronaut(256), line, torch.ones(1, 1, 256, 256)))
    long = long[0].permute(1, 2, 0).numpy()
    field = estimate(long, model, "auto")
    assert field.scale == 2 and field.kernels.shape == (1, 33, 33)
    assert "at scale 2 (at scale 1 the refined kernel ran into its window's border" in \
        field.refinement
    out, res = deblur(long, field, return_result=True)
    ref = to_display(x)[0].permute(1, 2, 0).numpy()
    assert res.decision.restored and _psnr_np(out, ref) > _psnr_np(long, ref) + 1
    field = estimate(long, model, "auto", long_blur_scale=1)
    assert field.scale == 1 and "on the border of its 33x33 window" in field.refinement
    assert estimate(long, model, 1).refinement == field.refinement  # a scale given: as given
