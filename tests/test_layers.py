"""The import rule of experiments/ and of the four top-level parts, checked on the AST of every
module (imports inside functions included), and shown to fail on a planted upward import.

Layers of experiments/, lowest first; a module may import its own layer and those below:

    base (config, errors, catalog) → store, data → models → training → measurement → pipeline → entry (cli, commands, api, import_checkpoint)

Further rules: measurement never imports the training loop; the library never imports a
script (a module with a top-level ``main()``, such as benchmarks/); ``theory`` imports no other
part; ``bounds`` imports neither torch nor ``experiments`` nor ``theory``; ``figures`` imports
neither torch nor training nor measurement; ``CONTROL_SEP`` is defined in ``bounds`` only.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("theory", "bounds", "experiments", "figures")

#: experiments' layers, lowest first: the first path component under experiments/ names the layer.
LAYERS = [
    {"config", "errors", "catalog", "names", "environment", "data_option", "__init__"},
    {"store", "data"},
    {"models"},
    {"training"},
    {"measurement"},
    {"pipeline"},
    {"cli", "commands", "api", "import_checkpoint"},
]
#: The first layer of experiments/ that may draw with figures/ (the report is a pipeline step).
FIGURES_FROM = 5


def layer_of(module: str) -> int | None:
    """The layer of ``clbounds.experiments.<...>``, None outside experiments/."""
    parts = module.split(".")
    if parts[:2] != ["clbounds", "experiments"]:
        return None
    head = parts[2] if len(parts) > 2 else "__init__"
    for i, names in enumerate(LAYERS):
        if head in names:
            return i
    raise AssertionError(f"{module}: experiments/{head} belongs to no layer of tests/test_layers.py")


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(["clbounds", *parts])


def imports(path: Path, source: str | None = None) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in the file, in functions too; ``from X import y``
    gives ``X.y`` when ``X.y`` is a module of the package, else ``X``."""
    tree = ast.parse(source if source is not None else path.read_text())
    me = module_name(path).split(".")
    package = me if path.name == "__init__.py" else me[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for a in node.names:
                sub = f"{target}.{a.name}"
                found.append((node.lineno, sub if _is_module(sub) else target))
    return found


def _is_module(name: str) -> bool:
    if not name.startswith("clbounds."):
        return False
    rel = Path(*name.split(".")[1:])
    return (ROOT / rel).with_suffix(".py").is_file() or (ROOT / rel / "__init__.py").is_file()


def defines_main(module: str) -> bool:
    rel = Path(*module.split(".")[1:])
    path = (ROOT / rel).with_suffix(".py")
    if not path.is_file():
        return False
    return any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in ast.parse(path.read_text()).body)


ENTRY_POINTS = {"clbounds.experiments.cli"}  # `clbounds` itself: its main() is the console script


def violations(path: Path, source: str | None = None) -> list[str]:
    """Every import of the file that breaks a rule of the module docstring, one line each."""
    me = module_name(path)
    part = me.split(".")[1] if me.count(".") else ""
    mine = layer_of(me)
    bad = []
    for line, target in imports(path, source):
        where = f"{path.relative_to(ROOT)}:{line} imports {target}"
        top = target.split(".")[0]
        if top == "benchmarks" or (target.startswith("clbounds.") and target not in ENTRY_POINTS and defines_main(target)):
            bad.append(f"{where}: a script (main()), not library code")
        if not target.startswith("clbounds.") and top != "torch":
            continue
        their_part = target.split(".")[1] if target.startswith("clbounds.") else "torch"
        if part == "theory" and their_part in PARTS and their_part != "theory":
            bad.append(f"{where}: theory imports no other part")
        if part == "bounds" and their_part in ("torch", "experiments", "theory"):
            bad.append(f"{where}: bounds imports neither torch, experiments nor theory")
        if part == "figures" and (their_part == "torch" or target.startswith(("clbounds.experiments.training", "clbounds.experiments.measurement"))):
            bad.append(f"{where}: figures imports neither torch nor training nor measurement")
        if mine is None:
            continue
        theirs = layer_of(target)
        if theirs is not None and theirs > mine:
            bad.append(f"{where}: an upward import (layer {mine} -> {theirs})")
        if their_part == "figures" and mine < FIGURES_FROM:
            bad.append(f"{where}: only the pipeline and the entry points draw")
        if me.startswith("clbounds.experiments.measurement") and target.startswith("clbounds.experiments.training.loop"):
            bad.append(f"{where}: measurement never imports the training loop")
    return bad


