"""The estimator run on overlapping tiles of a large photo, merged into one blur field.

The kernel head pools its features over the whole input (``KernelEstimator._kernel_head``),
so on a photo much larger than its 128² training crops the B basis kernels summarise the
blur of every region at once; with a nearly uniform mixing (the compact model's) the field
becomes one averaged kernel per photo, round where two regions move in different
directions. Here the photo is cut into tiles of side ``T`` (a multiple of 32) at stride
``T / 2``, each tile is estimated on its own, and the tiles' fields are blended by tent
weights ``W_t`` (bilinear, a partition of unity: ``sum_t W_t(x) = 1``):

    k(x) = sum_t W_t(x) sum_b M_t^b(x) k_t^b

That field has ``n_tiles * B`` basis elements; to keep the field's format and bound RL's
cost, the elements are merged into at most ``elements`` (``restore.estimate_elements``; 0,
the default, = the model's B) by weighted k-means on the kernels (weights: each element's
mixing mass ``sum_x W_t(x) M_t^b(x)``), each cluster's kernel its weighted mean, each
cluster's mixing the sum of its members' ``W_t M_t^b`` (so the mixing stays on the
simplex). With ``n_tiles * B <= elements`` nothing is merged and the field is exact.
"""

from __future__ import annotations

import torch
from torch import Tensor

from blurfield.models.estimator import MULTIPLE, pad_to_multiple

KMEANS_ITERATIONS = 25


def check_tile(tile: int, elements: int = 0) -> int:
    """``tile`` if it is 0 (no tiling) or a positive multiple of 32 and ``elements`` a count
    >= 0, else ValueError naming the ``restore`` key."""
    if int(elements) != elements or elements < 0:
        raise ValueError(f"estimate_elements: {elements} is not a count >= 0")
    if int(tile) != tile or tile < 0 or tile % MULTIPLE:
        raise ValueError(f"estimate_tile: {tile} is not 0 or a positive multiple of {MULTIPLE}")
    return int(tile)


def tile_origins(n: int, tile: int) -> list[int]:
    """Origins of tiles of side ``tile`` covering ``0..n`` at stride ``tile // 2``, the
    last one flush with the end (``[0]`` when ``n <= tile``)."""
    if n <= tile:
        return [0]
    stride = tile // 2
    origins = list(range(0, n - tile + 1, stride))
    if origins[-1] != n - tile:
        origins.append(n - tile)
    return origins


def tent_weights(n: int, origins: list[int], tile: int) -> Tensor:
    """(n_tiles, n) weights along one axis, a partition of unity: tile ``i`` weighs 1 at
    its centre ``c_i`` and falls linearly to 0 at its neighbours' centres; before the first
    centre and after the last the end tiles weigh 1. Zero outside each tile."""
    if len(origins) == 1:
        return torch.ones(1, n)
    size = min(tile, n)
    centres = torch.tensor([o + size / 2 for o in origins], dtype=torch.float64)
    x = (torch.arange(n, dtype=torch.float64) + 0.5).clamp(float(centres[0]),
                                                          float(centres[-1]))
    # the weight of the two tiles around x: linear in x between their centres
    j = torch.searchsorted(centres, x, right=True).clamp(1, len(origins) - 1)
    t = (x - centres[j - 1]) / (centres[j] - centres[j - 1])
    w = torch.zeros(len(origins), n, dtype=torch.float64)
    w[j - 1, torch.arange(n)] = 1 - t
    w[j, torch.arange(n)] += t
    return w.float()


