"""The numbers the README, the docs/ pages and results/examples/README.md quote come from the committed examples:
each block between `<!-- generated:NAME -->` and `<!-- /generated:NAME -->` must equal what `BLOCKS[NAME]` makes
from the examples' run.json, headline.csv and leaderboard.csv, so a regenerated example cannot leave the page
behind.

A quoted run time is a run time only when nothing was reused: `run_line` (every `*-run` block) refuses a run whose
header says any job or surrogate came from the cache, so a re-render or a warm rerun can never be quoted as what a
user waits for. Regenerate such an example from an empty cache
(`GRIDS_BENCH_CACHE=$(mktemp -d) <command> --out results/examples/<folder>`) or stop quoting its time.

After regenerating an example, rewrite the blocks with

    python -m tests.test_readme
"""

import json
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.reporting.report import _paired, read_records
from bench.reporting.tables import fmt_bp, fmt_ci, headline_markdown
from bench.running.machine import machine_phrase
from bench.scoring.metrics import cell_type_average

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "results" / "examples"
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", EXAMPLES / "README.md", *sorted(DOCS.glob("*.md"))]
FROM_DOCS = "../results/examples/"  # the examples folder as a page in docs/ links to it
BLOCK = re.compile(r"(<!-- generated:([\w-]+) -->\n)(.*?)(<!-- /generated:\2 -->)", re.S)


def facts(run: str) -> dict:
    return json.loads((EXAMPLES / run / "run.json").read_text())["facts"]


def duration(seconds: float) -> str:
    """'9 min 3 s', '1 h 19 min 35 s'."""
    s = int(round(seconds))
    h, m, s = s // 3600, s % 3600 // 60, s % 60
    return (f"{h} h " if h else "") + (f"{m} min " if h or m else "") + f"{s} s"


class ReusedRun(ValueError):
    """A run whose header says jobs or a surrogate came from the cache: its wall time is not a run time."""


def run_line(run: str, command: str, link: str = "results/examples/") -> str:
    """'`command`: **9 min 3 s** on 2 CPU cores (…), no job reused, surrogate training (38 s) included; peak RSS
    2.5 GiB (results/examples/RUN)'; `link`: where the examples folder is from the page that quotes it. Raises
    `ReusedRun` for a run that reused any job or surrogate."""
    f = facts(run)
    if f["reused"] or f["surrogates_reused"]:  # a run.json without them is too old to vouch for its time
        raise ReusedRun(f"results/examples/{run}: {f.get('reused', 0)} of {f.get('n_jobs')} jobs and "
                        f"{f.get('surrogates_reused', 0)} surrogate(s) were reused from the cache, so its "
                        f"{duration(f['seconds'])} is not a run time; regenerate it from an empty cache or stop "
                        "quoting its time")
    where = f" on {machine_phrase(f['machine'])}" if f.get("machine") else ""
    training = f.get("training", {})
    seconds = f" ({training['seconds']:.0f} s)" if "seconds" in training else ""
    if f.get("style") == "truth":
        model = ", nothing trained (the simulator's exact model)"
    else:
        n_models = len(f.get("checkpoints", [])) or 1
        model = (f", surrogate training{seconds} included" if n_models == 1 else
                 f", training of {n_models} surrogates included")
    return (f"`{command}`: **{duration(f['seconds'])}**{where}, no job reused{model}; peak RSS "
            f"{f['peak_rss_mb'] / 1024:.1f} GiB ([`results/examples/{run}/`]({link}{run}/))")


def headline_table(run: str) -> str:
    """The run's headline table, as its leaderboard.md shows it (without the notes under it); its s/job column shows
    "—" when the run reused any job or surrogate (those seconds were not spent in the run the page quotes)."""
    table = pd.read_csv(EXAMPLES / run / "headline.csv")
    table["marks"] = table["marks"].fillna("")
    f = facts(run)
    if f.get("reused") or f.get("surrogates_reused"):
        table["seconds_per_job"] = np.nan
    return headline_markdown(table).split("\n\n")[0]


def _jobs(run: str) -> pd.DataFrame:
    long = pd.read_csv(EXAMPLES / run / "leaderboard.csv")
    return long[long["gene"] != "*"]


