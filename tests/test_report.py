"""Report tables: no numbers for jobs without an estimate, the discrimination table and the surrogate–oracle τ,
checked against hand-computed values (tolerance 1e-9 unless stated)."""

import numpy as np
import pandas as pd
import pytest

from bench.reporting.report import DISCRIMINATION_COLS, discrimination, long_table, surrogate_oracle_kendall, write_report
from bench.reporting.tables import detail
from tests.toy_models import toy_facts

T975_2 = 4.302652729749462  # t_{0.975, 2}, from tables: 4.303


def records(values: dict, L=10, cell_type="T", status=None, oracle=None) -> list[dict]:
    """One job per (method, gene index) with the given Rel Δ values; genes g0, g1, …, seed 0."""
    out = []
    for method, vals in values.items():
        for i, v in enumerate(vals):
            r = {"method": method, "L": L, "cell_type": cell_type, "gene": f"g{i}", "seed": 0, "avg_delta": v / 10,
                 "rel_delta_pct": v, "status": (status or {}).get((method, i), "ok"), "seconds": 1.0}
            if oracle is not None:
                r["oracle_rel_delta_pct"] = oracle[method][i]
            out.append(r)
    return out


def test_paired_difference_to_the_best_hand_computed():
    # Avg Rel Δ: a −20, b −18 → best is a (↓). d = b − a = (2, −1, 5): mean 2, sd 3, half-width t·3/√3
    disc = discrimination(long_table(records({"a": [-10, -20, -30], "b": [-8, -21, -25]})), controls=())
    assert list(disc.columns) == DISCRIMINATION_COLS
    b = disc.set_index("method").loc["b"]
    assert b["best_method"] == "a" and b["L"] == 10 and b["n_jobs"] == 3
    half = T975_2 * 3 / np.sqrt(3)
    assert b["mean_diff"] == pytest.approx(2.0)
    assert (b["ci_low"], b["ci_high"]) == pytest.approx((2 - half, 2 + half))
    assert (b["n_better"], b["n_tied"], b["n_worse"]) == (1, 0, 2)  # only g1 (−21 < −20) is better than a
    # Wilcoxon, exact: |d| ranks 2, 1, 3 with signs +, −, + → W+ = 5; of the 8 sign patterns 2 reach W+ ≥ 5 → 2·2/8
    assert b["wilcoxon_p"] == pytest.approx(0.5) and b["holm_p"] == pytest.approx(0.5)  # the only test at L=10
    a = disc.set_index("method").loc["a"]
    assert (a["mean_diff"], a["ci_low"], a["ci_high"], a["n_tied"]) == (0.0, 0.0, 0.0, 3)


def test_best_is_the_lowest_rel_delta_not_the_highest():
    """Rel Δ is ↓: flipping the direction would pick b and make every difference negative."""
    disc = discrimination(long_table(records({"a": [-50, -50], "b": [-1, -2]})), controls=())
    assert set(disc["best_method"]) == {"a"}
    b = disc.set_index("method").loc["b"]
    assert b["mean_diff"] == pytest.approx(48.5) and b["n_worse"] == 2 and b["n_better"] == 0


def test_controls_are_compared_but_never_best():
    recs = records({"random": [-90, -90, -90], "a": [-10, -20, -30], "b": [-8, -21, -25]})
    disc = discrimination(long_table(recs)).set_index("method")  # controls read from the registry
    assert set(disc["best_method"]) == {"a"}  # random (is_baseline) has the lowest Avg but is a control
    assert disc.loc["random", "mean_diff"] == pytest.approx(-70.0) and disc.loc["random", "n_better"] == 3


def test_ties_within_tolerance():
    disc = discrimination(long_table(records({"a": [-10.0, -20.0], "b": [-10.0, -20.0 + 1e-6]})), controls=())
    assert disc.set_index("method").loc["b", ["n_better", "n_tied", "n_worse"]].tolist() == [0, 2, 0]


