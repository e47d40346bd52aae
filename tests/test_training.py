"""The estimator's LightningModule, callbacks, `blurfield train` and resume (docs/design.md §4).

Batches follow the binding format (docs/design.md §8); most tests build them here from a known
two-layer field (Gaussian kernels, a smooth boundary), the last one reads real shards
through BlurDataModule.
"""

from __future__ import annotations

import csv as csv_module
import json
import math

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, default_collate

from blurfield.cli import main
from blurfield.config import load_config
from blurfield.losses import (
    kernel_loss,
    mixing_entropy,
    mixing_usage,
    moment_loss,
    pixel_grid,
    reblur_loss,
)
from blurfield.physics import reblur
from blurfield.tasks.estimator import KernelEstimatorModule
from blurfield.tasks.train import prepare, resume_checkpoint, slurm_plugins, train

K = 33
CROP = 64
TINY = {"n_basis": 4, "kernel_size": K, "base_width": 4}


pytestmark = pytest.mark.usefixtures("one_thread")


def _gauss(sy: float, sx: float, dy: float = 0.0, dx: float = 0.0) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(K) - K // 2, torch.arange(K) - K // 2, indexing="ij")
    k = torch.exp(-((yy - dy) ** 2 / sy**2 + (xx - dx) ** 2 / sx**2) / 2)
    return k / k.sum()


def make_sample(seed: int, crop: int = CROP) -> dict[str, torch.Tensor]:
    """One sample of the binding format: two layers split by a smooth vertical boundary,
    ``blurry = reblur(sharp_linear, kernels, masks)`` (noise-free, so the GT is exact)."""
    g = torch.Generator().manual_seed(seed)
    r = torch.rand(8, generator=g)
    s = crop + K - 1
    sharp = torch.rand(1, 3, 12, 12, generator=g)
    sharp = 1.2 * torch.nn.functional.interpolate(sharp, size=(s, s), mode="bilinear")
    kernels = torch.stack([_gauss(1 + 2 * r[0], 1 + 3 * r[1]),
                           _gauss(1 + 3 * r[2], 1 + r[3], 4 * r[4] - 2, 4 * r[5] - 2)])
    ramp = torch.sigmoid((torch.arange(crop) - crop * (0.3 + 0.4 * r[6])) / 4.0)
    masks = torch.stack([ramp.expand(crop, crop), 1 - ramp.expand(crop, crop)])
    blurry = reblur(sharp, kernels[None], masks[None])[0]
    areas = masks.sum((1, 2))
    weights = 1.0 / (torch.einsum("jhw,j->hw", masks, areas) + 1)
    return {"blurry": blurry, "sharp_linear": sharp[0], "kernels": kernels, "masks": masks,
            "layer_valid": torch.ones(2, dtype=torch.bool), "weights": weights,
            "has_field": torch.tensor(True)}


class FakeData(L.LightningDataModule):
    """Fixed samples in a fixed order: every epoch sees the same batches."""

    def __init__(self, n_train: int = 2, n_val: int = 2, batch_size: int = 2):
        super().__init__()
        self.train_set = [make_sample(i) for i in range(n_train)]
        self.val_set = [make_sample(100 + i) for i in range(n_val)]
        self.batch_size = batch_size

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=False)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.batch_size, shuffle=False)


def _cfg(tmp_path, *overrides: str):
    base = [
        f"train.out_dir={tmp_path / 'runs'}", "train.run_name=t", "train.accelerator=cpu",
        "train.progress_bar=false", "train.image_every_n_epochs=0", "train.lr=3e-3",
        "train.log_every_n_steps=1", "logging.logger=none", "data.crop_size=64",
        "model.n_basis=4", "model.base_width=4",
    ]
    return load_config(None, base + list(overrides))


def _history(run_dir) -> list[dict]:
    return json.loads((run_dir / "summary.json").read_text())["history"]


# --------------------------------------------------------------------------- module


