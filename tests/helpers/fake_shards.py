"""Small synthetic shards for data tests, made directly with blurfield.physics.

Each scene follows docs/design.md §2 (Algorithm 1 with normalised masks, no noise): a random
textured sharp image, rectangles as object layers, one random kernel per layer, masks
smoothed by their own kernels ("same"), ``v = clip(sum_j M_j (k_j ⋆ u), 0, 1)`` in linear
light, gamma 2.2. :func:`make_sample` also returns the full-scene references the tests
compare crops against.
"""

from __future__ import annotations

import io
import tarfile
import zlib
from pathlib import Path

import numpy as np
import torch

from blurfield.data.schema import Sample, encode_sample, hard_masks, make_meta
from blurfield.physics import blur, smooth_masks, to_display, to_linear


def random_kernel(rng: np.random.Generator, k: int) -> np.ndarray:
    """A (k, k) float32 kernel on the simplex: a short random path with a blob."""
    ker = np.zeros((k, k), np.float64)
    y, x = k // 2, k // 2
    for _ in range(rng.integers(2, 3 * k)):
        ker[y, x] += rng.uniform(0.2, 1.0)
        y = int(np.clip(y + rng.integers(-1, 2), 1, k - 2))
        x = int(np.clip(x + rng.integers(-1, 2), 1, k - 2))
    return (ker / ker.sum()).astype(np.float32)


def make_sample(key: str, seed: int, size: int = 96, kernel_size: int = 9,
                n_objects: int = 2, has_field: bool = True, brightness: float = 1.2
                ) -> tuple[Sample, dict[str, np.ndarray]]:
    """A sample and its references: ``linear`` (3, H, W) sharp linear light, ``masks``
    (J, H, W) smoothed normalised masks of the whole scene, ``layers`` (H, W)."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0, 1, (size // 4, size // 4, 3))
    sharp = np.kron(base, np.ones((4, 4, 1))) * 0.6 + rng.uniform(0, 0.4, (size, size, 3))
    sharp = np.clip(np.round(sharp * 255), 0, 255).astype(np.uint8)
    layers = np.zeros((size, size), np.uint8)
    for j in range(1, n_objects + 1):
        h, w = rng.integers(size // 5, size // 2, 2)
        t, left = rng.integers(0, size - h), rng.integers(0, size - w)
        layers[t : t + h, left : left + w] = j
    kernels = np.stack([random_kernel(rng, kernel_size) for _ in range(n_objects + 1)])
    u = to_linear(torch.from_numpy(sharp).permute(2, 0, 1).double() / 255) * brightness
    hard = hard_masks(torch.from_numpy(layers), n_objects + 1).double()
    k = torch.from_numpy(kernels).double()
    masks = smooth_masks(hard[None], k[None], padding="same", normalize=True)[0]
    v = blur(u[None], k[None], masks[None], padding="same")[0].clamp(0, 1)
    blurry = np.round(to_display(v).permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    meta = make_meta(has_field=has_field, brightness=brightness, gamma=2.2,
                     kernel_size=kernel_size, normalize_masks=True, noise=None, seed=seed,
                     kernel_ids=list(range(n_objects + 1)), image_id=key, source="test")
    sample = Sample(key, blurry, sharp, meta, kernels if has_field else None,
                    layers if has_field else None)
    return sample, {"linear": u.float().numpy(), "masks": masks.float().numpy(),
                    "layers": layers}


def write_shard(path: Path, samples: list[Sample]) -> Path:
    """Write samples to one tar with the project's shard writer (byte-identical for the
    same samples)."""
    from blurfield.data.writer import write_shard as write

    write(path, (encode_sample(s) for s in samples))
    return path


def write_shards(folder: Path, prefix: str, n_shards: int, per_shard: int,
                 vary_layers: bool = False, **kw) -> tuple[list[Path], dict]:
    """``folder/prefix-00000i.tar`` with keys ``prefix-i-j``, seeds from (prefix, i, j).

    ``vary_layers``: sample (i, j) has ``(i + j) % 3`` objects. Returns the paths and
    ``{key: (sample, references)}``.
    """
    out, refs = [], {}
    for i in range(n_shards):
        samples = []
        for j in range(per_shard):
            if vary_layers:
                kw["n_objects"] = (i + j) % 3
            key = f"{prefix}-{i}-{j}"
            s, r = make_sample(key, seed=1000 * i + j + zlib.crc32(prefix.encode()) % 997,
                               **kw)
            samples.append(s)
            refs[key] = (s, r)
        out.append(write_shard(folder / f"{prefix}-{i:06d}.tar", samples))
    return out, refs


def drop_member(path: Path, key: str, member: str) -> None:
    """Rewrite a tar without ``key.member`` (a sample missing one of its files)."""
    buf = io.BytesIO()
    with tarfile.open(path) as src, tarfile.open(fileobj=buf, mode="w") as dst:
        for info in src.getmembers():
            if info.name != f"{key}.{member}":
                dst.addfile(info, src.extractfile(info))
    path.write_bytes(buf.getvalue())


def truncate(path: Path, fraction: float = 0.6) -> None:
    """Cut a tar in the middle of a member (a shard cut short by a failed copy)."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction) // 512 * 512 + 100])
