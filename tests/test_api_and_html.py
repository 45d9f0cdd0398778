"""The Python API (`bench.run`), `--surrogate-seeds` replicates, a grid of L with its curve summary, and the
self-contained report.html (parsed: its sections, embedded figures, no network reference)."""

from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

import bench
from bench.reporting.replicates import jaccard, selection_stability
from bench.cli import main


class _Sections(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.imgs, self.links, self.tables, self.scripts = [], [], [], 0, 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.ids.append(attrs.get("id"))
        elif tag == "img":
            self.imgs.append(attrs.get("src", ""))
        elif tag in ("a", "link"):
            self.links.append(attrs.get("href", ""))
        elif tag == "table":
            self.tables += 1
        elif tag == "script":
            self.scripts += 1


@pytest.fixture(scope="module")
def two_surrogates(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    import os

    os.environ["GRIDS_BENCH_CACHE"] = str(out / "cache")
    long = bench.run("tiny", methods=["grids", "input-x-gradient", "random"], cell_types=["Oligo"], L=[2, 4, 8],
                     surrogate_seeds=2, out=out / "results", progress=False)
    return long, out / "results"


def test_run_returns_the_long_table_with_both_surrogates_as_replicates(two_surrogates):
    long, out = two_surrogates
    jobs = long[long["gene"] != "*"]
    assert set(jobs["surrogate_seed"]) == {0, 1} and len(jobs) == 3 * 2 * 3 * 2  # methods × genes × L × surrogates
    oligo = long[(long["gene"] == "*") & (long["cell_type"] == "Oligo")]
    assert len(oligo) == 3 * 3 and (oligo["n_jobs"] == 4).all()  # 2 genes × 2 surrogates per row
    assert oligo[oligo["method"] != "random"]["rel_delta_pct_ci95"].notna().all()
    md = (out / "leaderboard.md").read_text()
    assert "## Between surrogates" in md and "mean τ" in md
    head = pd.read_csv(out / "headline.csv")
    assert {"jaccard", "auc"} <= set(head.columns)
    assert head.set_index("method").loc["input-x-gradient", "jaccard"] < 1.0  # two surrogates, other gradients


def test_report_html_is_self_contained_with_every_section(two_surrogates):
    _, out = two_surrogates
    page = _Sections()
    page.feed((out / "report.html").read_text())
    assert page.ids == ["headline", "curves", "surrogates", "fidelity", "L2", "L4", "L8", "runtime", "config"]
    assert len(page.imgs) == 2 and all(src.startswith("data:image/png;base64,") for src in page.imgs)
    assert all(link.startswith("#") for link in page.links) and page.scripts == 0  # no network, no script
    assert page.tables >= 3 * 4
    text = (out / "report.html").read_text()
    from importlib import metadata

    assert "Package versions" in text
    for package in ("torch", "shap", "captum"):  # the installed versions, as the package metadata gives them
        assert f"<td>{package}</td><td>{metadata.version(package)}</td>" in text, package
    assert "surrogate-" in text and "/tmp" not in text and str(out) not in text  # checkpoint by cache key only


def test_jaccard_and_selection_stability_hand_computed():
    assert jaccard([1, 2, 3], [2, 3, 4]) == pytest.approx(2 / 4)
    recs = [{"method": "m", "L": 3, "cell_type": "X", "gene": "g", "peaks": p} for p in ([1, 2, 3], [2, 3, 4],
                                                                                        [1, 2, 3])]
    recs.append({"method": "m", "L": 3, "cell_type": "X", "gene": "h", "peaks": [5, 6, 7]})  # one replicate only
    s = selection_stability(recs)
    # pairs: (1,2,3)-(2,3,4) 0.5, (1,2,3)-(1,2,3) 1, (2,3,4)-(1,2,3) 0.5 → 2/3; gene h has no pair
    assert s.loc[0, "jaccard"] == pytest.approx(2 / 3) and s.loc[0, "n_jobs"] == 1 and s.loc[0, "replicates"] == 3
    assert np.isnan(jaccard([], []))


def test_between_surrogates_leaves_out_controls_and_methods_without_numbers():
    from bench.reporting.replicates import surrogate_rank_movement

    rows = [{"method": m, "L": 10, "cell_type": "X", "gene": "g", "seed": 0, "surrogate_seed": s, "rel_delta_pct": v}
            for s, values in ((0, {"a": -3, "b": -2, "c": -1, "random": 0, "dead": np.nan}),
                              (1, {"a": -2, "b": -3, "c": -1, "random": 0, "dead": np.nan}))
            for m, v in values.items()]
    mv = surrogate_rank_movement(pd.DataFrame(rows), controls={"random"}).set_index("method")
    assert set(mv.index) == {"a", "b", "c"}  # no control, no all-NaN method
    assert (mv.loc["a", "rank_min"], mv.loc["a", "rank_max"]) == (1, 2) and mv.loc["c", "rank_max"] == 3
    assert mv["mean_tau"].iloc[0] == pytest.approx(1 / 3)  # one swap among 3 pairs: (2 − 1) / 3


def test_auc_needs_every_L():
    from bench.reporting.tables import rel_delta_auc

    assert rel_delta_auc([1, 10, 100], [-1.0, -2.0, -3.0]) == pytest.approx(-2.0)  # linear in log L
    assert np.isnan(rel_delta_auc([1, 10, 100], [-1.0, np.nan, -3.0])) and np.isnan(rel_delta_auc([10], [-1.0]))


def test_background_methods_with_one_cell_type(tmp_path):
    from bench.config import PROFILES
    from bench.errors import UserError
    from bench.running.plan import plan_run
    from tests.hand_models import cells_with_all_open

    data = cells_with_all_open()  # one cell type, T
    markers = {"T": ("target",)}
    plan = plan_run(PROFILES["tiny"], data, markers, Ls=["3"])
    assert "expected-gradients" not in plan.methods and "grids" in plan.methods
    with pytest.raises(UserError, match="one cell type"):
        plan_run(PROFILES["tiny"], data, markers, methods=["expected-gradients"], Ls=["3"])


def test_api_rejects_bad_arguments_with_user_errors():
    from bench.errors import UserError

    for kwargs in ({"surrogate": "nope"}, {"L": 10}, {"L": ["10"]}, {"surrogate_seeds": 0}):
        with pytest.raises(UserError):
            bench.run("tiny", **kwargs)


def test_threads_make_another_surrogate_configuration():
    from bench.api import profile_for

    profile = profile_for("tiny", threads=3)
    assert profile.surrogate_config("paired").threads == 3 and profile.surrogate_config("reference").threads == 3
    assert profile_for("tiny").surrogate.threads == 2 and profile.budget == profile_for("tiny").budget


def test_bench_report_renders_a_finished_run_again_without_running_a_job(two_surrogates, tmp_path, capsys):
    """`bench report` from jobs.jsonl + run.json gives the files the run wrote (report.html included: figures, the
    fidelity panel, configuration and package versions come back from the folder, not from this process)."""
    _, out = two_surrogates
    assert main(["report", str(out), "--out", str(tmp_path / "again")]) == 0
    for name in ("leaderboard.md", "leaderboard.csv", "headline.csv", "discrimination.csv", "report.html",
                 "fidelity.png", "rel_delta_vs_L.png", "run.json"):
        assert (tmp_path / "again" / name).read_bytes() == (out / name).read_bytes(), name
    import gzip
    import shutil

    kept = tmp_path / "kept"  # as the committed examples keep a run: jobs.jsonl gzipped
    kept.mkdir()
    (kept / "jobs.jsonl.gz").write_bytes(gzip.compress((out / "jobs.jsonl").read_bytes()))
    shutil.copy(out / "run.json", kept / "run.json")
    assert main(["report", str(kept)]) == 0
    assert (kept / "leaderboard.md").read_text() == (out / "leaderboard.md").read_text()
    assert not (kept / "jobs.jsonl").exists()  # written back gzipped, as it was kept
    assert main(["report", str(tmp_path / "nothing-here")]) == 2
    assert "has no jobs.jsonl or run.json" in capsys.readouterr().err