def test_no_estimate_jobs_show_no_numbers_and_are_not_paired():
    # c: g0 no_estimate (a stale number must be ignored), g1, g2 finished; U: every c job no_estimate
    recs = records({"a": [-10, -20, -30], "c": [999, -16, -24]}, status={("c", 0): "no_estimate"})
    recs += records({"a": [-40], "c": [-41]}, cell_type="U", status={("c", 0): "no_estimate"})
    long = long_table(recs)
    job = long[(long["method"] == "c") & (long["gene"] == "g0") & (long["cell_type"] == "T")].iloc[0]
    assert np.isnan(job["rel_delta_pct"]) and np.isnan(job["avg_delta"])
    agg = long[long["gene"] == "*"].set_index(["method", "cell_type"])
    assert agg.loc[("c", "T"), "rel_delta_pct"] == pytest.approx(-20.0)  # mean of −16, −24 only
    assert np.isnan(agg.loc[("c", "U"), "rel_delta_pct"]) and agg.loc[("c", "U"), "status"] == "no_estimate 1/1"
    assert agg.loc[("c", "Avg"), "rel_delta_pct"] == pytest.approx(-20.0)  # average of finished cell types
    assert agg.loc[("c", "Avg"), "status"] == "no_estimate 2/4; missing cell types: U (Avg of 1/2)"
    table = detail(long[long["gene"] == "*"], 10, "rel_delta_pct", ["a", "c"])
    c_row = next(line for line in table.splitlines() if line.startswith("| c")).split("|")[2:-1]
    # T, U, Avg (3 genes and 1 cell type: fewer than 4 values, so no ±; ᵐ: U is missing from the Avg)
    assert [cell.strip() for cell in c_row] == ["−20.0ᵉ", "—ᵉ", "−20.0ᵉᵐ"]
    # best = a (Avg of per-type means: (−20 − 40)/2 = −30 < −20); shared finished jobs: T/g1, T/g2
    c = discrimination(long, controls=()).set_index("method").loc["c"]
    assert c["n_jobs"] == 2 and c["mean_diff"] == pytest.approx(((-16 + 20) + (-24 + 30)) / 2)


def test_kendall_tau_hand_computed():
    # surrogate order a < b < c < d; oracle swaps b and c: 5 concordant, 1 discordant pair → τ = 4/6,
    # exact two-sided p = 2 · #(permutations of 4 with ≤ 1 inversion) / 4! = 2 · 4 / 24
    rel = {"a": [-4], "b": [-3], "c": [-2], "d": [-1]}
    oracle = {"a": [-40], "b": [-20], "c": [-30], "d": [-10]}
    k = surrogate_oracle_kendall(long_table(records(rel, oracle=oracle)))
    assert k.loc[0, "tau"] == pytest.approx(2 / 3) and k.loc[0, "p_value"] == pytest.approx(1 / 3)
    assert k.loc[0, "n_methods"] == 4 and k.loc[0, "L"] == 10
    # controls are left out: with b as a control the other three agree perfectly
    k = surrogate_oracle_kendall(long_table(records(rel, oracle=oracle)), controls={"b"})
    assert k.loc[0, "n_methods"] == 3 and k.loc[0, "tau"] == pytest.approx(1.0)


def test_kendall_is_skipped_without_an_oracle_column():
    assert surrogate_oracle_kendall(long_table(records({"a": [-1], "b": [-2]}))).empty


def test_write_report_adds_discrimination_csv_and_sections(tmp_path):
    rel = {"a": [-10, -20, -30], "b": [-8, -21, -25], "c": [-1, -2, -3]}
    oracle = {"a": [-5, -6, -7], "b": [-4, -5, -6], "c": [-1, -1, -1]}
    recs = records(rel, oracle=oracle) + records(rel, L=20, oracle=oracle)
    write_report(recs, tmp_path, toy_facts("test"), ["a", "b", "c"], figure=False)
    disc = pd.read_csv(tmp_path / "discrimination.csv")
    assert list(disc.columns) == DISCRIMINATION_COLS and len(disc) == 3 * 2
    assert set(disc["best_method"]) == {"a"}
    md = (tmp_path / "leaderboard.md").read_text()
    for L in (10, 20):
        assert f"### Discrimination at L = {L}" in md
    assert md.count("Kendall τ-b") == 2 and "τ = +1.00" in md  # both orders a < b < c
    assert list(pd.read_csv(tmp_path / "leaderboard.csv").columns[:5]) == ["method", "L", "cell_type", "gene", "seed"]


def two_type_records() -> list[dict]:
    """a: X (−10, −20), Y (−30); b: X (−12, −14), Y (−40); truth recall a: X (0.5, 0.5), Y 1.0; b: X (0, 0.5), Y 0.5."""
    jobs = {("a", "X"): [(-10, 0.5), (-20, 0.5)], ("a", "Y"): [(-30, 1.0)],
            ("b", "X"): [(-12, 0.0), (-14, 0.5)], ("b", "Y"): [(-40, 0.5)]}
    return [{"method": m, "L": 10, "cell_type": ct, "gene": f"g{i}", "seed": 0, "rel_delta_pct": rel,
             "avg_delta": rel / 10, "truth_recall": recall, "first_order_rel_delta_pct": rel, "seconds": 1.0,
             "status": "ok"}
            for (m, ct), values in jobs.items() for i, (rel, recall) in enumerate(values)]