def test_fake_batch_is_consistent():
    """The test's own batches: reblur reproduces blurry, the kernel loss is ~0 at the GT."""
    b = default_collate([make_sample(0), make_sample(1)])
    assert reblur_loss(b["kernels"], b["masks"], b["sharp_linear"], b["blurry"],
                       b["weights"]) < 1e-12
    assert kernel_loss(b["kernels"], b["masks"], b["kernels"], b["masks"], b["weights"]) < 1e-4


def test_training_step_uses_the_current_p():
    """loss = reblur + kernel loss with the module's p, computed here from its outputs."""
    b = default_collate([make_sample(0), make_sample(1)])
    m = KernelEstimatorModule(TINY, {"reblur_loss_weight": 0.5, "kernel_loss_weight": 2.0})
    assert m.kernel_loss_p == 2
    with torch.no_grad():
        k, mix = m(b["blurry"])
        for p in (2, 1):
            m.kernel_loss_p = p
            want = 0.5 * reblur_loss(k, mix, b["sharp_linear"], b["blurry"], b["weights"]) \
                + 2.0 * kernel_loss(k, mix, b["kernels"], b["masks"], b["weights"], p=p)
            assert m.training_step(b, 0).item() == pytest.approx(want.item(), rel=1e-6)


def test_l1_stride_scores_p1_on_a_random_pixel_grid():
    """l1_stride = 2: the training p = 1 loss equals the loss on the grid of the offset the
    module draws (the same draw replayed here), differs from the full loss, and
    validation-mode losses stay on every pixel."""
    b = default_collate([make_sample(0), make_sample(1)])
    m = KernelEstimatorModule(TINY, {"l1_stride": 2})
    m.kernel_loss_p = 1
    with torch.no_grad():
        k, mix = m(b["blurry"])
        torch.manual_seed(3)
        got = m.losses(b, k, mix, 1)["kernel"]
        torch.manual_seed(3)
        offset = tuple(torch.randint(2, (2,)).tolist())
        sub, masks, weights = pixel_grid(2, offset, mix, b["masks"], b["weights"])
        want = kernel_loss(k, sub, b["kernels"], masks, weights, p=1)
        full = kernel_loss(k, mix, b["kernels"], b["masks"], b["weights"], p=1)
        assert got.item() == pytest.approx(want.item(), rel=1e-6)
        assert abs(got.item() - full.item()) > 1e-6
        m.eval()
        assert m.losses(b, k, mix, 1)["kernel"].item() == pytest.approx(full.item(), rel=1e-6)


def test_val_direction_scores_the_fields_axes():
    """val/direction is 1 for the true field and -1 for its kernels turned by 90° (the
    Gaussians are axis-aligned, so every axis is then off by 90°); a sample without a field
    is left out of the mean."""
    b = default_collate([make_sample(0), make_sample(1)])
    turned = b["kernels"].clone()
    turned[1] = torch.rot90(turned[1], 1, (-2, -1))
    for valid, want in (([True, True], 0.0), ([True, False], 1.0)):
        m = KernelEstimatorModule(TINY)
        m.forward = lambda x: (turned, b["masks"])
        b["layer_valid"] = torch.tensor(valid)[:, None].expand(2, 2)
        with pytest.warns(UserWarning, match="self.log"), torch.no_grad():
            m.validation_step(b, 0)
        assert m.val_direction.compute().item() == pytest.approx(want, abs=1e-6)


def test_tiny_model_overfits_one_sample():
    """base_width 4, B = 4, crop 64: the loss falls 10x within 800 Adam steps (the loop stops
    as soon as it has). How many steps that takes depends on float rounding: on one machine
    179 steps at 2 threads, 405 at 1 (the thread count changes the reductions' order and a
    tiny net's path through training), so the budget is twice the slowest seen."""
    torch.manual_seed(0)
    b = default_collate([make_sample(7)])
    m = KernelEstimatorModule(TINY, {"lr": 3e-3})
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    losses = []
    for _ in range(800):
        k, mix = m(b["blurry"])
        loss = m.losses(b, k, mix, 2)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if len(losses) >= 5 and sum(losses[-5:]) / 5 < losses[0] / 10:
            break
    assert sum(losses[-5:]) / 5 < losses[0] / 10, (losses[0], losses[-5:])


