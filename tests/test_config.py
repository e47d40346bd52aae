"""Config schema, YAML composition and the CLI's one-line errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from blurfield.cli import main
from blurfield.config import CONF_DIR, ConfigError, as_config, load_config


def test_schema_defaults_and_overrides():
    cfg = load_config([], ["model.n_basis=40", "restore.scale=2"])
    assert cfg.model.n_basis == 40 and cfg.model.kernel_size == 33
    assert cfg.restore.scale == 2


def test_defaults_list_composes_files(tmp_path):
    (tmp_path / "base.yaml").write_text("model:\n  n_basis: 15\ntrain:\n  lr: 0.5\n")
    (tmp_path / "top.yaml").write_text(f"defaults: [{tmp_path / 'base'}]\ntrain:\n  lr: 0.25\n")
    cfg = load_config([tmp_path / "top.yaml"], ["train.epochs=3"])
    assert (cfg.model.n_basis, cfg.train.lr, cfg.train.epochs) == (15, 0.25, 3)


@pytest.mark.parametrize("override, words", [
    (["model.n_basiss=4"], ["model.n_basiss", "n_basis"]),
    (["model.n_basis=wide"], ["model.n_basis", "int"]),
    (["nokey"], ["key=value"]),
])
def test_bad_config_is_one_clear_line(override, words):
    with pytest.raises(ConfigError) as e:
        load_config([], override)
    msg = str(e.value)
    assert "\n" not in msg and all(w in msg for w in words)


def test_every_shipped_yaml_loads():
    files = sorted(CONF_DIR.rglob("*.yaml"))
    assert files
    for f in files:
        if "sweep" in f.parts:
            continue
        load_config([f])


def test_cli_config_show(capsys):
    assert main(["config", "show", "model.n_basis=40"]) == 0
    assert "n_basis: 40" in capsys.readouterr().out


def test_cli_errors_are_one_line_without_traceback():
    out = subprocess.run([sys.executable, "-m", "blurfield", "config", "show",
                          "train.lrr=1"], capture_output=True, text=True)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "train.lrr" in out.stderr
    assert "Did you mean 'lr'" in out.stderr


def test_config_reference_is_current():
    """docs/config.md lists every key of the schema with its default (regenerate with
    `make docs`)."""
    from blurfield.docs import CONFIG_MD, render

    assert CONFIG_MD.read_text(encoding="utf-8") == render(), \
        "docs/config.md is stale: make docs (python -m blurfield.docs)"


def test_a_choice_outside_its_enum_is_one_line_naming_the_allowed_values(capsys):
    from blurfield.config import ConfigError

    with pytest.raises(ConfigError, match=r"eval\.benchmark.*realblur_j, realblur_r"):
        load_config([], ["eval.benchmark=realblur"])
    assert main(["evaluate", "--benchmark", "realblur", "--root", "."]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "eval.benchmark" in err[0] and "koehler" in err[0]


@pytest.mark.parametrize("override, allowed", [
    ("kernels.generator=gauss", "tremor, boracchi, mix"),
    ("kernels.fit=clip", "reject, shrink"),
    ("shards.source=coco", "builtin, ade20k, folder"),
    ("shards.layout=2017", "auto, full, challenge"),
])
def test_data_prep_choices_are_enums_with_one_line_errors(override, allowed, capsys):
    from data_prep.__main__ import main as data_prep_main

    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=rf"'{key}'.*{allowed}"):
        load_config([], [override])
    command = "kernels" if key.startswith("kernels") else "shards"
    assert data_prep_main([command, override]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and key in err[0] and allowed in err[0]


def test_wandb_mode_is_a_choice_and_the_environment_is_checked_too(tmp_path, monkeypatch):
    from blurfield.tasks.loggers import build_logger

    with pytest.raises(ConfigError, match=r"logging\.mode.*offline, online, disabled"):
        load_config([], ["logging.mode=onlin"])
    cfg = as_config(load_config([], ["logging.mode=disabled"])).logging
    monkeypatch.setenv("WANDB_MODE", "sometimes")
    with pytest.raises(ValueError, match=r"WANDB_MODE.*offline, online, disabled"):
        build_logger(cfg, tmp_path / "run", "run")


def test_plain_writes_choices_as_their_strings():
    """What bank.json, manifest.json and plan.json record: the value, not 'Generator.mix'."""
    import json

    from blurfield.config import Generator, as_config, plain

    c = as_config(load_config([], ["kernels.generator=mix", "shards.layout=full"]))
    assert c.kernels.generator is Generator.mix
    p = plain(c)
    assert p["kernels"]["generator"] == "mix" and type(p["kernels"]["generator"]) is str
    assert type(p["shards"]["source"]) is str and type(p["shards"]["layout"]) is str
    assert p == plain(load_config([], ["kernels.generator=mix", "shards.layout=full"]))
    assert json.loads(json.dumps(p)) == p


def test_every_alias_flag_names_a_schema_key_and_says_what_it_is():
    """Each command's alias flags set keys the schema has, and ``--help`` gives the key's
    meaning (the schema's comment, as in docs/config.md) before the key itself."""
    import importlib

    import blurfield.cli as cli
    import data_prep.__main__ as data_prep_main
    from blurfield.config_reference import key_comment

    checked = 0
    for table, parser in ((cli.COMMANDS, cli._parser),
                          (data_prep_main.SUBCOMMANDS, data_prep_main._parser)):
        for name, module in table.items():
            mod = importlib.import_module(module)
            helps = {a.option_strings[0]: a.help for a in parser(name, mod)._actions
                     if a.option_strings}
            for flag, key in getattr(mod, "ALIASES", {}).items():
                meaning = key_comment(key)
                assert meaning, f"{name} {flag}: {key} has no comment in the schema"
                assert helps[flag] == f"{meaning.replace('%', '%%')} (alias of {key})"
                checked += 1
    assert checked >= 20
    assert key_comment("restore.no_such_key") == "" and key_comment("nope.x") == ""
    assert key_comment("restore.checkpoint").startswith("estimator weights")