def paired_vs(run: str, base: str, others: list[str], Ls=None) -> str:
    """Each of `others` minus `base` in Rel Δ (%), paired over the run's (cell type, gene) jobs, per L (all, or
    `Ls`): mean, 95 % t-interval and better / tied / worse counts (as in the discrimination tables)."""
    jobs = _jobs(run)
    Ls = sorted(jobs["L"].unique()) if Ls is None else Ls
    wide = {L: jobs[jobs["L"] == L].groupby(["cell_type", "gene", "method"])["rel_delta_pct"].mean()
            .unstack("method") for L in Ls}
    head = "| Method | " + " | ".join(f"L = {L}: method − {base} [95 % CI]; better / tied / worse" for L in Ls) + " |"
    lines = [head, "|---|" + "---|" * len(Ls)]
    for m in others:
        cells = []
        for L in Ls:
            p = _paired((wide[L][m] - wide[L][base]).dropna().to_numpy(float), -1)
            d = 2 if abs(p["ci_high"] - p["ci_low"]) >= 0.2 else 3
            cells.append(f"{fmt_ci(p['mean_diff'], np.nan, d)} [{fmt_ci(p['ci_low'], np.nan, d)}, "
                         f"{fmt_ci(p['ci_high'], np.nan, d)}]; {p['n_better']} / {p['n_tied']} / {p['n_worse']}")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def interactions(run: str, base: str, methods: list[str], Ls=None) -> str:
    """Per method and L: % of the exact optimum (mean over the jobs), its paired difference to `base` in points of
    % of optimum (95 % t-interval) and the model evaluations per job (mean, and as a multiple of `base`'s), from the
    run's job records."""
    rec = pd.DataFrame(read_records(EXAMPLES / run / "jobs.jsonl.gz"))
    rec["evaluations"] = [info.get("samples", np.nan) for info in rec["info"]]
    Ls = sorted(rec["L"].unique()) if Ls is None else Ls
    lines = ["| Method | L | % of optimum | − " + base + " [95 % CI] | lowest job | evaluations / job | × " + base
             + " | s / job |", "|---|---|---|---|---|---|---|---|"]
    for m in methods:
        for L in Ls:
            part = rec[(rec["L"] == L)].set_index(["cell_type", "gene", "seed", "method"])
            mine, ref = part.xs(m, level="method"), part.xs(base, level="method")
            p = _paired((mine["pct_of_optimum"] - ref["pct_of_optimum"]).dropna().to_numpy(float), 1)
            gap = "—" if m == base else (f"{fmt_ci(p['mean_diff'], np.nan, 1)} [{fmt_ci(p['ci_low'], np.nan, 1)}, "
                                         f"{fmt_ci(p['ci_high'], np.nan, 1)}]")
            ratio = mine["evaluations"].mean() / ref["evaluations"].mean()
            lines.append(f"| {m} | {L} | {mine['pct_of_optimum'].mean():.1f} | {gap} | "
                         f"{mine['pct_of_optimum'].min():.1f} | {mine['evaluations'].mean():,.0f} | {ratio:.2f} | "
                         f"{mine['explain_seconds'].mean():.2f} |")
    return "\n".join(lines)


def spread(run: str) -> str:
    """Avg Rel Δ (%) of each method on each retrained surrogate (`--surrogate-seeds`), and its standard deviation
    across them, per L."""
    jobs = _jobs(run)
    avg = cell_type_average(jobs, "rel_delta_pct", by=("method", "L", "surrogate_seed")).unstack("surrogate_seed")
    seeds = list(avg.columns)
    Ls = sorted(jobs["L"].unique())
    head = "| Method | " + " | ".join(f"L = {L}: surrogate {' / '.join(map(str, seeds))} | sd" for L in Ls) + " |"
    lines = [head, "|---|" + "---|---|" * len(Ls)]
    order = avg.xs(Ls[-1], level="L").mean(axis=1).sort_values().index
    for m in order:
        cells = []
        for L in Ls:
            v = avg.loc[(m, L)].to_numpy(float)
            cells += [" / ".join(fmt_ci(x, np.nan, 1 if abs(x) >= 1 else 2) for x in v), f"{np.std(v, ddof=1):.2f}"]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def linearity(run: str, method: str) -> str:
    """The method's actual Avg Rel Δ next to the Rel Δ the surrogate's linearisation predicts for the same
    selections, per L."""
    long = pd.read_csv(EXAMPLES / run / "leaderboard.csv")
    avg = long[(long["cell_type"] == "Avg") & (long["method"] == method)].set_index("L")
    lines = ["| L | actual Rel Δ (%) | first-order prediction (%) |", "|---|---|---|"]
    for L, r in avg.sort_index().iterrows():
        lines.append(f"| {L} | {fmt_ci(r['rel_delta_pct'], np.nan, 2)} | "
                     f"{fmt_ci(r['first_order_rel_delta_pct'], np.nan, 2)} |")
    return "\n".join(lines)


