"""``python -m data_prep handmade``: real photos blurred by hand-made non-uniform fields.

A check of an estimator on blur made by a *different procedure* than its training data
(dead-leaves scenes, camera-shake trajectories): photos bundled with scikit-image, each
centre-cropped to at most ``--size`` px and blurred by three layers,

- layer 0, the background: the whole photo;
- layer 1: one side of a random straight line (a depth edge);
- layer 2: a random ellipse on top (a moving object);

each with a straight **linear motion** kernel (``blurfield.physics.kernels.line_kernel``,
an odd length drawn from 9–25 px (``--lengths MIN,MAX``: others, e.g. ``35,61`` with
``--kernel-size 65`` for blur longer than the estimator reads at its scale), its own
direction at least 30° from the others), centred in K x K. With
``--one-motion`` each photo is blurred by its background kernel alone, over the whole photo
(the same photos and kernels: a camera shake with nothing else moving). With
``--shake`` each photo is blurred over the whole photo by one random **camera-shake
trajectory** instead, drawn by Boracchi & Foi's (2012) generator with their parameters
(``data_prep/kernels/boracchi.py``, the schema's ``kernels.boracchi`` defaults: 30 px paths,
exposure fraction 0.1–1, anxiety up to 0.1), which differ from the compact training
bank's (straight or gently curved, whole exposure): the blur of a hand-held photo.
``--draws N`` writes N samples per photo into the one shard, each under its own fields
(sample ``d * 8 + i``; the first eight are the set of one draw). The
blur itself is the project's synthesis (``data_prep.synth.synthesize``: smoothed,
normalised masks, gamma 2.2, no noise unless ``--noise A,S``: Poisson–Gaussian noise in
linear light, ``A * Poisson(v / A) + N(0, S²)``, drawn per sample from ``(seed, index)``
and added after the blur, so the same command without it gives the same blur noise-free),
and ``--jpeg Q`` saves the blurry photo through a JPEG encoder at quality ``Q`` (Pillow's,
4:2:0 chroma as a camera does) and back, as most photos reach a user (``meta.json``'s keys
are fixed by DESIGN.md §8 and do not record it: name the folder for it),
so the ground-truth field is known and the samples are scored like any held-out synthetic
set::

    python -m data_prep handmade --out data/handmade
    blurfield evaluate --config eval/synthetic --root data/handmade/handmade-000000.tar

``--pairs`` also writes each sample's blurry and sharp photos as PNG pairs in GoPro's layout,
``OUT/pairs/handmade/{blur,sharp}/<id>.png``, which ``blurfield evaluate --config eval/gopro
--root OUT/pairs`` scores through ``deblur``'s own pipeline (the estimator's scale
``restore.scale`` included, which the synthetic protocol does not take).

``--kernel-size`` and ``--seed`` are aliases of ``shards.kernel_size`` and ``shards.seed``
(their defaults are the schema's). The shard is written by
:class:`blurfield.data.writer.ShardWriter` (a temporary name, renamed when complete).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from blurfield.config import as_config
from blurfield.data.schema import Sample, encode_sample, make_meta
from blurfield.errors import UserError
from data_prep.synth import Noise, synthesize

HELP = "skimage photos blurred by hand-made non-uniform fields (a held-out check)"
ALIASES = {
    "--kernel-size": "shards.kernel_size",  # K of the kernels (odd, >= 25 here)
    "--seed": "shards.seed",  # seed of the fields
}
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "brick", "grass", "gravel")
MIN_ANGLE = 30.0  # degrees between the layers' motion directions
# --shake draws trajectory SHAKE_INDEX + i: no kernel bank (any seed, fewer kernels than
# this) shares a trajectory's random numbers, so no training kernel is a --shake one
SHAKE_INDEX = 1 << 40
NOISE_STREAM = 2  # the noise generator is default_rng([seed, index, NOISE_STREAM])
LENGTHS = (9, 25)  # px, the range of the line kernels' odd lengths


def lengths_arg(text: str) -> tuple[int, int]:
    """``--lengths MIN,MAX`` -> (MIN, MAX): odd integers, 1 <= MIN <= MAX."""
    try:
        lo, hi = (int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}': expected two integers MIN,MAX "
                                         "(e.g. 35,61)") from None
    if not (1 <= lo <= hi and lo % 2 == 1 and hi % 2 == 1):
        raise argparse.ArgumentTypeError(f"'{text}': MIN and MAX must be odd, 1 <= MIN <= MAX")
    return lo, hi


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """handmade's own flags; K and the seed are ``shards.*`` keys (:data:`ALIASES`)."""
    parser.add_argument("--out", default="data/handmade", help="output folder")
    parser.add_argument("--size", type=int, default=384, help="largest crop side (px)")
    parser.add_argument("--draws", type=int, default=1,
                        help="fields drawn per photo (samples 8 x draws, one shard)")
    parser.add_argument("--noise", type=noise_arg, default=None, metavar="A,S",
                        help="Poisson-Gaussian noise in linear light: A * Poisson(v / A) + "
                             "N(0, S^2), e.g. 0.0002,0.002 (default: none)")
    parser.add_argument("--jpeg", type=jpeg_arg, default=None, metavar="Q",
                        help="save each blurry photo as a JPEG of quality Q (1-95) and read "
                             "it back, after any --noise (default: lossless PNG)")
    parser.add_argument("--lengths", type=lengths_arg, default=LENGTHS, metavar="MIN,MAX",
                        help="odd line lengths (px) the layers' kernels are drawn from, "
                             "at most --kernel-size (default: 9,25)")
    parser.add_argument("--pairs", action="store_true",
                        help="also write OUT/pairs/handmade/{blur,sharp}/<id>.png (GoPro's "
                             "layout: blurfield evaluate --config eval/gopro --root OUT/pairs)")
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--one-motion", action="store_true",
                     help="blur each photo by its background layer's kernel only")
    how.add_argument("--shake", action="store_true",
                     help="blur each photo by one Boracchi & Foi camera-shake trajectory")


