"""Imports run one way: calib -> objectives, calib -> sim_backends; never back up, and
objectives and sim_backends do not import each other. Inside calib, no import cycle, counting
imports inside functions and under ``if TYPE_CHECKING:``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FORBIDDEN = {"objectives": {"calib", "sim_backends"}, "sim_backends": {"calib", "objectives"}}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_upward_or_sideways_imports(package):
    bad = []
    for path in (REPO / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            bad += [f"{path.relative_to(REPO)}: {n}" for n in names if n.split(".")[0] in FORBIDDEN[package]]
    assert not bad, bad


def calib_import_graph(repo: Path = REPO) -> dict[str, set[str]]:
    """calib's modules -> the calib modules they import, counting imports inside functions and
    under ``if TYPE_CHECKING:`` (each is a dependency all the same). Importing ``a.b.c`` counts
    as importing each package on the way (their ``__init__`` runs), except the importer's own
    ancestors."""
    mods = {}
    for path in (repo / "calib").rglob("*.py"):
        parts = list(path.relative_to(repo).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        targets = []
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    src = ".".join(base + ([node.module] if node.module else []))
                else:
                    src = node.module or ""
                targets += [f"{src}.{a.name}" if f"{src}.{a.name}" in mods else src for a in node.names]
        ancestors = {".".join(mod.split(".")[:i]) for i in range(1, len(mod.split(".")))}
        for t in targets:
            parts = t.split(".")
            for i in range(1, len(parts) + 1):
                name = ".".join(parts[:i])
                if name in mods and name != mod and name not in ancestors:
                    graph[mod].add(name)
    return graph


def first_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    from graphlib import CycleError, TopologicalSorter

    try:
        tuple(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        return list(exc.args[1])
    return None


def test_calib_has_no_import_cycles():
    cycle = first_cycle(calib_import_graph())
    assert cycle is None, f"import cycle: {' -> '.join(cycle or [])}"


@pytest.mark.parametrize("where", ["function", "type_checking"])
def test_the_cycle_check_sees_deferred_and_type_checking_imports(tmp_path: Path, where: str):
    pkg = tmp_path / "calib"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .sub import b\n")
    back = {"function": "def f():\n    from .. import a\n",
            "type_checking": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..a import X\n"}[where]
    (pkg / "sub" / "b.py").write_text(back)
    assert first_cycle(calib_import_graph(tmp_path)) is not None
    (pkg / "sub" / "b.py").write_text("")
    assert first_cycle(calib_import_graph(tmp_path)) is None


def test_a_checkpoint_written_before_the_modules_moved_still_loads(tmp_path: Path):
    """A re-attaching driver reads checkpoints that name classes by their old modules."""
    import io
    import pickle

    from calib.execution import checkpoint
    from calib.spec.fidelity import BUILTIN_FIDELITIES
    from calib.stages.upstream_state import Lineage

    objs = (BUILTIN_FIDELITIES["smoke"], Lineage("slurry", None, None, None, "final.data", "0" * 64))
    text = pickle.dumps(objs, protocol=0).decode("latin-1")
    old = text.replace("calib.spec.fidelity\n", "calib.fidelity\n").replace("calib.stages.upstream_state\n",
                                                                              "calib.lineage\n")
    assert "calib.fidelity\n" in old and "calib.lineage\n" in old
    back = checkpoint._Unpickler(io.BytesIO(old.encode("latin-1")), {}).load()
    assert back == objs


def test_a_checkpoint_naming_the_slurry_module_loads_the_classes_that_left_it(monkeypatch):
    """A trial checkpointed before ``calib.stages.slurry`` was split names its ``RatePlan``s
    and ``RateResult``s by that module; ``MOVED_NAMES`` finds them in their new modules (not
    by the old module's imports of them), and the names still there load from it as before."""
    import io
    import pickle

    from calib.execution import checkpoint
    from calib.stages import slurry
    from calib.stages.slurry import SlurryTrial
    from calib.stages.slurry_results import RateResult
    from calib.stages.slurry_runs import RatePlan
    from calib.stages.slurry_settings import ViscositySettings

    objs = (RatePlan(0, 18.0, 1.8e-5, 4, 10, 8), RateResult(18.0, 1.8e-5, 2.5, 0.1, True, 1000, 3.0, 1.5),
            ViscositySettings(rate_scale=1000.0), SlurryTrial)
    text = pickle.dumps(objs, protocol=0).decode("latin-1")
    old = text
    for new in ("calib.stages.slurry_runs\n", "calib.stages.slurry_results\n", "calib.stages.slurry_settings\n"):
        assert new in old
        old = old.replace(new, "calib.stages.slurry\n")
    assert "calib.stages.slurry_" not in old
    for cls in objs[:3]:
        name = type(cls).__name__
        assert checkpoint.MOVED_NAMES[("calib.stages.slurry", name)] == type(cls).__module__
        monkeypatch.delattr(slurry, name, raising=False)  # found through MOVED_NAMES alone
    back = checkpoint._Unpickler(io.BytesIO(old.encode("latin-1")), {}).load()
    assert back == objs
    assert type(back[0]) is RatePlan and type(back[1]) is RateResult and back[3] is SlurryTrial


LAYERS = ("core", "ledger | spec", "stages", "study", "optimize", "review", "execution | publish", "cli")
"""calib's parts, lowest first (docs/architecture.md): a module imports only from its own part
or from parts below it; parts joined by ``|`` do not import each other."""


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """The imports that go up ``LAYERS`` or sideways between parts of one layer."""
    rank = {name.strip(): i for i, layer in enumerate(LAYERS) for name in layer.split("|")}
    rank["__main__"] = len(LAYERS)
    return [f"{a} -> {b}" for a, bs in graph.items() for b in bs
            if _part(a) != _part(b) and rank[_part(a)] <= rank[_part(b)]]


def test_calib_imports_run_down_its_layers():
    graph = calib_import_graph()
    assert not graph.pop("calib"), "calib/__init__.py imports nothing"
    parts = {name.strip() for layer in LAYERS for name in layer.split("|")}
    assert {_part(m) for m in graph} <= parts | {"__main__"}, "a part outside LAYERS"
    assert not upward_imports(graph), upward_imports(graph)


def test_the_layer_check_refuses_an_upward_and_a_sideways_import():
    assert upward_imports({"calib.stages.a": {"calib.core.b"}, "calib.core.b": set()}) == []
    assert upward_imports({"calib.core.b": {"calib.stages.a"}}) == ["calib.core.b -> calib.stages.a"]
    assert upward_imports({"calib.ledger": {"calib.spec.x"}}) == ["calib.ledger -> calib.spec.x"]
