"""The committed examples (results/examples/) are what the current code would write: every run folder has its
headline.csv and run.json, its code versions are the code's own (an older version means its numbers may be stale;
regenerate it, or render its tables again with `python -m bench report` when only the report changed), and no
committed file names a path of the machine that made it (checkpoints are named by their cache key)."""

import json
import re
from pathlib import Path

import pytest

from bench.running.versions import COMPONENTS
from methods import registry

EXAMPLES = Path(__file__).resolve().parent.parent / "results" / "examples"
RUNS = sorted(p.parent.name for p in EXAMPLES.glob("*/leaderboard.md"))
FILES = sorted(str(p.relative_to(EXAMPLES)) for p in EXAMPLES.rglob("*")
               if p.is_file() and p.suffix in (".md", ".html", ".json", ".csv", ".jsonl"))
# an absolute POSIX path under a usual root, a home-relative one, or a Windows drive
MACHINE_PATH = re.compile(r"(?<![\w.])(?:/(?:tmp|home|root|Users|var|work|mnt|private|opt|srv|scratch)/|~/|"
                          r"[A-Za-z]:\\)")


def test_there_are_examples_to_check():
    assert {"quick", "default", "paper", "quick-reference", "quick-surrogate-seeds"} <= set(RUNS)


@pytest.mark.parametrize("name", FILES)
def test_no_committed_file_names_a_machine_path(name):
    text = (EXAMPLES / name).read_text(errors="replace")
    found = MACHINE_PATH.search(text)
    where = text[found.start():found.end() + 40] if found else ""
    assert found is None, f"{name} names a path of the machine that made it: …{where}…"


def test_the_path_pattern_catches_what_it_should():
    assert MACHINE_PATH.search("Surrogate: /tmp/qc5/surrogates/surrogate-1.pt")
    assert MACHINE_PATH.search("cache at ~/.cache/grids-bench")
    assert not MACHINE_PATH.search("checkpoint `surrogate-57956fff1a8efb73` (cache key); 10 / 128; results/examples")


@pytest.mark.parametrize("run", RUNS)
def test_each_example_run_is_current(run):
    folder = EXAMPLES / run
    assert (folder / "headline.csv").is_file(), f"{run} has no headline.csv; regenerate it"
    assert (folder / "run.json").is_file(), f"{run} has no run.json; regenerate it with the current code"
    facts = json.loads((folder / "run.json").read_text())["facts"]
    header = (folder / "leaderboard.md").read_text().split("\n## ")[0]
    assert "Total wall time " in header and "peak RSS " in header
    current = {name: version for name, (version, _) in COMPONENTS.items()}
    for name, version in facts["versions"].items():
        now = current[name] if name in current else registry.get(name).version
        assert version == now, (f"{run} was computed by {name} v{version}, the code is at v{now}: regenerate it "
                                f"(see results/examples/README.md for the command)")
        assert f"{name} v{version}" in header


def test_the_paper_grid_explains_the_surrogate_whose_fidelity_is_committed():
    """fit-paper-paired/fidelity.json measured the checkpoint the paper grid's header names, and that surrogate
    passes the paper's fidelity bar (marker R² ≥ 0.9; the paper reports 0.914)."""
    fidelity = json.loads((EXAMPLES / "fit-paper-paired" / "fidelity.json").read_text())
    facts = json.loads((EXAMPLES / "paper" / "run.json").read_text())["facts"]
    assert facts["checkpoints"] == [fidelity["checkpoint"]]
    assert f"`{fidelity['checkpoint']}`" in (EXAMPLES / "paper" / "leaderboard.md").read_text().split("\n## ")[0]
    assert fidelity["marker_r2"] >= 0.9
