"""The camera-shake kernel bank (data_prep/kernels): generators, orientation, bank files, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers.moments import covariance
from PIL import Image
from scipy.signal import correlate

from blurfield.config import load_config
from data_prep.__main__ import main as data_prep_main
from data_prep.kernels import (
    KernelBank,
    boracchi,
    correlation_to_psf,
    generate,
    psf_to_correlation,
    render,
    tremor,
    write_bank,
)

K = 33
C = K // 2
F2000 = ["kernels.tremor.focal_min=2000", "kernels.tremor.focal_max=2000"]


def kcfg(*overrides: str):
    return load_config(None, list(overrides)).kernels


def centroid(k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mass-weighted (row, column) of each kernel (n, K, K), computed directly."""
    rows, cols = np.mgrid[: k.shape[-2], : k.shape[-1]]
    m = k.sum(axis=(1, 2))
    return (k * rows).sum(axis=(1, 2)) / m, (k * cols).sum(axis=(1, 2)) / m


def bbox(k: np.ndarray) -> np.ndarray:
    """max(width, height) of the pixels above 1% of the kernel's maximum, one at a time."""
    out = []
    for a in k:
        r, c = np.nonzero(a > 0.01 * a.max())
        out.append(max(r.max() - r.min() + 1, c.max() - c.min() + 1))
    return np.array(out)


def border_mass(k: np.ndarray) -> np.ndarray:
    ring = np.ones((K, K), bool)
    ring[1:-1, 1:-1] = False
    return k[:, ring].sum(axis=1)


@pytest.fixture(scope="module")
def tremor_1000():
    return generate(kcfg(*F2000), 0, np.arange(1000))


# ------------------------------------------------------------------ orientation


def test_psf_right_of_centre_is_correlation_left_of_centre():
    psf = np.zeros((K, K), np.float32)
    psf[C, C + 1:C + 6] = 0.2  # a PSF: the point's light moved right
    k = psf_to_correlation(psf)
    cols = np.nonzero(k.sum(axis=0))[0]
    assert cols.max() < C and np.allclose(correlation_to_psf(k), psf)
    # definition of a PSF: a point source blurred (correlation with k) images as the PSF
    u = np.zeros((65, 65))
    u[32, 32] = 1.0
    v = correlate(u, k.astype(np.float64), mode="same")
    np.testing.assert_allclose(v[32 - C:32 + C + 1, 32 - C:32 + C + 1], psf, atol=1e-7)


def test_generate_flips_the_generator_psfs_once():
    cfg = kcfg()
    k, _ = generate(cfg, 4, [3, 8])
    psf, _ = tremor.psfs(cfg, 4, np.array([3, 8]))
    np.testing.assert_array_equal(k, psf[:, ::-1, ::-1])


# ------------------------------------------------------------------ pieces


def test_bilinear_splat_of_one_sample_closed_form():
    p = render.Paths(np.array([0.3]), np.array([-0.2]), np.array([0, 1]))
    psf = render.splat(p, 5)[0]  # centre pixel (2, 2); sample at column 2.3, row 1.8
    want = np.zeros((5, 5))
    want[1, 2], want[1, 3] = 0.7 * 0.2, 0.3 * 0.2
    want[2, 2], want[2, 3] = 0.7 * 0.8, 0.3 * 0.8
    np.testing.assert_allclose(psf, want, atol=1e-12)


def test_catmull_rom_resampling_matches_a_smooth_signal():
    rate, n = 128.0, 1024
    t = np.arange(n) / rate
    f = 2.0 * np.pi * np.array([[1.5], [11.0]])  # slow drift, tremor-band sinusoid
    x, y = np.sin(f * t), np.cos(f * t)
    t0, T = np.array([0.31, 7.7]), np.array([0.5, 0.9])  # the second wraps the window
    p = tremor.sample_path(x, y, t0, T, np.array([40, 77]), rate)
    for i in range(2):
        s = (np.arange(p.counts[i]) + 0.5) / p.counts[i]
        tt = t0[i] + s * T[i]
        xi = p.x[p.start[i]:p.start[i + 1]]
        np.testing.assert_allclose(xi, np.sin(f[i, 0] * tt), atol=3e-3)