def test_cell_type_rows_and_the_avg_row_hand_computed():
    long = long_table(two_type_records()).set_index(["method", "cell_type", "gene"])
    a_x, a_y, a_avg = (long.loc[("a", ct, "*")] for ct in ("X", "Y", "Avg"))
    assert a_x["rel_delta_pct"] == pytest.approx(-15.0) and a_x["rel_delta_pct_stderr"] == pytest.approx(5.0)
    assert a_y["rel_delta_pct"] == pytest.approx(-30.0) and np.isnan(a_y["rel_delta_pct_stderr"])  # one job
    # Avg = mean of the per-type means (−15, −30), not of the three jobs (−20); SE over the 2 types: sd / √2
    assert a_avg["rel_delta_pct"] == pytest.approx(-22.5)
    assert a_avg["rel_delta_pct_stderr"] == pytest.approx(np.std([-15, -30], ddof=1) / np.sqrt(2)) == pytest.approx(7.5)
    b_avg = long.loc[("b", "Avg", "*")]
    assert b_avg["rel_delta_pct"] == pytest.approx(-26.5) and b_avg["rel_delta_pct_stderr"] == pytest.approx(13.5)
    assert a_avg["truth_recall"] == pytest.approx(0.75) and b_avg["truth_recall"] == pytest.approx(0.375)
    assert a_avg["n_jobs"] == 3 and a_x["n_jobs"] == 2
    t975_1 = 12.706204736174707  # t_{0.975, 1}
    assert a_x["rel_delta_pct_ci95"] == pytest.approx(t975_1 * 5.0) and np.isnan(a_y["rel_delta_pct_ci95"])
    assert a_avg["rel_delta_pct_ci95"] == pytest.approx(t975_1 * 7.5)


def cells(table: str, method: str) -> list[str]:
    return [c.strip() for c in next(line for line in table.splitlines()
                                    if line.startswith(f"| {method} ")).split("|")[2:-1]]


def test_best_follows_each_metrics_direction_and_numbers_follow_their_interval():
    agg = long_table(two_type_records())
    agg = agg[agg["gene"] == "*"]
    # Rel Δ ↓: Avg b −26.5 beats a −22.5; X: a −15 beats b −13; Y: b −40 beats a −30. Two genes, one gene and
    # two cell types: each mean stands alone (a t-interval on 1 degree of freedom would be ±64 to ±172)
    rel = detail(agg, 10, "rel_delta_pct", ["a", "b"])
    assert [h.strip() for h in rel.splitlines()[0].split("|")[2:-1]] == ["X (n=2)", "Y (n=1)", "Avg (n=2)"]
    assert cells(rel, "a") == ["**−15.0**", "−30.0", "−22.5"]
    assert cells(rel, "b") == ["−13.0", "**−40.0**", "**−26.5**"]
    recall = detail(agg, 10, "truth_recall", ["a", "b"])  # ↑: a's 0.75 beats b's 0.375; a fraction has no sign
    assert cells(recall, "a")[-1] == "**0.75**" and cells(recall, "b")[-1] == "0.38"
    context = detail(agg, 10, "first_order_rel_delta_pct", ["a", "b"])  # no direction: nothing bold
    assert "**" not in context


def test_holm_step_down_hand_computed():
    from bench.reporting.report import holm

    rows = holm([{"wilcoxon_p": 0.01}, {"wilcoxon_p": 0.04}, {"wilcoxon_p": float("nan")}, {"wilcoxon_p": 0.03}])
    # sorted 0.01, 0.03, 0.04 × (3, 2, 1) = 0.03, 0.06, 0.04 → running max 0.03, 0.06, 0.06; NaN not in the family
    assert [r["holm_p"] for r in rows[:2]] == pytest.approx([0.03, 0.06]) and rows[3]["holm_p"] == pytest.approx(0.06)
    assert np.isnan(rows[2]["holm_p"])


