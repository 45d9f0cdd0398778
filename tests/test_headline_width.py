"""The leaderboard's headline table fits `HEADLINE_WIDTH` (100) characters on every tier and L grid, with method
names whole: on made-up runs whose numbers are as wide as real ones get (the tiny surrogate's four-decimal Rel Δ,
the paper scale's three-digit s/job, the longest method name with marks), and on every committed example.

Each made-up run must fit with the headline's own columns (nothing left out for width); only the last case, wider
than any run seen, needs `headline_markdown` to leave a column out, and says so under the table."""

import json
from pathlib import Path

import numpy as np
import pytest

from bench.reporting.report import report_data, report_sections
from bench.reporting.tables import HEADLINE_WIDTH

EXAMPLES = Path(__file__).parent.parent / "results" / "examples"
ALL_METHODS = ["grids", "smoothgrad-x-input", "input-x-gradient", "integrated-gradients", "fimap", "expected-gradients",
               "cxplain", "sage", "nearest-tss", "oracle", "lime", "saliency", "smoothgrad", "random"]
CELL_TYPES = ["Astro", "Endo", "Micro", "OPC", "Oligo", "SST", "VIP"]


def run_records(methods, Ls, *, truth=False, scale=1.0, surrogate_seeds=1, seconds=3.0, marks=True):
    """Job records of a made-up run: 7 cell types × 3 genes per (method, L), Rel Δ growing with L and spread like a
    real run's (`scale` 0.01: the tiny surrogate's ≈ −0.01 %), oracle Rel Δ on the surrogate tier, the optimum
    and % of it on the truth tier, a TSS distance, and the statuses and effort flags that put marks on names."""
    rng = np.random.default_rng(0)
    out = []
    for i, method in enumerate(methods):
        for L in Ls:
            for ct in CELL_TYPES:
                for g in range(3):
                    for s in range(surrogate_seeds):
                        rel = scale * min(-0.4 * L ** 0.8 * (1 - i / 20) + rng.normal(0, 3), 0)
                        r = {"method": method, "L": L, "cell_type": ct, "gene": f"{ct}{g}", "seed": 0,
                             "rel_delta_pct": rel, "avg_delta": rel / 10, "median_tss_distance": 1e5 * (1 + i),
                             "seconds": seconds * (1 + i), "status": "ok", "peaks": list(rng.choice(500, L))}
                        if truth:
                            best = min(rel, scale * -0.45 * L ** 0.8 - 1)
                            r.update(optimum_rel_delta_pct=best, pct_of_optimum=100 * rel / best)
                        else:
                            r["oracle_rel_delta_pct"] = -92.45 + rng.normal(0, 1) if method == "oracle" else \
                                rng.normal(-25, 20)
                        if marks and method in ("integrated-gradients", "expected-gradients", "lime", "cxplain"):
                            r["info"] = {"effort": ["fewer_cells"]}
                        if marks and method == "sage" and g == 0:
                            r["status"] = "not_converged"
                        if surrogate_seeds > 1:
                            r["surrogate_seed"] = s
                        out.append(r)
    return out


def headline_of(records) -> str:
    methods = list(dict.fromkeys(r["method"] for r in records))
    return report_sections(report_data(records, methods))["headline_table"]


def table_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("|")]