def test_tremor_spectra_have_the_drawn_rms_and_peak():
    tc = kcfg().tremor
    m, nb = 64, int(tc.window * tc.rate) // 2 - 1
    u = np.random.default_rng(0).random((m, tremor.N_PARAMS + 4 * nb))
    rad = np.pi / 180
    # drift alone: set the tremor negligible, then velocity RMS (finite differences, major
    # axis = yaw) is the drawn value
    tc0 = kcfg("kernels.tremor.tremor_rms_min=1e-9", "kernels.tremor.tremor_rms_max=1e-9").tremor
    yaw, pitch, p = tremor.synthesise_angles(tc0, u)
    def velocity(a):  # spectral derivative of the periodic track, rad/s
        f = np.fft.rfftfreq(a.shape[1], 1 / tc.rate)
        return np.fft.irfft(np.fft.rfft(a, axis=1) * 2j * np.pi * f, n=a.shape[1], axis=1)

    vel, vp = velocity(yaw), velocity(pitch)
    np.testing.assert_allclose(np.sqrt((vel**2).mean(1)), p["drift_vrms"] * rad, rtol=1e-3)
    np.testing.assert_allclose(np.sqrt((vp**2).mean(1)) / np.sqrt((vel**2).mean(1)),
                               p["drift_aniso"], rtol=1e-3)
    # and the drift's velocity spectrum is a resonance near f_c: most power below 3 f_c
    sv = np.abs(np.fft.rfft(vel, axis=1)) ** 2
    f = np.fft.rfftfreq(yaw.shape[1], 1 / tc.rate)
    low = (sv * (f < 3 * p["drift_fc"][:, None])).sum(1) / sv.sum(1)
    assert np.median(low) > 0.5
    # tremor alone: angle RMS is the drawn value (Parseval) and the spectrum peaks at f_t
    tc1 = kcfg("kernels.tremor.drift_vrms_min=1e-9", "kernels.tremor.drift_vrms_max=1e-9").tremor
    yaw, _, p = tremor.synthesise_angles(tc1, u)
    np.testing.assert_allclose(np.sqrt((yaw**2).mean(1)), p["tremor_rms"] * rad, rtol=1e-6)
    spec = np.abs(np.fft.rfft(yaw, axis=1)) ** 2
    smooth = np.apply_along_axis(lambda s: np.convolve(s, np.ones(9) / 9, "same"), 1, spec)
    peak = np.argmax(smooth, axis=1) / tc.window
    assert np.median(np.abs(peak - p["tremor_f"])) < 0.5


# ------------------------------------------------------------------ tremor bank


def test_tremor_kernels_are_valid_and_centred(tremor_1000):
    k, p = tremor_1000
    assert k.dtype == np.float32 and k.shape == (1000, K, K)
    assert k.min() >= 0
    np.testing.assert_allclose(k.sum(axis=(1, 2)), 1.0, atol=1e-5)
    assert border_mass(k).max() == 0.0  # margin 1: nothing on (let alone clamped onto) the edge
    r, c = centroid(k.astype(np.float64))
    assert np.abs(r - C).max() < 0.05 and np.abs(c - C).max() < 0.05
    assert p["max_step"].max() <= 0.5  # >= 2 samples per px everywhere along the path
    np.testing.assert_array_equal(bbox(k), p["extent"])
    assert np.array_equal(p["index"], np.arange(1000))