def library_files() -> list[Path]:
    return sorted(p for part in PARTS for p in (ROOT / part).rglob("*.py"))


def test_every_module_keeps_the_import_rule():
    bad = [line for path in library_files() for line in violations(path)]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize(("where", "planted", "rule"), [
    ("experiments/store/db.py", "def f():\n    from ..training.loop import train\n", "upward import"),
    ("experiments/models/encoders.py", "from clbounds.experiments.measurement import measure\n", "upward import"),
    ("experiments/measurement/probes.py", "def f():\n    from ..training import loop\n", "training loop"),
    ("experiments/training/optim.py", "import benchmarks.run\n", "a script"),
    ("experiments/measurement/registry.py", "from ..cli import main\n", "upward import"),
    ("bounds/common.py", "import torch\n", "bounds imports"),
    ("theory/losses.py", "from clbounds.bounds import common\n", "theory imports"),
    ("figures/plots.py", "from clbounds.experiments.measurement.measure import measure\n", "figures imports"),
    ("experiments/training/loop.py", "from clbounds.figures import report\n", "draw"),
])
def test_a_planted_import_is_caught(where, planted, rule):
    path = ROOT / where
    assert not violations(path)
    found = violations(path, path.read_text() + "\n" + planted)
    assert len(found) >= 1 and all(rule in line for line in found), found


def test_every_folder_of_experiments_is_a_layer():
    for child in (ROOT / "experiments").iterdir():
        if child.suffix == ".py" or (child / "__init__.py").is_file():
            assert layer_of(f"clbounds.experiments.{child.stem}") is not None


def test_control_sep_is_defined_in_bounds_only():
    for path in library_files():
        tree = ast.parse(path.read_text())
        assigned = [n for n in ast.walk(tree) if isinstance(n, ast.Assign) and any(getattr(t, "id", None) == "CONTROL_SEP" for t in n.targets)]
        assert not assigned or path.parent.name == "bounds", path


def _compared_names(path: Path, names: set[str]) -> list[str]:
    """Every comparison in the file with one of ``names`` as a literal (``x == "cacr"``, ``x in ("a", "b")``)."""
    tree = ast.parse(path.read_text())
    return [f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}" for node in ast.walk(tree) if isinstance(node, ast.Compare)
            and any(isinstance(c, ast.Constant) and c.value in names for c in ast.walk(node))]


def test_method_names_are_compared_only_inside_the_method_modules():
    """What differs between methods is declared by each method (training/methods/), so a new
    method is one module and one registry line. figures/ is outside experiments: its paper
    figures label the paper's own variants."""
    from clbounds.experiments.catalog import METHODS

    outside = [p for p in (ROOT / "experiments").rglob("*.py") if (ROOT / "experiments" / "training" / "methods") not in p.parents]
    found = [line for path in outside for line in _compared_names(path, set(METHODS))]
    assert not found, "\n".join(found)


def test_term_group_names_live_in_the_measurement_registry():
    from clbounds.experiments.measurement.registry import GROUP_NAMES

    groups = ROOT / "experiments" / "measurement" / "groups"
    outside = [p for p in (ROOT / "experiments").rglob("*.py") if groups not in p.parents and p.name != "registry.py"]
    found = [line for path in outside for line in _compared_names(path, set(GROUP_NAMES))]
    assert not found, "\n".join(found)


def test_the_name_checks_catch_a_planted_comparison(tmp_path, monkeypatch):
    planted = ROOT / "experiments" / "pipeline" / "verify.py"
    source = planted.read_text() + '\n\ndef _planted(cfg):\n    return cfg.method.name == "cacr" or "sharpness" in cfg.terms\n'
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: source if self == planted else Path.read_bytes(self).decode())
    assert len(_compared_names(planted, {"cacr", "sharpness"})) == 2
    with pytest.raises(AssertionError, match="verify.py"):
        test_method_names_are_compared_only_inside_the_method_modules()
    with pytest.raises(AssertionError, match="verify.py"):
        test_term_group_names_live_in_the_measurement_registry()


def test_units_stay_short():
    """No file of experiments/ over 450 lines, no function over 80 (the argument parser aside):
    a unit a reader takes in at once."""
    long_files, long_functions = [], []
    for path in (ROOT / "experiments").rglob("*.py"):
        text = path.read_text()
        if text.count("\n") > 450:
            long_files.append(f"{path.relative_to(ROOT)}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name != "build_parser" and node.end_lineno - node.lineno >= 80:
                long_functions.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert not long_files and not long_functions, "\n".join(long_files + long_functions)