def _paper_loss(b, k, mix):
    """reblur + kernel (p = 2) at unit weights, computed here from the losses themselves."""
    return reblur_loss(k, mix, b["sharp_linear"], b["blurry"], b["weights"]) \
        + kernel_loss(k, mix, b["kernels"], b["masks"], b["weights"])


def test_moment_term_is_added_with_its_weight():
    """loss = reblur + kernel + moment_loss_weight x moment loss, each computed here."""
    b = default_collate([make_sample(0), make_sample(1)])
    m = KernelEstimatorModule(TINY, {"moment_loss_weight": 0.3, "moment_size_weight": 0.5})
    with torch.no_grad():
        k, mix = m(b["blurry"])
        out = m.losses(b, k, mix, 2)
        mo = moment_loss(k, mix, b["kernels"], b["masks"], b["weights"],
                         layer_valid=b["layer_valid"], size_weight=0.5)
        want = _paper_loss(b, k, mix) + 0.3 * mo
    assert float(out["moment"]) == pytest.approx(float(mo), rel=1e-6)
    assert float(out["loss"]) == pytest.approx(float(want), rel=1e-5)
    assert "moment" not in KernelEstimatorModule(TINY, {}).losses(b, k, mix, 2)


def test_mixing_entropy_term_is_added_with_its_weight():
    """loss = reblur + kernel + mixing_entropy_weight x mixing entropy, each computed here."""
    b = default_collate([make_sample(0), make_sample(1)])
    m = KernelEstimatorModule(TINY, {"mixing_entropy_weight": 0.2})
    with torch.no_grad():
        k, mix = m(b["blurry"])
        out = m.losses(b, k, mix, 2)
        ent = mixing_entropy(mix, b["weights"])
        want = _paper_loss(b, k, mix) + 0.2 * ent
    assert 0 < float(ent) <= 1
    assert float(out["entropy"]) == pytest.approx(float(ent), rel=1e-6)
    assert float(out["loss"]) == pytest.approx(float(want), rel=1e-5)
    assert "entropy" not in KernelEstimatorModule(TINY, {}).losses(b, k, mix, 2)


@pytest.mark.parametrize("epoch, counts", [(2, False), (3, True), (7, True)])
def test_mixing_entropy_counts_from_its_epoch(monkeypatch, epoch, counts):
    """mixing_entropy_from_epoch 3: before epoch 3 the loss is reblur + kernel alone; from
    it on the entropy term is added with its weight."""
    monkeypatch.setattr(KernelEstimatorModule, "current_epoch", property(lambda self: epoch))
    b = default_collate([make_sample(0)])
    m = KernelEstimatorModule(TINY, {"mixing_entropy_weight": 0.2,
                                     "mixing_entropy_from_epoch": 3})
    with torch.no_grad():
        k, mix = m(b["blurry"])
        out = m.losses(b, k, mix, 2)
        want = _paper_loss(b, k, mix) + (0.2 * mixing_entropy(mix, b["weights"]) if counts else 0)
    assert ("entropy" in out) == counts
    assert float(out["loss"]) == pytest.approx(float(want), rel=1e-5)


def test_mixing_usage_term_is_subtracted_with_its_weight():
    """loss = reblur + kernel + 0.2 x entropy - 0.3 x usage, each computed here."""
    b = default_collate([make_sample(0), make_sample(1)])
    m = KernelEstimatorModule(TINY, {"mixing_entropy_weight": 0.2, "mixing_usage_weight": 0.3})
    with torch.no_grad():
        k, mix = m(b["blurry"])
        out = m.losses(b, k, mix, 2)
        use = mixing_usage(mix, b["weights"])
        want = _paper_loss(b, k, mix) + 0.2 * mixing_entropy(mix, b["weights"]) - 0.3 * use
    assert 0 < float(use) <= 1
    assert float(out["usage"]) == pytest.approx(float(use), rel=1e-6)
    assert float(out["loss"]) == pytest.approx(float(want), rel=1e-5)


