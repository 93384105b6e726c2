"""Layering of the core: each layer imports only the layers below it, counting the imports deferred
into functions (only ``TYPE_CHECKING`` imports are left out); module-level imports form no cycle;
the contract and engine modules are on no cycle even through deferred imports; ``varscore.plugin``,
what plugin authors import, reaches only the layers below it; the core never imports the built-in
plugins."""

from __future__ import annotations

import ast
from pathlib import Path

import varscore

CORE = Path(varscore.__file__).resolve().parent
#: modules that must not reach themselves through any import, deferred ones included
FOUNDATIONS = (
    "varscore.plugin.contracts",
    "varscore.genome.edits",
    "varscore.scoring.engine",
    "varscore.genome.personal",
    "varscore.training.trainer",
    "varscore.training.lightning",
)


#: The layers, lowest first; a module may import its own layer and the ones before it. ``simulate``
#: (the simulated cohort) sits beside the workflow layers.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "types", "examples"),
    ("io",),
    ("genome",),
    ("plugin",),
    ("models",),
    ("training", "scoring", "simulate"),
    ("analysis",),
    ("cli", "api", "__main__"),
)
#: What the plugin surface may import besides itself.
PLUGIN_MAY_IMPORT = ("errors", "types", "io", "genome")
#: Known imports against the order, each to be removed by the owner of the importing module; the
#: test fails on any other (an entry that no longer occurs may be deleted).
KNOWN_UPWARD: set[tuple[str, str]] = set()


def _layer(module: str) -> int | None:
    """The index in :data:`LAYERS` of ``module`` (``varscore.X...``); None for the package itself
    (``varscore/__init__.py``, the lazy public API, which imports on first use)."""
    parts = module.split(".")
    if len(parts) < 2:
        return None
    return next(i for i, names in enumerate(LAYERS) if parts[1] in names)


def _upward_imports(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    out = set()
    for module, imported in graph.items():
        for other in imported:
            low, high = _layer(other), _layer(module)
            if low is not None and high is not None and low > high:
                out.add((module, other))
    return out


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, deferred: bool) -> set[str]:
    """Modules ``path`` imports (and ``module.name`` for each ``from module import name``):
    module level only, or with ``deferred`` also inside functions; never under TYPE_CHECKING."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()

    def walk(nodes: list[ast.stmt], top: bool) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                walk(node.orelse, top)
                continue
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
            is_function = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            if is_function and not deferred:
                continue
            for field in ("body", "orelse", "finalbody", "handlers"):
                children = getattr(node, field, None)
                if isinstance(children, list):
                    walk([c for c in children if isinstance(c, ast.stmt | ast.excepthandler)], top and not is_function)

    walk(tree.body, True)
    return found


def _graph(root: Path, deferred: bool) -> dict[str, set[str]]:
    modules = {_module_name(p, root): p for p in root.rglob("*.py")}
    return {name: {m for m in _imports(path, deferred) if m in modules and m != name} for name, path in modules.items()}


def _cycle_through(graph: dict[str, set[str]], start: str) -> list[str] | None:
    """A shortest import path from ``start`` back to itself, or None."""
    paths = {nxt: [start, nxt] for nxt in sorted(graph.get(start, ()))}
    queue = list(paths)
    while queue:
        node = queue.pop(0)
        if node == start:
            return paths[node]
        for nxt in sorted(graph.get(node, ())):
            if nxt not in paths:
                paths[nxt] = [*paths[node], nxt]
                queue.append(nxt)
    return None


def test_every_module_belongs_to_a_layer() -> None:
    unplaced = []
    for module in _graph(CORE, deferred=True):
        try:
            _layer(module)
        except StopIteration:
            unplaced.append(module)
    assert unplaced == []


def test_each_layer_imports_only_the_layers_below_it() -> None:
    upward = _upward_imports(_graph(CORE, deferred=True))
    assert upward - KNOWN_UPWARD == set()


def test_the_plugin_surface_imports_only_the_lower_layers() -> None:
    allowed = {"plugin", *PLUGIN_MAY_IMPORT}
    graph = _graph(CORE, deferred=True)
    found = {
        (module, other)
        for module, imported in graph.items()
        if module.startswith("varscore.plugin")
        for other in imported
        if other != "varscore" and other.split(".")[1] not in allowed
    }
    assert found - KNOWN_UPWARD == set()


def test_the_layer_check_counts_deferred_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "varscore"
    (pkg / "plugin").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "plugin" / "__init__.py").write_text("")
    (pkg / "plugin" / "contracts.py").write_text("def fit():\n    from varscore.training.trainer import fit\n")
    (pkg / "training").mkdir()
    (pkg / "training" / "__init__.py").write_text("")
    (pkg / "training" / "trainer.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import varscore.cli\nimport varscore.plugin.contracts\n"
    )
    (pkg / "cli.py").write_text("")
    assert _upward_imports(_graph(pkg, deferred=False)) == set()
    assert _upward_imports(_graph(pkg, deferred=True)) == {("varscore.plugin.contracts", "varscore.training.trainer")}


def test_module_level_imports_have_no_cycle() -> None:
    graph = _graph(CORE, deferred=False)
    cycles = {m: c for m in graph if (c := _cycle_through(graph, m))}
    assert cycles == {}


def test_the_foundation_modules_are_on_no_cycle_even_through_deferred_imports() -> None:
    graph = _graph(CORE, deferred=True)
    cycles = {m: " -> ".join(c) for m in FOUNDATIONS if (c := _cycle_through(graph, m))}
    assert cycles == {}


def test_the_cycle_check_finds_a_deferred_cycle(tmp_path: Path) -> None:
    pkg = tmp_path / "varscore"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "base.py").write_text("def finetune():\n    from varscore.training import fit\n")
    (pkg / "training.py").write_text("from varscore.personal import one_hot\n")
    (pkg / "personal.py").write_text("import varscore.engine\n")
    (pkg / "engine.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import varscore.cli\n"
        "from varscore.base import ISMResult\n"
    )
    (pkg / "cli.py").write_text("import varscore.engine\n")
    assert _cycle_through(_graph(pkg, deferred=False), "varscore.base") is None
    assert _cycle_through(_graph(pkg, deferred=True), "varscore.base") == [
        "varscore.base",
        "varscore.training",
        "varscore.personal",
        "varscore.engine",
        "varscore.base",
    ]
    assert _cycle_through(_graph(pkg, deferred=True), "varscore.cli") is None  # TYPE_CHECKING does not count


def test_the_core_never_imports_the_built_in_plugins() -> None:
    offenders = [
        str(p.relative_to(CORE))
        for p in CORE.rglob("*")
        if p.is_file() and p.suffix in {".py", ".json", ".txt"} and "varscore_plugins" in p.read_text(errors="ignore")
    ]
    assert offenders == []


def test_every_subpackage_is_listed_for_the_wheel() -> None:
    """setup.cfg lists packages by name: a new subpackage missing there would be left out of the wheel."""
    import configparser

    config = configparser.ConfigParser()
    config.read(CORE.parent / "setup.cfg")
    listed = {name.strip() for name in config["options"]["packages"].replace(",", "\n").split()}
    found = {_module_name(p.parent / "__init__.py", CORE) for p in CORE.rglob("__init__.py")}
    assert found - listed == set()
