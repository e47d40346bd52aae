"""DeblurGAN G/D, VGG19 trunk, WGAN-GP, the reblur-consistency loss and the fine-tune module."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers.logger import Logger
from torch import nn

from blurfield.config import load_config
from blurfield.losses import gradient_penalty
from blurfield.models import KernelEstimator, save_estimator
from blurfield.models.deblurgan import (
    DeblurGenerator,
    PatchCritic,
    convert_original_state_dict,
    load_deblurrer,
    run_generator,
    save_generator,
)
from blurfield.models.vgg import VGG19Conv33, load_vgg19_conv33
from blurfield.physics.camera import reblur, to_display
from blurfield.tasks.finetune import ReblurFinetuneModule, sharp_target


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _conv(i: int, o: int, k: int) -> int:  # weights + bias
    return i * o * k * k + o


# ---------------------------------------------------------------- generator / critic


def test_generator_parameter_count_matches_layer_list():
    w = 64  # the original DeblurGAN generator: ngf 64, 9 blocks, bias on every conv
    layers = [(3, w, 7), (w, 2 * w, 3), (2 * w, 4 * w, 3)] + [(4 * w, 4 * w, 3)] * 18 + [
        (4 * w, 2 * w, 3), (2 * w, w, 3), (w, 3, 7)]
    expected = sum(_conv(*c) for c in layers)
    assert expected == 11_378_179
    assert _count(DeblurGenerator(ngf=64, n_blocks=9)) == expected
    small = [(3, 8, 7), (8, 16, 3), (16, 32, 3)] + [(32, 32, 3)] * 4 + [(32, 16, 3), (16, 8, 3),
                                                                       (8, 3, 7)]
    assert _count(DeblurGenerator(ngf=8, n_blocks=2)) == sum(_conv(*c) for c in small)


def test_critic_parameter_count_and_patch_map_size():
    d = 64
    layers = [(3, d, 4), (d, 2 * d, 4), (2 * d, 4 * d, 4), (4 * d, 8 * d, 4), (8 * d, 1, 4)]
    expected = sum(_conv(*c) for c in layers)
    assert expected == 2_764_737
    assert _count(PatchCritic(ndf=64)) == expected

    def out(n: int) -> int:  # kernel 4, padding 2: three stride-2 convs, two stride-1 convs
        for s in (2, 2, 2, 1, 1):
            n = (n + 4 - 4) // s + 1
        return n

    assert out(256) == 35
    x = torch.rand(2, 3, 48, 64) * 2 - 1
    assert PatchCritic(ndf=4)(x).shape == (2, 1, out(48), out(64))


def test_generator_shapes_range_and_global_skip():
    torch.manual_seed(0)
    g = DeblurGenerator(ngf=4, n_blocks=2).eval()
    x = torch.rand(2, 3, 20, 28) * 2 - 1
    y = g(x)
    assert y.shape == x.shape and y.min() >= -1 and y.max() <= 1
    with torch.no_grad():  # a zero head makes tanh(0) = 0: the output is the input
        g.head.weight.zero_()
        g.head.bias.zero_()
    assert torch.equal(g(x), x)
    with pytest.raises(ValueError, match="multiples of 4"):
        g(torch.zeros(1, 3, 21, 28))
    # run_generator pads odd sizes, works on display values and crops back
    disp = torch.rand(1, 3, 21, 30)
    assert torch.allclose(run_generator(g, disp), disp, atol=1e-6)


# ---------------------------------------------------------------- original weights


class _OriginalBlock(nn.Module):
    """The original residual block, written from its layer list (keys conv_block.N)."""

    def __init__(self, dim: int, dropout: bool):
        super().__init__()
        layers = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), nn.InstanceNorm2d(dim),
                  nn.ReLU()]
        layers += [nn.Dropout(0.5)] if dropout else []
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), nn.InstanceNorm2d(dim)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv_block(x)


class _OriginalGenerator(nn.Module):
    """DeblurGAN's ResnetGenerator as one nn.Sequential ``model`` (learn_residual)."""

    def __init__(self, ngf: int, n_blocks: int, dropout: bool):
        super().__init__()
        IN = nn.InstanceNorm2d
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(3, ngf, 7), IN(ngf), nn.ReLU(),
                  nn.Conv2d(ngf, 2 * ngf, 3, 2, 1), IN(2 * ngf), nn.ReLU(),
                  nn.Conv2d(2 * ngf, 4 * ngf, 3, 2, 1), IN(4 * ngf), nn.ReLU()]
        layers += [_OriginalBlock(4 * ngf, dropout) for _ in range(n_blocks)]
        layers += [nn.ConvTranspose2d(4 * ngf, 2 * ngf, 3, 2, 1, output_padding=1),
                   IN(2 * ngf), nn.ReLU(),
                   nn.ConvTranspose2d(2 * ngf, ngf, 3, 2, 1, output_padding=1), IN(ngf),
                   nn.ReLU(), nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return torch.clamp(x + self.model(x), -1, 1)


@pytest.mark.parametrize("dropout", [True, False])
def test_original_naming_state_dict_loads(tmp_path, dropout):
    torch.manual_seed(1)
    ref = _OriginalGenerator(ngf=4, n_blocks=2, dropout=dropout).eval()
    sd = ref.state_dict()
    assert "model.10.conv_block.1.weight" in sd and "model.19.weight" in sd  # n=2: head 19
    # PyTorch 0.3 stored running stats for instance norm, and DataParallel a prefix
    sd = {f"module.{k}": v for k, v in sd.items()}
    for i in (2, 5, 8, 13, 16):
        sd[f"module.model.{i}.running_mean"] = torch.zeros(1)
        sd[f"module.model.{i}.running_var"] = torch.ones(1)
    path = tmp_path / "latest_net_G.pth"
    torch.save(sd, path)

    g = load_deblurrer(path)
    assert g.hparams_dict["ngf"] == 4 and g.hparams_dict["n_blocks"] == 2
    assert not g.training
    x = torch.rand(2, 3, 16, 24) * 2 - 1
    with torch.no_grad():
        expected = ref(x)
        got = g(x)
    assert (expected.abs() < 1).float().mean() > 0.5  # not a trivially clamped output
    assert torch.allclose(got, expected, atol=1e-5)
    converted, hp = convert_original_state_dict(sd)
    assert hp["dropout"] == (0.5 if dropout else 0.0)
    assert torch.equal(converted["head.weight"], sd["module.model.19.weight"])
    assert torch.equal(converted["blocks.1.conv2.bias"],
                       sd[f"module.model.11.conv_block.{6 if dropout else 5}.bias"])


def test_load_deblurrer_refuses_other_files(tmp_path):
    path = tmp_path / "x.pth"
    torch.save({"foo": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="not a deblurring generator"):
        load_deblurrer(path)
    with pytest.raises(ValueError, match="not found"):
        load_deblurrer(tmp_path / "missing.pth")


# ---------------------------------------------------------------- VGG19 trunk


def test_vgg19_conv33_loads_torchvision_naming_and_matches_direct_chain(tmp_path):
    g = torch.Generator().manual_seed(2)
    convs = {0: (3, 64), 2: (64, 64), 5: (64, 128), 7: (128, 128), 10: (128, 256),
             12: (256, 256), 14: (256, 256), 16: (256, 256)}  # 16 lies past conv3_3
    sd = {}
    for i, (ci, co) in convs.items():
        sd[f"features.{i}.weight"] = torch.randn(co, ci, 3, 3, generator=g) * math.sqrt(2 / ci / 9)
        sd[f"features.{i}.bias"] = torch.randn(co, generator=g) * 0.1
    sd["classifier.0.weight"] = torch.zeros(4, 4)
    path = tmp_path / "vgg19.pth"
    torch.save(sd, path)
    vgg = load_vgg19_conv33(path)
    assert _count(VGG19Conv33()) == 1_735_488
    assert not any(p.requires_grad for p in vgg.parameters()) and not vgg.training

    x = torch.rand(1, 3, 16, 20, generator=g)
    y = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor(
        [0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    for i in (0, 2, "pool", 5, 7, "pool", 10, 12, 14):
        if i == "pool":
            y = F.max_pool2d(y, 2)
        else:
            y = F.conv2d(y, sd[f"features.{i}.weight"], sd[f"features.{i}.bias"], padding=1)
            y = F.relu(y) if i != 14 else y
    assert torch.allclose(vgg(x), y, atol=1e-5)

    del sd["features.12.weight"]
    torch.save(sd, path)
    with pytest.raises(ValueError, match="features.12.weight"):
        load_vgg19_conv33(path)


# ---------------------------------------------------------------- WGAN-GP


def test_gradient_penalty_matches_per_sample_autograd():
    torch.manual_seed(3)
    critic = PatchCritic(ndf=4)
    real, fake = torch.rand(3, 3, 24, 24) * 2 - 1, torch.rand(3, 3, 24, 24) * 2 - 1
    alpha = torch.rand(3, 1, 1, 1)
    gp = gradient_penalty(critic, real, fake, alpha)
    terms = []
    for n in range(3):
        x = (alpha[n] * real[n] + (1 - alpha[n]) * fake[n]).unsqueeze(0).requires_grad_(True)
        (g,) = torch.autograd.grad(critic(x).mean(), x, create_graph=True)
        terms.append((torch.sqrt((g**2).sum()) - 1) ** 2)
    direct = torch.stack(terms).mean()
    assert torch.allclose(gp, direct, rtol=1e-5, atol=1e-7)
    # differentiable in the critic's weights, with the same gradient
    w = critic.convs[1].weight
    (g1,) = torch.autograd.grad(gp, w, retain_graph=True)
    (g2,) = torch.autograd.grad(direct, w)
    assert g1.abs().sum() > 0 and torch.allclose(g1, g2, rtol=1e-4, atol=1e-8)


def test_gradient_penalty_closed_form_for_linear_critic():
    # f(x) = mean_pixels(sum_c w_c x_c) + b: grad = w_c / (HW) at every pixel, so
    # ||grad|| = ||w|| / sqrt(HW) whatever the input.
    critic = nn.Conv2d(3, 1, 1)
    with torch.no_grad():
        critic.weight.copy_(torch.tensor([3.0, -4.0, 12.0]).view(1, 3, 1, 1))
    h, w = 8, 8
    real, fake = torch.rand(2, 3, h, w), torch.rand(2, 3, h, w)
    gp = gradient_penalty(critic, real, fake, torch.rand(2, 1, 1, 1))
    assert gp.item() == pytest.approx((13.0 / math.sqrt(h * w) - 1) ** 2, rel=1e-5)


# ---------------------------------------------------------------- reblur consistency


K = 33


def _field(n: int, b: int, h: int, w: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    kernels = torch.softmax(torch.randn(n, b, K * K, generator=g) * 3, -1).view(n, b, K, K)
    logits = F.interpolate(torch.randn(n, b, 4, 4, generator=g) * 4, size=(h, w),
                           mode="bilinear", align_corners=False)
    return kernels, torch.softmax(logits, 1)


class _StubEstimator(nn.Module):
    """Returns a fixed field whatever the input (the sample's ground truth)."""

    def __init__(self, kernels, mixing):
        super().__init__()
        self.kernels, self.mixing = kernels, mixing
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        assert x.shape[-2:] == self.mixing.shape[-2:]
        return self.kernels, self.mixing


def _cfg(**finetune):
    base = {"ngf": 4, "n_blocks": 1, "ndf": 4, "content_loss": "mse", "reblur_weight": 1.0,
            "estimator": "unused-stub", "n_critic": 2}
    base.update(finetune)
    return load_config(overrides=[f"finetune.{k}={'null' if v is None else v}"
                                  for k, v in base.items()])


@pytest.mark.parametrize("padding", ["same", "valid", "circular"])
def test_reblur_loss_is_zero_at_the_sharp_image(padding):
    n, h, w = 2, 64, 64
    g = torch.Generator().manual_seed(4)
    sharp_lin = torch.rand(n, 3, h, w, generator=g) * 0.8 + 0.05
    kernels, mixing = _field(n, 3, h, w, seed=5)
    make = "circular" if padding == "circular" else "same"  # "valid" compares the centre
    blurry = reblur(sharp_lin, kernels, mixing, padding=make)  # no noise, no clipping
    stub = _StubEstimator(kernels, mixing)
    for norm in ("l1", "l2"):
        module = ReblurFinetuneModule(_cfg(reblur_padding=padding, reblur_norm=norm),
                                      estimator=stub)
        at_sharp = module.reblur_loss(blurry, to_display(sharp_lin))
        at_blurry = module.reblur_loss(blurry, blurry)
        assert at_sharp.item() < 1e-6
        assert at_blurry.item() > (1e-3 if norm == "l1" else 1e-5)
        assert at_blurry.item() > 1000 * at_sharp.item()
    assert stub.calls > 0


def test_sharp_target_is_the_centre_crop_in_display():
    sharp = torch.rand(1, 3, 40, 40)
    batch = {"blurry": torch.zeros(1, 3, 8, 8), "sharp_linear": sharp}
    assert torch.allclose(sharp_target(batch), to_display(sharp[..., 16:24, 16:24]).clamp(0, 1))


def test_config_errors_are_clear():
    with pytest.raises(ValueError, match="finetune.vgg_path is not set"):
        ReblurFinetuneModule(_cfg(content_loss="perceptual", reblur_weight=0))
    with pytest.raises(ValueError, match="finetune.estimator=FILE"):
        ReblurFinetuneModule(_cfg(estimator=None))
    # weight 0: plain DeblurGAN, the estimator is not even loaded (the path does not exist)
    m = ReblurFinetuneModule(_cfg(reblur_weight=0, estimator="/nonexistent/estimator.pt"))
    assert m.estimator is None


# ---------------------------------------------------------------- fit on CPU


class _Batches(torch.utils.data.Dataset):
    """Binding-format samples: blurry (3, 32, 32), sharp_linear (3, 64, 64) around it."""

    def __init__(self, count: int = 4, size: int = 32):
        g = torch.Generator().manual_seed(6)
        self.sharp = torch.rand(count, 3, size + K - 1, size + K - 1, generator=g) * 0.9
        kernels, mixing = _field(count, 2, size, size, seed=7)
        self.blurry = reblur(self.sharp, kernels, mixing, padding="valid")

    def __len__(self):
        return len(self.blurry)

    def __getitem__(self, i):
        return {"blurry": self.blurry[i], "sharp_linear": self.sharp[i],
                "has_field": torch.tensor(True)}


class _RecordingLogger(Logger):
    def __init__(self):
        super().__init__()
        self.metrics: dict[str, float] = {}
        self.images: list[str] = []

    name = "rec"
    version = "0"

    def log_metrics(self, metrics, step=None):
        self.metrics.update(metrics)

    def log_hyperparams(self, params, *args, **kwargs):
        pass

    def log_image(self, key, images, step=None, **kwargs):
        assert images[0].shape == (32, 96, 3) and images[0].dtype.name == "uint8"
        self.images.append(key)


def test_fit_alternates_keeps_estimator_frozen_and_checkpoints_its_hash(tmp_path):
    torch.manual_seed(8)
    est = KernelEstimator(n_basis=3, base_width=2)
    est_path = tmp_path / "est.pt"
    save_estimator(est, est_path)
    vgg_sd = {f"features.{k}": v for k, v in VGG19Conv33().features.state_dict().items()}
    vgg_path = tmp_path / "vgg.pth"
    torch.save(vgg_sd, vgg_path)
    cfg = _cfg(estimator=str(est_path), content_loss="perceptual", vgg_path=str(vgg_path),
               n_critic=3, reblur_weight=10.0)
    order: list[str] = []

    class Recording(ReblurFinetuneModule):
        def configure_optimizers(self):
            opt_g, opt_d = super().configure_optimizers()
            opt_g.register_step_post_hook(lambda *a: order.append("G"))
            opt_d.register_step_post_hook(lambda *a: order.append("D"))
            return [opt_g, opt_d]

    module = Recording(cfg)
    frozen = module.estimator
    before = {k: v.clone() for k, v in frozen.state_dict().items()}
    assert not frozen.training
    g_before = module.generator.stem.weight.detach().clone()
    logger = _RecordingLogger()
    loader = torch.utils.data.DataLoader(_Batches(), batch_size=2)
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, logger=logger,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0,
                        limit_val_batches=1, log_every_n_steps=1)
    trainer.fit(module, loader, loader)

    assert order == (["D"] * 3 + ["G"]) * 2
    assert trainer.global_step == len(order)  # Lightning counts both optimisers' steps
    assert module.estimator is frozen and not frozen.training
    assert all(p.grad is None and not p.requires_grad for p in frozen.parameters())
    assert all(torch.equal(before[k], v) for k, v in frozen.state_dict().items())
    assert not torch.equal(g_before, module.generator.stem.weight)  # the generator trained
    for key in ("train/loss_g", "train/loss_d", "train/reblur", "train/content", "val/psnr",
                "val/loss"):
        assert math.isfinite(logger.metrics[key]), key
    assert logger.metrics["train/reblur"] > 0
    assert "train/samples" in logger.images and "val/samples" in logger.images

    ckpt_path = tmp_path / "ft.ckpt"
    trainer.save_checkpoint(ckpt_path)
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    assert all(k.startswith(("generator.", "critic.")) for k in ckpt["state_dict"])
    info = ckpt["frozen_models"]["estimator"]
    import hashlib

    assert info["sha256"] == hashlib.sha256(est_path.read_bytes()).hexdigest()
    assert info["path"] == str(est_path.resolve())
    # the evaluation loader reads the generator back from the fine-tune checkpoint
    g = load_deblurrer(ckpt_path)
    x = torch.rand(1, 3, 32, 32)
    module.eval()
    assert torch.allclose(run_generator(g, x), module(x).clamp(0, 1), atol=1e-6)
    save_generator(module.generator, tmp_path / "generator.pt")
    g2 = load_deblurrer(tmp_path / "generator.pt")
    assert torch.equal(g2(x * 2 - 1), g(x * 2 - 1))
    # and a new fine-tune can start from it
    m2 = ReblurFinetuneModule(_cfg(reblur_weight=0, generator_init=str(ckpt_path)))
    assert torch.equal(m2.generator.stem.weight, module.generator.stem.weight)
