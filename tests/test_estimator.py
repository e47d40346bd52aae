"""KernelEstimator (docs/design.md §3): layer table, simplex outputs, input checks, weights."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from blurfield.models import (
    KernelEstimator,
    convert_authors_state_dict,
    load_any_estimator,
    load_authors_weights,
    load_estimator_file,
    save_estimator,
)

SMALL = {"n_basis": 5, "base_width": 4}


def _small(seed: int = 0, **kw) -> KernelEstimator:
    torch.manual_seed(seed)
    return KernelEstimator(**{**SMALL, **kw}).eval()


def _image(n=2, c=3, h=64, w=96, seed=1) -> torch.Tensor:
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed))


def _run(model, x):
    with torch.no_grad():
        return model(x)


# ---------------------------------------------------------------- layer table / counts


def _conv(i, o, k=3):
    return i * o * k * k + o


def _up(i, s, o):  # ConvTranspose2d(i, i, 2) + conv i->o + conv o->o + conv (s+o)->o
    return _conv(i, i, 2) + _conv(i, o) + _conv(o, o) + _conv(s + o, o)


def _expected_count(w: int, b: int) -> tuple[int, int]:
    gray = _conv(1, w)
    enc = sum(_conv(i, o) + _conv(o, o) for i, o in
              [(w, w), (w, 2 * w), (2 * w, 4 * w), (4 * w, 8 * w), (8 * w, 16 * w)])
    mix = (_up(16 * w, 16 * w, 8 * w) + _up(8 * w, 8 * w, 4 * w) + _up(4 * w, 4 * w, 2 * w)
           + _up(2 * w, 2 * w, w) + _up(w, w, w) + 2 * _conv(w, w) + _conv(w, b))
    ker = (_up(16 * w, 16 * w, 8 * w) + _up(8 * w, 8 * w, 4 * w) + _up(4 * w, 4 * w, 4 * w)
           + _up(4 * w, 2 * w, 2 * w) + _up(2 * w, w, w) + _conv(w, w, 2) + _conv(w, w)
           + _conv(w, b))
    total = _conv(3, w) + gray + enc + _conv(16 * w, 16 * w) + mix + ker
    return total, gray


def _count(model) -> tuple[int, int]:
    return (sum(p.numel() for p in model.parameters()),
            sum(p.numel() for p in model.stem_gray.parameters()))


def test_full_size_parameter_count():
    assert _expected_count(64, 25) == (79_829_298, 640)
    with torch.device("meta"):
        model = KernelEstimator()
    assert _count(model) == (79_829_298, 640)
    assert model.hparams_dict == {"n_basis": 25, "kernel_size": 33, "base_width": 64,
                                  "gamma_in": 2.2, "kernel_code": "bottleneck"}


@pytest.mark.parametrize("w,b", [(4, 5), (8, 3), (12, 40)])
def test_widths_scale_with_base_width(w, b):
    with torch.device("meta"):
        model = KernelEstimator(n_basis=b, base_width=w)
    assert _count(model) == _expected_count(w, b)


def test_initialisation_statistics():
    model = KernelEstimator(n_basis=5, base_width=8)
    conv = model.down5.conv2  # 128 -> 128, 3x3: 147k weights
    expected = 0.5 * math.sqrt(2.0 / (9 * 128))
    assert conv.weight.std().item() == pytest.approx(expected, rel=0.02)
    assert abs(conv.weight.mean().item()) < 0.02 * expected
    tconv = model.mix_up1.up  # ConvTranspose2d(128, 128, 2)
    assert tconv.weight.std().item() == pytest.approx(0.5 * math.sqrt(2.0 / (4 * 128)), rel=0.03)
    assert all(m.bias.abs().max() == 0 for m in model.modules()
               if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)))


def _bottleneck_std(model: KernelEstimator, x: torch.Tensor) -> float:
    out = []
    hook = model.bottleneck.register_forward_hook(lambda m, i, o: out.append(o) and None)
    with torch.no_grad():
        model(x)
    hook.remove()
    return out[0].std().item()


def test_he_gain_keeps_the_signal_that_the_code_gain_halves_per_layer():
    """He init (gain 1) keeps the activations' scale through the 12 convs to the
    bottleneck; gain 0.5 shrinks it by ~2 per conv (2^-12 ~ 2e-4, here < 1e-2 of He's)."""
    torch.manual_seed(0)
    x = torch.rand(2, 3, 64, 64)
    model = KernelEstimator(n_basis=5, base_width=8)
    code = _bottleneck_std(model, x)
    model.reset_parameters(1.0)
    he = _bottleneck_std(model, x)
    assert model.down5.conv2.weight.std().item() == pytest.approx(math.sqrt(2 / 1152), rel=0.02)
    assert 0.02 < he < 5.0
    assert code < 1e-2 * he


def test_training_module_applies_init_gain():
    from blurfield.tasks.estimator import KernelEstimatorModule

    m = KernelEstimatorModule({"n_basis": 5, "base_width": 8}, {"init_gain": 1.0}).model
    assert m.down5.conv2.weight.std().item() == pytest.approx(math.sqrt(2 / 1152), rel=0.02)


def test_nearest_up_init_is_nearest_neighbour_upsampling_of_a_1x1_conv():
    from blurfield.tasks.estimator import KernelEstimatorModule

    m = KernelEstimatorModule({"n_basis": 5, "base_width": 4},
                              {"init_gain": 1.0, "init_upsampling": "nearest"}).model
    up = m.ker_up5.up
    x = torch.randn(2, up.in_channels, 5, 6)
    one_by_one = F.conv2d(x, up.weight[:, :, 0, 0].T[..., None, None], up.bias)
    with torch.no_grad():
        torch.testing.assert_close(up(x), F.interpolate(one_by_one, scale_factor=2.0,
                                                        mode="nearest"))
    with pytest.raises(ValueError, match="init_upsampling"):
        KernelEstimatorModule({"n_basis": 5, "base_width": 4}, {"init_upsampling": "bilinear"})


# ---------------------------------------------------------------- outputs


def test_outputs_are_on_the_simplex():
    kernels, mixing = _run(_small(), _image(n=2, h=64, w=96))
    assert kernels.shape == (2, 5, 33, 33)
    assert mixing.shape == (2, 5, 64, 96)
    assert kernels.min() >= 0 and mixing.min() >= 0
    torch.testing.assert_close(kernels.sum((2, 3)), torch.ones(2, 5))
    torch.testing.assert_close(mixing.sum(1), torch.ones(2, 64, 96))
    assert not torch.allclose(mixing[:, 0], mixing[:, 1])  # not a constant output


def test_input_transform_clamps_and_uses_gamma():
    model = _small()
    x = _image(n=1, h=32, w=64)
    neg = x.clone()
    neg[..., :8] = -0.3
    zero = x.clone()
    zero[..., :8] = 0.0
    for a, b in zip(_run(model, neg), _run(model, zero)):
        assert torch.equal(a, b)
    # gamma_in enters only through x**gamma_in: with gamma_in = 1 the input x**2.2 gives
    # the same result as the model with gamma_in = 2.2 given x.
    model_lin = _small(gamma_in=1.0)
    model_lin.load_state_dict(model.state_dict())
    for a, b in zip(_run(model, x), _run(model_lin, x ** 2.2)):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_grayscale_input_both_ways():
    model = _small()
    gray = _image(n=1, c=1, h=32, w=32)
    rgb = gray.repeat(1, 3, 1, 1)
    assert not bool(model.gray_trained)
    ref = _run(model, rgb)
    for a, b in zip(_run(model, gray), ref):  # untrained gray stem: repeated to RGB
        assert torch.equal(a, b)

    # Trained gray stem: a 1->w conv whose weight is the RGB weight summed over channels
    # computes exactly the RGB stem on the repeated image.
    with torch.no_grad():
        model.stem_gray.weight.copy_(model.stem_rgb.weight.sum(1, keepdim=True))
        model.stem_gray.bias.copy_(model.stem_rgb.bias)
    model.gray_trained.fill_(True)
    for a, b in zip(_run(model, gray), ref):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    with torch.no_grad():
        model.stem_gray.weight.mul_(-1.0)  # now the gray stem must change the output
    assert not torch.allclose(_run(model, gray)[1], ref[1], atol=1e-4)


@pytest.mark.parametrize("shape", [(1, 3, 48, 64), (1, 3, 64, 40), (1, 3, 0, 32)])
def test_size_not_multiple_of_32_raises(shape):
    with pytest.raises(ValueError, match="multiples of 32.*pad"):
        _small()(torch.rand(shape))


@pytest.mark.parametrize("channels", [2, 4])
def test_wrong_channel_count_raises(channels):
    with pytest.raises(ValueError, match="1 or 3 channels"):
        _small()(torch.rand(1, channels, 32, 32))


@pytest.mark.parametrize("k", [31, 65])
def test_other_kernel_sizes_raise(k):
    with pytest.raises(ValueError, match="only kernel_size=33"):
        KernelEstimator(kernel_size=k, base_width=4)


# ---------------------------------------------------------------- our weight files


def test_save_load_round_trip(tmp_path):
    model = _small(seed=3, n_basis=4, gamma_in=1.8)
    model.gray_trained.fill_(True)
    path = tmp_path / "sub" / "est.pt"
    save_estimator(model, path)
    assert [p.name for p in path.parent.iterdir()] == ["est.pt"]  # no temp file left
    blob = torch.load(path, weights_only=True)
    assert blob["format"] == "blurfield-estimator" and blob["version"] == 1
    assert blob["hparams"] == {"n_basis": 4, "kernel_size": 33, "base_width": 4,
                               "gamma_in": 1.8, "kernel_code": "bottleneck"}
    for load in (load_estimator_file, load_any_estimator):
        loaded = load(path)
        assert loaded.hparams_dict == model.hparams_dict and bool(loaded.gray_trained)
        assert not loaded.training
        for x in (_image(n=1, h=32, w=64), _image(n=1, c=1, h=32, w=32)):
            for a, b in zip(_run(loaded, x), _run(model, x)):
                assert torch.equal(a, b)


def test_load_errors_name_the_file(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="junk.pt"):
        load_any_estimator(junk)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(ValueError, match="other.pt.*not an estimator weight file"):
        load_any_estimator(other)
    with pytest.raises(ValueError, match="other.pt.*save_estimator"):
        load_estimator_file(other)
    with pytest.raises(ValueError, match="missing.pt.*not found"):
        load_any_estimator(tmp_path / "missing.pt")
    blob = {"format": "blurfield-estimator", "version": 99, "hparams": {}, "state_dict": {}}
    torch.save(blob, tmp_path / "future.pt")
    with pytest.raises(ValueError, match="future.pt.*version 99"):
        load_any_estimator(tmp_path / "future.pt")


# ---------------------------------------------------------------- authors' naming

# Their modules (TwoHeadsNetwork, K = 33), written from their constructor: name -> our name.
_THEIR_UPS = ["up1", "up2", "up3", "up4", "up5",
              "kernel_up1", "kernel_up2", "kernel_up3", "kernel_up4", "kernel_up5"]
_OUR_UPS = ["mix_up1", "mix_up2", "mix_up3", "mix_up4", "mix_up5",
            "ker_up1", "ker_up2", "ker_up3", "ker_up4", "ker_up5"]


def _ours_to_theirs() -> dict[str, str]:
    table = {"stem_rgb": "inc_rgb.0", "stem_gray": "inc_gray.0", "bottleneck": "feat.0",
             "mix_conv1": "masks_end.0", "mix_conv2": "masks_end.2", "mix_out": "masks_end.4",
             "ker_conv1": "kernels_end.0", "ker_conv2": "kernels_end.2",
             "ker_out": "kernels_end.4"}
    for i in range(1, 6):
        table[f"down{i}.conv1"] = f"down{i}.double_conv.0"
        table[f"down{i}.conv2"] = f"down{i}.double_conv.2"
    for ours, theirs in zip(_OUR_UPS, _THEIR_UPS):
        for a, b in [("up", "up"), ("conv1", "double_conv.0"), ("conv2", "double_conv.2"),
                     ("fuse", "feat.0")]:
            table[f"{ours}.{a}"] = f"{theirs}.{b}"
    return table


def _to_theirs(sd: dict, prefix: str = "") -> dict:
    table = _ours_to_theirs()
    out = {}
    for key, v in sd.items():
        if key == "gray_trained":
            continue
        module, param = key.rsplit(".", 1)
        out[f"{prefix}{table[module]}.{param}"] = v
    return out


def test_authors_shapes_match_their_constructor():
    """Our tensors, renamed, have the shapes their constructor arguments imply (w = 64)."""
    with torch.device("meta"):
        theirs = _to_theirs(KernelEstimator().state_dict())
    ups = {"up1": (1024, 1024, 512), "up2": (512, 512, 256), "up3": (256, 256, 128),
           "up4": (128, 128, 64), "up5": (64, 64, 64), "kernel_up1": (1024, 1024, 512),
           "kernel_up2": (512, 512, 256), "kernel_up3": (256, 256, 256),
           "kernel_up4": (256, 128, 128), "kernel_up5": (128, 64, 64)}
    expected = {"inc_rgb.0.weight": (64, 3, 3, 3), "inc_gray.0.weight": (64, 1, 3, 3),
                "feat.0.weight": (1024, 1024, 3, 3), "masks_end.4.weight": (25, 64, 3, 3),
                "kernels_end.0.weight": (64, 64, 2, 2), "kernels_end.4.weight": (25, 64, 3, 3)}
    for i, (a, b) in enumerate([(64, 64), (64, 128), (128, 256), (256, 512), (512, 1024)]):
        expected[f"down{i + 1}.double_conv.0.weight"] = (b, a, 3, 3)
        expected[f"down{i + 1}.double_conv.2.weight"] = (b, b, 3, 3)
    for name, (c_in, c_skip, c_out) in ups.items():
        expected[f"{name}.up.weight"] = (c_in, c_in, 2, 2)
        expected[f"{name}.double_conv.0.weight"] = (c_out, c_in, 3, 3)
        expected[f"{name}.double_conv.2.weight"] = (c_out, c_out, 3, 3)
        expected[f"{name}.feat.0.weight"] = (c_out, c_skip + c_out, 3, 3)
    for key, shape in expected.items():
        assert tuple(theirs[key].shape) == shape, key
    assert len(theirs) == 2 * (3 + 10 + 3 + 3 + 10 * 4)  # weight + bias of 59 convs


@pytest.mark.parametrize("prefix", ["", "module."])
def test_authors_weights_round_trip(tmp_path, prefix):
    source = _small(seed=5)
    path = tmp_path / "TwoHeads.pkl"
    torch.save(_to_theirs(source.state_dict(), prefix), path)
    x = _image(n=1, h=64, w=32)
    ref = _run(source, x)

    target = load_authors_weights(_small(seed=6), path)
    for a, b in zip(_run(target, x), ref):
        assert torch.equal(a, b)
    loaded = load_any_estimator(path)
    assert loaded.hparams_dict == {"n_basis": 5, "kernel_size": 33, "base_width": 4,
                                   "gamma_in": 2.2, "kernel_code": "bottleneck"}
    assert not bool(loaded.gray_trained)
    for a, b in zip(_run(loaded, x), ref):
        assert torch.equal(a, b)


def _reference_forward(sd: dict, x: torch.Tensor, gamma: float) -> tuple:
    """The network of docs/design.md §3 written with torch.nn.functional on the authors' names."""
    act = lambda t: F.leaky_relu(t, 0.01)  # noqa: E731

    def conv(name, t, pad=1):
        return F.conv2d(t, sd[f"{name}.weight"], sd[f"{name}.bias"], padding=pad)

    def up(name, t, skip):
        t = F.conv_transpose2d(t, sd[f"{name}.up.weight"], sd[f"{name}.up.bias"], stride=2)
        t = act(conv(f"{name}.double_conv.2", act(conv(f"{name}.double_conv.0", t))))
        return act(conv(f"{name}.feat.0", torch.cat([skip, t], 1)))  # sizes already match

    h = act(conv("inc_rgb.0", x.clamp(min=0) ** gamma - 0.5))
    feats = []
    for i in range(1, 6):
        f = act(conv(f"down{i}.double_conv.2", act(conv(f"down{i}.double_conv.0", h))))
        feats.append(f)
        h = F.max_pool2d(f, 2)
    b = act(conv("feat.0", h))
    m = b
    for i, f in zip(range(1, 6), reversed(feats)):
        m = up(f"up{i}", m, f)
    m = conv("masks_end.4", act(conv("masks_end.2", act(conv("masks_end.0", m)))))
    k = b.mean((2, 3), keepdim=True)
    for i, f in zip(range(1, 6), reversed(feats)):
        size = 2 ** i
        k = up(f"kernel_up{i}", k, f.mean((2, 3), keepdim=True).repeat(1, 1, size, size))
    k = conv("kernels_end.4", act(conv("kernels_end.2", act(conv("kernels_end.0", k, 1)))))
    n, nb = k.shape[:2]
    return k.reshape(n, nb, -1).softmax(-1).reshape(k.shape), m.softmax(1)


def test_forward_matches_functional_reference():
    model = _small(seed=9, gamma_in=2.2)
    with torch.no_grad():  # non-zero biases so that their placement is tested too
        for p in model.parameters():
            if p.ndim == 1:
                p.normal_(0.0, 0.05)
    x = _image(n=2, h=64, w=32)
    ref = _reference_forward(_to_theirs(model.state_dict()), x, 2.2)
    for a, b in zip(_run(model, x), ref):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_authors_key_errors():
    theirs = _to_theirs(_small().state_dict())
    broken = dict(theirs)
    del broken["feat.0.bias"]
    broken["kernel_up6.up.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"missing keys \['feat.0.bias'\].*kernel_up6.*65"):
        convert_authors_state_dict(broken)
    assert convert_authors_state_dict(theirs)["gray_trained"].item() is False


# ---------------------------------------------------------------- Lightning checkpoints


@dataclasses.dataclass
class _ModelSection:
    n_basis: int = 5
    kernel_size: int = 33
    base_width: int = 4
    gamma_in: float = 2.0


@dataclasses.dataclass
class _Cfg:
    model: _ModelSection = dataclasses.field(default_factory=_ModelSection)
    lr: float = 1e-4


@pytest.mark.parametrize("layout", ["model", "top", "dataclass"])
def test_lightning_checkpoint_round_trip(tmp_path, layout):
    model = _small(seed=7, gamma_in=2.0)
    hp = {"n_basis": 5, "kernel_size": 33, "base_width": 4, "gamma_in": 2.0}
    hyper = {"model": {"model": hp, "lr": 1e-4}, "top": {**hp, "lr": 1e-4},
             "dataclass": {"cfg": _Cfg()}}[layout]
    sd = {f"model.{k}": v for k, v in model.state_dict().items()}
    sd["loss_buffer"] = torch.zeros(2)  # LightningModule state that is not the estimator
    ckpt = {"epoch": 3, "global_step": 12, "state_dict": sd, "hyper_parameters": hyper,
            "optimizer_states": []}
    path = tmp_path / "last.ckpt"
    torch.save(ckpt, path)
    loaded = load_any_estimator(path)
    assert loaded.hparams_dict == {**hp, "kernel_code": "bottleneck"}  # not recorded: paper
    x = _image(n=1, h=32, w=32)
    for a, b in zip(_run(loaded, x), _run(model, x)):
        assert torch.equal(a, b)


def test_lightning_checkpoint_with_wrong_hparams_names_the_file(tmp_path):
    model = _small()
    ckpt = {"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
            "hyper_parameters": {"model": {"n_basis": 7, "base_width": 4}}}
    torch.save(ckpt, tmp_path / "bad.ckpt")
    with pytest.raises(ValueError, match="bad.ckpt.*do not fit"):
        load_any_estimator(tmp_path / "bad.ckpt")


def test_levels_kernel_code_decodes_every_level_and_round_trips(tmp_path):
    """kernel_code="levels": the kernel head starts from a 1x1 conv of the spatial mean and
    standard deviation of s1..s5 and the bottleneck (2 x 47 w channels) instead of the
    bottleneck's mean; the mixing head is untouched."""
    w, b = 4, 5
    paper = KernelEstimator(n_basis=b, kernel_size=33, base_width=w)
    levels = KernelEstimator(n_basis=b, kernel_size=33, base_width=w, kernel_code="levels")
    extra = sum(p.numel() for p in levels.parameters()) - sum(
        p.numel() for p in paper.parameters())
    assert extra == 2 * 47 * w * 16 * w + 16 * w  # the 1x1 conv's weights and biases
    # A flat image has zero spatial std; an image made 32 x 32 (a 1 x 1 bottleneck) too.
    for x in (_image(n=2, h=64, w=96), torch.full((1, 3, 32, 32), 0.5)):
        k, m = levels(x)
        assert torch.isfinite(k).all() and torch.isfinite(m).all()
        assert torch.allclose(k.sum((-2, -1)), torch.ones(k.shape[:2]), atol=1e-5)
    # The code that reaches the kernel decoder, against a direct computation from the
    # encoder's outputs captured by hooks.
    seen: dict[str, torch.Tensor] = {}
    hooks = [getattr(levels, f"down{i}").register_forward_hook(
        lambda mod, inp, out, i=i: seen.__setitem__(f"s{i}", out[0])) for i in range(1, 6)]
    hooks.append(levels.bottleneck.register_forward_hook(
        lambda mod, inp, out: seen.__setitem__("bott", F.leaky_relu(out, 0.01))))
    hooks.append(levels.ker_up1.register_forward_pre_hook(
        lambda mod, args: seen.__setitem__("code", args[0])))
    x = _image(n=2, h=64, w=64)
    with torch.no_grad():
        levels(x)
        feats = [seen[f"s{i}"] for i in range(1, 6)] + [seen["bott"]]
        stats = torch.cat([t for f in feats for t in (
            f.flatten(2).mean(2), f.flatten(2).var(2, unbiased=False).sqrt())], 1)
        code = F.leaky_relu(stats @ levels.ker_code.weight[:, :, 0, 0].T
                            + levels.ker_code.bias, 0.01)
    for h in hooks:
        h.remove()
    assert torch.allclose(seen["code"][:, :, 0, 0], code, atol=1e-5)
    save_estimator(levels, tmp_path / "levels.pt")
    loaded = load_any_estimator(tmp_path / "levels.pt")
    assert loaded.hparams_dict["kernel_code"] == "levels"
    x = _image(n=1, h=64, w=64)
    for a, c in zip(_run(loaded, x), _run(levels, x)):
        assert torch.equal(a, c)
    with pytest.raises(ValueError, match="kernel_code"):
        KernelEstimator(n_basis=b, kernel_size=33, base_width=w, kernel_code="pyramid")
