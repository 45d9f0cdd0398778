"""A typed registry of explainers. `@register(...)` attaches a frozen `MethodSpec`; the registry is the dispatch
(the CLI, harness and tables read it), so adding a method is one file in `methods/`."""

from __future__ import annotations

from dataclasses import dataclass

_REGISTRY: dict[str, "MethodSpec"] = {}


@dataclass(frozen=True)
class MethodSpec:
    name: str
    cls: type
    paper: str
    year: int | None = None
    kind: str = "global"  # how the method explains: global ranking, local→aggregated, or subset search
    is_baseline: bool = False  # control methods that bound the scale of every table
    needs_gradients: bool = False
    code_url: str | None = None
    description: str = ""
    in_default: bool = True  # part of `run` without --methods (variants are run on request)
    # the answer for L is the first L of one ranking that does not depend on L: the harness computes it once per
    # (cell type, gene, seed) at the largest L and evaluates each L's prefix
    ranking: bool = False
    needs_truth: bool = False  # a control that reads the simulator's truth (synthetic data only); gets `truth=`
    needs_background: bool = False  # gets `background=`: the training cells of the *other* cell types
    # bump when the method's answers can change (code or defaults): cached job results of another version are not
    # reused; tests/test_versions.py fails when its source changed since the recorded version
    # (bench/running/versions.py)
    version: int = 1


def register(name: str, *, paper: str, year: int | None = None, kind: str = "global", is_baseline: bool = False,
             needs_gradients: bool = False, code_url: str | None = None, in_default: bool = True,
             ranking: bool = False, needs_truth: bool = False, needs_background: bool = False, version: int = 1):
    """Class decorator: `@register("grids", paper="Liu et al.", needs_gradients=True)`."""

    def wrap(cls):
        if name in _REGISTRY and _REGISTRY[name].cls is not cls:
            raise ValueError(f"method {name!r} is already registered by {_REGISTRY[name].cls.__qualname__}")
        doc = (cls.__doc__ or "").strip().splitlines()
        spec = MethodSpec(name=name, cls=cls, paper=paper, year=year, kind=kind, is_baseline=is_baseline,
                          needs_gradients=needs_gradients, code_url=code_url, description=doc[0] if doc else "",
                          in_default=in_default, ranking=ranking, needs_truth=needs_truth,
                          needs_background=needs_background, version=int(version))
        cls.spec = spec
        _REGISTRY[name] = spec
        return cls

    return wrap


def get(name: str) -> MethodSpec:
    _load_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; available: {', '.join(sorted(available()))}") from None


def available() -> list[str]:
    _load_all()
    return list(_REGISTRY)


def default_methods(truth_available: bool = True) -> list[str]:
    """What `run` explains when no --methods are given: every registered method except opt-in variants (and, without
    a simulator's truth, the controls that need one)."""
    return [s.name for s in specs() if s.in_default and (truth_available or not s.needs_truth)]


def specs() -> list[MethodSpec]:
    _load_all()
    return list(_REGISTRY.values())


def import_modules(package: str) -> list[str]:
    """Import every module of `package` (a dotted name on sys.path) whose name does not start with an underscore,
    in name order, so their `@register` decorators run; returns the modules' dotted names. Helper modules are named
    with a leading underscore and skipped. This is how the registry finds the methods of `methods/` (`_load_all`);
    another package of explainers (a test's probe package in a temporary folder) is read the same way."""
    import importlib
    import pkgutil

    root = importlib.import_module(package)
    names = [f"{package}.{mod.name}" for mod in sorted(pkgutil.iter_modules(root.__path__), key=lambda m: m.name)
             if not mod.name.startswith("_")]
    for name in names:
        importlib.import_module(name)
    return names


def _load_all() -> None:
    """Import every module in `methods/` once so their decorators run (`import_modules`); `base` and `registry` hold
    no method, so importing them registers nothing."""
    import_modules(__package__)
