"""Every explainer in every regulatory world (`python -m bench worlds`): which explainer for which logic?

The truth tier is the one verdict that does not rest on a trained model, but a single simulated world decides what
it rewards. `run_worlds` runs the same methods, cell types, marker genes and L on the data of each world
(datasets/worlds.py; same seed, genes, cell types, trans activities and TSSs, each world's own planted regulation):

* the truth tier — the world's exact model (surrogates/truth.py), each job scored as % of the exact optimum;
* the surrogate tier — the paired surrogate trained on that world's data, each job's Rel Δ on it, and what its
  peaks do to the true expression (`oracle_rel_delta_pct`).

It reports one table of methods × worlds (% of optimum at each L, 95 % CI over cell types), the best method per
world with every other method's paired difference to it, Kendall τ between the worlds' truth-tier rankings (does a
ranking survive a change of world?), τ between the surrogate-tier and truth-tier rankings per world (does the
surrogate's verdict agree with the truth there?), each world's regime, and the closure composition of each
world (what the methods closed: whole groups, broken AND units, silencers, shared elements).

Jobs go through the result cache like a run's, and the outputs are rewritten after every world, so an interrupted
study resumes where it stopped. Outputs in `out`: worlds.csv (long: world, tier, method, L, Rel Δ, % of optimum
and their CIs), worlds.md, worlds.png, report.html, regime.csv, jobs.jsonl.gz and run.json.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from bench.config import profile_for
from bench.errors import UserError
from bench.fidelity.data_curve import bootstrap_tau, method_means, tier_tau
from bench.reporting.html import study_page, text_html
from bench.reporting.report import complete, control_methods, discrimination, long_table
from bench.reporting.tables import fmt_ci, render
from bench.reporting.truth_tier import breakdown_jobs, breakdown_table
from bench.running.pipeline import Inputs, fit_surrogate, load_inputs, run_plan
from bench.running.plan import check_methods, parse_ints, plan_run
from datasets.describe import describe
from datasets.files import atomic_write
from datasets.worlds import DEFAULT_WORLD, WORLDS
from surrogates.protocol import meta_of
from surrogates.truth import TruthModel

log = logging.getLogger("bench")

WORLD_LS = (3, 10)  # a small closure (a group or unit at a time matters) and the paper's L = 10
TIERS = ("truth", "surrogate")
COLUMNS = ("world", "tier", "method", "L", "rel_delta_pct", "rel_delta_pct_ci95", "pct_of_optimum",
           "pct_of_optimum_ci95", "oracle_rel_delta_pct", "oracle_rel_delta_pct_ci95", "off_target_pct",
           "off_target_pct_ci95",
           "n_scored", "n_expected", "status")


def check_worlds(worlds) -> list[str]:
    """The named worlds in order, without repeats; UserError naming the unknown ones and listing the worlds."""
    worlds = list(dict.fromkeys(worlds or WORLDS))
    unknown = [w for w in worlds if w not in WORLDS]
    if unknown:
        raise UserError(f"--worlds: unknown world(s) {', '.join(unknown)}; the simulator has {', '.join(WORLDS)}")
    return worlds


def check_study(worlds, tiers, methods, Ls) -> tuple[list[str], list[str], list[str] | None, tuple[int, ...]]:
    """The study's selections checked before anything is written or trained (UserError otherwise); a comma-separated
    string is taken for a list, as on the command line."""
    def listed(value):
        return [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value

    worlds, tiers, methods = check_worlds(listed(worlds)), list(dict.fromkeys(listed(tiers) or ())), listed(methods)
    bad = [t for t in tiers if t not in TIERS]
    if bad or not tiers:
        raise UserError(f"--tiers must name 'truth' and/or 'surrogate', got {','.join(tiers) or 'none'}")
    if methods:
        check_methods(methods)
    return worlds, tiers, methods, parse_ints(listed(Ls), "--L")


def world_inputs(scale: str, seed: int, world: str, cache_dir=None) -> Inputs:
    """The simulator's inputs for one world (the default world's are the scale's own data: its caches are shared)."""
    return Inputs(scale=scale, seed=seed, cache_dir=cache_dir,
                  simulate=() if world == DEFAULT_WORLD else (("world", world),))