CASES = {
    "surrogate tier, L = 10, 128": {"methods": ALL_METHODS, "Ls": [10, 128]},
    "surrogate seeds (Jaccard), L = 10, 128": {"methods": ALL_METHODS, "Ls": [10, 128], "surrogate_seeds": 2},
    "truth tier, L = 1, 3, 5, 10, 20": {"methods": ALL_METHODS, "Ls": [1, 3, 5, 10, 20], "truth": True},
    "truth tier, L = 1, 10, 20": {"methods": ALL_METHODS, "Ls": [1, 10, 20], "truth": True},
    "a 7-L grid": {"methods": ALL_METHODS, "Ls": [1, 2, 5, 10, 20, 50, 128]},
    "paper scale (s/job ≥ 100)": {"methods": ALL_METHODS, "Ls": [10, 128], "seconds": 60.0},
    "five methods on the tiny surrogate": {"methods": ["grids", "input-x-gradient", "fimap", "random", "oracle"],
                                           "Ls": [10, 128], "scale": 0.01},
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_headline_fits_without_leaving_a_column_out(case):
    text = headline_of(run_records(**CASES[case]))
    lines = table_lines(text)
    widths = [len(line) for line in lines]
    assert max(widths) <= HEADLINE_WIDTH, "\n".join(lines)
    assert "Left out here" not in text
    names = [line.split("|")[1].strip() for line in lines[2:]]
    assert {n.rstrip("ᶜⁿ†") for n in names} == set(CASES[case]["methods"])  # whole names, marks after them
    header = lines[0]
    L_max = CASES[case]["Ls"][-1]
    if CASES[case].get("truth"):  # % of optimum, which ranks the rows, and not Rel Δ as well
        assert f"% opt L={CASES[case]['Ls'][0]} ↑" in header and f"% opt L={L_max} ↑" in header
        assert "Rel Δ" not in header and "AUC" not in header
        assert f"Ranked by Avg % of the optimum at L = {L_max}" in text
        col = [c.strip() for c in header.split("|")].index(f"% opt L={L_max} ↑")
        shown = [float(line.split("|")[col].split()[0].replace("−", "-")) for line in lines[2:]]
        assert shown == sorted(shown, reverse=True)  # best first
    else:
        assert f"Rel Δ L={L_max} ↓" in header  # the ranking column is always there
        assert f"Rel Δ L={CASES[case]['Ls'][0]} ↓" in header and f"Oracle L={L_max}" in header
        assert ("AUC ↓" in header) == (len(CASES[case]["Ls"]) > 2)
    assert ("Jaccard" in header) == (CASES[case].get("surrogate_seeds", 1) > 1)
    assert "TSS" not in header  # context, in its per-L table


def test_a_table_wider_than_any_seen_leaves_columns_out_and_says_which():
    """Surrogate seeds on a 7-L grid (Rel Δ at two Ls, the AUC, the oracle and the Jaccard columns: 108 characters
    already), tiny four-decimal numbers and the longest name with every mark: the Jaccard column goes first, then
    the oracle's, both named under the table; the ranking column and the names stay whole."""
    records = run_records(ALL_METHODS, [1, 2, 5, 10, 20, 50, 128], scale=0.01, surrogate_seeds=2, seconds=60.0)
    for r in records:  # the longest name gets every mark a run can give it
        if r["method"] == "integrated-gradients":
            r["status"] = "budget_exceeded" if r["gene"].endswith("0") else "time_limit"
            r["info"] = {"effort": ["fewer_cells", "filled", "partial_pass"]}
    text = headline_of(records)
    assert max(len(line) for line in table_lines(text)) <= HEADLINE_WIDTH
    assert "| integrated-gradientsᵇᵗᶜ⁺ᵖ " in text  # the name and its marks, whole
    assert "Left out here to fit 100 characters: Jaccard, Oracle L=128." in text and "Rel Δ L=128 ↓" in text


def example_runs() -> list[str]:
    """The committed run folders (`bench report` renders them): a run.json with the run's facts."""
    return sorted(p.parent.name for p in EXAMPLES.glob("*/run.json") if "facts" in json.loads(p.read_text()))


def test_the_examples_are_all_found():
    assert {"quick", "default", "paper", "quick-truth", "paper-truth"} <= set(example_runs())


@pytest.mark.parametrize("run", example_runs())
def test_every_committed_headline_fits(run):
    text = (EXAMPLES / run / "leaderboard.md").read_text()
    section = text.split("\n## Headline\n", 1)[1].split("\n## ", 1)[0]
    lines = table_lines(section)
    assert lines and max(len(line) for line in lines) <= HEADLINE_WIDTH, "\n".join(lines)
