"""The layout's rules, checked on the code's own imports (docs/design.md: data flows datasets → surrogates →
methods → bench; inside bench/, rooms by role with one import direction).

Every import counts, at the top of a module or inside a function: a function-level import that runs upward is a
cycle waiting for the day it runs at import time. The rules:

1. Packages: a module may import its own package and the packages before it in `PACKAGES`, never one after it.
2. bench/: a module may import its own room and the rooms before it in `ROOMS`, never one after it. `errors` and
   `config` are the floor every room may stand on; `api` is above every room, and only the entry points
   (`cli`, `__main__`, `__init__`) stand above it.
3. No private name crosses a file in package code: `from x import _name` and `x._name` on an imported project
   module are refused (a helper two files share is public, in the lowest room both use). Tests may reach in.
4. A room is never named after an API function (`bench/run/` would shadow `bench.run` once imported): after every
   module is imported, `bench.run`, `fit`, `compare` and `report` are still the API's functions, and work.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("datasets", "surrogates", "methods", "bench")
# bench/'s layers, lowest first: a module may import its own layer and the ones before it
ROOMS = (("bench.errors", "bench.config"), ("bench.scoring",), ("bench.running",), ("bench.reporting",),
         ("bench.fidelity",), ("bench.studies",), ("bench.api",), ("bench.cli", "bench.__main__", "bench"))
API = ("run", "fit", "compare", "report")


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_files(root: Path = ROOT):
    for package in PACKAGES:
        yield from sorted((root / package).rglob("*.py"))


def imports_of(path: Path, root: Path = ROOT):
    """(line, imported module, imported names) for every import in the file, relative imports resolved."""
    me = module_name(path, root)
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, ()
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = me.split(".")[: len(me.split(".")) - node.level + (1 if is_package else 0)]
                module = ".".join(base + ([module] if module else []))
            yield node.lineno, module, tuple(a.name for a in node.names)


def _project(module: str) -> bool:
    return module.split(".")[0] in PACKAGES


def _layer(module: str) -> int | None:
    """The index in ROOMS of the layer a bench module belongs to (None outside bench)."""
    if module.split(".")[0] != "bench":
        return None
    best = None
    for i, layer in enumerate(ROOMS):
        for prefix in layer:
            if module == prefix or (prefix != "bench" and module.startswith(prefix + ".")):
                best = i
    return best


def _targets(module: str, names, root: Path) -> list[str]:
    """The modules an import reaches: `from bench.scoring import metrics` reaches bench.scoring.metrics, and
    `from bench import api` bench.api (not the package `bench`, whose __init__ any submodule import runs anyway);
    `from bench import run` reaches the package itself."""
    subs = [f"{module}.{n}" for n in names if n != "*" and _is_module(root, f"{module}.{n}")]
    return subs if subs and len(subs) == len(names) else [module, *subs]


def order_violations(root: Path = ROOT) -> list[str]:
    """Every import that runs up the package order or up bench/'s rooms."""
    bad = []
    for path in package_files(root):
        me = module_name(path, root)
        mine, my_layer = PACKAGES.index(me.split(".")[0]), _layer(me)
        for line, module, names in imports_of(path, root):
            if not _project(module):
                continue
            theirs = PACKAGES.index(module.split(".")[0])
            where = f"{path.relative_to(root)}:{line}"
            if theirs > mine:
                bad.append(f"{where}: {me} imports {module} ({PACKAGES[theirs]} comes after {PACKAGES[mine]})")
                continue
            if my_layer is None:
                continue
            for target in _targets(module, names, root):
                layer = _layer(target)
                if layer is not None and layer > my_layer:
                    bad.append(f"{where}: {me} imports {target}, a room above its own ({ROOMS[layer]} > "
                               f"{ROOMS[my_layer]})")
    return bad