# ------------------------------------------------------------------------------------------------ pure tables
def world_table(records: list[dict]) -> pd.DataFrame:
    """The long table (`COLUMNS`): per (world, tier, method, L) the leaderboard's Avg over cell types."""
    rows = []
    frame = pd.DataFrame(records)
    for (world, tier), part in frame.groupby(["world", "tier"], sort=False):
        long = long_table(part.to_dict("records"))
        for _, a in long[long["cell_type"] == "Avg"].iterrows():
            rows.append({"world": world, "tier": tier, "method": a["method"], "L": int(a["L"]),
                         **{c: a.get(c, np.nan) for c in COLUMNS[4:-3]}, "n_scored": int(a["n_scored"]),
                         "n_expected": int(a["n_expected"]),
                         "status": a["status"]})
    return pd.DataFrame(rows, columns=list(COLUMNS))


def world_ranking_tau(table: pd.DataFrame, L: int, controls) -> pd.DataFrame:
    """worlds × worlds Kendall τ-b between the truth tier's rankings of the non-control methods by % of optimum
    at L (1 = the same order in both worlds)."""
    part = table[(table["tier"] == "truth") & (table["L"] == L) & ~table["method"].isin(list(controls))]
    part = part[complete(part)]  # a method whose other jobs failed would be ranked on its easy part
    wide = part.pivot_table(index="method", columns="world", values="pct_of_optimum", sort=False)
    worlds = list(dict.fromkeys(part["world"]))
    out = pd.DataFrame(index=worlds, columns=worlds, dtype=float)
    for a in worlds:
        for b in worlds:
            both = wide[[a, b]].dropna()
            out.loc[a, b] = stats.kendalltau(both[a], both[b]).statistic if len(both) > 1 else np.nan
    return out