def kendall(run: str) -> str:
    """'+0.12 at L = 10 and +0.38 at L = 128 (11 explainers)': τ between the surrogate's and the oracle's
    rankings of the explainers, as each discrimination section states it."""
    from bench.reporting.report import control_methods, surrogate_oracle_kendall

    long = pd.read_csv(EXAMPLES / run / "leaderboard.csv")
    k = surrogate_oracle_kendall(long, control_methods(long["method"].unique()))
    parts = [f"{fmt_ci(r.tau, np.nan, 2)} at L = {r.L}" for r in k.itertuples()]
    return "Kendall τ = " + " and ".join(parts) + f" ({int(k['n_methods'].max())} explainers)"


def compare_block(first: str, second: str, names: list[str], *more: str) -> str:
    """`python -m bench compare` of two (or more) committed runs, as it prints."""
    import bench

    table = bench.compare(EXAMPLES / first, EXAMPLES / second, *(EXAMPLES / m for m in more), names=names)
    return "```\n" + table.attrs["markdown"] + "\n```"


def truth_breakdown(run: str, L: int) -> str:
    """The truth tier's breakdown table at L (what the closures were made of), as leaderboard.md shows it."""
    from bench.reporting.report import read_records
    from bench.reporting.truth_tier import breakdown_jobs, breakdown_table

    records = read_records(EXAMPLES / run / "jobs.jsonl.gz")
    order = list(pd.read_csv(EXAMPLES / run / "headline.csv")["method"])
    return breakdown_table(breakdown_jobs(records), L, order)


def fit_styles() -> str:
    """The three surrogate styles side by side from `bench fit --quick` (fidelity.json, interventional.csv)."""
    lines = ["| style | training | marker R² | interventional Spearman | group / Σ members (surrogate; truth) "
             "| closing all planted peaks (surrogate; truth) |", "|---|---|---|---|---|---|"]
    for style in ("paired", "reference", "locus", "screen"):
        fid = json.loads((EXAMPLES / f"fit-quick-{style}" / "fidelity.json").read_text())
        panel = pd.read_csv(EXAMPLES / f"fit-quick-{style}" / "interventional.csv")
        planted = panel[panel["kind"] == "all planted"][["surrogate_rel_pct", "oracle_rel_pct"]].mean()
        lines.append(f"| {style} | {fid['training_seconds']:.0f} s | {fid['marker_r2']:.3f} | "
                     f"{fid['interventional_spearman']:.2f} | {fid['group_member_ratio_surrogate']:.2f}; "
                     f"{fid['group_member_ratio_oracle']:.1f} | {fmt_ci(planted['surrogate_rel_pct'], np.nan, 1)} %; "
                     f"{fmt_ci(planted['oracle_rel_pct'], np.nan, 1)} % |")
    return "\n".join(lines)


def curve_run(run: str) -> str:
    """'`python -m bench fidelity-curve`: 12 points, training 41 min and jobs 1 h 2 min as first measured …' from the
    curve folder's table: the seconds each checkpoint and job took when it was computed (a later pass that reads
    them back from the caches keeps those seconds, and its own wall time is not quoted)."""
    f = json.loads((EXAMPLES / run / "run.json").read_text())
    t = pd.read_csv(EXAMPLES / run / "fidelity_curve.csv")
    return (f"`python -m bench fidelity-curve --reference-cells 2000,5000` (quick genes and peaks, seed {f['seed']}, "
            f"L = {f['L']}): {len(t)} points. Its compute, summed from the seconds each checkpoint and job took when "
            f"it was first computed on 2 CPU cores (not a run time: the points ran in several passes that shared "
            f"caches, and truth-tier jobs are counted with every point that shares their data, though they ran "
            f"once): surrogate training {duration(t['train_seconds'].sum())}, explainer jobs "
            f"{duration(t['jobs_seconds'].sum())} ([`results/examples/{run}/`]({FROM_DOCS}{run}/))")