def merge_basis(kernels: Tensor, mass: Tensor, n_out: int,
                iterations: int = KMEANS_ITERATIONS) -> tuple[Tensor, Tensor]:
    """Weighted k-means of kernels into at most ``n_out`` clusters.

    kernels (N, K, K), each summing to 1; mass (N,) >= 0. Returns (centroids (C, K, K),
    each the mass-weighted mean of its members, so >= 0 and summing to 1; labels (N,) in
    ``0..C-1``), C <= n_out (clusters that end empty are dropped). Deterministic: the
    seeds are the heaviest kernel, then repeatedly the kernel farthest from every seed
    (weighted by mass), so well-separated groups each get one.
    """
    n = kernels.shape[0]
    x = kernels.reshape(n, -1).float()
    m = mass.float().clamp(min=0) + 1e-12
    if n <= n_out:
        return kernels.clone(), torch.arange(n)

    def nearest(centres: Tensor) -> Tensor:  # argmin_c |x - c|² = argmin_c |c|² - 2 x.c
        # 2 (x @ c) rather than (2 x) @ c: the same values (doubling is exact), no N x K²
        # temporary
        return ((centres * centres).sum(1) - 2 * (x @ centres.T)).argmin(1)

    xm = x * m[:, None]  # the members' weighted kernels, summed per cluster

    def means(labels: Tensor, count: int) -> tuple[Tensor, Tensor]:
        sums = torch.zeros(count, x.shape[1]).index_add_(0, labels, xm)
        weight = torch.zeros(count).index_add_(0, labels, m)
        return sums, weight

    seeds = [int(m.argmax())]
    d2 = (x - x[seeds[0]]).square_().sum(1)
    for _ in range(n_out - 1):
        i = int((d2 * m).argmax())
        if d2[i] <= 0:
            break
        seeds.append(i)
        d2 = torch.minimum(d2, (x - x[i]).square_().sum(1))
    centres = x[seeds]
    labels = nearest(centres)
    for _ in range(iterations):
        sums, weight = means(labels, len(centres))
        centres = torch.where(weight[:, None] > 0, sums / weight.clamp(min=1e-30)[:, None],
                              centres)
        new = nearest(centres)
        if torch.equal(new, labels):
            break
        labels = new
    used, labels = torch.unique(labels, return_inverse=True)
    sums, weight = means(labels, len(used))
    centroids = (sums / weight[:, None]).to(kernels.dtype).reshape(-1, *kernels.shape[1:])
    return centroids, labels


@torch.no_grad()
def estimate_tiled(model: torch.nn.Module, image: Tensor, tile: int, elements: int = 0,
                   batch: int = 16) -> tuple[Tensor, Tensor]:
    """The field of ``image`` (1, C, H, W) from ``model`` run on tiles of side ``tile``.

    Returns kernels (1, B', K, K) and mixing (1, B', H, W) on the simplex, B' <=
    ``elements`` (0: the model's B) (module doc). With ``tile`` 0, or an image no larger
    than it, the image is estimated whole (reflect-padded to a multiple of 32 and cropped
    back): ``model``'s field.
    Memory: the tiles' weighted mixings are kept until merged, about ``4 B H W`` floats
    (600 MB at 1.5 megapixels, B = 25). Tiles go through the network ``batch`` at a time.
    """
    tile = check_tile(tile, elements)
    if image.dim() != 4 or image.shape[0] != 1:
        raise ValueError(f"image: expected (1, C, H, W), got {tuple(image.shape)}")
    h, w = image.shape[-2:]
    if tile == 0 or max(h, w) <= tile:
        kernels, mixing = model(pad_to_multiple(image))
        return kernels, mixing[..., :h, :w]
    oy, ox = tile_origins(h, tile), tile_origins(w, tile)
    wy, wx = tent_weights(h, oy, tile), tent_weights(w, ox, tile)
    th, tw = min(tile, h), min(tile, w)  # every tile has this size
    grid = [(i, j) for i in range(len(oy)) for j in range(len(ox))]
    tiles, all_kernels, masses = [], [], []
    for start in range(0, len(grid), batch):
        chunk = grid[start:start + batch]
        crops = torch.cat([image[..., oy[i]:oy[i] + th, ox[j]:ox[j] + tw] for i, j in chunk])
        kernels, mixing = model(pad_to_multiple(crops))
        for n, (i, j) in enumerate(chunk):
            weight = (wy[i, oy[i]:oy[i] + th, None] * wx[j, None, ox[j]:ox[j] + tw]).to(mixing)
            weighted = mixing[n, :, :th, :tw] * weight  # (B, th, tw): W_t M_t^b
            tiles.append((oy[i], ox[j], weighted))
            all_kernels.append(kernels[n])
            masses.append(weighted.sum((-1, -2)))
    kernels = torch.cat(all_kernels)  # (n_tiles * B, K, K)
    n_basis = all_kernels[0].shape[0]
    centroids, labels = merge_basis(kernels.float().cpu(), torch.cat(masses).float().cpu(),
                                    elements or n_basis)
    labels = labels.to(image.device)
    out = torch.zeros(len(centroids), h, w, device=image.device)
    for t, (y0, x0, mixing) in enumerate(tiles):
        out[:, y0:y0 + th, x0:x0 + tw].index_add_(
            0, labels[t * n_basis:(t + 1) * n_basis], mixing.float())
    out = out / out.sum(0, keepdim=True).clamp(min=1e-12)
    return centroids.to(image.device)[None], out[None]