def tier_agreement(records: list[dict], methods, L: int, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per world: Kendall τ between the surrogate tier's and the truth tier's rankings of `methods` by Rel Δ at L
    over the same jobs, with a percentile bootstrap CI over jobs (bench/fidelity/data_curve.py)."""
    rows = []
    frame = pd.DataFrame(records)
    for world, part in frame.groupby("world", sort=False):
        tiers = {t: method_means(part[part["tier"] == t].to_dict("records"), methods, L) for t in TIERS
                 if (part["tier"] == t).any()}
        if len(tiers) < 2:
            continue
        low, high = bootstrap_tau(tiers["surrogate"], tiers["truth"], n_boot=n_boot, seed=seed)
        rows.append({"world": world, "L": L, "tau": tier_tau(tiers["surrogate"], tiers["truth"]), "low": low,
                     "high": high, "n_jobs": len(tiers["truth"])})
    return pd.DataFrame(rows, columns=["world", "L", "tau", "low", "high", "n_jobs"])


def best_per_world(records: list[dict], L: int, controls) -> pd.DataFrame:
    """Per world (truth tier, L): every method's paired difference in % of optimum to the world's best
    (`bench.reporting.report.discrimination`: over the (cell type, gene) jobs, t-interval and Wilcoxon)."""
    rows = []
    frame = pd.DataFrame(records)
    for world, part in frame[(frame["tier"] == "truth") & (frame["L"] == L)].groupby("world", sort=False):
        disc = discrimination(long_table(part.to_dict("records")), controls, metric="pct_of_optimum")
        rows.append(disc.assign(world=world))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


# ------------------------------------------------------------------------------------------------ rendering
def methods_by_world(table: pd.DataFrame, tier: str, L: int, metric: str, tablefmt: str = "github",
                     bold: bool = True) -> str:
    """methods × worlds, each cell the Avg ± 95 % CI of `metric` at L, explainers ordered by their mean over the
    worlds (best first; lowest first for any metric but % of optimum), controls last; with `bold`, the best
    non-control method per world in bold (highest % of optimum, lowest Rel Δ)."""
    part = table[(table["tier"] == tier) & (table["L"] == L)]
    if part.empty:
        return ""
    worlds = list(dict.fromkeys(part["world"]))
    controls = control_methods(list(dict.fromkeys(part["method"])))
    # explainers by their mean over worlds (best first), then the controls
    means = part.groupby("method", sort=False)[metric].mean()
    order = means.drop(list(controls), errors="ignore").sort_values(ascending=metric != "pct_of_optimum",
                                                                   na_position="last")
    methods = [*order.index, *(m for m in means.index if m in controls)]
    best = {}
    for w in worlds if bold else ():
        here = part[(part["world"] == w) & ~part["method"].isin(list(controls))].dropna(subset=[metric])
        here = here[complete(here)]
        if len(here):
            pick = here[metric].idxmax() if metric == "pct_of_optimum" else here[metric].idxmin()
            best[w] = here.loc[pick, "method"]
    body = []
    for m in methods:
        line = [m + (" (control)" if m in controls else "")]
        for w in worlds:
            r = part[(part["world"] == w) & (part["method"] == m)]
            if r.empty or not np.isfinite(r.iloc[0][metric]):
                line.append("—")
                continue
            text = fmt_ci(r.iloc[0][metric], r.iloc[0][f"{metric}_ci95"],
                          signed=metric not in ("pct_of_optimum", "off_target_pct"))
            line.append(f"**{text}**" if best.get(w) == m else text)
        if len(worlds) > 1:  # the mean over worlds (the order's key); "—" where a world has no number
            line.append(fmt_ci(means[m], float("nan"), signed=metric not in ("pct_of_optimum", "off_target_pct"))
                        if part[part["method"] == m][metric].notna().sum() == len(worlds) else "—")
        body.append(line)
    return render(body, ["Method", *worlds, *(["mean over worlds"] if len(worlds) > 1 else [])], tablefmt)


def best_markdown(best: pd.DataFrame, controls=(), tablefmt: str = "github") -> str:
    """Per world: the best method and the runner-up's paired difference (points of % of optimum, 95 % CI, jobs it
    beats / ties / trails), then every method within the CI of the best."""
    if best.empty:
        return ""
    body = []
    for world, part in best.groupby("world", sort=False):
        leader = part["best_method"].iloc[0]
        others = part[(part["method"] != leader) & ~part["method"].isin(list(controls))]
        others = others.sort_values("mean_diff", ascending=False)
        if others.empty:
            body.append([world, leader, "—", "—"])
            continue
        r = others.iloc[0]
        tied = [m for m, hi in zip(others["method"], others["ci_high"]) if np.isfinite(hi) and hi >= 0]
        runner_up = (f"{r['method']}: {_signed(r['mean_diff'])} [{_signed(r['ci_low'])}, {_signed(r['ci_high'])}] "
                     f"({int(r['n_better'])}/{int(r['n_tied'])}/{int(r['n_worse'])})")
        body.append([world, leader, runner_up, ", ".join(tied) or "none"])
    return render(body, ["World", "Best (truth tier)", "Runner-up: paired Δ % of optimum [95 % CI] (jobs +/=/−)",
                         "Not separated from the best (CI reaches 0)"], tablefmt)


def _signed(x: float) -> str:
    return f"{x:+.1f}".replace("-", "−")


def tau_markdown(tau: pd.DataFrame, tablefmt: str = "github") -> str:
    body = [[a, *(f"{tau.loc[a, b]:+.2f}" if np.isfinite(tau.loc[a, b]) else "—" for b in tau.columns)]
            for a in tau.index]
    return render(body, ["τ", *tau.columns], tablefmt)


def agreement_markdown(agree: pd.DataFrame, tablefmt: str = "github") -> str:
    body = [[r.world, r.L, f"{r.tau:+.2f} [{r.low:+.2f}, {r.high:+.2f}]", r.n_jobs] for r in agree.itertuples()]
    return render(body, ["World", "L", "τ(surrogate tier, truth tier) [95 % bootstrap CI]", "jobs"], tablefmt)


def regime_row(world: str, data, truth) -> dict:
    """The regime numbers of one world's data (datasets/describe.py)."""
    s = describe(data, truth)
    return {"world": world, "open_per_cell": s["open_per_cell"]["mean"], "background_share": s["background_share"],
            "planted_per_marker": float(np.mean([m["planted_peaks"] for m in s["markers"]])),
            "best10_left_mean": s["best10_left_mean"], "best10_left_min": s["best10_left_min"],
            "all_planted_left_mean": s["all_planted_left_mean"], "all_planted_left_max": s["all_planted_left_max"]}


