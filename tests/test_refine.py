"""Blind kernel refinement (blurfield.restore.refine): each step against a closed form or a
direct computation, the whole alternation on a photo blurred by a known kernel, and the
choice between the refined kernel and the field."""

import numpy as np
import pytest
import skimage.data
import torch
from helpers.fields import line_kernel
from helpers.images import astronaut
from helpers.moments import axes

from blurfield.physics import blur, correlate, to_linear, uniform_field
from blurfield.restore.refine import (
    CUT_OFF,
    axis_ratio,
    centre_kernel,
    check_refine,
    edge_mass,
    kernel_from_gradients,
    long_blur,
    periodic_pad,
    prune_kernel,
    refine_field,
    refine_kernel,
    sharp_latent,
)


def _circular_blur(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """(H, W) correlated with a (K, K) kernel, wrapping around (the physics operator)."""
    return correlate(x[None, None], kernel[None], padding="circular")[0, 0]


def _blocks(size: int, seed: int = 0) -> torch.Tensor:
    """A piecewise-constant image: random values on 8 x 8 blocks (float64)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(size // 8, size // 8, generator=g, dtype=torch.float64)
    return coarse.repeat_interleave(8, 0).repeat_interleave(8, 1)


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_periodic_pad_keeps_the_image_and_wraps_without_a_jump():
    y = torch.rand(3, 20, 30, dtype=torch.float64)
    p = periodic_pad(y, 5)
    assert p.shape == (3, 30, 40)
    torch.testing.assert_close(p[:, 5:-5, 5:-5], y)
    # every step of the padded image, across the wrap too, is at most the largest step of
    # y itself: the strips interpolate linearly between opposite edges
    steps = max(float((torch.roll(p, -1, d) - p).abs().max()) for d in (-1, -2))
    inner = max(float(y.diff(dim=d).abs().max()) for d in (-1, -2))
    assert steps <= inner + 1e-12


def test_kernel_from_gradients_recovers_the_kernel_given_the_sharp_image():
    x = _blocks(64) + 0.1 * torch.rand(64, 64, dtype=torch.float64)
    k = line_kernel(9, 0.7, 6).double()
    y = _circular_blur(x, k)
    c = kernel_from_gradients(x, y, 9, gamma=1e-9)
    # a convolution kernel is the correlation kernel turned by 180°; on its window the
    # gradients pin every tap (over the whole image they would not see the mean)
    torch.testing.assert_close(c.flip(-1, -2), k, atol=1e-7, rtol=0)


def test_kernel_from_gradients_is_least_squares_on_the_window():
    """Against the regularised least squares built tap by tap: column ``p`` of the system
    is each gradient image shifted by ``p`` (``(c * x)(i) = sum_p c(p) x(i - p)``)."""
    g = torch.Generator().manual_seed(3)
    x = torch.rand(20, 24, generator=g, dtype=torch.float64)
    y = torch.rand(20, 24, generator=g, dtype=torch.float64)
    size, gamma = 5, 0.3
    grads = [(torch.roll(a, -1, -1) - a, torch.roll(a, -1, -2) - a) for a in (x, y)]
    offsets = [(i - 2, j - 2) for i in range(size) for j in range(size)]
    columns = torch.stack([torch.cat([torch.roll(gx, p, (0, 1)).flatten() for gx in grads[0]])
                           for p in offsets], 1)
    target = torch.cat([gy.flatten() for gy in grads[1]])
    normal = columns.T @ columns + gamma * torch.eye(size * size, dtype=torch.float64)
    expected = torch.linalg.solve(normal, columns.T @ target).reshape(size, size)
    torch.testing.assert_close(kernel_from_gradients(x, y, size, gamma), expected,
                               atol=1e-10, rtol=0)


def test_sharp_latent_undoes_a_known_blur_of_a_piecewise_constant_image():
    x = _blocks(96)
    k = line_kernel(11, 0.3, 9).double()
    y = _circular_blur(x, k)
    latent = sharp_latent(y, k.flip(-1, -2), lam=1e-4)
    assert _relative(latent, x) < 0.2 * _relative(y, x)


def test_prune_kernel_drops_negatives_faint_taps_and_stray_pieces():
    k = torch.zeros(9, 9, dtype=torch.float64)
    k[4, 2:7] = 1.0  # the blur: a 5 px line
    k[0, 0] = 0.3  # a stray piece, 0.3 / 5 = 6% of the line's mass
    k[8, 8] = -0.5  # negative
    k[4, 8] = 0.02  # below 5% of the peak
    out = prune_kernel(k)
    expected = torch.zeros(9, 9, dtype=torch.float64)
    expected[4, 2:7] = 0.2
    torch.testing.assert_close(out, expected)
    # a second piece of real weight stays (here 60% of the line's mass)
    k[0, 0:3] = 1.0
    out = prune_kernel(k)
    assert float(out[0, 0:3].sum()) == pytest.approx(3 / 8)


def test_centre_kernel_puts_the_centroid_on_the_centre_tap():
    k = torch.zeros(9, 9, dtype=torch.float64)
    k[1, 6] = 1.0  # a delta 3 up and 2 right of the centre
    expected = torch.zeros(9, 9, dtype=torch.float64)
    expected[4, 4] = 1.0
    torch.testing.assert_close(centre_kernel(k), expected)
    k = torch.zeros(9, 9, dtype=torch.float64)
    k[2, 2], k[2, 3] = 0.5, 0.5  # centroid at (2, 2.5): a half-pixel off in x
    out = centre_kernel(k)
    r = torch.arange(9, dtype=torch.float64)
    assert float((out.sum(0) * r).sum()) == pytest.approx(4.0)
    assert float((out.sum(1) * r).sum()) == pytest.approx(4.0)
    assert float(out.sum()) == pytest.approx(1.0)


def _blurred_astronaut(kernel: torch.Tensor, size: int = 160) -> torch.Tensor:
    """(1, 3, size, size) linear astronaut, correlated with ``kernel`` (mirror padding)."""
    x = to_linear(astronaut(size))
    return blur(x, *uniform_field(kernel[None], size, size), padding="same")


def _blob(size: int = 21, sigma: float = 2.5) -> torch.Tensor:
    """A round Gaussian kernel: what a network unsure of the direction draws."""
    r = torch.arange(size, dtype=torch.float32) - size // 2
    g = torch.exp(-(r[:, None] ** 2 + r[None] ** 2) / (2 * sigma**2))
    return g / g.sum()


def test_refine_kernel_turns_a_round_blob_into_the_true_line():
    true = line_kernel(21, 2.4, 15)  # a 15 px line at 137°
    blob = _blob()
    y = _blurred_astronaut(true, 256)
    refined = refine_kernel(y[0], blob)
    assert refined.shape == (21, 21) and float(refined.min()) >= 0
    assert float(refined.sum()) == pytest.approx(1.0, abs=1e-5)
    assert _relative(refined, true) < 0.65 * _relative(blob, true)
    # second moments: the line's length and direction, and thin (the blob's are 6.25, 6.25)
    values, vectors = axes(refined.double().numpy())
    true_values, _ = axes(true.double().numpy())
    assert values[1] == pytest.approx(true_values[1], rel=0.2)
    assert values[0] < 2.5
    direction = np.array([np.sin(2.4), np.cos(2.4)])  # (y, x)
    assert abs(float(vectors[:, 1] @ direction)) > 0.98


def test_refine_field_takes_the_refined_kernel_only_where_it_explains_the_photo():
    size = 192
    y = _blurred_astronaut(line_kernel(21, 0.4, 15), size)
    kernels, mixing = uniform_field(_blob()[None], size, size)
    k, m, note = refine_field(y, kernels, mixing, window=size, probe=4)
    assert note.startswith("refined kernel") and "after 4 iterations" in note
    assert k.shape == (1, 1, 21, 21) and torch.equal(m, torch.ones(1, 1, size, size))
    # two motions, left and right half: the true two-layer field explains the photo and a
    # single kernel cannot, so the field is kept as given
    x = to_linear(astronaut(size))
    kernels = torch.stack([line_kernel(21, 0.0, 15), line_kernel(21, np.pi / 2, 15)])[None]
    left = (torch.arange(size) < size // 2).float().expand(size, size)
    mixing = torch.stack([left, 1 - left])[None]
    y = blur(x, kernels, mixing, padding="same")
    k, m, note = refine_field(y, kernels, mixing, window=size)
    assert note.startswith("network's field kept")
    assert k is kernels and m is mixing


def test_refine_field_keeps_the_field_of_a_sharp_photo():
    """On a sharp photo the alternation ends near a delta, which explains the photo best;
    below MIN_BLUR px it is not used. (A crop at full resolution: ``astronaut(size)`` is
    resized with an anti-aliasing filter, itself a blur of about 3 px.)"""
    size = 192
    crop = skimage.data.astronaut()[40:40 + size, 160:160 + size]
    x = to_linear(torch.from_numpy(crop / 255.0).float().permute(2, 0, 1)[None])
    kernels, mixing = uniform_field(_blob()[None], size, size)
    k, m, note = refine_field(x, kernels, mixing, window=size)
    assert "looks nearly sharp" in note and k is kernels and m is mixing


def test_edge_mass_is_the_share_on_the_windows_border():
    row = torch.zeros(21, 21)
    row[10] = 1.0  # a 21 px line across the whole window: its two end taps on the border
    assert edge_mass(row) == pytest.approx(2 / 21)
    row[10, :3] = row[10, -3:] = 0.0  # 15 px: inside
    assert edge_mass(row) == 0.0
    assert edge_mass(torch.ones(9, 9)) == pytest.approx(32 / 81)


def test_refine_field_does_not_use_a_kernel_spread_to_its_windows_border(monkeypatch):
    """A refined kernel with more than ``edge`` of its mass on its window's border is not
    used, whatever the probes would say (module doc, the border test)."""
    from blurfield.restore import refine

    size = 192
    spread = torch.zeros(21, 21)
    spread[10] = 1 / 21  # a 21 px line: the blur fills the window
    y = _blurred_astronaut(spread, size)
    monkeypatch.setattr(refine, "refine_kernel", lambda image, kernel, iterations: spread)
    kernels, mixing = uniform_field(_blob()[None], size, size)
    k, m, note = refine_field(y, kernels, mixing, window=size, probe=4)
    assert k is kernels and m is mixing
    assert "10% of its mass on the border of its 21x21 window" in note
    k, m, note = refine_field(y, kernels, mixing, window=size, probe=4, edge=0.1)
    assert note.startswith("refined kernel")  # below the threshold: the probes decide (the
    # spread kernel is the true one here)


def test_a_blur_longer_than_the_window_is_cut_off_and_fits_at_half_size():
    """A 33 px line refined in a 21 x 21 window runs into its border and is turned away, the
    note pointing to a larger ``--scale`` (README, "Long blur"); the same photo at half size
    (a 16.5 px line, ``downscale_image``) is refined to that line (direction and length)."""
    from blurfield.restore.scale import downscale_image

    size = 256
    true = line_kernel(41, 0.5, 33)
    y = _blurred_astronaut(true, size)
    kernels, mixing = uniform_field(_blob()[None], size, size)
    k, m, note = refine_field(y, kernels, mixing, window=size, probe=4)
    assert k is kernels and "on the border of its 21x21 window" in note
    assert "longer than about 15 px here fits at a larger --scale" in note
    half = downscale_image(y, 2)
    kernels, mixing = uniform_field(_blob()[None], size // 2, size // 2)
    k, m, note = refine_field(half, kernels, mixing, window=size // 2, probe=4)
    assert note.startswith("refined kernel")
    values, vectors = axes(k[0, 0].double().numpy())
    length = np.sqrt(12 * values[1] + 1)  # a uniform segment of n taps: (n² - 1) / 12
    assert 16.5 * 0.8 < length < 16.5 * 1.2 and values[0] < 2.5
    assert abs(float(vectors[:, 1] @ np.array([np.sin(0.5), np.cos(0.5)]))) > 0.98


def test_axis_ratio_is_the_square_root_of_the_moments_eigenvalue_ratio():
    """Closed forms: a straight line has no width (0), a round Gaussian is round (1), an
    a x b box of uniform taps has variances (a² - 1) / 12 and (b² - 1) / 12 along its sides,
    whichever way it is turned by 90°."""
    line = torch.zeros(21, 21)
    line[10, 3:18] = 1 / 15
    assert axis_ratio(line) == pytest.approx(0.0, abs=1e-6)
    assert axis_ratio(line.T) == pytest.approx(0.0, abs=1e-6)
    assert axis_ratio(_blob()) == pytest.approx(1.0, abs=1e-6)
    box = torch.zeros(21, 21)
    box[8:13, 3:18] = 1 / 75  # 5 rows x 15 columns
    assert axis_ratio(box) == pytest.approx(np.sqrt(24 / 224), rel=1e-6)
    assert axis_ratio(box.T) == pytest.approx(np.sqrt(24 / 224), rel=1e-6)


def test_long_blur_takes_only_a_long_elongated_kernel_the_refinement_chose():
    """The field estimated again ``factor`` times smaller after a cut-off refined kernel is
    taken only when its refinement chose a kernel there that the first window (K = 33)
    could not hold, ``(K - 1) / factor`` = 16 px at factor 2 (a line of n taps is
    ``sqrt(n² - 1)`` px long), and elongated (axis ratio at most 0.35)."""
    chosen = "refined kernel (10% vs 20% of the reblur error left after 10 iterations)"
    long = line_kernel(33, 0.5, 25)[None, None]
    assert long_blur(long, chosen, 2) is None
    assert "kept the network's field" in long_blur(long, "network's field kept (x)", 2)
    assert "short enough" in long_blur(line_kernel(33, 0.5, 11)[None, None], chosen, 2)
    assert "25 px long there" in long_blur(long, chosen, 1.2)  # the first window: 26.7 px
    assert long_blur(long, chosen, 1.5) is None  # 21.3 px
    round_ = _blob(33, 8.0)[None, None]  # σ 8 cut at ±2σ: about 25 px long, and round
    assert "round there (axis ratio 1.00" in long_blur(round_, chosen, 2)
    wide = torch.zeros(1, 1, 33, 33)
    wide[0, 0, 13:20, 4:29] = 1 / 175  # 7 x 25 px: ratio sqrt(48 / 624) = 0.28
    assert long_blur(wide, chosen, 2) is None
    wide[0, 0, 12:21, 4:29] = 1 / 225  # 9 x 25 px: sqrt(80 / 624) = 0.358
    assert "axis ratio 0.36 > 0.35" in long_blur(wide, chosen, 2)


def test_estimate_tries_a_cut_off_blur_again_at_a_larger_scale(monkeypatch):
    """``api.estimate`` at ``scale="auto"``: a refined kernel cut off by its window sends
    the photo back to the estimator ``long_blur_scale`` times smaller; that field is taken
    (with its scale) when :func:`long_blur` accepts it, else the first is kept and the note
    says why; 1: never; nor at a scale given as a number, nor for a photo that small."""
    from blurfield import api

    calls = []
    cut = f"network's field kept (... window: {CUT_OFF}; ...)"

    def fake(model, image, tile, elements, **kw):
        calls.append(tuple(image.shape[-2:]))
        b = 25 if len(calls) == 1 else 1
        kernels = (line_kernel(33, 0.5, 25) if b == 1 else _blob(33, 2.0))[None, None]
        note = cut if len(calls) == 1 else answer
        return kernels.expand(1, b, 33, 33), torch.full((1, b, *image.shape[-2:]), 1 / b), note

    monkeypatch.setattr(api, "estimate_field", fake)
    photo = np.full((256, 200, 3), 0.5, np.float32)
    answer = "refined kernel (10% vs 20% of the reblur error left after 10 iterations)"
    f = api.estimate(photo, torch.nn.Linear(1, 1), "auto")
    assert calls == [(256, 200), (128, 100)] and f.scale == 2 and f.kernels.shape[0] == 1
    assert f.mixing.shape == (1, 128, 100) and f.image_size == (256, 200)
    assert f.refinement.startswith(answer + " at scale 2 (at scale 1 the refined kernel ran")
    calls.clear()
    answer = "network's field kept (refined kernel: 30% vs 20% ...)"
    f = api.estimate(photo, torch.nn.Linear(1, 1), "auto", max_megapixels=0.03)  # at 1.31
    assert calls == [(196, 153), (98, 77)] and f.kernels.shape[0] == 25
    assert f.scale == pytest.approx(np.sqrt(256 * 200 / 0.03e6))
    assert f.refinement == (f"{cut}; estimated again at scale 2.61, not taken: the "
                            "refinement kept the network's field there")
    calls.clear()
    f = api.estimate(photo, torch.nn.Linear(1, 1), "auto", long_blur_scale=1)
    assert calls == [(256, 200)] and f.refinement == cut
    f = api.estimate(photo, torch.nn.Linear(1, 1), 1)  # a scale given: used as given
    f = api.estimate(photo[:120], torch.nn.Linear(1, 1), "auto")  # 60 px at half size
    assert calls == [(256, 200)] * 2 + [(120, 200)] and f.scale == 1
    with pytest.raises(ValueError, match="long_blur_scale: 0.5 is not a factor >= 1"):
        api.estimate(photo, torch.nn.Linear(1, 1), "auto", long_blur_scale=0.5)


def test_refine_kernel_of_a_flat_photo_is_the_start():
    start = _blob(9, 1.5)
    torch.testing.assert_close(refine_kernel(torch.full((3, 64, 64), 0.5), start), start)


def test_check_refine_names_the_key():
    check_refine(0, 64)
    with pytest.raises(ValueError, match="refine_iterations"):
        check_refine(-1, 384)
    with pytest.raises(ValueError, match="refine_window"):
        check_refine(10, 32)
    check_refine(10, 384, 1, 0)  # 0: the probes run on the whole photo
    with pytest.raises(ValueError, match="no_harm_probe"):
        check_refine(10, 384, 0, 256)
    with pytest.raises(ValueError, match="no_harm_window"):
        check_refine(10, 384, 10, -1)
    check_refine(10, 384, 10, 256, 1)  # 1: never estimated again
    with pytest.raises(ValueError, match="long_blur_scale: 0.9 is not a factor >= 1"):
        check_refine(10, 384, 10, 256, 0.9)


def test_the_refinements_probes_take_the_restore_sections_rl_options(monkeypatch):
    """``blurfield estimate`` / ``deblur`` pass the ``restore`` section's RL options to the
    probes with which the refinement compares the two fields (as the no-harm rule runs its
    own); :func:`blurfield.api.estimate` without them uses RL's defaults."""
    from blurfield import api
    from blurfield.commands import estimate_options
    from blurfield.config import RLOptions, load_config
    from blurfield.models.estimator import KernelEstimator
    from blurfield.restore import refine
    from blurfield.restore.noharm import PROBE_OPTIONS

    rc = load_config(overrides=["restore.saturation=false", "restore.tv_weight=0.01",
                                "restore.iterations=3"]).restore
    options = estimate_options(rc)
    assert set(PROBE_OPTIONS) <= set(options["rl"])
    assert options["rl"]["saturation"] is False and options["rl"]["tv_weight"] == 0.01
    protocol = {"saturation": True, "iterations": 3}  # evaluate's own settings
    assert estimate_options(rc, protocol)["rl"] == protocol

    seen = []
    monkeypatch.setattr(refine, "refine_field", lambda image, k, m, **kw: seen.append(kw["rl"])
                        or (k, m, "spy"))
    model = KernelEstimator(n_basis=4, kernel_size=33, base_width=4).eval()
    photo = np.full((64, 64, 3), 0.5, dtype=np.float32)
    api.estimate(photo, model, **options)
    api.estimate(photo, model)
    assert seen[0]["saturation"] is False and seen[0]["tv_weight"] == 0.01
    defaults = RLOptions()
    assert {k: seen[1][k] for k in PROBE_OPTIONS} == {k: getattr(defaults, k)
                                                    for k in PROBE_OPTIONS}


def test_refine_field_gives_its_probes_only_the_probe_options(monkeypatch):
    """RL options outside :data:`PROBE_OPTIONS` (the restoration's iterations, padding, ...)
    do not reach the probes, which set their own; the two probes get the same options."""
    from blurfield.restore import refine

    size = 128
    y = _blurred_astronaut(line_kernel(21, 0.4, 15), size)
    monkeypatch.setattr(refine, "refine_kernel", lambda image, kernel, iterations:
                        line_kernel(21, 0.4, 15))
    got = []
    monkeypatch.setattr(refine, "unexplained", lambda v, k, m, probe, opts: got.append(opts)
                        or 0.5)
    kernels, mixing = uniform_field(_blob()[None], size, size)
    refine_field(y, kernels, mixing, window=size, probe=4,
                 rl={"saturation": False, "tv_weight": 0.01, "iterations": 3,
                     "padding": "circular", "early_stop": True})
    assert got == [{"saturation": False, "tv_weight": 0.01}] * 2
    refine_field(y, kernels, mixing, window=size, probe=4)
    assert got[2:] == [{}, {}]  # None: RL's defaults
