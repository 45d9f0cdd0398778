"""Benchmark configuration: one profile (quick / default / paper) sets data scale, surrogate training and method
settings together, so `--quick` shrinks every stage at once (the openproblems `test=True` idea)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from bench.errors import UserError
from datasets.synthetic import SCALES
from methods.base import Budget
from surrogates.model import SurrogateConfig

PAPER_LS = (10, 128)
# The truth tier's default L grid lies below a marker's 33–43 planted peaks (quick scale, seed 0): from there on
# every method that finds the planted peaks closes all of them and reaches the optimum, so L = 128 cannot tell
# explainers apart in this tier.
TRUTH_LS = (1, 3, 5, 10, 20)
# The surrogate style a run uses unless `--surrogate` says otherwise; chosen by measurement
# (`bench fit --quick`, seed 0; docs/data-and-surrogate.md): paired reaches marker R² 0.954 in 34 s, reference 0.876
# in 177 s, several times the training a 12-minute quick run can spend; their interventional fidelity is alike
# (Spearman 0.43 vs 0.37, both additive over redundant groups).
DEFAULT_SURROGATE = "paired"
# FIMAP's L1 price λ chosen on seed 1 at quick scale (the grid is in methods/fimap.py's docstring): 0.03 closes more
# than the class default 0.01 on the surrogate at both Ls there. Only the quick profile uses it: carried to the
# default scale it cost 9 points of Rel Δ at L = 128 (seed 0: −33.8 against −43.2 %), so a λ for the larger scales
# needs its own seed-1 grid; the default and paper profiles keep the class default.
FIMAP_TUNED = {"sparsity": 0.03}


@dataclass(frozen=True)
class Profile:
    name: str
    scale: str
    surrogate: SurrogateConfig
    budget: Budget
    method_params: dict[str, dict] = field(default_factory=dict)
    method_budgets: dict[str, Budget] = field(default_factory=dict)  # overrides `budget` for slow methods
    # the reference style's three phases in mini-batch steps (the reference code: 36k / 9k / 36k), scaled to the
    # profile; its cross-map phase runs on cached latents of the frozen autoencoders, a few ms per step
    reference_steps: tuple[int, int, int] = SurrogateConfig.reference_steps
    # torch threads per job when jobs run side by side (bench/running/pipeline.py `side_by_side`): as many jobs at
    # once as fit in the run's training threads; None: one job at a time on the surrogate's thread count
    job_threads: int | None = None

    def with_threads(self, threads: int) -> "Profile":
        """The profile with training and every job on `threads` torch threads (a different surrogate checkpoint:
        float sums split across another number of threads give other weights)."""
        return replace(self, surrogate=replace(self.surrogate, threads=int(threads)))

    def for_cells(self, n_cells: int) -> "Profile":
        """The profile on synthetic data of `n_cells` cells (`--simulate n_cells=…`): the reference style's step
        counts scale with the cells, so more cells never mean fewer passes over them (the paired style counts epochs,
        which already do). The profile itself at its scale's own cell count."""
        ratio = n_cells / SCALES[self.scale].n_cells
        if ratio == 1:
            return self
        return replace(self, reference_steps=tuple(max(1, round(s * ratio)) for s in self.reference_steps))

    def for_truth_tier(self) -> "Profile":
        """The profile on the simulator's truth model: the `oracle` control chooses the optimum of the tier's metric
        (Rel Δ on the training cells, methods/oracle.py) instead of the lowest mean expression, and jobs run side by
        side on one thread each (`job_threads`): on the exact model a job is mostly Python, NumPy and small float64
        kernels that a second thread does not speed up (quick scale, 2 cores: the tier went from one job at a time
        to two, see docs/truth-tier.md)."""
        return replace(self, job_threads=1,
                       method_params={**self.method_params,
                                      "oracle": {**self.method_params.get("oracle", {}), "objective": "rel_delta"}})

    def budget_for(self, method: str) -> Budget:
        return self.method_budgets.get(method, self.budget)

    def surrogate_config(self, style: str = DEFAULT_SURROGATE) -> SurrogateConfig:
        """The profile's surrogate configuration in one training style (`paired` or `reference`)."""
        if style == "reference":
            return replace(self.surrogate, style="reference", reference_steps=self.reference_steps)
        return replace(self.surrogate, style=style)