def regime_markdown(regime: pd.DataFrame, tablefmt: str = "github") -> str:
    body = [[r.world, f"{r.open_per_cell:,.0f}", f"{r.background_share:.1%}", f"{r.planted_per_marker:.1f}",
             f"{r.best10_left_mean:.1%} (min {r.best10_left_min:.1%})",
             f"{r.all_planted_left_mean:.1%} (max {r.all_planted_left_max:.1%})"] for r in regime.itertuples()]
    return render(body, ["World", "open peaks / cell", "background share of open entries", "planted peaks / marker",
                         "left after the best 10 (mean)", "left after every activating planted peak (mean)"],
                  tablefmt)


def plot_worlds(table: pd.DataFrame, L: int) -> bytes:
    """Heat map of the truth tier's % of optimum at L, methods × worlds (controls last)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    part = table[(table["tier"] == "truth") & (table["L"] == L)]
    wide = part.pivot_table(index="method", columns="world", values="pct_of_optimum", sort=False)
    wide = wide.reindex(columns=list(dict.fromkeys(part["world"])))
    fig, ax = plt.subplots(figsize=(1.4 * wide.shape[1] + 3, 0.38 * wide.shape[0] + 1.5))
    im = ax.imshow(wide.to_numpy(dtype=float), cmap="viridis", vmin=0, vmax=100, aspect="auto")
    ax.set_xticks(range(wide.shape[1]), wide.columns, rotation=30, ha="right")
    ax.set_yticks(range(wide.shape[0]), wide.index)
    for i in range(wide.shape[0]):
        for j in range(wide.shape[1]):
            v = wide.iat[i, j]
            if np.isfinite(v):
                ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=7,
                        color="white" if v < 60 else "black")
    fig.colorbar(im, ax=ax, label="% of the exact optimum (truth tier)")
    ax.set_title(f"Truth tier, L = {L}", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def worlds_markdown(table, records, regime, facts, tablefmt: str = "github") -> str:
    """Every section of the worlds report (markdown, or html tables)."""
    methods = list(dict.fromkeys(table["method"]))
    controls = control_methods(methods)
    explainers = [m for m in methods if m not in controls]
    Ls = sorted(table["L"].unique())
    out = ["## Regime of each world's data", "", regime_markdown(regime, tablefmt), ""]
    for L in Ls:
        out += [f"## Truth tier: % of the exact optimum at L = {L}", "",
                methods_by_world(table, "truth", L, "pct_of_optimum", tablefmt), "",
                "± is the half-width of a 95 % t-interval over cell types; bold: the best explainer of the world.", ""]
    for L in Ls:
        best = best_per_world(records, L, controls)
        if not best.empty:
            note = ("Paired over the (cell type, gene) jobs of the world: the runner-up's mean difference to the best "
                    "in points of % of optimum, its 95 % t-interval, and the jobs it beats, ties, trails.")
            out += [f"## Best explainer per world (truth tier, L = {L})", "", best_markdown(best, controls, tablefmt),
                    "", note, ""]
    for L in Ls:
        tau = world_ranking_tau(table, L, controls)
        if tau.shape[0] > 1:
            note = (f"Kendall τ-b between two worlds' rankings of the {len(explainers)} explainers by % of optimum "
                    "(controls left out).")
            out += [f"## Does the ranking survive a change of world? (truth tier, L = {L})", "",
                    tau_markdown(tau, tablefmt), "", note, ""]
    truth_off = table[(table["tier"] == "truth") & (table["L"] == max(Ls))]["off_target_pct"]
    if truth_off.notna().any():
        note = ("Mean |Rel Δ| (%) of every other gene when a method's peaks are closed in the world's exact model: "
                "not 0 only where a closed peak also regulates another gene (an element shared with it, or another "
                "gene's own element), the cost in specificity of the closure; lower is better.")
        out += [f"## Specificity: off-target change on the truth (L = {max(Ls)})", "",
                methods_by_world(table, "truth", max(Ls), "off_target_pct", tablefmt, bold=False), "", note, ""]
    if "surrogate" in set(table["tier"]):
        for L in Ls:
            out += [f"## Surrogate tier: Avg Rel Δ (%) at L = {L}", "",
                    methods_by_world(table, "surrogate", L, "rel_delta_pct", tablefmt), "",
                    f"## Surrogate tier's peaks under the truth: oracle Rel Δ (%) at L = {L}", "",
                    methods_by_world(table, "surrogate", L, "oracle_rel_delta_pct", tablefmt), ""]
        agree = pd.concat([tier_agreement(records, explainers, L, seed=facts["seed"]) for L in Ls],
                          ignore_index=True)
        if not agree.empty:
            note = ("Kendall τ-b between the explainers' Avg Rel Δ on the surrogate and on the world's exact model "
                    "over the same jobs; CI: 1,000 bootstrap resamples of the jobs.")
            out += ["## Does the surrogate's verdict agree with the truth?", "", agreement_markdown(agree, tablefmt),
                    "", note, ""]
    jobs = breakdown_jobs([r for r in records if r.get("tier") == "truth"])
    if not jobs.empty:
        L = max(Ls)
        for world in dict.fromkeys(r["world"] for r in records if r.get("tier") == "truth"):
            sub = breakdown_jobs([r for r in records if r.get("tier") == "truth" and r["world"] == world])
            out += [f"## Closure composition in the {world} world (truth tier, L = {L})", "",
                    breakdown_table(sub, L, methods, tablefmt), ""]
    return "\n".join(out)


def worlds_header(facts: dict) -> str:
    reused = facts.get("reused", 0)
    time_phrase = (f"{facts['wall_seconds'] / 60:.1f} min in all" +
                   (f" ({reused} of {facts['n_jobs']} jobs and {facts['surrogates_reused']} surrogate(s) reused "
                    "from the caches, so not a run time)" if reused or facts.get("surrogates_reused") else
                    ", nothing reused"))
    return (f"Worlds: {facts['scale']} scale, seed {facts['seed']}, worlds {', '.join(facts['worlds'])}; tiers "
            f"{', '.join(facts['tiers'])}; L {', '.join(map(str, facts['Ls']))}; {facts['n_methods']} methods; "
            f"{time_phrase}.")


def write_worlds(out: Path, table: pd.DataFrame, records: list[dict], regime: pd.DataFrame, facts: dict) -> list:
    """worlds.csv/.md/.png, regime.csv, jobs.jsonl.gz, run.json and report.html in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    header = worlds_header(facts)
    L = max(facts["Ls"])
    png = plot_worlds(table, L) if (table["tier"] == "truth").any() else None
    md = worlds_markdown(table, records, regime, facts)
    figure = "![](worlds.png)\n\n" if png else ""
    written = [atomic_write(out / "worlds.csv", table.to_csv(index=False)),
               atomic_write(out / "regime.csv", regime.to_csv(index=False)),
               atomic_write(out / "worlds.md", f"# Explainers across regulatory worlds\n\n{header}\n\n{figure}{md}\n"),
               atomic_write(out / "run.json", json.dumps(facts, indent=1) + "\n")]
    body = "".join(json.dumps(r, default=str) + "\n" for r in records).encode()
    (out / "jobs.jsonl.gz").write_bytes(gzip.compress(body, mtime=0))
    written.append(out / "jobs.jsonl.gz")
    if png:
        (out / "worlds.png").write_bytes(png)
        written.append(out / "worlds.png")
    body = text_html(worlds_markdown(table, records, regime, facts, "html").replace("## ", ""))
    written.append(atomic_write(out / "report.html", study_page("Explainers across regulatory worlds", header, body,
                                                                png, "truth tier across worlds")))
    return written


