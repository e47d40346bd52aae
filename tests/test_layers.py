"""The import layers (docs/design.md §10): every module's imports, parsed with ``ast``
(function-local imports included), point down or sideways, never up.

blurfield, bottom to top (a module may import its own layer and the ones below)::

    0 utilities   errors, fileio, config, config_schema, config_reference, options,
                  commandline, html, imageio, viz (and the package)
    1 physics
    2 models, losses, data
    3 restore
    4 api, fieldfile
    5 tasks, evaluation
    6 commands (one module per command), cli, docs, __main__

``blurfield`` never imports ``data_prep`` or ``demo``. ``data_prep`` makes data: it uses
blurfield's utilities, the blur model (physics) and the data contract (``blurfield.data``),
never a learned model, the restoration, the tasks, the evaluation, the commands or the CLI,
and never ``demo``. ``demo`` sits on top of both and may import anything.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("blurfield", "data_prep", "demo")

LAYERS: list[tuple[str, ...]] = [
    ("blurfield", "blurfield.errors", "blurfield.fileio", "blurfield.config",
     "blurfield.config_schema", "blurfield.config_reference", "blurfield.options",
     "blurfield.commandline", "blurfield.html", "blurfield.imageio", "blurfield.viz"),
    ("blurfield.physics",),
    ("blurfield.models", "blurfield.losses", "blurfield.data"),
    ("blurfield.restore",),
    ("blurfield.api", "blurfield.fieldfile"),
    ("blurfield.tasks", "blurfield.evaluation"),
    ("blurfield.commands", "blurfield.cli", "blurfield.docs", "blurfield.__main__"),
]
DATA_PREP_MAY_IMPORT = (*LAYERS[0], *LAYERS[1], "blurfield.data")


def layer_of(module: str) -> int | None:
    """The layer of a blurfield module (its longest listed prefix; the bare package
    ``blurfield`` only matches itself), None when unlisted."""
    best, found = -1, None
    for i, names in enumerate(LAYERS):
        for name in names:
            hit = module == name or (name != "blurfield" and module.startswith(name + "."))
            if hit and len(name) > best:
                best, found = len(name), i
    return found


def data_prep_may_import(target: str) -> bool:
    return any(target == n or (n != "blurfield" and target.startswith(n + "."))
               for n in DATA_PREP_MAY_IMPORT)


def module_name(path: Path) -> tuple[str, bool]:
    """(dotted name, is a package ``__init__``) of a source file under ROOT."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    is_pkg = parts[-1] == "__init__"
    return ".".join(parts[:-1] if is_pkg else parts), is_pkg


def tree() -> dict[str, tuple[str, bool]]:
    """{module: (source, is_package)} for every module of the three packages."""
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            name, is_pkg = module_name(path)
            out[name] = (path.read_text(encoding="utf-8"), is_pkg)
    return out


