"""The synthesiser against an independent computation (numpy + scipy.ndimage.correlate with
mode="mirror", which is torch's "reflect"), orientation, saturation, the sample schema."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from scipy import ndimage

from blurfield.config import ShardsCfg
from blurfield.data.schema import META_KEYS, decode_sample, encode_sample
from blurfield.physics import blur, smooth_masks, to_display
from data_prep.scenes import Scene
from data_prep.synth import Noise, layer_windows, make_sample, quantize, synthesize

try:
    from data_prep.kernels.render import correlation_to_psf
except ImportError:  # pragma: no cover - helper-1's module not there

    def correlation_to_psf(k):
        return np.ascontiguousarray(k[..., ::-1, ::-1])


G = 2.2


def rand_kernel(rng, k: int) -> np.ndarray:
    a = rng.random((k, k)) ** 4
    return (a / a.sum()).astype(np.float32)


def ref_linear(sharp: np.ndarray, s: float) -> np.ndarray:
    return (sharp.astype(np.float64) / 255.0) ** G * s  # (H, W, 3)


def corr(img2d: np.ndarray, k: np.ndarray) -> np.ndarray:
    return ndimage.correlate(img2d, k.astype(np.float64), mode="mirror")


def ref_display(v: np.ndarray) -> np.ndarray:
    return np.round(np.clip(v, 0, 1) ** (1 / G) * 255.0)


def ref_synth(sharp, layers, kernels, s, normalize):
    """Algorithm 1 computed directly: M_j = k_j ⋆ h_j (/ sum), v = sum_j M_j (k_j ⋆ u)."""
    u = ref_linear(sharp, s)
    hard = [(layers == j).astype(np.float64) for j in range(len(kernels))]
    m = np.stack([corr(h, k) for h, k in zip(hard, kernels)])
    if normalize:
        m = m / m.sum(0, keepdims=True)
    v = sum(m[j][..., None] * np.stack([corr(u[..., c], kernels[j]) for c in range(3)], -1)
            for j in range(len(kernels)))
    return v


def test_one_layer_is_a_uniform_blur():
    rng = np.random.default_rng(0)
    sharp = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    k = rand_kernel(rng, 9)
    out = synthesize(sharp, np.zeros((40, 48), np.uint8), k[None], 0.8, G, True)
    u = ref_linear(sharp, 0.8)
    ref = ref_display(np.stack([corr(u[..., c], k) for c in range(3)], -1))
    assert out.dtype == np.uint8 and out.shape == sharp.shape
    d = np.abs(out.astype(float) - ref)
    assert d.max() <= 1 and d.mean() < 0.01  # only float32 rounding ties differ


@pytest.mark.parametrize("normalize", [True, False])
def test_two_layers_composed_by_hand(normalize):
    rng = np.random.default_rng(1)
    sharp = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
    layers = np.zeros((48, 48), np.uint8)
    layers[10:30, 12:40] = 1
    kernels = np.stack([rand_kernel(rng, 7), rand_kernel(rng, 7)])
    out = synthesize(sharp, layers, kernels, 1.1, G, normalize)
    v = ref_synth(sharp, layers, kernels, 1.1, normalize)
    d = np.abs(out.astype(float) - ref_display(v))
    assert d.max() <= 1 and d.mean() < 0.01
    if not normalize:  # Algorithm 1 literally differs near the boundary from the normalised one
        other = ref_display(ref_synth(sharp, layers, kernels, 1.1, True))
        assert np.abs(out.astype(float) - other).max() > 3


def test_orientation_follows_the_psf_picture():
    k = np.zeros((9, 9), np.float32)
    k[4 + 3, 4 - 2] = 1.0  # correlation kernel: v(i) = u(i + (3, -2))
    psf = correlation_to_psf(k)
    (py, px) = np.argwhere(psf > 0)[0]
    sharp = np.zeros((32, 32, 3), np.uint8)
    sharp[15, 16] = 255
    out = synthesize(sharp, np.zeros((32, 32), np.uint8), k[None], 1.0, G, True)
    (y, x) = np.argwhere(out[..., 0] > 0)[0]
    # a point moves by the PSF's offset from the centre: where the PSF picture shows it
    assert (y - 15, x - 16) == (py - 4, px - 4) == (-3, 2)
    assert out[y, x, 0] == 255 and (out > 0).sum() == 3


def test_brightness_above_one_clips_highlights():
    rng = np.random.default_rng(2)
    sharp = np.full((40, 40, 3), 60, np.uint8)
    sharp[10:30, 10:30] = 250  # (250/255)^2.2 * 1.5 = 1.44 > 1 in linear light
    k = rand_kernel(rng, 5)
    out = synthesize(sharp, np.zeros((40, 40), np.uint8), k[None], 1.5, G, True)
    u = ref_linear(sharp, 1.5)
    v = np.stack([corr(u[..., c], k) for c in range(3)], -1)
    assert (out[v > 1.0 + 1e-6] == 255).all()
    assert (out[v < 0.99] < 255).all()
    assert (out[15:25, 15:25] == 255).all()
    # the same scene at s = 1 does not saturate
    out1 = synthesize(sharp, np.zeros((40, 40), np.uint8), k[None], 1.0, G, True)
    assert out1.max() < 255


def test_noise_is_seeded_and_off_by_default():
    rng = np.random.default_rng(3)
    sharp = np.full((32, 32, 3), 128, np.uint8)
    layers = np.zeros((32, 32), np.uint8)
    k = rand_kernel(rng, 5)[None]
    clean = synthesize(sharp, layers, k, 1.0, G, True)
    n = Noise(poisson=0.002, gauss=0.01)
    a = synthesize(sharp, layers, k, 1.0, G, True, n, np.random.default_rng(7))
    b = synthesize(sharp, layers, k, 1.0, G, True, n, np.random.default_rng(7))
    c = synthesize(sharp, layers, k, 1.0, G, True, n, np.random.default_rng(8))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    lin = (a / 255.0) ** G
    mu = (128 / 255) ** G
    assert abs(lin.mean() - mu) < 0.005
    assert 0.5 < lin.std() / np.sqrt(0.002 * mu + 0.01**2) < 1.5  # Poisson-Gaussian spread
    assert np.all(clean == clean[0, 0])


def test_bad_inputs_raise():
    sharp = np.zeros((16, 16, 3), np.uint8)
    k = np.full((1, 3, 3), 1 / 9, np.float32)
    with pytest.raises(ValueError, match="instances"):
        synthesize(sharp, np.ones((16, 16), np.uint8), k, 1.0)
    with pytest.raises(ValueError, match="sum to 1"):
        synthesize(sharp, np.zeros((16, 16), np.uint8), k * 2, 1.0)


class FixedKernels:
    def __init__(self, kernels):
        self.kernels, self.pool = kernels, len(kernels)

    def get(self, ids):
        return self.kernels[ids]


def test_make_sample_meta_and_schema_round_trip():
    rng = np.random.default_rng(4)
    bank = np.stack([rand_kernel(rng, 9) for _ in range(6)])
    img = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    lay = np.zeros((40, 40), np.uint8)
    lay[5:25, 5:25], lay[25:35, 20:38] = 1, 2
    sc = OmegaConf.structured(ShardsCfg)
    sample = make_sample("00000042", Scene("x/1", img, lay), FixedKernels(bank), sc, 123, "t")
    m = sample.meta
    assert tuple(m) == META_KEYS
    assert m["seed"] == 123 and m["image_id"] == "x/1" and m["source"] == "t"
    assert len(m["kernel_ids"]) == 3 and len(set(m["kernel_ids"])) == 3
    assert np.array_equal(sample.kernels, bank[m["kernel_ids"]])
    assert 0.5 <= m["brightness"] <= 1.5 and m["noise"] is None
    again = make_sample("00000042", Scene("x/1", img, lay), FixedKernels(bank), sc, 123, "t")
    assert again.meta == m and np.array_equal(again.blurry, sample.blurry)
    ref = ref_display(ref_synth(img, lay, sample.kernels, m["brightness"], True))
    assert np.abs(sample.blurry.astype(float) - ref).max() <= 1
    # encode -> tar -> read back with webdataset -> decode
    enc = encode_sample(sample)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name in sorted(k for k in enc if k != "__key__"):
            info = tarfile.TarInfo(f"{enc['__key__']}.{name}")
            info.size = len(enc[name])
            tf.addfile(info, io.BytesIO(enc[name]))
    buf.seek(0)
    from webdataset.tariterators import group_by_keys, tar_file_expander

    (raw,) = list(group_by_keys(tar_file_expander([{"stream": buf, "url": "mem"}])))
    back = decode_sample(raw)
    assert back.key == "00000042" and back.meta == m
    for a in ("blurry", "sharp", "kernels", "layers"):
        assert np.array_equal(getattr(back, a), getattr(sample, a))


# --------------------------------------------------------------------------- per-layer windows


def border_scene(rng, h=40, w=44):
    """Layer 1 in the top-left corner, layer 2 on the right and bottom borders, layer 3 empty."""
    layers = np.zeros((h, w), np.uint8)
    layers[:9, :7] = 1
    layers[20:, 30:] = 2
    layers[25:31, 10:14] = 2
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8), layers


@pytest.mark.parametrize("normalize", [True, False])
def test_layers_on_the_borders_and_an_empty_layer(normalize):
    rng = np.random.default_rng(5)
    sharp, layers = border_scene(rng)
    kernels = np.stack([rand_kernel(rng, 9) for _ in range(4)])  # layer 3 has no pixel
    out = synthesize(sharp, layers, kernels, 1.2, G, normalize)
    d = np.abs(out.astype(float) - ref_display(ref_synth(sharp, layers, kernels, 1.2, normalize)))
    assert d.max() <= 1 and d.mean() < 0.01


def test_even_kernels_match_the_full_frame_physics():
    """Even K (not mirrored symmetrically): against smooth_masks + blur on the whole frame."""
    rng = np.random.default_rng(6)
    sharp, layers = border_scene(rng)
    kernels = np.stack([rand_kernel(rng, 6) for _ in range(3)])
    out = synthesize(sharp, layers, kernels, 0.9, G, True)
    u = torch.from_numpy(ref_linear(sharp, 0.9)).permute(2, 0, 1)[None]
    k = torch.from_numpy(kernels.astype(np.float64))[None]
    hard = torch.from_numpy(np.stack([layers == j for j in range(3)]).astype(np.float64))[None]
    m = smooth_masks(hard, k, padding="same", normalize=True)
    v = blur(u, k, m, padding="same", method="direct", check=False)[0].permute(1, 2, 0).numpy()
    d = np.abs(out.astype(float) - ref_display(v))
    assert d.max() <= 1 and d.mean() < 0.01


@pytest.mark.parametrize("k", [5, 6, 9])
def test_layer_windows_hold_every_non_zero_smoothed_pixel(k):
    _, layers = border_scene(np.random.default_rng(7))
    j = 4
    wins = layer_windows(layers, j, k)
    assert wins[3] is None  # the empty layer
    hard = torch.from_numpy(np.stack([layers == i for i in range(j)]).astype(np.float64))[None]
    kern = torch.ones(1, j, k, k, dtype=torch.float64) / k**2  # full support: widest reach
    soft = smooth_masks(hard, kern, padding="same", normalize=False)[0].numpy()
    for i in range(3):
        t, b, left, right = wins[i]
        outside = soft[i].copy()
        outside[t:b, left:right] = 0
        assert np.abs(outside).max() < 1e-12
        assert (soft[i][t:b, left:right] > 1e-12).any()
    # tight: the box of layer 1 (rows 0-8, cols 0-6) grown by K // 2
    assert wins[1] == (0, 9 + k // 2, 0, 7 + k // 2)


@pytest.mark.parametrize("gamma", [1.0, 2.2, 2.4, 0.8])
def test_quantize_is_rounded_to_display(gamma):
    v = torch.cat([torch.linspace(-0.1, 1.2, 200_001), torch.logspace(-12, -4, 2001),
                   torch.tensor([0.0, 1e-6, 1.0])])
    ref = torch.round(to_display(v.clamp(0, 1), gamma) * 255).to(torch.uint8)
    assert torch.equal(quantize(v, gamma), ref)
    assert torch.equal(quantize(v, gamma), quantize(v.clone(), gamma))  # input left alone