def rerender_worlds(folder: Path, out: Path | None = None) -> list:
    """Write a finished study's outputs again from its jobs.jsonl.gz, regime.csv and run.json with the current
    report code (into `out`, default the same folder); nothing is recomputed, so run.json keeps its measured time."""
    folder = Path(folder)
    records = [json.loads(line) for line in gzip.decompress((folder / "jobs.jsonl.gz").read_bytes()).splitlines()
               if line.strip()]
    facts = json.loads((folder / "run.json").read_text())
    regime = pd.read_csv(folder / "regime.csv")
    return write_worlds(Path(out) if out is not None else folder, world_table(records), records, regime, facts)


def is_worlds_folder(folder) -> bool:
    """Whether `folder` holds a `bench worlds` study (rather than a run)."""
    return (Path(folder) / "worlds.csv").is_file() and (Path(folder) / "jobs.jsonl.gz").is_file()


# ------------------------------------------------------------------------------------------------ the study
def run_worlds(scale: str = "quick", *, worlds=None, seed: int = 0, tiers=TIERS, surrogate: str = "paired",
               methods=None, Ls=WORLD_LS, cell_types=None, genes=None, cache_dir=None, device: str = "auto",
               out=None, progress: bool = True) -> pd.DataFrame:
    """Run the study (see the module docstring); returns `world_table`'s frame and writes the outputs to `out`
    (after every world) when given."""
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    worlds, tiers, methods, Ls = check_study(worlds, tiers, methods, Ls)
    profile = profile_for(scale)
    records, regime, surrogates_reused = [], [], 0
    bar = tqdm(worlds, desc="worlds", unit="world", disable=not progress, position=0)
    for world in bar:
        bar.set_postfix_str(world)
        data, truth, markers = load_inputs(world_inputs(profile.scale, seed, world, cache_dir))
        regime.append(regime_row(world, data, truth))
        # every tier's plan is checked (cell types, genes, L) before anything trains
        plans = {tier: plan_run(profile.for_truth_tier() if tier == "truth" else profile, data, markers,
                                methods=methods, cell_types=cell_types, genes=genes, Ls=Ls, truth_available=True)
                 for tier in tiers}
        for tier, plan in plans.items():
            if tier == "truth":
                model, style = TruthModel(truth, data.n_peaks), "truth"
            else:
                model = fit_surrogate(profile, data, surrogate, device=device, cache_dir=cache_dir, progress=progress)
                style = surrogate
                surrogates_reused += bool(meta_of(model).get("reused"))
            log.info("%s world, %s tier: %d methods × %d jobs × L %s", world, tier, len(plan.methods),
                     len(plan.pairs), list(plan.Ls))
            recs = run_plan(plan, model, data, truth, style, cache_dir=cache_dir, progress=progress)
            records += [{**r, "world": world, "tier": tier} for r in recs]
        table = world_table(records)
        facts = {"scale": scale, "seed": seed, "worlds": worlds, "worlds_done": list(dict.fromkeys(
                 r["world"] for r in records)), "tiers": tiers, "Ls": list(Ls), "surrogate": surrogate,
                 "n_methods": int(table["method"].nunique()), "wall_seconds": round(time.perf_counter() - t0, 1),
                 "n_jobs": len(records), "reused": sum(bool(r.get("cached")) for r in records),
                 "surrogates_reused": surrogates_reused}
        if out is not None:
            write_worlds(Path(out), table, records, pd.DataFrame(regime), facts)
    return world_table(records)