def jpeg_arg(text: str) -> int:
    """``--jpeg Q`` -> Q, an integer quality in 1..95 (Pillow's useful range)."""
    try:
        q = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}': expected an integer quality 1-95") from None
    if not 1 <= q <= 95:
        raise argparse.ArgumentTypeError(f"'{text}': the quality must be in 1-95")
    return q


def through_jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """(H, W, 3) uint8 ``image`` encoded as a JPEG of ``quality`` (Pillow, its default 4:2:0
    chroma subsampling) and decoded again: what a photo saved by a camera or an editor
    carries (8 x 8 blocks, ringing, its fine noise and detail quantised away)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB")).copy()


def noise_arg(text: str) -> Noise:
    """``--noise A,S`` -> :class:`~data_prep.synth.Noise` (both >= 0, not both 0)."""
    try:
        a, s = (float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"'{text}': expected two numbers A,S (e.g. 0.0002,0.002)") from None
    if a < 0 or s < 0 or a + s == 0 or not np.isfinite(a + s):
        raise argparse.ArgumentTypeError(f"'{text}': A and S must be >= 0, not both 0")
    return Noise(a, s)


def photo(name: str, size: int) -> np.ndarray:
    """skimage.data.<name>() as (s, s, 3) uint8, the centre square of side <= size."""
    from data_prep.scenes.builtin import load_photo

    im = np.asarray(load_photo(name))
    if im.ndim == 2:
        im = np.repeat(im[..., None], 3, axis=2)
    h, w = im.shape[:2]
    s = min(h, w, size)
    t, left = (h - s) // 2, (w - s) // 2
    return np.ascontiguousarray(im[t : t + s, left : left + s, :3]).astype(np.uint8)


def motion_kernel(length: int, angle: float, kernel_size: int) -> np.ndarray:
    """(K, K) float32 line segment of odd ``length`` px at ``angle`` degrees, centred, sum 1."""
    from blurfield.physics.kernels import line_kernel

    k = line_kernel(length, angle, kernel_size).numpy()
    return k / k.sum()


def angles(rng: np.random.Generator, n: int) -> list[float]:
    """``n`` directions in [0, 180) pairwise at least :data:`MIN_ANGLE` apart (mod 180)."""
    out: list[float] = []
    while len(out) < n:
        a = float(rng.uniform(0, 180))
        if all(min(abs(a - b), 180 - abs(a - b)) >= MIN_ANGLE for b in out):
            out.append(a)
    return out


def layer_map(size: int, rng: np.random.Generator) -> np.ndarray:
    """(size, size) uint8: 0 background, 1 one side of a line, 2 an ellipse on top."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    theta = rng.uniform(0, 2 * np.pi)
    offset = rng.uniform(-0.2, 0.2)
    side = (xx - 0.5) * np.cos(theta) + (yy - 0.5) * np.sin(theta) > offset
    cy, cx = rng.uniform(0.3, 0.7, 2)
    ay, ax = rng.uniform(0.12, 0.25, 2)
    ellipse = ((yy - cy) / ay) ** 2 + ((xx - cx) / ax) ** 2 < 1
    out = np.zeros((size, size), np.uint8)
    out[side] = 1
    out[ellipse] = 2
    return out