def curve_table(run: str) -> str:
    """The curve's main columns: size, depth, style, fidelity, what the data identify, and τ between the tiers."""
    t = pd.read_csv(EXAMPLES / run / "fidelity_curve.csv")
    lines = ["| style | cells | UMI / cell | marker R² | interventional Spearman | group / Σ members: surrogate; "
             "truth (pooled) | locus model: pooled ratio; held-out gain | all planted closed: surrogate; truth "
             "| τ(surrogate tier, truth tier) [95 % CI] | best method: surrogate; truth |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in t.itertuples():
        lines.append(f"| {r.style} | {r.n_cells:,} | {r.umi_per_cell:,.0f} | {r.marker_r2:.3f} | "
                     f"{r.interventional_spearman:.2f} | {r.pooled_ratio_surrogate:.2f}; {r.pooled_ratio_truth:.1f} | "
                     f"{r.locus_group_member_ratio:.1f}; {r.locus_heldout_gain_pct:+.1f} % | "
                     f"{r.all_planted_surrogate_pct:.1f} %; {r.all_planted_truth_pct:.1f} % | "
                     f"{r.tau_tiers:+.2f} [{r.tau_low:+.2f}, {r.tau_high:+.2f}] | {r.winner_surrogate}; "
                     f"{r.winner_truth} |")
    return "\n".join(lines)


SCREEN_CURVE_COMMAND = ("python -m bench fidelity-curve --cells 2000 --styles paired --depths none --reference-cells "
                        "none --screen-cells 0,2000,5000,10000,20000")


def screen_run(run: str) -> str:
    """'`python -m bench fidelity-curve … --screen-cells …`: 8 points in 1 h 10 min …' from the curve's run.json (its
    wall time: the screen curve ran once, from an empty cache) and table."""
    f = json.loads((EXAMPLES / run / "run.json").read_text())
    t = pd.read_csv(EXAMPLES / run / "fidelity_curve.csv")
    return (f"`{SCREEN_CURVE_COMMAND}` (quick genes and peaks, seed {f['seed']}, L = {f['L']}): {len(t)} points in "
            f"**{duration(f['wall_seconds'])}** on 2 CPU cores from an empty cache, which part of the time also ran "
            f"tests (an upper bound; surrogate training and layer fits "
            f"{duration(t['train_seconds'].sum())}, explainer jobs {duration(t['jobs_seconds'].sum())}; truth-tier "
            f"jobs are shared by the points with the same observational cells) "
            f"([`results/examples/{run}/`]({FROM_DOCS}{run}/))")


def screen_table(run: str) -> str:
    """The screen axis: screened cells, library, fidelity, the all-planted closure and τ between the tiers."""
    t = pd.read_csv(EXAMPLES / run / "fidelity_curve.csv").fillna({"screen": ""})
    lines = ["| style | screened cells | screen | marker R² | interventional Spearman | group / Σ members: surrogate; "
             "truth | all planted closed: surrogate; truth | τ(surrogate tier, truth tier) [95 % CI] | best method: "
             "surrogate; truth | training |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in t.itertuples():
        lines.append(f"| {r.style} | {int(r.screen_cells):,} | {r.screen or 'none'} | {r.marker_r2:.3f} | "
                     f"{r.interventional_spearman:.2f} | {r.group_member_ratio_surrogate:.2f}; "
                     f"{r.group_member_ratio_truth:.1f} | {r.all_planted_surrogate_pct:.1f} %; "
                     f"{r.all_planted_truth_pct:.1f} % | {r.tau_tiers:+.2f} [{r.tau_low:+.2f}, {r.tau_high:+.2f}] | "
                     f"{r.winner_surrogate}; {r.winner_truth} | {duration(r.train_seconds)} |")
    return "\n".join(lines)


def budget_run(run: str, methods: list[str] | None = None) -> str:
    """'`python -m bench budget …`: **25 min 3 s** …' from the curve folder's run.json; `ReusedRun` when any of its
    job records came from the cache."""
    f = json.loads((EXAMPLES / run / "run.json").read_text())
    records = read_records(EXAMPLES / run / "jobs.jsonl.gz")
    reused = sum(bool(r.get("cached")) for r in records)
    if reused or f.get("reused") or f.get("surrogate_reused"):  # older curves' run.json did not record the surrogate
        raise ReusedRun(f"results/examples/{run}: {reused} of {len(records)} jobs (and the surrogate: "
                        f"{bool(f.get('surrogate_reused'))}) were reused from the cache")
    budgets = ",".join(f"1e{int(np.log10(b))}" for b in f["budgets"])
    pairs = {(r["cell_type"], r["gene"]) for r in records}
    chosen = f" --methods {','.join(methods)}" if methods else ""
    return (f"`python -m bench budget --quick --budgets {budgets} --budget-seconds {f['seconds_stop']:g}{chosen}`: "
            f"**{duration(f['wall_seconds'])}** on 2 CPU cores, no job reused, L = {f['L']}, {len(pairs)} (cell type, "
            f"gene) jobs per method and budget ({len(f['genes'])} genes: the first marker of each cell type), both "
            f"tiers ([`results/examples/{run}/`]({FROM_DOCS}{run}/))")


def budget_tables(run: str) -> str:
    """The per-tier tables of the curve folder's budget_curve.md (without its header and figure)."""
    text = (EXAMPLES / run / "budget_curve.md").read_text()
    return text[text.index("### Surrogate tier"):].strip()


def worlds_run(run: str, methods: list[str] | None = None) -> str:
    """'`python -m bench worlds --quick`: **… min** …' from the study folder's run.json; `ReusedRun` when any job
    or surrogate came from the cache."""
    f = json.loads((EXAMPLES / run / "run.json").read_text())
    if f.get("reused") or f.get("surrogates_reused"):
        raise ReusedRun(f"results/examples/{run}: {f.get('reused')} of {f['n_jobs']} jobs and "
                        f"{f.get('surrogates_reused')} surrogate(s) were reused from the cache")
    chosen = f" --methods {','.join(methods)}" if methods else ""
    return (f"`python -m bench worlds --quick{chosen}`: **{duration(f['wall_seconds'])}** on 2 CPU cores, no job "
            f"reused, "
            f"{len(f['worlds'])} worlds × {', '.join(f['tiers'])} tiers × L = {', '.join(map(str, f['Ls']))}, "
            f"{f['n_methods']} methods, {f['n_jobs']:,} jobs, {len(f['worlds']) if 'surrogate' in f['tiers'] else 0} "
            f"surrogates trained ([`results/examples/{run}/`]({FROM_DOCS}{run}/))")


def worlds_tables(run: str) -> str:
    """The sections of the study folder's worlds.md (its header and figure left out), one heading level down."""
    text = (EXAMPLES / run / "worlds.md").read_text()
    return text[text.index("## Regime"):].strip().replace("\n## ", "\n### ").replace("## Regime", "### Regime", 1)


def worlds_sections(run: str, starts: list[str]) -> str:
    """The sections of the study folder's worlds.md whose titles start with one of `starts`, one heading level down."""
    text = (EXAMPLES / run / "worlds.md").read_text()
    sections = ["## " + part for part in text.split("\n## ")[1:]]
    keep = [sec.strip() for sec in sections if any(sec[3:].startswith(t) for t in starts)]
    return "\n\n".join(keep).replace("## ", "### ")


def locality(run: str, Ls=(10, 20)) -> str:
    """On the truth tier: each explainer's % of the optimum next to the `nearest-tss` control's, and the share of
    the method's score the locality prior alone reaches (nearest-tss / method), with the median TSS distance of its
    selections at the largest L."""
    head = pd.read_csv(EXAMPLES / run / "headline.csv")
    near = head.set_index("method").loc["nearest-tss"]
    tss = [c for c in head.columns if c.startswith("median_tss_distance@")][0]
    lines = ["| Method | " + " | ".join(f"% of optimum L={L}" for L in Ls) + " | "
             + " | ".join(f"nearest-tss / method L={L}" for L in Ls) + f" | TSS distance L={tss.split('@')[1]} |",
             "|---|" + "---|" * (2 * len(Ls) + 1)]
    for r in head.to_dict("records"):  # itertuples would rename the '@' columns
        if r["method"] in ("random", "oracle"):
            continue
        shares = [near[f"pct_of_optimum@{L}"] / r[f"pct_of_optimum@{L}"] if r[f"pct_of_optimum@{L}"] > 0 else np.nan
                  for L in Ls]
        lines.append(f"| {r['method']} | " + " | ".join(f"{r[f'pct_of_optimum@{L}']:.1f}" for L in Ls) + " | "
                     + " | ".join("—" if not np.isfinite(x) else f"{x:.2f}" for x in shares) + f" | {fmt_bp(r[tss])} |")
    return "\n".join(lines)


INTERACTION_METHODS = ["grids", "grids-groups", "shapiq-fsii"]  # issue 35's comparison (its own curve folder)
WORLD_INTERACTION_METHODS = ["grids", "grids-groups", "shapiq-fsii", "saliency", "smoothgrad",
                             "input-x-gradient", "integrated-gradients", "nearest-tss", "random", "oracle"]

BLOCKS = {
    "fit-styles": fit_styles,
    "quick-run": lambda: run_line("quick", "python -m bench run --quick"),
    "default-run": lambda: run_line("default", "python -m bench run"),
    "quick-headline": lambda: headline_table("quick"),
    "quick-grids-vs": lambda: paired_vs("quick", "grids", ["input-x-gradient", "smoothgrad-x-input",
                                                           "integrated-gradients", "fimap"]),
    "quick-linearity": lambda: linearity("quick", "grids"),
    "quick-kendall": lambda: kendall("quick"),
    "compare-reference": lambda: compare_block("quick", "quick-reference", ["paired", "reference"]),
    "default-headline": lambda: headline_table("default"),
    "default-kendall": lambda: kendall("default"),
    "default-grids-vs": lambda: paired_vs("default", "grids", ["input-x-gradient", "smoothgrad-x-input",
                                                               "integrated-gradients", "fimap"]),
    "default-spread": lambda: spread("default-surrogate-seeds"),
    "quick-spread": lambda: spread("quick-surrogate-seeds"),
    "reference-headline": lambda: headline_table("quick-reference"),
    "truth-run": lambda: run_line("quick-truth", "python -m bench run --quick --surrogate truth", FROM_DOCS),
    "truth-headline": lambda: headline_table("quick-truth"),
    "truth-grids-vs": lambda: paired_vs("quick-truth", "grids", ["grids-groups", "shapiq-fsii", "integrated-gradients",
                                                                 "input-x-gradient", "smoothgrad", "saliency"],
                                        Ls=[3, 5, 10, 20]),
    "truth-breakdown": lambda: truth_breakdown("quick-truth", 10),
    "truth-interactions": lambda: interactions("quick-truth", "grids", ["grids", "grids-groups", "shapiq-fsii"],
                                               Ls=[3, 5, 10, 20]),
    "truth-compare": lambda: compare_block("quick", "quick-truth", ["surrogate", "truth"]),
    "curve-run": lambda: curve_run("fidelity-curve"),
    "curve-table": lambda: curve_table("fidelity-curve"),
    "screen-run": lambda: screen_run("screen-curve"),
    "screen-table": lambda: screen_table("screen-curve"),
    "screen-compare": lambda: compare_block("quick-truth", "quick-screen", ["truth", "screen", "paired"], "quick"),
    "budget-run": lambda: budget_run("budget-quick"),
    "budget-tables": lambda: budget_tables("budget-quick"),
    "budget-interactions-run": lambda: budget_run("budget-interactions", INTERACTION_METHODS),
    "budget-interactions-tables": lambda: budget_tables("budget-interactions"),
    "truth-locality": lambda: locality("quick-truth"),
    "worlds-run": lambda: worlds_run("worlds-quick"),
    "worlds-tables": lambda: worlds_tables("worlds-quick"),
    "worlds-interactions-run": lambda: worlds_run("worlds-interactions", WORLD_INTERACTION_METHODS),
    "worlds-interactions": lambda: worlds_sections("worlds-interactions", [
        "Truth tier: % of the exact optimum", "Best explainer per world", "Does the surrogate's verdict",
        "Surrogate tier: Avg Rel Δ (%) at L = 10", "Closure composition in the redundant world",
        "Closure composition in the synergy world"]),
    "paper-headline": lambda: headline_table("paper"),
    "paper-grids-vs": lambda: paired_vs("paper", "grids", ["integrated-gradients", "input-x-gradient", "fimap"]),
    "paper-run": lambda: run_line("paper", "python -m bench run --scale paper --methods grids,random,saliency,"
                                           "smoothgrad,input-x-gradient,integrated-gradients,fimap", ""),
    "paper-truth-headline": lambda: headline_table("paper-truth"),
    "paper-truth-grids-vs": lambda: paired_vs("paper-truth", "grids", ["saliency", "smoothgrad", "input-x-gradient",
                                                                       "integrated-gradients", "fimap"], Ls=[10]),
    "paper-truth-compare": lambda: compare_block("paper", "paper-truth", ["surrogate", "truth"]),
}


def blocks_in(page: Path) -> dict[str, str]:
    return {m.group(2): m.group(3) for m in BLOCK.finditer(page.read_text())}


def rewrite(page: Path) -> None:
    text = page.read_text()
    page.write_text(BLOCK.sub(lambda m: m.group(1) + BLOCKS[m.group(2)]() + "\n" + m.group(4), text))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_generated_blocks_match_the_committed_examples(page):
    found = blocks_in(page)
    assert found or page.parent == DOCS, f"{page} has no generated block"
    for name, text in found.items():
        assert name in BLOCKS, f"{page}: unknown generated block {name!r}"
        assert text == BLOCKS[name]() + "\n", (f"{page}: block {name!r} is not what the committed examples give; "
                                               "run `python -m tests.test_readme` to rewrite it")


def test_the_first_command_and_the_first_screen_are_the_same_run():
    """The README's first command runs the example whose headline the first screen shows, and the set-up quotes
    that run's time (and the other scale's beside it)."""
    text = (ROOT / "README.md").read_text()
    found = blocks_in(ROOT / "README.md")
    assert {"quick-headline", "quick-run", "default-run"} <= set(found)
    first = "\n## ".join(text.split("\n## ")[:2])  # the title, the question and the headline
    assert "<!-- generated:quick-headline -->" in first
    command = re.search(r"```bash\n(.*?)\n```", text, re.S).group(1)  # the first command a reader meets
    assert command.endswith("&& python -m bench run --quick"), command
    assert found["quick-run"].startswith("`python -m bench run --quick`:")
    assert found["quick-headline"] == headline_table("quick") + "\n"


def test_a_run_that_reused_anything_is_never_quoted_as_a_run_time(monkeypatch):
    base = facts("quick-truth")
    for reused in ({"reused": 1}, {"surrogates_reused": 1}):
        monkeypatch.setattr(sys.modules[__name__], "facts", lambda run, r=reused: {**base, **r})
        with pytest.raises(ReusedRun, match="is not a run time"):
            run_line("quick-truth", "python -m bench run --quick --surrogate truth")
    monkeypatch.setattr(sys.modules[__name__], "facts", lambda run: {**base, "reused": 0})
    assert "no job reused, nothing trained" in run_line("quick-truth", "python -m bench run --quick --surrogate truth")


def test_duration_and_the_block_pattern():
    assert (duration(543.4), duration(4775), duration(59.6)) == ("9 min 3 s", "1 h 19 min 35 s", "1 min 0 s")
    text = "a\n<!-- generated:x -->\nold\n<!-- /generated:x -->\nb"
    assert [(m.group(2), m.group(3)) for m in BLOCK.finditer(text)] == [("x", "old\n")]


if __name__ == "__main__":
    for page in PAGES:
        rewrite(page)
        print(f"rewrote {len(blocks_in(page))} generated blocks in {page.relative_to(ROOT)}")