def test_an_avg_over_fewer_cell_types_says_so_and_names_the_missing_ones():
    """b failed every job of type T2: its Avg is T1's alone, and must not pass for an average over both."""
    recs = records({"a": [-10, -20], "b": [-30, -40]}, cell_type="T1") + \
        records({"a": [-50, -60], "b": [-70, -80]}, cell_type="T2", status={("b", 0): "failed", ("b", 1): "failed"})
    avg = long_table(recs).query("cell_type == 'Avg'").set_index("method")
    assert avg.loc["a", "n_cell_types"] == 2 and avg.loc["a", "status"] == "ok"
    assert avg.loc["a", "rel_delta_pct"] == pytest.approx(-35.0)  # (−15 + −55) / 2
    assert avg.loc["b", "n_cell_types"] == 1 and avg.loc["b", "rel_delta_pct"] == pytest.approx(-35.0)  # T1 only
    assert avg.loc["b", "status"] == "failed 2/4; missing cell types: T2 (Avg of 1/2)"
    agg = long_table(recs).query("gene == '*'")
    b_row = next(line for line in detail(agg, 10, "rel_delta_pct", ["a", "b"]).splitlines() if line.startswith("| b"))
    assert b_row.split("|")[-2].strip() == "−35.0ᶠᵐ"  # the Avg cell: some jobs failed, a cell type is missing


def test_the_header_states_training_wall_time_and_peak_memory():
    from types import SimpleNamespace

    from bench.config import PROFILES
    from bench.reporting.report import leaderboard_header, run_facts

    data = SimpleNamespace(n_cells=10, n_peaks=20, n_genes=3)
    meta = {"checkpoint": "/c/s.pt", "epochs": 12, "seconds": 150.4, "stopped": "early_stopping"}
    text = leaderboard_header(run_facts("synthetic", data, [SimpleNamespace(meta=meta)], "paired", PROFILES["paper"],
                                        3599.6, peak_rss_mb=5.5 * 1024))
    assert ("Surrogate (paired style): checkpoint `s` (cache key), trained 12 epochs in 150 s (early_stopping). "
            "Profile `paper`") in text
    assert "/c/" not in text  # never a path of the machine that made it
    assert "Total wall time 3600 s, peak RSS 5.5 GiB (the main process)." in text
    side = {"workers": 2, "threads": 1, "worker_peak_rss_mb": 1.5 * 1024}
    text = leaderboard_header(run_facts("synthetic", data, [SimpleNamespace(meta=meta)], "paired", PROFILES["paper"],
                                        3599.6, peak_rss_mb=5.5 * 1024, side_by_side=side))
    assert ("peak RSS 5.5 GiB (the main process); jobs ran 2 at a time on 1 torch thread each, in worker processes "
            "of at most 1.5 GiB.") in text
    reference = {"checkpoint": "/c/r.pt", "steps": [3, 2, 5], "seconds": 9.0, "stopped": "max_steps"}
    text = leaderboard_header(run_facts("synthetic", data, [SimpleNamespace(meta=reference)], "reference",
                                        PROFILES["tiny"], 1.0))
    assert ", trained 10 steps in 9 s (max_steps)." in text and "Total wall time 1 s." in text
    assert "trained" not in leaderboard_header(run_facts("x", data, [SimpleNamespace(meta={})], "paired",
                                                         PROFILES["tiny"], 1.0))


def test_four_genes_get_an_interval_and_distances_are_medians_in_kb_or_mb():
    """From `MIN_FOR_INTERVAL` = 4 genes on, a cell-type mean carries its 95 % t-interval; a distance is the median
    of the genes (Avg: of every gene, with the IQR), in kb or Mb, never signed."""
    from bench.reporting.tables import fmt_bp, fmt_median_iqr

    recs = [{"method": "a", "L": 10, "cell_type": ct, "gene": f"{ct}{i}", "seed": 0, "rel_delta_pct": rel,
             "median_tss_distance": dist, "frac_on_target_chrom": 0.5, "status": "ok", "seconds": 1.0}
            for ct, values in {"X": [(-10, 1_000), (-20, 2_000), (-30, 3_000), (-40, 50_000_000)],
                               "Y": [(-5, 40_000), (-7, 60_000)]}.items()
            for i, (rel, dist) in enumerate(values)]
    long = long_table(recs)
    half = 3.182446305284263 * np.std([-10, -20, -30, -40], ddof=1) / 2  # t_{0.975,3} · sd / √4 = 20.5
    assert cells(detail(long, 10, "rel_delta_pct", ["a"]), "a")[:2] == [f"**−25 ± {half:.0f}**", "**−6.00**"]
    dist = cells(detail(long, 10, "median_tss_distance", ["a"]), "a")
    # X: median of 1, 2, 3 kb and 50 Mb = 2.5 kb; Y: 50 kb; over all 6 genes: median 21.5 kb (mean of 3 and 40 kb),
    # IQR 2.25–55 kb
    assert dist == ["2.5 kb", "50 kb", "21.5 kb (IQR 2.25 kb–55 kb)"]
    assert cells(detail(long, 10, "frac_on_target_chrom", ["a"]), "a")[0] == "0.50 ± 0.00"  # no "+"
    assert (fmt_bp(850), fmt_bp(46_665), fmt_bp(101_065_400)) == ("850 bp", "46.7 kb", "101 Mb")
    assert fmt_median_iqr([np.nan]) == "—" and fmt_median_iqr([1e6, 3e6]) == "2 Mb"  # < 4 values: no IQR
    assert dist_header(long) == "all genes (n=6)"  # a median over every gene, not an average of cell types
    from bench.reporting.tables import fmt_ci

    assert (fmt_ci(-0.001, np.nan, 2), fmt_ci(0.0, 0.5), fmt_ci(0.25, np.nan, 2)) == ("0.00", "0.00 ± 0.50", "+0.25")