def test_tremor_statistics_match_kernels_md(tremor_1000):
    """docs/kernels.md at f = 2,000 px: box p25/p50/p75 = 6/9/15, length 9.6/19/33, ~7% redrawn."""
    _, p = tremor_1000
    box = np.percentile(p["extent"], [25, 50, 75])
    length = np.percentile(p["path_length"], [25, 50, 75])
    assert 4 <= box[0] <= 8 and 6 <= box[1] <= 12 and 10 <= box[2] <= 19, box
    assert 6 <= length[0] <= 13 and 12 <= length[1] <= 25 and 22 <= length[2] <= 42, length
    redrawn = np.mean(p["attempts"] > 1)
    assert 0.02 <= redrawn <= 0.15, redrawn
    assert np.all(p["scale"] == 1.0)
    assert p["exposure"].min() >= 0.05 and p["exposure"].max() <= 1.0
    assert np.all(p["focal"] == 2000.0)
    # rejection biases against long exposures (why it is recorded)
    assert p["exposure"][p["attempts"] > 1].size > 0


def test_shrink_instead_of_redraw_is_recorded():
    cfg = kcfg(*F2000, "kernels.fit=shrink", "kernels.kernel_size=15")
    k, p = generate(cfg, 0, np.arange(200))
    shrunk = p["scale"] < 1
    assert shrunk.any() and np.all(p["attempts"] == 1)
    ring = np.ones((15, 15), bool)
    ring[1:-1, 1:-1] = False
    assert k[:, ring].sum() == 0.0
    np.testing.assert_allclose(k.sum(axis=(1, 2)), 1.0, atol=1e-5)
    # redraw, but give up after 2 draws: the rest are shrunk, and it says so
    k2, p2 = generate(kcfg(*F2000, "kernels.kernel_size=15", "kernels.max_tries=2"), 0,
                      np.arange(200))
    assert set(np.unique(p2["attempts"])) <= {1, 2}
    assert np.all(p2["scale"][p2["attempts"] == 1] == 1.0)
    assert np.any(p2["scale"] < 1)


@pytest.mark.parametrize("gen", ["tremor", "boracchi", "mix"])
def test_kernel_i_is_the_same_alone_or_in_any_batch(gen):
    cfg = kcfg(f"kernels.generator={gen}")
    idx = np.arange(40, 104)
    k, p = generate(cfg, 7, idx)
    for i in (0, 13, 63):
        k1, p1 = generate(cfg, 7, [idx[i]])
        np.testing.assert_array_equal(k1[0], k[i])
        assert p1.tobytes() == p[i:i + 1].tobytes()
    kr, _ = generate(cfg, 7, idx[::-1])
    np.testing.assert_array_equal(kr[::-1], k)
    other, _ = generate(cfg, 8, idx[:4])
    assert not np.array_equal(other, k[:4])


# ------------------------------------------------------------------ Boracchi & Foi


def test_boracchi_partial_exposures_sum_to_one_without_border_mass():
    base = ["kernels.generator=boracchi", "kernels.boracchi.length_min=60",
            "kernels.boracchi.length_max=60", "kernels.boracchi.anxiety_max=0.01"]
    for fit in ("reject", "shrink"):
        for e in ("0.1", "1.0"):
            cfg = kcfg(*base, f"kernels.fit={fit}", f"kernels.boracchi.exposure_min={e}",
                       f"kernels.boracchi.exposure_max={e}")
            k, p = generate(cfg, 1, np.arange(48))
            assert k.min() >= 0
            np.testing.assert_allclose(k.sum(axis=(1, 2)), 1.0, atol=1e-5)
            assert border_mass(k).max() == 0.0
            r, c = centroid(k.astype(np.float64))
            assert np.abs(r - C).max() < 0.05 and np.abs(c - C).max() < 0.05
            # rendered polyline of the exposed part: at most e x the full length
            assert np.all(p["path_length"] <= float(e) * p["length"] * 1.001 + 1e-9)
            if e == "1.0":  # 60 px paths often leave a 33 px kernel: redrawn or shrunk
                left = (p["attempts"] > 1) if fit == "reject" else (p["scale"] < 1)
                assert left.any()


# ------------------------------------------------------------------ bank on disk, CLI