def imports_of(module: str, source: str, is_package: bool = False,
               known: frozenset[str] | set[str] = frozenset()) -> list[tuple[int, str]]:
    """(line, imported module) for each import of one of PACKAGES anywhere in ``source``.
    ``from a import b`` counts as ``a.b`` when ``a.b`` is in ``known`` (a submodule), else
    as ``a``; relative imports are resolved against ``module``."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".") if is_package else module.split(".")[:-1]
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known]
            out += [(node.lineno, s) for s in subs] or [(node.lineno, base)]
    return [(line, m) for line, m in out if m.split(".")[0] in PACKAGES]


def violations(module: str, source: str, is_package: bool = False,
               known: frozenset[str] | set[str] = frozenset()) -> list[str]:
    """One line per import of ``module`` that breaks the layers."""
    top = module.split(".")[0]
    here = layer_of(module) if top == "blurfield" else None
    out = []
    for line, target in imports_of(module, source, is_package, known):
        ttop = target.split(".")[0]
        there = layer_of(target) if ttop == "blurfield" else None
        if top == "demo" or ttop == top == "data_prep":
            continue
        if ttop == "demo":
            why = "nothing imports the demo"
        elif top == "blurfield" and ttop == "data_prep":
            why = "blurfield never imports data_prep"
        elif top == "data_prep" and not data_prep_may_import(target):
            why = "data_prep uses blurfield's utilities, physics and data only"
        elif top == "blurfield" and (here is None or there is None or there > here):
            why = f"layer {here} imports layer {there}"
        else:
            continue
        out.append(f"{module}:{line} imports {target}: {why}")
    return out


# --------------------------------------------------------------------------- the tree


def test_every_blurfield_module_has_a_layer():
    unlisted = [m for m in tree() if m.startswith("blurfield") and layer_of(m) is None]
    assert not unlisted, f"add these to LAYERS (and docs/design.md §10): {unlisted}"


def test_no_module_imports_a_layer_above_it():
    modules = tree()
    known = set(modules)
    found = [v for m, (src, pkg) in modules.items() for v in violations(m, src, pkg, known)]
    assert not found, "\n".join(found)


def test_command_tables_name_modules_of_their_own_program():
    """The two dynamic import tables (``importlib`` by name, invisible to ``ast``)."""
    from blurfield.cli import COMMANDS
    from data_prep.__main__ import SUBCOMMANDS

    assert all(m.startswith("blurfield.") for m in COMMANDS.values())
    assert all(m.startswith("data_prep.") for m in SUBCOMMANDS.values())
    known = set(tree())
    assert set(COMMANDS.values()) <= known and set(SUBCOMMANDS.values()) <= known


# --------------------------------------------------------------------------- the checker


KNOWN = frozenset({"blurfield.tasks.train", "blurfield.api", "blurfield.physics.blur",
                   "blurfield.html", "data_prep.shards", "data_prep.kernels.bank",
                   "data_prep.kernels.render"})


@pytest.mark.parametrize("module,source,expect", [
    ("blurfield.physics.blur", "def f():\n    from blurfield.tasks.train import fit\n",
     "blurfield.physics.blur:2 imports blurfield.tasks.train: layer 1 imports layer 5"),
    ("blurfield.models.estimator", "import blurfield.cli\n", "layer 2 imports layer 6"),
    ("blurfield.restore.rl", "from blurfield import api\n", "layer 3 imports layer 4"),
    ("blurfield.api", "from data_prep.shards import build\n",
     "blurfield never imports data_prep"),
    ("blurfield.cli", "from data_prep import shards\n", "blurfield never imports data_prep"),
    ("data_prep.shards", "from blurfield.cli import UserError\n", "physics and data only"),
    ("data_prep.gopro", "from blurfield.tasks import train\n", "physics and data only"),
    ("data_prep.kernels.bank", "from blurfield.evaluation.metrics import psnr\n",
     "physics and data only"),
    ("data_prep.handmade", "from blurfield.models.basis_init import line_kernel\n",
     "physics and data only"),
    ("blurfield.tasks.train", "import demo.pipeline\n", "nothing imports the demo"),
    ("blurfield.tasks.train", "from blurfield.commands import train\n",
     "layer 5 imports layer 6"),
    ("blurfield.evaluation.benchmark", "from blurfield.commands.evaluate import run\n",
     "layer 5 imports layer 6"),
    ("blurfield.physics.blur", "from blurfield.newthing import x\n", "layer 1 imports layer None"),
])
def test_checker_catches_an_injected_upward_import(module, source, expect):
    found = violations(module, source, known=KNOWN)
    assert len(found) == 1 and expect in found[0], found


@pytest.mark.parametrize("module,source,is_pkg", [
    ("blurfield.tasks.train", "from blurfield.physics import blur\nimport blurfield.html\n",
     False),
    ("blurfield.models.basis_init", "from blurfield.models.estimator import KernelEstimator\n",
     False),
    ("blurfield.evaluation.synthetic", "from blurfield.tasks.estimator import x\n", False),
    ("data_prep.kernels.bank", "from . import render\nfrom .render import line\n", False),
    ("data_prep.kernels", "from .bank import build\n", True),
    ("data_prep.handmade", "from blurfield.physics.kernels import line_kernel\n"
                           "from blurfield.errors import UserError\n"
                           "from blurfield.data.schema import Sample\n"
                           "from blurfield import html\n", False),
    ("demo.pipeline", "from blurfield.cli import main\nfrom data_prep.shards import build\n",
     False),
    ("blurfield.physics.blur", "import torch\nfrom os import path\n", False),
])
def test_checker_accepts_imports_down_and_sideways(module, source, is_pkg):
    assert violations(module, source, is_pkg, known=KNOWN) == []


def test_relative_imports_resolve_against_the_module():
    assert imports_of("data_prep.kernels.bank", "from ..shards import build\n",
                      known=KNOWN) == [(1, "data_prep.shards")]
    assert imports_of("data_prep.kernels", "from . import bank\n", True,
                      known=KNOWN) == [(1, "data_prep.kernels.bank")]
    assert imports_of("data_prep.kernels", "from .render import x\n", True,
                      known=KNOWN) == [(1, "data_prep.kernels.render")]