# --------------------------------------------------------------------------- Trainer runs


def test_loss_switch_and_lr_schedule_epochs(tmp_path):
    cfg = _cfg(tmp_path, "train.epochs=5", "train.kernel_loss_p_switch_epoch=2",
               "train.lr_halve_every=2", "train.lr=1e-3", "logging.logger=csv")
    run_dir = train(cfg, FakeData())
    hist = _history(run_dir)
    assert [h["epoch"] for h in hist] == [0, 1, 2, 3, 4]
    assert [h["kernel_loss_p"] for h in hist] == [2, 2, 1, 1, 1]
    assert [h["train/kernel_loss_p"] for h in hist] == [2, 2, 1, 1, 1]
    assert [h["lr"] for h in hist] == pytest.approx([1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4])
    assert "val/kernel_l1" in hist[-1] and "val/kernel_l1" not in hist[0]
    # CSV logger without W&B: metrics.csv with the validation metrics, and the checkpoint
    # carries what load_any_estimator needs
    header = (run_dir / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"val/loss", "val/reblur_psnr", "val/kernel_error", "val/direction",
            "val/mixing_entropy", "train/loss_epoch"} <= set(header)
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["hyper_parameters"]["model"] == {**TINY, "gamma_in": 2.2,
                                                  "kernel_code": "bottleneck"}
    assert ckpt["kernel_loss_p"] == 1 and ckpt["epoch"] == 4
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["finished"] and summary["n_basis"] == 4
    assert summary["best"]["val/loss"] == min(h["val/loss"] for h in hist)
    assert (run_dir / "config.yaml").is_file() and (run_dir / "estimator.pt").is_file()
    # the report reads this run back
    from blurfield.commands.report import read_rows, write_report

    paths = write_report([run_dir], tmp_path / "report")
    (row,) = read_rows([run_dir / "summary.json"])
    assert row["n_basis"] == 4 and row["val/loss"] == hist[-1]["val/loss"]
    # learning curves: one polyline per chart with a point per validated epoch
    svg = paths["svg"].read_text()
    assert svg.count('class="series" data-name="t"') == 2
    points = svg.split('data-name="t" points="')[1].split('"')[0].split()
    assert len(points) == len(hist) == 5


def test_resume_at_epoch_boundary_equals_uninterrupted_run(tmp_path):
    """2 epochs straight = 1 epoch, stop, resume for 1 more; with the lr halving and the
    p switch both at epoch 1 so that an off-by-one in either shows in the weights."""
    from blurfield.models.io import load_any_estimator

    common = ["train.kernel_loss_p_switch_epoch=1", "train.lr_halve_every=1"]
    straight = train(_cfg(tmp_path, "train.epochs=2", "train.run_name=a", *common),
                     FakeData())
    csv = "logging.logger=csv"
    train(_cfg(tmp_path, "train.epochs=1", "train.run_name=b", csv, *common), FakeData())
    with pytest.raises(ValueError, match="train.resume=true"):
        prepare(_cfg(tmp_path, "train.epochs=2", "train.run_name=b", *common), FakeData())
    resumed = train(_cfg(tmp_path, "train.epochs=2", "train.run_name=b", "train.resume=true",
                         csv, *common), FakeData())
    # the first session's metrics.csv is kept beside the resumed one's (Lightning deletes it)
    rows = {name: csv_module.DictReader((resumed / name).read_text().splitlines())
            for name in ("metrics.1.csv", "metrics.csv")}
    epochs = {name: {r["epoch"] for r in reader if r["epoch"]} for name, reader in rows.items()}
    assert epochs == {"metrics.1.csv": {"0"}, "metrics.csv": {"1"}}
    ha, hb = _history(straight), _history(resumed)
    assert [(h["epoch"], h["lr"], h["kernel_loss_p"]) for h in hb] == \
        [(h["epoch"], h["lr"], h["kernel_loss_p"]) for h in ha] == [(0, 3e-3, 2), (1, 1.5e-3, 1)]
    sa = load_any_estimator(straight / "checkpoints" / "last.ckpt").state_dict()
    sb = load_any_estimator(resumed / "checkpoints" / "last.ckpt").state_dict()
    init = KernelEstimatorModule(TINY).model.state_dict()
    for name in sa:
        torch.testing.assert_close(sb[name], sa[name], rtol=0, atol=1e-6)
    assert any(not torch.equal(sa[n], init[n]) for n in sa)  # training did change them
    ea = torch.load(straight / "checkpoints" / "last.ckpt", weights_only=False)
    eb = torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=False)
    assert ea["global_step"] == eb["global_step"] == 2
    assert ea["lr_schedulers"][0] == eb["lr_schedulers"][0]


