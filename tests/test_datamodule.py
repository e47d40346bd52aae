"""BlurDataModule: batch format, the docs/design.md §8 invariant, splitting, epochs, bad data.

Shards come from tests/helpers/fake_shards.py (96 x 96 scenes, K = 9, crops of 32). Crops are
located in the full scene by exact pixel match, then compared with the references the
fixture computed on the whole scene.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import fake_shards as fs
from numpy.lib.stride_tricks import sliding_window_view

import blurfield.data.datamodule as dmod
import blurfield.data.streams as streams
from blurfield.config import DataCfg
from blurfield.data import BlurDataModule, expand_shards, segment_weights
from blurfield.data.batch import BATCH_KEYS
from blurfield.physics import reblur

K, C, SIZE = 9, 32, 96


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    d = tmp_path_factory.mktemp("shards")
    _, refs = fs.write_shards(d, "train", 4, 3, vary_layers=True)
    _, vrefs = fs.write_shards(d, "val", 1, 4)
    _, prefs = fs.write_shards(d, "pair", 1, 3, has_field=False)
    return d, {**refs, **vrefs, **prefs}


def cfg(d: Path, **kw) -> DataCfg:
    base = dict(train_shards=str(d / "train-*.tar"), val_shards=str(d / "val-000000.tar"),
                samples_per_epoch=8, val_samples=4, batch_size=2, workers=0, crop_size=C,
                shuffle_buffer=4, seed=0)
    return DataCfg(**{**base, **kw})


def keys_of(folder: Path, pattern: str) -> dict[str, list[str]]:
    return {p.name: p.read_text().split() for p in sorted(folder.glob(pattern))}


def locate(full: np.ndarray, crop: torch.Tensor) -> tuple[int, int]:
    """(top, left) of the only place where the uint8 crop (3, c, c) equals the image."""
    c8 = np.round(crop.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    win = sliding_window_view(full, c8.shape)[:, :, 0]
    hits = np.argwhere((win == c8).all(axis=(-3, -2, -1)))
    assert len(hits) == 1, f"crop found {len(hits)} times"
    return int(hits[0][0]), int(hits[0][1])


# --------------------------------------------------------------------------- format


def test_batch_has_exactly_the_binding_format(shards):
    d, refs = shards
    batch = next(iter(BlurDataModule(cfg(d), K).train_dataloader()))
    assert set(batch) == set(BATCH_KEYS)
    n = 2
    j = batch["kernels"].shape[1]
    shapes = {"blurry": (n, 3, C, C), "sharp_linear": (n, 3, C + K - 1, C + K - 1),
              "kernels": (n, j, K, K), "masks": (n, j, C, C), "layer_valid": (n, j),
              "weights": (n, C, C), "has_field": (n,)}
    for k, shape in shapes.items():
        assert tuple(batch[k].shape) == shape, k
        want = torch.bool if k in ("layer_valid", "has_field") else torch.float32
        assert batch[k].dtype == want, k
    assert 0 <= batch["blurry"].min() and batch["blurry"].max() <= 1
    assert batch["has_field"].all()


def test_invariant_reblur_masks_weights_and_kernel_loss(shards, tmp_path):
    """docs/design.md §8: reblur(sharp_linear, kernels, masks, "valid") = blurry within
    quantisation on unclipped pixels; masks, weights and per-pixel kernels equal the
    whole-scene references at the located crop; the kernel loss at the truth is ~0."""
    from blurfield.losses import kernel_loss

    d, refs = shards
    c = cfg(d, key_log=str(tmp_path), samples_per_epoch=12, batch_size=3)
    batches = list(BlurDataModule(c, K).train_dataloader())
    keys = (tmp_path / "train-rank0-worker0.txt").read_text().split()
    assert len(batches) == 4 and len(keys) == 12
    o = K // 2
    checked = 0
    for b, batch in enumerate(batches):
        pred = reblur(batch["sharp_linear"], batch["kernels"], batch["masks"],
                      padding="valid", check=False)
        for i in range(3):
            sample, ref = refs[keys[3 * b + i]]
            jn = sample.num_layers
            assert batch["layer_valid"][i].tolist() == [True] * jn + [False] * (
                batch["kernels"].shape[1] - jn)
            assert (batch["kernels"][i, jn:] == 0).all() and (batch["masks"][i, jn:] == 0).all()
            # the same reblur with only the real layers passes the simplex checks
            one = reblur(batch["sharp_linear"][i : i + 1], batch["kernels"][i : i + 1, :jn],
                         batch["masks"][i : i + 1, :jn], padding="valid", check=True)
            torch.testing.assert_close(one[0], pred[i])
            ok = batch["blurry"][i] < 250 / 255
            assert ok.float().mean() > 0.5
            err = (pred[i] - batch["blurry"][i]).abs()[ok]
            assert err.max() <= 1.5 / 255, float(err.max()) * 255

            top, left = locate(sample.blurry, batch["blurry"][i])
            assert o <= top <= SIZE - C - o and o <= left <= SIZE - C - o
            lin = ref["linear"][:, top - o : top - o + C + K - 1, left - o : left - o + C + K - 1]
            np.testing.assert_allclose(batch["sharp_linear"][i].numpy(), lin, atol=2e-6)
            m_ref = ref["masks"][:, top : top + C, left : left + C]
            np.testing.assert_allclose(batch["masks"][i, :jn].numpy(), m_ref, atol=2e-5)
            np.testing.assert_array_equal(batch["kernels"][i, :jn].numpy(), sample.kernels)
            area = np.array([(ref["layers"][top : top + C, left : left + C] == j).sum()
                             for j in range(jn)], np.float64)
            w_ref = 1.0 / (np.einsum("jhw,j->hw", m_ref, area) + 1.0)
            np.testing.assert_allclose(batch["weights"][i].numpy(), w_ref, rtol=1e-5)

            # per-pixel kernels sum_j M_j(i) k_j against the reference masks
            per_px = torch.einsum("jhw,jab->hwab", batch["masks"][i], batch["kernels"][i])
            per_ref = np.einsum("jhw,jab->hwab", m_ref, sample.kernels)
            assert np.abs(per_px.numpy() - per_ref).max() < 1e-5
            checked += 1
        # eq. 6 at the ground truth (layers as a basis, masks as mixing) ~ 0 ...
        gt = (batch["kernels"], batch["masks"])
        loss = kernel_loss(*gt, *gt, batch["weights"], layer_valid=batch["layer_valid"])
        assert float(loss) < 1e-3
        # ... and far from 0 with the layers' kernels swapped (the test can fail)
        wrong = batch["kernels"].roll(1, dims=1)
        bad = kernel_loss(wrong, batch["masks"], *gt, batch["weights"],
                          layer_valid=batch["layer_valid"])
        assert float(bad) > 10 * float(loss) + 1e-3
    assert checked == 12


def test_segment_weights_closed_form():
    masks = torch.zeros(2, 3, 4)
    masks[0, :, :2] = 1
    masks[1, :, 2:] = 1
    masks[:, 0, 1:3] = 0.5  # a blurred boundary on the first row
    w = segment_weights(masks, torch.tensor([6.0, 6.0]))
    assert torch.allclose(w[1], torch.full((4,), 1 / 7))
    assert torch.allclose(w[0], torch.full((4,), 1 / 7))
    w = segment_weights(masks[None], torch.tensor([[10.0, 2.0]]))[0]
    assert torch.allclose(w[1], torch.tensor([1 / 11, 1 / 11, 1 / 3, 1 / 3]))
    assert torch.allclose(w[0, 1], torch.tensor(1 / 7.0))
    with pytest.raises(ValueError, match="counts"):
        segment_weights(masks, torch.ones(3))


# --------------------------------------------------------------------------- streams


def test_epoch_is_total_over_two_workers_and_workers_disjoint(shards, tmp_path):
    d, _ = shards
    dm = BlurDataModule(cfg(d, workers=2, samples_per_epoch=12, key_log=str(tmp_path)), K)
    loader = dm.train_dataloader()
    assert len(loader) == 6
    assert sum(b["blurry"].shape[0] for b in loader) == 12
    assert dm.stats["samples"] == 12  # summed over both worker processes
    logs = keys_of(tmp_path, "train-rank0-worker*.txt")
    assert sorted(logs) == ["train-rank0-worker0.txt", "train-rank0-worker1.txt"]
    k0, k1 = logs.values()
    assert len(k0) + len(k1) == 12
    # stream s reads shards s, s + 2: worker 0 the even shards, worker 1 the odd ones
    assert {int(k.split("-")[1]) % 2 for k in k0} == {0}
    assert {int(k.split("-")[1]) % 2 for k in k1} == {1}
    assert sum(b["blurry"].shape[0] for b in loader) == 12  # a second epoch, same size
    assert dm.stats["samples"] == 24


@pytest.mark.parametrize("n_shards", [4, 1])
def test_ranks_read_disjoint_samples(shards, tmp_path, monkeypatch, n_shards):
    """Two ranks (simulated): disjoint keys, samples_per_epoch in total. With 1 shard for
    2 streams each rank reads it and keeps the keys that hash to it."""
    d, refs = shards
    pattern = str(d / "train-*.tar") if n_shards == 4 else str(d / "train-000000.tar")
    seen = {}
    for rank in (0, 1):
        monkeypatch.setattr(dmod, "_dist", lambda trainer, r=rank: (r, 2))
        c = cfg(d, train_shards=pattern, samples_per_epoch=8, key_log=str(tmp_path))
        loader = BlurDataModule(c, K).train_dataloader()
        assert len(loader) == 2  # 8 samples / (2 ranks x batch 2)
        assert sum(b["blurry"].shape[0] for b in loader) == 4
        seen[rank] = set((tmp_path / f"train-rank{rank}-worker0.txt").read_text().split())
    assert seen[0] and seen[1] and not seen[0] & seen[1]
    if n_shards == 1:
        assert seen[0] | seen[1] == {k for k in refs if k.startswith("train-0-")}


def test_same_seed_same_stream_and_epochs_differ(shards):
    d, _ = shards
    a = list(BlurDataModule(cfg(d), K).train_dataloader())
    loader = BlurDataModule(cfg(d), K).train_dataloader()
    b, b2 = list(loader), list(loader)
    for x, y in zip(a, b):
        for k in BATCH_KEYS:
            assert torch.equal(x[k], y[k])
    assert not torch.equal(b[0]["blurry"], b2[0]["blurry"])
    c = list(BlurDataModule(cfg(d, seed=1), K).train_dataloader())
    assert not torch.equal(a[0]["blurry"], c[0]["blurry"])


def test_validation_is_fixed_centre_crops_split_over_ranks(shards, tmp_path, monkeypatch):
    d, refs = shards
    dm = BlurDataModule(cfg(d, workers=2), K)
    loader = dm.val_dataloader()
    assert len(loader) == 2
    e0, e1 = list(loader), list(loader)
    assert len(e0) == 2
    for x, y in zip(e0, e1):
        for k in BATCH_KEYS:
            assert torch.equal(x[k], y[k])
    top = (SIZE - C) // 2
    centres = {k: torch.from_numpy(s.blurry[top : top + C, top : top + C]).permute(2, 0, 1)
               for k, (s, _) in refs.items() if k.startswith("val-")}
    got = torch.cat([b["blurry"] for b in e0])
    assert len(got) == 4
    for g in got:
        assert any(torch.equal((g * 255).round().byte(), c) for c in centres.values())
    for rank in (0, 1):
        monkeypatch.setattr(dmod, "_dist", lambda trainer, r=rank: (r, 2))
        loader = BlurDataModule(cfg(d, key_log=str(tmp_path)), K).val_dataloader()
        assert len(loader) == 1 and list(loader)[0]["blurry"].shape[0] == 2
    logs = keys_of(tmp_path, "val-rank*.txt")
    r0, r1 = (set(v) for v in logs.values())
    assert not r0 & r1 and r0 | r1 == set(centres)


# --------------------------------------------------------------------------- pairs


def test_pairs_pass_through_without_field(shards):
    d, _ = shards
    pattern = f"{d / 'pair-000000.tar'}::{d / 'train-000001.tar'}"
    dm = BlurDataModule(cfg(d, train_shards=pattern, require_field=False, batch_size=6,
                            samples_per_epoch=6, shuffle_buffer=1), K)
    (batch,) = list(dm.train_dataloader())
    pairs = ~batch["has_field"]
    assert pairs.sum() == 3 and batch["has_field"].sum() == 3
    assert batch["kernels"].shape[1] == max(1, int(batch["layer_valid"].sum(1).max()))
    assert not batch["layer_valid"][pairs].any()
    assert (batch["kernels"][pairs] == 0).all() and (batch["masks"][pairs] == 0).all()
    assert (batch["weights"][pairs] == 1).all()
    assert batch["sharp_linear"].shape[-1] == C + K - 1
    assert dm.stats["dropped_pairs"] == 0


def test_require_field_drops_pairs_with_a_count(shards, monkeypatch):
    d, _ = shards
    pattern = f"{d / 'pair-000000.tar'}::{d / 'train-000001.tar'}"
    dm = BlurDataModule(cfg(d, train_shards=pattern, samples_per_epoch=4), K)
    batches = list(dm.train_dataloader())
    assert all(b["has_field"].all() for b in batches)
    assert dm.stats["dropped_pairs"] >= 1
    monkeypatch.setattr(streams, "MAX_CONSECUTIVE_DROPS", 20)
    dm = BlurDataModule(cfg(d, train_shards=str(d / "pair-000000.tar")), K)
    with pytest.raises(ValueError, match="require_field"):
        list(dm.train_dataloader())


# --------------------------------------------------------------------------- bad data


def test_corrupt_shards_are_skipped_and_counted(shards, tmp_path, caplog):
    d, _ = shards
    bad = tmp_path / "bad"
    bad.mkdir()
    shutil.copy(d / "train-000000.tar", bad / "a-0.tar")
    shutil.copy(d / "train-000001.tar", bad / "a-1.tar")
    fs.truncate(bad / "a-1.tar")
    shutil.copy(d / "train-000002.tar", bad / "a-2.tar")
    fs.drop_member(bad / "a-2.tar", "train-2-1", "kernels.npy")
    (bad / "a-3.tar").write_bytes(b"not a tar at all" * 100)
    shutil.copy(d / "pair-000000.tar", bad / "a-4.tar")
    fs.drop_member(bad / "a-4.tar", "pair-0-0", "sharp.png")
    c = cfg(d, train_shards=str(bad / "a-*.tar"), samples_per_epoch=24, shuffle_buffer=2,
            require_field=False, key_log=str(tmp_path / "keys"))
    dm = BlurDataModule(c, K)
    with caplog.at_level("WARNING", logger="blurfield.data.streams"):
        n = sum(b["blurry"].shape[0] for b in dm.train_dataloader())
    assert n == 24
    st = dm.stats
    assert st["shard_errors"] >= 2  # the truncated tar and the garbage file
    assert st["bad_samples"] >= 2  # the field sample without kernels, the pair without sharp
    keys = set((tmp_path / "keys" / "train-rank0-worker0.txt").read_text().split())
    assert "train-2-1" not in keys and "pair-0-0" not in keys
    assert "pair-0-1" in keys or "pair-0-2" in keys  # pairs lack kernels.npy and are fine
    assert "train-2-0" in keys and "train-1-0" in keys  # the good part of a bad shard
    assert "unreadable shard" in caplog.text and "dropped sample train-2-1" in caplog.text


def test_kernel_size_mismatch_is_an_error(shards):
    d, _ = shards
    with pytest.raises(ValueError, match="kernel_size 9"):
        next(iter(BlurDataModule(cfg(d), kernel_size=11).train_dataloader()))


def test_expand_shards(shards):
    d, _ = shards
    braces = expand_shards(str(d / "train-{000000..000002}.tar"))
    assert [Path(p).name for p in braces] == [f"train-00000{i}.tar" for i in range(3)]
    both = expand_shards(f"{d / 'val-*.tar'}::{d / 'pair-000000.tar'}")
    assert [Path(p).name for p in both] == ["val-000000.tar", "pair-000000.tar"]
    assert expand_shards("pipe:cat x.tar") == ["pipe:cat x.tar"]
    with pytest.raises(ValueError, match="data.train_shards: shard .* does not exist"):
        expand_shards(str(d / "train-{000000..000009}.tar"), "data.train_shards")
    with pytest.raises(ValueError, match="no shard matches"):
        expand_shards(str(d / "nothing-*.tar"))
    url = f"pipe:cat {d / 'val-000000.tar'}"  # any URL webdataset opens
    batch = next(iter(BlurDataModule(cfg(d, train_shards=url), K).train_dataloader()))
    assert batch["blurry"].shape == (2, 3, C, C)


def test_epoch_two_of_a_fresh_loader_equals_a_resumed_one(shards):
    """A run resumed at epoch 1 reads exactly what an uninterrupted run reads in epoch 1."""
    d, _ = shards
    loader = BlurDataModule(cfg(d), K).train_dataloader()
    list(loader)
    straight = list(loader)  # the second pass: epoch 1
    resumed_loader = BlurDataModule(cfg(d), K).train_dataloader()
    resumed_loader.epoch_fn = lambda: 1  # what the trainer reports after a resume
    resumed = list(resumed_loader)
    for x, y in zip(straight, resumed, strict=True):
        for k in BATCH_KEYS:
            assert torch.equal(x[k], y[k])