def test_cli_writes_a_bank_that_reads_back_and_resumes(tmp_path):
    out = tmp_path / "bank"
    args = ["kernels", "-q", f"kernels.out_dir={out}", "kernels.count=300",
            "kernels.chunk_size=128", "kernels.batch_size=100", "kernels.seed=5"]
    assert data_prep_main(args) == 0
    bank = KernelBank(out)
    cfg = kcfg(f"kernels.out_dir={out}", "kernels.count=300", "kernels.chunk_size=128",
               "kernels.seed=5")
    k, p = generate(cfg, 5, np.arange(300))
    assert len(bank) == 300 and bank[7].shape == (K, K) and bank[7].dtype == np.float32
    np.testing.assert_array_equal(bank[:], k)
    np.testing.assert_array_equal(bank[-1], k[-1])
    assert bank.params.tobytes() == p.tobytes()
    meta = json.loads((out / "bank.json").read_text())
    assert meta["complete"] and meta["count"] == 300 and meta["orientation"] == "correlation"
    assert np.load(out / "kernels_00002.npy", mmap_mode="r").shape == (44, K, K)
    sheet = np.asarray(Image.open(out / "sheet.png"))
    assert sheet.shape == (2 + 8 * (4 * K + 2), 2 + 8 * (4 * K + 2))
    assert Image.open(out / "hist.png").size[0] > 0

    # resume: finished chunks are skipped, a missing one is made again, identically
    before = {f.name: f.stat().st_mtime_ns for f in out.glob("*_0000[01].npy")}
    (out / "kernels_00002.npy").unlink()
    (out / ".kernels_00002.npy.a1b2c3.tmp").write_bytes(b"a killed run's chunk")
    bank2, written = write_bank(cfg, progress=False)
    assert written == 1 and not list(out.glob(".*tmp"))
    assert before == {f.name: f.stat().st_mtime_ns for f in out.glob("*_0000[01].npy")}
    np.testing.assert_array_equal(KernelBank(out)[:], k)

    # another config in the same folder is refused with one line, exit 2
    assert data_prep_main([*args[:-1], "kernels.seed=6"]) == 2
    assert data_prep_main([*args, "kernels.nope=1"]) == 2
    assert data_prep_main([*args, "kernels.kernel_size=32"]) == 2


def test_config_files_load():
    t = load_config(["kernels/tremor"]).kernels
    b = load_config(["kernels/boracchi"]).kernels
    assert t.generator == "tremor" and t.tremor.tremor_f_min == 8.0
    assert b.generator == "boracchi" and b.boracchi.n_steps == 2000
    assert boracchi.STREAM != tremor.STREAM


def test_mix_draws_each_kernel_from_one_generator():
    lines = ("kernels.boracchi.anxiety_max=0", "kernels.boracchi.exposure_min=1",
             "kernels.boracchi.length_min=6", "kernels.boracchi.length_max=20")
    cfg = kcfg("kernels.generator=mix", "kernels.mix.boracchi_share=0.5", *lines)
    idx = np.arange(60)
    ks, rec = generate(cfg, 5, idx)
    comp = rec["component"]
    assert set(np.unique(comp)) == {0.0, 1.0} and 15 < comp.sum() < 45  # share 0.5 of 60
    for c, name, key, other in ((0, "tremor", "focal", "b_length"),
                                (1, "boracchi", "length", "t_focal")):
        alone, own = generate(kcfg(f"kernels.generator={name}", *lines), 5, idx[comp == c])
        # The mixture's kernel i is that generator's kernel i, with its parameters.
        np.testing.assert_array_equal(ks[comp == c], alone)
        prefix = "t_" if c == 0 else "b_"
        np.testing.assert_array_equal(rec[prefix + key][comp == c], own[key])
        assert np.isnan(rec[other][comp == c]).all()
    # anxiety 0, whole exposure: the Boracchi part is straight lines, strongly elongated.
    ev = np.array([np.linalg.eigvalsh(covariance(k)) for k in ks[comp == 1]])
    assert (ev[:, 0] < 0.1 * ev[:, 1]).all()
