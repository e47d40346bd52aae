"""The Richardson–Lucy options are defined once (blurfield.config.RLOptions / RestoreOptions)
and shared by the config's ``restore`` section, ``api.restore`` and ``richardson_lucy``; the
config offers no value the API refuses."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
import torch
from helpers.fields import line_field

from blurfield.api import restore
from blurfield.config import (
    BlurMethod,
    ConfigError,
    Padding,
    RestoreCfg,
    RestoreOptions,
    RLOptions,
    load_config,
)
from blurfield.restore import richardson_lucy


def test_one_definition_of_the_options():
    assert issubclass(RestoreCfg, RestoreOptions) and issubclass(RestoreOptions, RLOptions)
    names = {f.name for f in dataclasses.fields(RestoreOptions)}
    for fn in (restore, richardson_lucy):  # no second list of option parameters
        assert not names & set(inspect.signature(fn).parameters), fn.__name__
    rl = {f.name for f in dataclasses.fields(RLOptions)}
    cfg = load_config(["restore/default"])
    restore_rl = RLOptions.make(RestoreOptions())  # the shipped file states the defaults
    assert RLOptions.make(cfg.restore) == restore_rl == RLOptions.make(RestoreCfg())
    # restoring departs from RL's own defaults (the paper's) in the iteration count only
    assert {k for k in rl if getattr(restore_rl, k) != getattr(RLOptions(), k)} == {"iterations"}
    assert (RestoreOptions().iterations, RLOptions().iterations) == (10, 30)


@pytest.mark.parametrize("padding", list(Padding))
@pytest.mark.parametrize("method", list(BlurMethod))
def test_every_choice_the_config_offers_restores(padding, method):
    cfg = load_config([], [f"restore.padding={padding.value}", f"restore.method={method.value}",
                           "restore.iterations=2", "restore.no_harm=false"])
    opts = RestoreOptions.make(cfg.restore)
    assert opts.padding is padding and opts.method is method
    field = line_field(40, 48)
    v = torch.rand(1, 3, 40, 48)
    out = restore(v, field, opts, device="cpu")
    assert out.image.shape == v.shape and out.iterations <= 2


def test_a_value_the_api_refuses_is_refused_by_the_config():
    with pytest.raises(ConfigError, match=r"restore\.padding.*same, circular"):
        load_config([], ["restore.padding=valid"])
    with pytest.raises(ValueError, match="padding: 'valid' is not one of same, circular"):
        restore(torch.rand(1, 3, 40, 48), line_field(40, 48), padding="valid")
    with pytest.raises(TypeError, match="unknown option"):
        restore(torch.rand(1, 3, 40, 48), line_field(40, 48), iteratons=3)


def test_richardson_lucy_takes_options_or_keywords_alike():
    field = line_field(40, 48)
    v = torch.rand(1, 3, 40, 48)
    k, m = field.kernels[None], field.mixing[None]
    a = richardson_lucy(v, k, m, iterations=3, early_stop=False, padding="circular")
    b = richardson_lucy(v, k, m, RLOptions(iterations=3, early_stop=False, skip_tol=0.0,
                                           padding=Padding.circular))
    torch.testing.assert_close(a.image, b.image, rtol=0, atol=0)
    c = richardson_lucy(v, k, m, iterations=3, padding="valid")  # the operator's own padding
    assert c.image.shape[-2:] == (40 + 6, 48 + 6)
