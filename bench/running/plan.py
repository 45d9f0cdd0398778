"""Run planning: checks a run's selections (methods, cell types, genes, L, seeds, budget) against the registry
and the data, and returns the `RunPlan` the harness executes. Every mistake is a `UserError` raised before any
training or output, so a bad command line writes nothing."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from bench.config import Profile
from bench.errors import UserError
from methods import registry

log = logging.getLogger("bench")


@dataclass(frozen=True)
class RunPlan:
    """What `python -m bench run` explains: methods × (cell type, gene) pairs × Ls × seeds under `profile`."""

    profile: Profile
    methods: tuple[str, ...]
    pairs: tuple[tuple[str, str], ...]  # (cell_type, gene)
    Ls: tuple[int, ...]
    seeds: tuple[int, ...]


def check_methods(names) -> None:
    """UserError naming the unknown methods and listing the registered ones."""
    unknown = [m for m in names if m not in registry.available()]
    if unknown:
        raise UserError(f"unknown method(s) {unknown}; available: {', '.join(sorted(registry.available()))} "
                        "(see `python -m bench list`)")


def parse_ints(values, flag: str) -> tuple[int, ...]:
    """Comma-separated CLI values → ints; UserError naming the flag otherwise."""
    try:
        return tuple(int(v) for v in values)
    except ValueError:
        raise UserError(f"{flag} takes comma-separated integers, got {','.join(map(str, values))!r}") from None


def plan_run(profile: Profile, data, markers: dict, *, methods=None, cell_types=None, genes=None, Ls=(10, 128),
             n_seeds: int = 1, budget_seconds: float | None = None, truth_available: bool = False) -> RunPlan:
    """Validate a run's selections; raises UserError. `Ls` may be strings (from the command line)."""
    requested = methods
    methods = list(methods or registry.default_methods(truth_available))
    check_methods(methods)
    blind = [m for m in methods if registry.get(m).needs_truth and not truth_available]
    if blind:
        raise UserError(f"method(s) {blind} read the simulator's truth and run on the synthetic data only; "
                        "drop them from --methods when using --data")
    methods = _with_background(methods, data, explicit=bool(requested))
    Ls = parse_ints(Ls, "--L")
    bad = [L for L in Ls if L <= 0 or L > data.n_peaks]
    if bad:
        raise UserError(f"L must be between 1 and the number of peaks ({data.n_peaks}); got {bad}")
    if n_seeds < 1:
        raise UserError(f"--seeds must be ≥ 1, got {n_seeds}")
    pairs = _pairs(data, markers, cell_types, genes)
    if budget_seconds is not None:  # one wall-time safety stop for every method; the evaluation budgets stay
        profile = replace(profile, budget=replace(profile.budget, seconds=budget_seconds),
                          method_budgets={m: replace(b, seconds=budget_seconds)
                                          for m, b in profile.method_budgets.items()})
    return RunPlan(profile=profile, methods=tuple(methods), pairs=tuple(pairs), Ls=Ls, seeds=tuple(range(n_seeds)))


def _with_background(methods: list[str], data, explicit: bool) -> list[str]:
    """Methods that explain against the other cell types (`needs_background`) need at least two: with one, an
    explicit request is a UserError and the default list drops them (logged)."""
    lonely = [m for m in methods if registry.get(m).needs_background]
    if not lonely or len(data.cell_types) > 1:
        return methods
    if explicit:
        raise UserError(f"method(s) {lonely} compare a cell type with the others, but the data has one cell type "
                        f"({data.cell_types[0]}); drop them from --methods")
    log.info("one cell type only: leaving out %s (they compare a cell type with the others)", ", ".join(lonely))
    return [m for m in methods if m not in lonely]


def _pairs(data, markers: dict, cell_types, genes) -> list[tuple[str, str]]:
    """The (cell type, gene) pairs: each chosen type's markers, or the requested genes (in their marker types,
    and a gene that is no chosen type's marker in every chosen type)."""
    evaluable = {ct: gs for ct, gs in markers.items() if ct in data.cell_types}
    cell_types = list(cell_types or evaluable)
    unknown = [c for c in cell_types if c not in data.cell_types]
    if unknown:
        raise UserError(f"unknown cell type(s) {unknown}; the data has {data.cell_types}")
    if genes:
        missing = [g for g in genes if g not in data.genes.index]
        if missing:
            raise UserError(f"gene(s) {missing} are not in the data's {data.n_genes} genes")
        pairs = [(ct, g) for ct in cell_types for g in evaluable.get(ct, ()) if g in genes]
        unpaired = [g for g in genes if all(g != pg for _, pg in pairs)]
        pairs += [(ct, g) for g in unpaired for ct in cell_types]  # explicit request: explain in every chosen type
    else:
        pairs = [(ct, g) for ct in cell_types for g in evaluable.get(ct, ())]
        absent = sorted({g for _, g in pairs if g not in data.genes.index})
        if absent:
            raise UserError(f"marker gene(s) {absent} are not in the data; pass --markers FILE or --genes")
    if not pairs:
        raise UserError(f"no (cell type, gene) pairs to evaluate for cell types {cell_types}; give --genes or "
                        "--markers")
    return pairs


def default_pairs(markers: dict, data, per_type: int = 1) -> list[str]:
    """The first `per_type` marker genes of every cell type in the data (the curve's default jobs)."""
    return sorted({g for ct, genes in markers.items() if ct in data.cell_types for g in list(genes)[:per_type]})
