"""Every cached artefact is keyed by code versions (bench/running/versions.py); this test makes forgetting a bump hard.

For each component (every method, the evaluator, the surrogate, the simulator, the loader) it compares the hash
of the component's source with the hash recorded for its current version in tests/data/code_versions.json. When
the source changed, decide: if results can change, bump the version it names; if not (a refactor), keep it. Then
record the new hashes with

    GRIDS_BENCH_RECORD_VERSIONS=1 pytest tests/test_versions.py
"""

import json
import os
from pathlib import Path

import pytest

from bench.running import versions

RECORD = Path(__file__).parent / "data" / "code_versions.json"
COMPONENTS = versions.all_components()
WHERE = {"evaluator": "EVALUATOR_VERSION in bench/scoring/evaluate.py", "surrogate": "MODEL_VERSION in surrogates/model.py",
         "simulator": "SIMULATOR_VERSION in datasets/synthetic.py", "loader": "LOADER_VERSION in datasets/loaders.py"}


def _current() -> dict:
    return {name: {"version": v, "source": versions.source_hash(files), "files": list(files)}
            for name, (v, files) in sorted(COMPONENTS.items())}


@pytest.fixture(scope="module")
def recorded() -> dict:
    if os.environ.get("GRIDS_BENCH_RECORD_VERSIONS"):
        RECORD.write_text(json.dumps(_current(), indent=1) + "\n")
    return json.loads(RECORD.read_text())


@pytest.mark.parametrize("name", sorted(COMPONENTS))
def test_source_changes_come_with_a_version_decision(name, recorded):
    version, files = COMPONENTS[name]
    where = WHERE.get(name, f"version= in the @register of {name.split(':', 1)[-1]!r} ({files[0]})")
    how = "then record it: GRIDS_BENCH_RECORD_VERSIONS=1 pytest tests/test_versions.py"
    if name not in recorded:  # a new explainer: nothing to compare with yet, and no cached result to protect
        pytest.skip(f"{name} has no recorded version yet; {how}")
    rec = recorded[name]
    assert rec["version"] == version, (f"{name}: version {rec['version']} → {version} is not recorded yet; {how}")
    assert rec["source"] == versions.source_hash(files), (
        f"{name}: the source of {', '.join(files)} changed since version {version} was recorded. If its results can "
        f"change, bump {where} (its cached results are then recomputed); if not, keep it; {how}")


def test_no_recorded_component_is_left_over(recorded):
    gone = sorted(set(recorded) - set(COMPONENTS))
    assert not gone, f"{gone} were removed or renamed; re-record the versions"


def test_the_hash_ignores_comments_and_docstrings_but_not_code(tmp_path, monkeypatch):
    monkeypatch.setattr(versions, "ROOT", tmp_path)
    src = 'def f(x):\n    """Doc."""\n    return x + 1  # one\n'
    (tmp_path / "a.py").write_text(src)
    base = versions.source_hash(["a.py"])
    (tmp_path / "a.py").write_text('def f(x):\n    """Other doc."""\n    # a comment\n    return x + 1\n')
    assert versions.source_hash(["a.py"]) == base
    (tmp_path / "a.py").write_text(src.replace("x + 1", "x + 2"))
    assert versions.source_hash(["a.py"]) != base


def test_a_subclass_is_versioned_with_its_parents_code():
    assert "methods/grids.py" in versions.method_files("grids-mean")
    assert "methods/random_subset.py" in versions.method_files("oracle")  # borrows the control's job seed
