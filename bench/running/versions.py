"""Code versions that key every cached artefact, and the source each one vouches for.

A cached job result is reused only when the code that would compute it again is the code that did: each method's
`version` (its `@register`), the evaluator's (`bench/scoring/evaluate.py`: the metrics of one job) and, on synthetic
data, the simulator's (its truth feeds the truth metrics and the oracle). The surrogate's version keys its checkpoint
(`surrogates/checkpoint.py`), the loader's the processed-data cache (`datasets/loaders.py`), and the checkpoint
key is part of every job's key. The package version is deliberately not used: a release that does not touch a
method should not void its results.

Forgetting a bump is made hard by `tests/test_versions.py`: it hashes each component's source (`source_hash`:
the AST without docstrings or comments, so a reformat or a comment is not a change) and compares it with the hash
recorded for the component's current version in `tests/data/code_versions.json`. A changed hash fails the test
with the version to bump; after deciding (bump when results can change, keep when they cannot), record the new
hashes with `GRIDS_BENCH_RECORD_VERSIONS=1 pytest tests/test_versions.py`.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
from pathlib import Path

from bench.scoring.evaluate import EVALUATOR_VERSION
from datasets.loaders import LOADER_VERSION
from datasets.synthetic import SIMULATOR_VERSION
from methods import registry
from surrogates.model import MODEL_VERSION
from surrogates.truth import TRUTH_MODEL_VERSION

ROOT = Path(__file__).resolve().parents[2]  # the repository root (this file is bench/running/versions.py)

# component → (version, the files whose behaviour it stands for, relative to the repository root)
COMPONENTS: dict[str, tuple[int, tuple[str, ...]]] = {
    # the protocol's generic helpers (closure gradients, closed rows) feed the evaluator's numbers
    "evaluator": (EVALUATOR_VERSION, ("bench/scoring/evaluate.py", "bench/scoring/metrics.py", "bench/scoring/genomic.py",
                                      "bench/running/runner.py", "datasets/data.py", "surrogates/protocol.py")),
    "surrogate": (MODEL_VERSION, ("surrogates/model.py", "surrogates/train.py", "surrogates/checkpoint.py")),
    "simulator": (SIMULATOR_VERSION, ("datasets/synthetic.py", "datasets/worlds.py")),
    "loader": (LOADER_VERSION, ("datasets/loaders.py", "datasets/io.py")),
    # the truth tier's model; its version is in the model's cache key (`truth-vN`), so a bump recomputes its jobs
    "truth-model": (TRUTH_MODEL_VERSION, ("surrogates/truth.py",)),
}


def job_versions(method: str, synthetic: bool) -> dict[str, int]:
    """The versions a job's cached record must match: its method's, the evaluator's and (synthetic data) the
    simulator's."""
    out = {"method": registry.get(method).version, "evaluator": EVALUATOR_VERSION}
    if synthetic:
        out["simulator"] = SIMULATOR_VERSION
    return out


def code_versions(methods, synthetic: bool, model: str = "surrogate") -> dict[str, int]:
    """The versions behind a run's tables: evaluator, the explained model's (the surrogate's, or the truth model's
    on the truth tier; none for a user's model), simulator (synthetic data) and each method."""
    models = {"surrogate": ("surrogate",), "truth": ("truth-model",)}.get(model, ())
    fixed = {k: v for k, (v, _) in COMPONENTS.items()
             if k in ("evaluator", *models) or (synthetic and k == "simulator")}
    return {**fixed, **{m: registry.get(m).version for m in methods}}


def method_files(method: str) -> tuple[str, ...]:
    """The modules of the method's class and of its parent classes in `methods/` (GRIDS-mean runs GRIDS's code),
    the base class, and every `methods` module those import, transitively (`from methods.x import …` or
    `import methods.x`; the registry, which only dispatches, is left out)."""
    own = [str(Path(inspect.getfile(cls)).resolve().relative_to(ROOT)) for cls in registry.get(method).cls.__mro__
           if cls.__module__.startswith("methods.") and cls.__module__ != "methods.base"]
    own = list(dict.fromkeys(own))
    seen, todo = set(own) | {"methods/base.py", "methods/registry.py"}, list(own)
    helpers = []
    while todo:
        for module in _imported_methods_modules(ROOT / todo.pop()):
            rel = f"methods/{module}.py"
            if rel not in seen and (ROOT / rel).exists():
                seen.add(rel)
                helpers.append(rel)
                todo.append(rel)
    return (*own, "methods/base.py", *sorted(helpers))


def _imported_methods_modules(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("methods."):
            names.append(node.module.split(".", 1)[1])
        elif isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:  # `from ._shared import …`
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names += [a.name.split(".", 1)[1] for a in node.names if a.name.startswith("methods.")]
    return names


def all_components() -> dict[str, tuple[int, tuple[str, ...]]]:
    """Every versioned component: the fixed ones and one `method:<name>` per registered method."""
    methods = {f"method:{s.name}": (s.version, method_files(s.name)) for s in registry.specs()}
    return {**COMPONENTS, **methods}


def source_hash(files) -> str:
    """SHA-256 (16 hex) of the files' syntax trees without docstrings: what a Python interpreter would run."""
    h = hashlib.sha256()
    for rel in files:
        tree = ast.parse((ROOT / rel).read_text())
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                    and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
                node.body = body[1:] or [ast.Pass()]
        h.update(rel.encode() + b"\0" + ast.dump(tree).encode() + b"\0")
    return h.hexdigest()[:16]


def describe(versions: dict) -> str:
    """'grids v2, evaluator v1' from a {name: version} mapping, in its order."""
    return ", ".join(f"{k} v{v}" for k, v in versions.items())
