"""train.init_kernels=lines and train.freeze_kernels_epochs (blurfield.models.basis_init)."""

from __future__ import annotations

import math

import pytest
import torch
from helpers.moments import axes
from omegaconf import OmegaConf

from blurfield.config import ConfigError, load_config
from blurfield.models import KernelEstimator
from blurfield.models.basis_init import fit_kernel_head, line_dictionary
from blurfield.tasks.estimator import KernelEstimatorModule
from blurfield.tasks.train import check_config

K = 33


def test_line_dictionary_is_a_delta_then_lines_by_direction_and_length():
    d = line_dictionary(25, K)
    assert d.shape == (25, K, K)
    torch.testing.assert_close(d.sum((-1, -2)), torch.ones(25))
    assert int(d[0].argmax()) == (K // 2) * K + K // 2 and d[0].max() > 0.15
    stds = []
    for j in range(1, 25):
        a = 22.5 * ((j - 1) % 8)
        vals, vecs = axes(d[j].double().numpy())
        angle = math.degrees(math.atan2(vecs[0, 1], vecs[1, 1])) % 180  # x right, y down
        ratio = math.sqrt(vals[1] / vals[0])
        # kornia's angle turns counter-clockwise on screen: -a with y pointing down
        err = abs((angle + a) % 180)
        assert min(err, 180 - err) < (3.0 if j > 8 else 5.0), (j, angle, a)
        assert ratio > 2.5
        stds.append(vals.sum())
    assert stds[0] < stds[8] < stds[16]  # 7, 17, 27 px: shortest first
    # B = 10: two lengths (7 and 27 px): the delta, the eight 7-px lines, a 27-px one at 0°
    d10 = line_dictionary(10, K)
    torch.testing.assert_close(d10, torch.cat([d[:9], d[17:18]]))
    with pytest.raises(ValueError, match="kernel_size"):
        line_dictionary(5, 32)


def test_fit_kernel_head_draws_the_dictionary_for_any_photo():
    torch.manual_seed(0)
    model = KernelEstimator(5, K, base_width=4)
    model.reset_parameters(1.0)
    target = line_dictionary(5, K)
    photo = torch.rand(1, 3, 64, 64).cumsum(-1) / 64  # ramps: not the fit's noise images
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        k0, _ = model(photo)
    start = float((k0[0] - target).abs().sum((-1, -2)).mean())
    dist = fit_kernel_head(model, target, steps=150)
    with torch.no_grad():
        k1, m1 = model(photo)
    after = float((k1[0] - target).abs().sum((-1, -2)).mean())
    assert start > 1.5 and dist < 0.4 and after < 0.5
    for n, p in model.named_parameters():
        changed = not torch.equal(p, before[n])
        assert changed == n.startswith("ker_") or not p.requires_grad, n
        assert p.grad is None
    assert not model.stem_gray.weight.requires_grad and model.down1.conv1.weight.requires_grad
    with pytest.raises(ValueError, match="target"):
        fit_kernel_head(model, target[:3])


def test_frozen_kernel_head_gets_zero_gradients_until_the_epoch():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 64, 64)
    for freeze, zero in ((1, True), (0, False)):
        m = KernelEstimatorModule({"n_basis": 4, "base_width": 4},
                                  {"freeze_kernels_epochs": freeze})
        kernels, mixing = m(x)
        ((kernels**2).sum() + (mixing * x[:, :1]).sum()).backward()
        m.on_after_backward()  # current_epoch is 0 outside a Trainer
        head = {id(p) for p in m.model.kernel_head_parameters()}
        assert head and len(head) < len(list(m.model.parameters()))
        for p in m.model.parameters():
            if p.grad is None:
                continue
            if id(p) in head:
                assert (p.grad.abs().max() == 0) == zero
            else:
                assert p.grad.abs().max() > 0


def test_bad_init_kernels_values_raise():
    # a choice the schema's Enum does not have is refused when the config is loaded
    with pytest.raises(ConfigError, match=r"train\.init_kernels.*network, lines"):
        load_config(["experiment/tiny"], ["train.init_kernels=dots"])
    bad = OmegaConf.merge(load_config(["experiment/tiny"]),
                          {"train": {"freeze_kernels_epochs": -1}})
    with pytest.raises(ValueError, match=">= 0"):
        check_config(bad)