def dist_header(long) -> str:
    return detail(long, 10, "median_tss_distance", ["a"]).splitlines()[0].split("|")[-2].strip()


def test_the_header_names_the_machine_and_a_rendering_from_records():
    from types import SimpleNamespace

    from bench.config import PROFILES
    from bench.running.machine import cpu_model, describe_machine
    from bench.reporting.report import leaderboard_header, run_facts

    machine = describe_machine("cpu")
    assert machine["cpu"] == cpu_model() and machine["cores"] >= 1 and machine["device"] == "cpu"
    facts = run_facts("synthetic", SimpleNamespace(n_cells=1, n_peaks=2, n_genes=3), [SimpleNamespace(meta={})],
                      "paired", PROFILES["tiny"], 61.0, peak_rss_mb=1024, machine=machine)
    text = leaderboard_header(facts)
    assert f"Total wall time 61 s on {machine['cores']} CPU cores ({machine['cpu']}), torch " in text
    assert "rendered again" not in text
    again = leaderboard_header({**facts, "rendered_from": "by hand"})
    assert "rendered again from the run's records (by hand)." in again


def test_a_method_with_half_its_jobs_missing_is_never_best():
    """h finishes 2 of 4 jobs, with the lowest Rel Δ on them; a finishes all 4. Best (headline order, bold cell,
    discrimination baseline) is a; h is listed after it with its coverage."""
    from bench.reporting.tables import headline, headline_markdown

    status = {("h", 2): "no_estimate", ("h", 3): "failed"}
    long = long_table(records({"a": [-10, -20, -30, -40], "h": [-90, -95, -1, -1]}, status=status))
    avg = long[long["cell_type"] == "Avg"].set_index("method")
    assert avg.loc["h", "rel_delta_pct"] == pytest.approx(-92.5)  # lower than a's −25 over the jobs it managed
    assert (avg.loc["h", "n_scored"], avg.loc["h", "n_expected"], avg.loc["a", "n_scored"]) == (2, 4, 4)
    disc = discrimination(long, controls=())
    assert set(disc["best_method"]) == {"a"}
    head = headline(long[long["gene"] == "*"], controls=set())
    assert head["method"].tolist() == ["a", "h"] and head["coverage"].tolist() == ["4/4", "2/4"]
    text = headline_markdown(head)
    assert "scored L=10" in text and "never the best" in text
    assert [cells(text, m)[-1] for m in ("a", "hᵉᶠ")] == ["4/4", "2/4"]  # the coverage column
    table = detail(long, 10, "rel_delta_pct", ["a", "h"])
    assert "**" in cells(table, "a")[-1] and "**" not in cells(table, "h")[-1]


def test_reduced_effort_is_marked_and_counted():
    from bench.reporting.tables import headline, headline_markdown

    recs = records({"a": [-10, -20, -30, -40], "b": [-5, -6, -7, -8]})
    for r in recs:
        r["info"] = {"effort": ["fewer_cells", "filled"]} if r["method"] == "b" and r["gene"] != "g0" else {}
    long = long_table(recs)
    avg = long[long["cell_type"] == "Avg"].set_index("method")
    assert avg.loc["a", "status"] == "ok"
    assert avg.loc["b", "status"] == "ok; effort: fewer_cells 3/4, filled 3/4"
    text = headline_markdown(headline(long[long["gene"] == "*"], controls=set()))
    assert "| bᶜ⁺ " in text and "fewer cells than the method's default" in text
