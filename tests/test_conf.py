"""The shipped files under conf/: every one loads, every experiment composes its
per-concern files with ``defaults:`` (and prints with ``blurfield config show``), and no
file restates what it composes: an experiment does not repeat its defaults' values, and
the kernel-generator files state only what differs from the schema (its defaults are the
one place the generators' parameters are written)."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import DictConfig, OmegaConf

from blurfield.cli import main
from blurfield.config import CONF_DIR, load_config, to_yaml

EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))
CONCERNS = ("model", "train", "data", "logging", "shards", "kernels", "experiment")


def own(path: Path) -> tuple[list[str], dict]:
    """A file's ``defaults:`` list and its own values as ``{dotted.key: value}`` (unresolved)."""
    node = OmegaConf.load(path)
    defaults = list(node.pop("defaults", None) or [])
    leaves: dict = {}

    def walk(n: DictConfig, prefix: str) -> None:
        for k in n:
            key = f"{prefix}{k}"
            if isinstance(n._get_node(k), DictConfig):
                walk(n[k], key + ".")
            else:
                leaves[key] = OmegaConf.to_container(n, resolve=False)[k]

    walk(node, "")
    return defaults, leaves


def test_every_conf_file_loads():
    files = [p for p in sorted(CONF_DIR.rglob("*.yaml")) if p.parent.name != "sweep"]
    assert len(files) > 20
    for p in files:
        load_config([p])


def test_experiments_are_composed_from_the_concern_files():
    assert {"paper", "tiny", "compact", "ablation_B", "deblurgan_reblur"} <= set(EXPERIMENTS)
    for name in EXPERIMENTS:
        defaults, _ = own(CONF_DIR / "experiment" / f"{name}.yaml")
        assert defaults, f"experiment/{name} composes nothing"
        for d in defaults:  # names under conf/, one concern each
            assert str(d).split("/")[0] in CONCERNS and (CONF_DIR / f"{d}.yaml").is_file(), d
        load_config([f"experiment/{name}"])


@pytest.mark.parametrize("name", ["paper", "ablation_B", "deblurgan_reblur"])
def test_config_show_prints_an_experiment(name, capsys):
    assert main(["config", "show", "--config", f"experiment/{name}"]) == 0
    shown = capsys.readouterr().out
    assert shown == to_yaml(load_config([f"experiment/{name}"]))
    assert f"run_name: {name}" in shown


def test_experiments_do_not_restate_their_defaults():
    """A key an experiment sets must change what its ``defaults:`` give it (the experiments
    once repeated conf/data/* key by key)."""
    restated = []
    for name in EXPERIMENTS:
        defaults, leaves = own(CONF_DIR / "experiment" / f"{name}.yaml")
        below, schema = load_config(defaults), load_config([])
        for key, value in leaves.items():
            was = OmegaConf.select(below, key)
            if was != OmegaConf.select(schema, key) and was == value:
                restated.append(f"experiment/{name}: {key}")
    assert not restated, restated


def test_kernel_files_state_only_what_differs_from_the_schema():
    schema = load_config([])
    for p in sorted((CONF_DIR / "kernels").glob("*.yaml")):
        defaults, leaves = own(p)
        same = [k for k, v in leaves.items()
                if k != "kernels.generator" and OmegaConf.select(schema, k) == v]
        assert not defaults and not same, (p.name, same)
        cfg = load_config([p]).kernels
        assert getattr(cfg.generator, "value", cfg.generator) == p.stem  # str or Enum
        assert cfg[p.stem] == schema.kernels[p.stem]  # the generator's parameters: the schema's


def test_the_restatement_check_catches_a_copied_data_section(tmp_path):
    """Negative control: an experiment that composes data/ade20k and repeats one of its keys."""
    text = (CONF_DIR / "experiment" / "paper.yaml").read_text()
    (tmp_path / "copy.yaml").write_text(text + "data:\n  workers: 6\n  crop_size: 256\n")
    defaults, leaves = own(tmp_path / "copy.yaml")
    below, schema = load_config(defaults), load_config([])
    hits = [k for k, v in leaves.items()
            if OmegaConf.select(below, k) != OmegaConf.select(schema, k)
            and OmegaConf.select(below, k) == v]
    assert hits == ["data.workers"]  # crop_size 256 is the schema's too: not a restatement
