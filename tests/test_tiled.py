"""Tiled estimation (blurfield.models.tiled): tent weights, the k-means merge, and the
merged field against the field of every tile written out directly."""

import pytest
import torch

from blurfield.api import estimate, load_estimator
from blurfield.models.tiled import estimate_tiled, merge_basis, tent_weights, tile_origins

K = 9


def _line(angle_deg: float) -> torch.Tensor:
    """A K x K line kernel through the centre (nearest pixels), summing to 1."""
    k = torch.zeros(K, K)
    t = torch.linspace(-3, 3, 61)
    a = torch.tensor(angle_deg).deg2rad()
    ys = (K // 2 + t * torch.sin(a)).round().long()
    xs = (K // 2 + t * torch.cos(a)).round().long()
    k[ys, xs] = 1
    return k / k.sum()


class BrightnessEstimator(torch.nn.Module):
    """A stand-in estimator whose field depends on what it sees: B = 2 basis kernels,
    horizontal lines on a dark input (mean < 0.5), vertical on a bright one (per image of
    the batch); the mixing puts the first element's weight on each pixel's brightness."""

    def forward(self, x: torch.Tensor):
        dark, bright = torch.stack([_line(0), _line(10)]), torch.stack([_line(90), _line(80)])
        kernels = torch.stack([bright if float(im.mean()) >= 0.5 else dark for im in x])
        m0 = x.mean(1, keepdim=True).clamp(0.1, 0.9)
        return kernels, torch.cat([m0, 1 - m0], 1)


def test_tile_origins_cover_the_axis_at_half_stride():
    assert tile_origins(100, 128) == [0]
    assert tile_origins(480, 128) == [0, 64, 128, 192, 256, 320, 352]
    assert tile_origins(256, 128) == [0, 64, 128]


@pytest.mark.parametrize("n,tile", [(480, 128), (300, 128), (480, 256), (96, 128)])
def test_tent_weights_are_a_partition_of_unity_inside_the_tiles(n, tile):
    origins = tile_origins(n, tile)
    w = tent_weights(n, origins, tile)
    torch.testing.assert_close(w.sum(0), torch.ones(n))
    assert (w >= 0).all()
    for i, o in enumerate(origins):
        outside = torch.ones(n, dtype=torch.bool)
        outside[o:o + tile] = False
        assert not w[i][outside].any()  # a tile weighs nothing where it saw nothing
        centre = min(o + min(tile, n) // 2, n - 1)
        assert w[i, centre] > 0.98  # and all at its centre
    if len(origins) > 2:  # linear between neighbouring centres: halfway = 1/2 each
        c0, c1 = origins[1] + tile // 2, origins[2] + tile // 2
        mid = (c0 + c1) // 2
        assert abs(float(w[1, mid]) - 0.5) < 1.5 / (c1 - c0)


def test_merge_basis_keeps_few_kernels_and_groups_separated_ones():
    kernels = torch.stack([_line(a) for a in (0, 45, 90)])
    same, labels = merge_basis(kernels, torch.ones(3), 5)
    torch.testing.assert_close(same, kernels)
    assert labels.tolist() == [0, 1, 2]
    # three groups of small perturbations of three directions, merged into three
    g = torch.Generator().manual_seed(0)
    members, group = [], []
    for i, a in enumerate((0, 45, 90)):
        for _ in range(4):
            k = _line(a) + 0.002 * torch.rand(K, K, generator=g)
            members.append(k / k.sum())
            group.append(i)
    members = torch.stack(members)
    mass = torch.rand(12, generator=g) + 0.1
    centroids, labels = merge_basis(members, mass, 3)
    assert len(centroids) == 3
    group = torch.tensor(group)
    for c in range(3):
        idx = labels == c
        assert len(set(group[idx].tolist())) == 1  # one direction per cluster
        direct = (members[idx] * mass[idx, None, None]).sum(0) / mass[idx].sum()
        torch.testing.assert_close(centroids[c], direct)
        assert abs(float(centroids[c].sum()) - 1) < 1e-5


def _direct_field(model, image: torch.Tensor, tile: int) -> torch.Tensor:
    """The per-pixel kernels (H, W, K, K) of sum_t W_t(x) sum_b M_t^b(x) k_t^b, tile by tile."""
    h, w = image.shape[-2:]
    oy, ox = tile_origins(h, tile), tile_origins(w, tile)
    wy, wx = tent_weights(h, oy, tile), tent_weights(w, ox, tile)
    field = torch.zeros(h, w, K, K)
    for i, y0 in enumerate(oy):
        for j, x0 in enumerate(ox):
            kernels, mixing = model(image[..., y0:y0 + tile, x0:x0 + tile])
            weight = wy[i, y0:y0 + tile, None] * wx[j, None, x0:x0 + tile]
            per_pixel = torch.einsum("bhw,bkl->hwkl", mixing[0], kernels[0])
            field[y0:y0 + tile, x0:x0 + tile] += weight[..., None, None] * per_pixel
    return field


def test_tiled_field_is_each_tiles_own_field_blended():
    """A photo dark on the left and bright on the right: the stand-in sees horizontal blur
    in the left tiles and vertical in the right ones. The merged field (4 distinct kernels
    from 2 x 6 tile elements) equals the tile-by-tile field written out, and keeps both directions
    where a whole-photo estimate would give one."""
    model = BrightnessEstimator()
    image = torch.full((1, 3, 128, 448), 0.2)
    image[..., 224:] = 0.8
    image[..., ::7, :] += 0.05  # some texture, so the mixing varies within a tile
    kernels, mixing = estimate_tiled(model, image, 128)
    assert kernels.shape[1] <= 2 and mixing.shape == (1, kernels.shape[1], 128, 448)
    torch.testing.assert_close(mixing.sum(1), torch.ones(1, 128, 448))
    got = torch.einsum("bhw,bkl->hwkl", mixing[0], kernels[0])
    want = _direct_field(model, image, 128)
    # the merge keeps two clusters of two kernels 10 degrees apart: a small relative L2
    # error (a whole-photo estimate of this stand-in is off by 0.68 on average)
    err = (got - want).flatten(2).norm(dim=-1) / want.flatten(2).norm(dim=-1)
    assert float(err.max()) < 0.3 and float(err.mean()) < 0.05
    left, right = got[64, 20], got[64, 430]
    assert left[K // 2].sum() > 0.6 and right[:, K // 2].sum() > 0.6  # rows vs columns


class SameKernels(BrightnessEstimator):
    """The same two basis kernels in every tile; only the mixing follows the photo."""

    def forward(self, x: torch.Tensor):
        _, mixing = super().forward(x)
        return torch.stack([_line(0), _line(90)]).expand(len(x), -1, -1, -1), mixing


def test_enough_elements_keep_every_tiles_field():
    """With ``elements`` >= n_tiles x B nothing is merged: the tile-by-tile field exactly."""
    model = BrightnessEstimator()
    image = torch.full((1, 3, 128, 448), 0.2)
    image[..., 224:] = 0.8
    image[..., ::7, :] += 0.05
    kernels, mixing = estimate_tiled(model, image, 128, elements=2 * 6)  # 6 tiles, B = 2
    assert kernels.shape[1] == 12
    got = torch.einsum("bhw,bkl->hwkl", mixing[0], kernels[0])
    torch.testing.assert_close(got, _direct_field(model, image, 128))
    with pytest.raises(ValueError, match="estimate_elements"):
        estimate_tiled(model, image, 128, elements=-1)


def test_tiled_merge_is_exact_when_the_tiles_share_kernels():
    model = SameKernels()
    image = torch.full((1, 3, 96, 320), 0.3)
    image[..., 160:] = 0.7
    image[..., ::5, :] += 0.1
    kernels, mixing = estimate_tiled(model, image, 64)
    assert kernels.shape[1] == 2
    got = torch.einsum("bhw,bkl->hwkl", mixing[0], kernels[0])
    torch.testing.assert_close(got, _direct_field(model, image, 64))


def test_small_images_and_tile_zero_are_the_whole_estimate():
    model = BrightnessEstimator()
    image = torch.rand(1, 3, 64, 96)
    k0, m0 = model(image)
    for tile in (0, 128):
        k, m = estimate_tiled(model, image, tile)
        torch.testing.assert_close(k, k0) and torch.testing.assert_close(m, m0)
    with pytest.raises(ValueError, match="multiple of 32"):
        estimate_tiled(model, image, 100)


def test_estimate_tiles_at_the_estimators_scale(tiny_path):
    """api.estimate: ``tile`` applies to the photo as the estimator sees it (downscaled).
    (The tiles' fields as estimated: no kernel refinement.)"""
    model = load_estimator(tiny_path)
    photo = torch.rand(3, 96, 320)
    whole = estimate(photo, model, tile=0, refine=0)
    tiled = estimate(photo, model, tile=64, refine=0)
    halved = estimate(photo, model, scale=2, tile=64, refine=0)  # 48 x 160: tiled along x only
    assert whole.mixing.shape[-2:] == tiled.mixing.shape[-2:] == (96, 320)
    assert halved.mixing.shape[-2:] == (48, 160)
    assert whole.n_basis == 25 and tiled.n_basis <= 25  # the default merge: the model's B
    assert estimate(photo, model, tile=64, elements=7, refine=0).n_basis <= 7
    torch.testing.assert_close(tiled.mixing.sum(0), torch.ones(96, 320))
    # tiles through the network in batches or one at a time: the same per-pixel kernels
    # (the k-means labels of this untrained model's near-identical kernels may differ)
    fields = [estimate_tiled(model, photo[None], 64, batch=n) for n in (1, 16)]
    k1, k16 = (torch.einsum("bhw,bkl->hwkl", m[0, :, ::8, ::8], k[0]) for k, m in fields)
    torch.testing.assert_close(k1, k16, atol=1e-5, rtol=1e-3)