def test_wandb_offline_logger_and_pictures(tmp_path):
    """Also bf16 autocast and channels_last (the losses stay float32: finite values)."""
    cfg = _cfg(tmp_path, "train.epochs=1", "logging.logger=wandb", "logging.group=g",
               "logging.tags=[a,b]", "train.image_every_n_epochs=1",
               "train.precision=bf16-mixed", "train.channels_last=true")
    run_dir = train(cfg, FakeData(n_train=2, n_val=2))
    assert all(math.isfinite(v) for v in _history(run_dir)[0].values())
    runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and (run_dir / "wandb_id").read_text().strip() in runs[0].name
    media = list(runs[0].rglob("media/images/pictures/*.png"))
    assert {p.name.split("_")[0] for p in media} >= {"basis", "mixing", "psfs"}


def test_pictures_as_png_without_wandb(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "wandb", None)  # importing wandb would now fail
    cfg = _cfg(tmp_path, "train.epochs=1", "logging.logger=csv", "train.image_every_n_epochs=1")
    run_dir = train(cfg, FakeData(n_train=2, n_val=2))
    names = sorted(p.name for p in (run_dir / "pictures").glob("*.png"))
    assert names == ["epoch0000_basis.png", "epoch0000_mixing.png", "epoch0000_psfs.png"]


# --------------------------------------------------------------------------- CLI and helpers


