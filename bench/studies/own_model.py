"""A user's model against the surrogate's fast paths: what bringing your own `torch.nn.Module` costs, per method.

`python -m bench perf --own-model` (quick scale by default) takes the quick profile's trained surrogate (the cached
checkpoint `bench run --quick` explains, trained if there is none) and explains the same jobs twice:

* **fast** — the `Surrogate` itself, with its fast paths (embedding bags, additive first layer);
* **own module** — the same network as a plain module, `forward(x) = surrogate(x)` on a dense float
  [cells × peaks] batch, wrapped by `TorchModel` as any user's module is: every explainer takes its generic path
  (`predict` on dense rows in batches, gradients by autograd of the dense input).

Same weights, same function, so the two columns differ in how fast the answer comes, not in what it is: the table
says how many jobs chose the same peaks (float32 sums in another order can swap near-ties). Each job runs in this
process, one after another, on the profile's method settings and budgets, through the benchmark's job runner
(`bench.running.runner.run_task`), so its time is `explain`'s wall time and its model evaluations the protocol's
count. Writes own_model.md, own_model.csv and own_model.json.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
from tabulate import tabulate
from torch import nn

from bench.config import profile_for
from bench.running.pipeline import fit_surrogate, marker_genes_in
from bench.running.runner import Job, run_task
from datasets.files import atomic_write
from datasets.markers import PAPER_MARKERS
from datasets.synthetic import simulate
from surrogates.protocol import TorchModel

log = logging.getLogger(__name__)

FAST, OWN = "fast", "own module"
# the quick profile's methods that explain a model (the oracle reads the truth, not the model)
DEFAULT_METHODS = ("grids", "grids-groups", "shapiq-fsii", "saliency", "input-x-gradient", "integrated-gradients",
                   "smoothgrad", "smoothgrad-x-input", "expected-gradients", "fimap", "lime", "cxplain", "sage", "random")


class _Network(nn.Module):
    """The surrogate's network as a user would hand it over: dense float [cells × peaks] → log-expression."""

    def __init__(self, surrogate):
        super().__init__()
        self.surrogate = surrogate

    def forward(self, x):
        return self.surrogate(x)


def own_model_paths(scale: str = "quick", methods=DEFAULT_METHODS, n_genes: int = 2, L: int = 10, seed: int = 0,
                    device: str = "cpu", cache_dir=None, out: Path | str = Path("results/own-model"),
                    progress: bool = True) -> pd.DataFrame:
    """Every method on `n_genes` marker genes (the first of the first cell types) at one L, on the surrogate and on
    its network as a plain module; one row per (method, gene, model), written with the summary to `out`."""
    profile = profile_for(scale)
    data, truth = simulate(profile.scale, seed=seed)
    surrogate = fit_surrogate(profile, data, "paired", device=device, cache_dir=cache_dir, progress=progress)
    own = TorchModel(_Network(surrogate), data.gene_names, data.n_peaks)
    pairs, seen = [], set()
    for ct, gene in marker_genes_in(data, PAPER_MARKERS):
        if ct not in seen and len(pairs) < n_genes:
            pairs.append((ct, gene))
            seen.add(ct)
    rows = []
    for method in methods:
        for ct, gene in pairs:
            for name, model in ((FAST, surrogate), (OWN, own)):
                job = Job(method, ct, gene, L, seed)
                res = run_task([job], profile.method_params.get(method, {}), profile.budget_for(method), model, data,
                               truth, threads=surrogate.threads)[0]
                rows.append({"method": method, "cell_type": ct, "gene": gene, "model": name, "status": res.status,
                             "explain_seconds": res.explain_seconds, "evaluations": res.info.get("evaluations"),
                             "path": res.info.get("path"), "peaks": res.peaks,
                             "rel_delta_pct": res.metrics.get("rel_delta_pct"), "error": res.error})
                log.info("%s %s %s: %.2f s", method, gene, name, res.explain_seconds)
    long = pd.DataFrame(rows)
    summary = summarise(long)
    _write(long, summary, Path(out), scale, L, pairs)
    return summary


def summarise(long: pd.DataFrame) -> pd.DataFrame:
    """Per method: mean explain seconds on each model, their ratio, and how many jobs chose the same peaks."""
    out = []
    for method, part in long.groupby("method", sort=False):
        fast, own = part[part.model == FAST], part[part.model == OWN]
        same = sum(a == b for a, b in zip(fast.peaks, own.peaks))
        t_fast, t_own = fast.explain_seconds.mean(), own.explain_seconds.mean()
        out.append({"method": method, "fast_s": t_fast, "own_module_s": t_own,
                    "own_over_fast": t_own / t_fast if t_fast > 0 else np.nan,
                    "same_peaks": f"{same}/{len(fast)}",
                    "rel_delta_fast": fast.rel_delta_pct.mean(), "rel_delta_own": own.rel_delta_pct.mean(),
                    "statuses_own": ",".join(sorted(set(own.status))), "path_fast": fast.path.iloc[0] or ""})
    return pd.DataFrame(out)


def _write(long: pd.DataFrame, summary: pd.DataFrame, out: Path, scale: str, L: int, pairs) -> None:
    out.mkdir(parents=True, exist_ok=True)
    long.drop(columns=["peaks"]).to_csv(out / "own_model.csv", index=False)
    genes = ", ".join(f"{g} ({ct})" for ct, g in pairs)
    md = [f"# Your own model against the surrogate's fast paths ({scale} scale, L = {L})", "",
          (f"The quick profile's trained surrogate and the same network as a plain torch module (`TorchModel`, "
           f"generic paths), the same jobs on both: {genes}; mean `explain` seconds per job, one job at a time in "
           "one process."), "",
          tabulate(summary, headers="keys", tablefmt="github", showindex=False, floatfmt=".3g"), ""]
    atomic_write(out / "own_model.md", "\n".join(md))
    atomic_write(out / "own_model.json", json.dumps(
        {"scale": scale, "L": L, "genes": [list(p) for p in pairs],
         "summary": json.loads(summary.to_json(orient="records"))}, indent=1))