def _is_module(root: Path, dotted: str) -> bool:
    """Whether `dotted` names a module or package of the repository at `root` (not a function or class)."""
    path = root / dotted.replace(".", "/")
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def private_crossings(root: Path = ROOT) -> list[str]:
    """Every `from x import _name` and `x._name` (x an imported project module) in package code."""
    bad = []
    for path in package_files(root):
        where = path.relative_to(root)
        tree = ast.parse(path.read_text())
        aliases = {}
        for line, module, names in imports_of(path, root):
            if not _project(module):
                continue
            for n in names:
                if n.startswith("_") and not n.startswith("__"):
                    bad.append(f"{where}:{line}: imports the private name {n} from {module}")
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and _project(node.module or ""):
                aliases |= {a.asname or a.name: f"{node.module}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                aliases |= {a.asname or a.name.split(".")[0]: a.name for a in node.names if _project(a.name)}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and node.attr.startswith("_") and not node.attr.startswith("__")
                    and _is_module(root, aliases[node.value.id])):
                bad.append(f"{where}:{node.lineno}: reads the private name {node.attr} of {aliases[node.value.id]}")
    return bad


def test_imports_follow_the_package_order_and_the_rooms_of_bench():
    bad = order_violations()
    assert not bad, "imports that run upward:\n" + "\n".join(bad)


def test_no_private_name_crosses_a_file():
    bad = private_crossings()
    assert not bad, "private names used outside their file:\n" + "\n".join(bad)


def test_every_bench_module_has_a_room():
    homeless = [module_name(p) for p in (ROOT / "bench").rglob("*.py") if _layer(module_name(p)) is None]
    top = {module_name(p) for p in (ROOT / "bench").glob("*.py")}
    assert not homeless, homeless
    assert top == {"bench", "bench.__main__", "bench.api", "bench.cli", "bench.config", "bench.errors"}, (
        f"only the entry points, config and errors live at the top of bench/; move {sorted(top)} into a room")


def test_no_room_shadows_an_api_function_once_every_module_is_imported(tmp_path):
    import bench

    for info in pkgutil.walk_packages(bench.__path__, "bench."):
        if info.name != "bench.__main__":  # running it would parse this process's argv
            importlib.import_module(info.name)
    for name in API:
        fn = getattr(bench, name)
        assert callable(fn) and getattr(fn, "__module__", None) == "bench.api", (
            f"bench.{name} is {fn!r} after importing every module, not the API function")
    # and each still does its job (the tiny profile: seconds)
    cache, out = tmp_path / "cache", tmp_path / "run"
    long = bench.run("tiny", methods=["random"], genes=["GAD1"], L=[1], cache_dir=cache, out=out, progress=False)
    assert set(long["method"]) == {"random"} and (out / "leaderboard.md").is_file()
    fitted = bench.fit("tiny", cache_dir=cache, progress=False)
    assert fitted.model is not None and fitted.summary["reused"] and fitted.summary["marker_r2"] <= 1
    assert "interventional_spearman" in fitted.summary  # synthetic data: fidelity against the truth too
    assert set(bench.compare(out, out, names=["a", "b"])["method"]) == {"random"}
    assert (tmp_path / "again" / "leaderboard.md") in bench.report(out, out=tmp_path / "again")


def _plant(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    for package in PACKAGES:
        (tmp_path / package).mkdir(exist_ok=True)
    return tmp_path


def test_the_checks_catch_a_planted_upward_import_and_a_private_name(tmp_path):
    root = _plant(tmp_path, {
        "datasets/data.py": "def load():\n    from methods.registry import get\n",  # a package after its own
        "bench/scoring/metrics.py": "from bench.reporting.tables import render\n",  # a room above its own
        "bench/running/plan.py": "from bench.scoring import metrics\nfrom bench import api\n",  # fine; then up
        "bench/reporting/tables.py": "from ..running.plan import _hidden\n",  # relative, private
        "bench/studies/perf.py": "from bench.reporting import tables\nx = tables._marks\n",
        "bench/api.py": "",
    })
    bad = order_violations(root)
    assert any("datasets/data.py:2" in b and "methods.registry" in b for b in bad)
    assert any("bench/scoring/metrics.py:1" in b and "bench.reporting.tables" in b for b in bad)
    assert any("bench/running/plan.py:2" in b and "bench.api" in b for b in bad)
    assert not any("plan.py:1" in b for b in bad) and len(bad) == 3
    private = private_crossings(root)
    assert any("tables.py:1" in b and "_hidden" in b and "bench.running.plan" in b for b in private)
    assert any("perf.py:2" in b and "_marks" in b for b in private) and len(private) == 2