def test_cli_bad_key_is_one_line(capsys):
    assert main(["train", "train.lrr=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "train.lrr" in err and "'lr'" in err


def test_cli_missing_shards_says_make_shards(tmp_path, capsys):
    code = main(["train", f"data.train_shards={tmp_path}/none-{{0..3}}.tar",
                 f"train.out_dir={tmp_path}", "logging.logger=none"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "data.train_shards" in err and "make shards" in err


def test_resume_checkpoint_picks_newest(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    assert resume_checkpoint(tmp_path) is None
    last = tmp_path / "checkpoints" / "last.ckpt"
    last.write_bytes(b"x")
    assert resume_checkpoint(tmp_path) == last
    for n, t in ((2, 10), (10, 20)):  # hpc_ckpt_10 is the highest number
        p = tmp_path / f"hpc_ckpt_{n}.ckpt"
        p.write_bytes(b"x")
        import os

        os.utime(p, (last.stat().st_mtime + t,) * 2)
    assert resume_checkpoint(tmp_path).name == "hpc_ckpt_10.ckpt"


def test_slurm_environment_with_auto_requeue(monkeypatch):
    from lightning.pytorch.plugins.environments import SLURMEnvironment

    assert slurm_plugins() == []
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    monkeypatch.setenv("SLURM_JOB_NAME", "train")
    (env,) = slurm_plugins()
    assert isinstance(env, SLURMEnvironment) and env.auto_requeue
    monkeypatch.setenv("SLURM_JOB_NAME", "bash")  # interactive allocation: not a batch job
    assert slurm_plugins() == []


def test_paper_config_values():
    cfg = load_config(["experiment/paper"])
    t, d, m = cfg.train, cfg.data, cfg.model
    assert (t.epochs, d.samples_per_epoch, d.batch_size, m.n_basis, m.kernel_size) == \
        (1200, 6000, 4, 25, 33)
    assert (t.kernel_loss_p_switch_epoch, t.lr_halve_every, t.lr) == (300, 150, 1e-4)
    assert cfg.logging.logger == "wandb" and cfg.logging.mode == "offline"
    for b in (15, 25, 40):
        c = load_config(["experiment/ablation_B"], [f"model.n_basis={b}"])
        assert (c.model.n_basis, c.train.epochs, c.train.kernel_loss_p_switch_epoch) == \
            (b, 450, 300)
        assert c.logging.group == "ablation_B" and c.train.run_name == f"ablation_B{b}"
        assert f"B{b}" in c.logging.tags
    c = load_config(["experiment/ablation_B_l2_450"], ["model.n_basis=40"])
    assert (c.model.n_basis, c.train.epochs, c.train.kernel_loss_p_switch_epoch) == \
        (40, 450, 450)


# --------------------------------------------------------------------------- real shards


@pytest.fixture(scope="module")
def builtin_shards(tmp_path_factory):
    """Six built-in scenes of 128 px written by data_prep's shard writer (~3 s)."""
    from data_prep.shards import build

    out = tmp_path_factory.mktemp("shards")
    cfg = load_config(["shards/builtin"], [
        f"shards.out_dir={out}", "shards.num_samples=6", "shards.shard_size=2",
        "shards.scene_size=128", "shards.crop_size=64", "shards.workers=0",
        "shards.progress=false", "kernels.count=50"])
    manifest = build(cfg, progress=False)
    return manifest["patterns"]["train"], str(out / "train-000000.tar")


def test_blurdatamodule_batch_fits_the_losses(builtin_shards):
    """A real batch: the ground-truth field gives a ~0 kernel loss and a small reblur loss,
    and the module's losses run on it."""
    from blurfield.data.datamodule import BlurDataModule

    cfg = load_config(None, [f"data.train_shards={builtin_shards[0]}", "data.crop_size=64",
                             "data.batch_size=2", "data.workers=0", "data.shuffle_buffer=2"])
    b = next(iter(BlurDataModule(cfg.data, kernel_size=K).train_dataloader()))
    assert b["blurry"].shape == (2, 3, CROP, CROP) and b["layer_valid"].any()
    gt_k, gt_m = b["kernels"], b["masks"]
    assert kernel_loss(gt_k, gt_m, gt_k, gt_m, b["weights"], layer_valid=b["layer_valid"]) < 1e-4
    assert reblur_loss(gt_k, gt_m, b["sharp_linear"], b["blurry"], b["weights"]) < 1e-3
    m = KernelEstimatorModule(TINY)
    with torch.no_grad():
        out = m.losses(b, *m(b["blurry"]), 2)
    assert all(torch.isfinite(v) for v in out.values())


def test_blurfield_train_on_real_shards(builtin_shards, tmp_path, capsys):
    from blurfield.models.io import load_any_estimator

    code = main(["train", f"data.train_shards={builtin_shards[0]}",
                 f"data.val_shards={builtin_shards[1]}", "data.samples_per_epoch=4",
                 "data.val_samples=2", "data.batch_size=2", "data.workers=0",
                 "data.crop_size=64", "data.shuffle_buffer=2", "model.n_basis=4",
                 "model.base_width=4", "train.epochs=1", "train.accelerator=cpu",
                 f"train.out_dir={tmp_path}", "train.run_name=real", "train.progress_bar=false",
                 "train.image_every_n_epochs=1", "logging.logger=none"])
    assert code == 0, capsys.readouterr().err
    run_dir = tmp_path / "real"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["epochs_completed"] == 1 and summary["global_step"] == 2
    assert math.isfinite(summary["final"]["val/loss"])
    assert len(list((run_dir / "pictures").glob("*.png"))) == 3
    est = load_any_estimator(run_dir / "estimator.pt")
    assert est.n_basis == 4


# --------------------------------------------------------------------------- report


def _summary(run_dir, name, group, b, psnr, err, loss):
    run_dir.mkdir(parents=True)
    s = {"run_name": name, "group": group, "n_basis": b, "epochs_planned": 450,
         "epochs_completed": 450, "final": {"val/reblur_psnr": psnr, "val/kernel_error": err,
                                            "val/loss": loss},
         "best": {"val/loss": loss * 0.9, "epoch": 400}, "history": []}
    (run_dir / "summary.json").write_text(json.dumps(s))


def test_report_table_and_plot(tmp_path, capsys):
    import csv

    runs = tmp_path / "runs"
    values = [("a40", "L1", 40, 31.0, 0.02, 0.3), ("a15", "L1", 15, 30.0, 0.03, 0.4),
              ("b25", "L2", 25, 29.5, 0.025, 0.35)]
    for v in values:
        _summary(runs / v[0], *v)
    out = tmp_path / "rep"
    assert main(["report", str(runs), "--out", str(out)]) == 0  # a parent of run dirs
    rows = list(csv.DictReader((out / "report.csv").open()))
    assert [(r["run"], r["group"], r["n_basis"]) for r in rows] == \
        [("a15", "L1", "15"), ("a40", "L1", "40"), ("b25", "L2", "25")]
    assert [float(r["val/reblur_psnr"]) for r in rows] == [30.0, 31.0, 29.5]
    assert [float(r["best val/loss"]) for r in rows] == pytest.approx([0.36, 0.27, 0.315])
    md = (out / "report.md").read_text().splitlines()
    assert len(md) == 5 and md[2].startswith("| a15 | L1 | 15 | 450/450 | 30 |")
    svg = (out / "report.svg").read_text()  # one chart per metric, one line per group
    assert svg.count("<title>") == 4 and svg.count("no data") == 1  # no val/direction here
    assert svg.count('class="series" data-name="L1"') == 3
    assert "a40" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "summary.json" in capsys.readouterr().err


def test_init_from_weights_starts_a_new_run_from_them(tmp_path):
    from blurfield.models.io import load_any_estimator, save_estimator

    source = KernelEstimatorModule(TINY).model
    torch.nn.init.constant_(source.mix_out.bias, 0.25)  # something a fresh init never has
    save_estimator(source, tmp_path / "init.pt")
    cfg = _cfg(tmp_path, "train.epochs=1", "train.lr=1e-12", "train.run_name=init",
               f"train.init_from={tmp_path / 'init.pt'}")
    run_dir = train(cfg, FakeData())
    trained = load_any_estimator(run_dir / "estimator.pt")
    torch.testing.assert_close(trained.mix_out.bias, source.mix_out.bias, atol=1e-6, rtol=0)


def test_last_checkpoint_follows_every_epoch_not_only_improvements(tmp_path, monkeypatch):
    """last.ckpt is what a requeued job resumes from: it must be the newest epoch even
    when the monitored val/loss got worse (Lightning's save_last alone would not write it)."""
    import blurfield.tasks.train as train_mod

    monkeypatch.setattr(train_mod, "MONITOR", "neg_epoch")

    class Worsening(KernelEstimatorModule):  # a monitored metric that only gets worse
        def on_validation_epoch_end(self):
            super().on_validation_epoch_end()
            self.log("neg_epoch", float(self.current_epoch))

    monkeypatch.setattr("blurfield.tasks.estimator.KernelEstimatorModule", Worsening)
    run_dir = train(_cfg(tmp_path, "train.epochs=3", "train.lr=1e-6"), FakeData())
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["epoch"] == 2
    assert (run_dir / "checkpoints" / "best-epoch0000.ckpt").is_file()


def test_curriculum_moment_loss_and_validation_every_other_epoch(tmp_path):
    cfg = _cfg(tmp_path, "train.epochs=2", "train.uniform_epochs=1",
               "train.moment_loss_weight=0.1", "train.val_every_n_epochs=2")
    hist = _history(train(cfg, FakeData()))
    assert [h["epoch"] for h in hist] == [0, 1]
    # Epoch 0 was not validated: its entry carries no val/ values (none left over either).
    assert not [k for k in hist[0] if k.startswith("val/")]
    assert {"val/moment", "val/direction", "val/kernel"} <= set(hist[1])
    assert all(math.isfinite(h["train/moment"]) for h in hist)