PROFILES: dict[str, Profile] = {
    "tiny": Profile(  # end-to-end smoke tests; numbers are not meaningful
        name="tiny", scale="tiny",
        surrogate=SurrogateConfig(hidden=64, max_epochs=5, min_epochs=1, patience=2),
        reference_steps=(20, 10, 40),
        budget=Budget(seconds=120.0, samples=200_000),
        # every method finishes a first estimate in a second or two, so a run of the whole registry is a unit test
        method_params={"grids": {"steps": 30}, "grids-mean": {"steps": 30}, "grids-groups": {"steps": 30},
                       "smoothgrad": {"n_samples": 4},
                       "smoothgrad-x-input": {"n_samples": 4}, "fimap": {"steps": 40},
                       "lime": {"n_cells": 6, "n_samples": 256}, "cxplain": {"max_cells": 16, "epochs": 10},
                       "sage": {"batch_size": 8, "max_groups": 32, "n_permutations": 64},
                       "integrated-gradients": {"n_steps": 8}, "expected-gradients": {"nsamples": 16, "n_cells": 8},
                       "shapiq-fsii": {"n_cells": 32, "max_players": 24, "n_coalitions": 512}},
    ),
    "quick": Profile(
        name="quick", scale="quick",
        surrogate=SurrogateConfig(max_epochs=60, patience=8),
        reference_steps=(400, 100, 4000),
        # The evaluation budget decides answers (the same on every machine); the wall-time stop is only a safety
        # net, ~30× what the slowest job needs on a quiet 2-core machine, so load does not change the table.
        budget=Budget(seconds=300.0, samples=20_000_000),
        # Chosen from the anytime curves on seed 1 (`python -m bench budget --quick --seed 1 --tiers surrogate
        # --budget-seconds 30`, L = 10, 7 marker genes; docs/budgets.md): on this surrogate every curve is flat from
        # ~10⁴ model evaluations per job on, so each method runs at or past its knee and the quick run of the 14
        # methods before issue 35 fitted its 12 min on 2 cores (9 min 40 s from an empty cache, training included);
        # with grids-groups and shapiq-fsii it took 17 min 36 s (README), grids-groups alone ~6.5 min of it: its
        # chains' gradient passes on the surrogate cost 4.6x GRIDS's time for 1.2x its evaluations. SAGE 10,000
        # evaluations (the knee: −5.1 % at 1.1·10⁴ against −2.8 % at 10³ and −5.2 % at 4.4·10⁴); LIME 10 cells ≈ 10⁴
        # evaluations (−1.29 % against −0.48 % at 10³ and −1.13 % at 10⁵, every cell); GRIDS 2 sweeps (≥ 100 steps,
        # ~2·10⁵ evaluations at L = 10; its curve is flat from 2·10³: −7.4 to −7.5 %); FIMAP 100 steps (~10⁴; flat
        # −6.2 to −6.8 %); CXPlain 24 cells and 6 epochs (its Granger stage is ~1.8·10⁵ evaluations on every cell for
        # −1.43 % against −1.50 % on 24); Expected Gradients 32 cells (−5.3 % against −6.0 % on every cell, 3× the
        # time).
        # Reduced cells are marked ᶜ in the tables.
        method_params={"grids": {"sweeps": 2}, "grids-mean": {"sweeps": 2}, "grids-groups": {"sweeps": 2},
                       "fimap": {"steps": 100, **FIMAP_TUNED},
                       "smoothgrad": {"n_samples": 10}, "smoothgrad-x-input": {"n_samples": 10},
                       "lime": {"n_cells": 10}, "sage": {"batch_size": 8, "max_groups": 128},
                       "cxplain": {"max_cells": 24, "epochs": 6},
                       "expected-gradients": {"n_cells": 32, "nsamples": 100}},
        method_budgets={"sage": Budget(seconds=300.0, samples=10_000)},
    ),
    "default": Profile(
        name="default", scale="default",
        surrogate=SurrogateConfig(max_epochs=80, patience=8),
        reference_steps=(800, 200, 6000),
        budget=Budget(seconds=600.0, samples=100_000_000),
        method_params={"grids": {"sweeps": 4}, "grids-mean": {"sweeps": 4}, "grids-groups": {"sweeps": 4},
                       "smoothgrad": {"n_samples": 10},
                       "smoothgrad-x-input": {"n_samples": 10}, "lime": {"n_cells": 12},
                       "sage": {"batch_size": 8, "max_groups": 256}, "cxplain": {"max_cells": 48, "epochs": 12},
                       "expected-gradients": {"n_cells": 64, "nsamples": 100}},
        # about twice quick's work (not measured on curves at this scale): SAGE 12,000 evaluations (past the quick
        # curve's 10⁴ knee), LIME 12 cells, CXPlain 48 cells and 12 epochs
        method_budgets={"sage": Budget(seconds=600.0, samples=12_000)},
    ),
    "paper": Profile(
        name="paper", scale="paper",
        # Sized so the Table 1 grid (GRIDS, Random, four gradient baselines, FIMAP; 16 genes; L 10 / 128) runs
        # within an hour on 2 CPU cores, training included (seed 0, from an empty cache: 32 min, 39 min before
        # issue 34's GRIDS step; results/examples/paper/).
        # Training chosen on development data (seed 1, `bench fit --curve`, results/examples/fit-paper-paired/):
        # with the original settings marker R² peaked at 0.82 (45 epochs) and fell after; the ATAC decoder's last
        # layer (32.6M of 41M parameters) got a dense Adam step every batch although a batch reads 4,096 of its
        # 127,219 rows, and the open-state embeddings started as noise that the rare types' peaks had to outgrow.
        # With SparseAdam on that layer (`sparse_decoder`) and open embeddings started 10× smaller
        # (`emb_open_init`), seed 1, 1 thread: marker R² 0.57 / 0.97 / 0.99 / 0.99 at 10 / 20 / 30 / 40 epochs,
        # validation MSE lowest at 40; an epoch 26 % cheaper (SparseAdam skips the undrawn rows). This profile on 2
        # threads (`bench fit --scale paper --seed 1 --curve 10,20,30,40,45`): 0.77 / 0.99 / 0.99 / 0.99 / 0.99,
        # validation MSE flat from 20 epochs; seed 0 stops early at 30 epochs (229 s), marker R² 0.988.
        surrogate=SurrogateConfig(max_epochs=45, min_epochs=20, patience=5, fused_adam=True, sparse_decoder=True,
                                  emb_open_init=0.01),
        reference_steps=(4000, 1000, 16000),
        budget=Budget(seconds=3600.0, samples=256_000 * 512),
        # GRIDS scores its 32 candidates on the target + 256 of the 2,999 off-target genes (an unbiased estimate of
        # eq. 2's off-target term): one step at paper scale, 64 cells, L = 128, 2 threads, alone in a process:
        # 26 ms against 57–65 ms on all genes (37–40 ms inside the paper run, trained surrogate). Checked on
        # development data (seed 1, quick, 16 of 149 off-target genes): Avg Rel Δ −8.34 ± 1.84 / −52.26 ± 9.49 vs the
        # full objective's −8.18 ± 1.80 / −52.20 ± 9.37 at L = 10 / 128 (paired: −0.16 ± 0.10, −0.06 ± 0.17).
        # `sampled_gains` takes the step's gradient from the same gene sample (perf: 34.0 → 29.8 ms a step); on seed
        # 1, quick, 16 off-target genes, it chose the same peaks in all 32 jobs (the target term dominates which 32
        # candidates the gains put first). The many-sample gradient baselines average over a seeded subset of each
        # type's ~720 training cells: a cell costs `samples` dense forward+backward passes of ~4 ms here (captum
        # differentiates the dense input), so captum's 50 SmoothGrad samples or 50 IG steps on every cell would take
        # ~2.5 min per gene, ~40 min each for the grid. Saliency and Input × Gradient (one pass a cell) use every cell.
        # Jobs run two at a time on one torch thread each (2 cores): a GRIDS step is a third Python and SciPy
        # between kernels, which a second thread does not speed up (measured in the issue-23 note).
        job_threads=1,
        method_params={"grids": {"off_target_genes": 256, "sampled_gains": True},
                       "grids-groups": {"off_target_genes": 256, "sampled_gains": True},
                       "smoothgrad": {"n_samples": 10, "n_cells": 128},
                       "smoothgrad-x-input": {"n_samples": 10, "n_cells": 128},
                       "integrated-gradients": {"n_cells": 32},
                       "expected-gradients": {"n_cells": 32}},
    ),
}


def profile_for(scale: str, threads: int | None = None):
    """The named profile, with `threads` torch threads when given; bad values are UserErrors."""
    if scale not in PROFILES:
        raise UserError(f"scale must be one of {sorted(PROFILES)}, got {scale!r}")
    if threads is None:
        return PROFILES[scale]
    if threads < 1:
        raise UserError(f"--threads must be ≥ 1, got {threads}")
    return PROFILES[scale].with_threads(threads)