def shake_kernel(index: int, kernel_size: int, seed: int) -> np.ndarray:
    """(K, K) float32 correlation kernel: trajectory ``SHAKE_INDEX + index`` of Boracchi &
    Foi's generator with the schema's ``kernels.boracchi`` parameters (their own), ``seed``."""
    from blurfield.config import Generator, KernelsCfg
    from data_prep.kernels.bank import generate

    cfg = KernelsCfg(generator=Generator.boracchi, kernel_size=kernel_size)
    return generate(cfg, seed, [SHAKE_INDEX + index])[0][0]


def make(name: str, index: int, size: int, kernel_size: int, seed: int,
         one_motion: bool = False, shake: bool = False, noise: Noise | None = None,
         jpeg: int | None = None, lengths: tuple[int, int] = LENGTHS) -> Sample:
    """The hand-made sample of photo ``name`` (deterministic in ``seed`` and ``index``);
    ``one_motion``: its background kernel alone over the whole photo (one layer);
    ``shake``: :func:`shake_kernel` over the whole photo (one layer); ``noise``: drawn from
    its own generator (``seed``, ``index``, :data:`NOISE_STREAM`), so the fields do not
    change with it; ``jpeg``: the blurry photo saved at that JPEG quality and read back
    (:func:`through_jpeg`; None: not); ``lengths``: the odd line lengths' range (px, at most
    ``kernel_size``)."""
    rng = np.random.default_rng([seed, index])
    sharp = photo(name, size)
    layers = layer_map(sharp.shape[0], rng)
    drawn = rng.choice(np.arange(lengths[0], min(lengths[1], kernel_size) + 1, 2), 3)
    kernels = np.stack([motion_kernel(int(n), a, kernel_size)
                        for n, a in zip(drawn, angles(rng, 3), strict=True)])
    if one_motion:
        layers, kernels = np.zeros_like(layers), kernels[:1]
    if shake:
        layers, kernels = np.zeros_like(layers), shake_kernel(index, kernel_size, seed)[None]
    noise_rng = np.random.default_rng([seed, index, NOISE_STREAM])
    blurry = synthesize(sharp, layers, kernels, 1.0, 2.2, True, noise, noise_rng)
    if jpeg is not None:
        blurry = through_jpeg(blurry, jpeg)
    meta = make_meta(has_field=True, brightness=1.0, gamma=2.2, kernel_size=kernel_size,
                     normalize_masks=True, noise=noise.as_meta() if noise else None,
                     seed=int(seed), kernel_ids=[], image_id=f"skimage.{name}",
                     source="handmade")
    return Sample(f"{index:04d}_{name}", blurry, sharp, meta, kernels, layers)


def run(cfg: DictConfig, args: argparse.Namespace) -> int:
    """Write ``--out``/handmade-000000.tar: ``--draws`` samples per photo of :data:`PHOTOS`
    (sample ``d * 8 + i`` is photo ``i`` under draw ``d``; draw 0 is the set of one draw),
    with ``shards.kernel_size`` and ``shards.seed`` (``--one-motion``, ``--shake``: one layer
    each)."""
    from blurfield.data.writer import write_shard

    sc = as_config(cfg.shards)
    k, seed = sc.kernel_size, sc.seed
    if args.inputs:
        raise UserError(f"unexpected argument '{args.inputs[0]}' (expected shards.key=value)")
    if k % 2 == 0 or k < 25:
        raise UserError(f"shards.kernel_size={k} (--kernel-size): must be odd and >= 25")
    if args.size < 64:
        raise UserError(f"--size {args.size}: must be >= 64")
    if args.draws < 1:
        raise UserError(f"--draws {args.draws}: must be >= 1")
    if args.lengths[1] > k:
        raise UserError(f"--lengths {args.lengths[0]},{args.lengths[1]}: longer than "
                        f"--kernel-size {k}; give --kernel-size {args.lengths[1] + 4} or more")
    path = Path(args.out) / "handmade-000000.tar"
    samples = [make(name, d * len(PHOTOS) + i, args.size, k, seed, args.one_motion, args.shake,
                    args.noise, args.jpeg, args.lengths)
               for d in range(args.draws) for i, name in enumerate(PHOTOS)]
    n = write_shard(path, (encode_sample(s) for s in samples))
    print(f"wrote {n} samples to {path}")
    if args.pairs:
        write_pairs(Path(args.out) / "pairs" / "handmade", samples)
        print(f"wrote {n} blurry/sharp pairs to {Path(args.out) / 'pairs' / 'handmade'}")
    return 0


def write_pairs(folder: Path, samples: list[Sample]) -> None:
    """Each sample's blurry and sharp photos as ``folder/blur/<key>.png`` and
    ``folder/sharp/<key>.png`` (8-bit, each written atomically)."""
    from blurfield.imageio import write_image

    for s in samples:
        write_image(folder / "blur" / f"{s.key}.png", s.blurry, 8)
        write_image(folder / "sharp" / f"{s.key}.png", s.sharp, 8)
