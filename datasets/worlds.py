"""Regulatory worlds: which logic the simulator plants between a gene's cis-regulatory elements.

The simulator's expression model (datasets/synthetic.py) is the same in every world,

    E_gc = m_g · τ_g(t) · P_g(x) · (ε_g + (1 − ε_g) · S_g(x) / Z_g),
    S_g = Σ_u w_u f_u(x) + Σ_{u: w_u<0} |w_u|,   Z_g = Σ_u |w_u|,

and a world only decides which *units* u a gene has and how their weights are drawn. A unit reads its own members
only: an OR group (shadow enhancers, f = 1 − Π(1 − x_j)), an AND unit (cooperating elements, f = Π x_j), a single
enhancer (f = x_j, w > 0) or a silencer (f = x_j, w < 0: closing it *raises* expression; the constant |w| keeps
S in [0, Z], so expression stays between the floor and its maximum). Because S is a sum of units that share no
member within a gene, the best closure of L peaks stays an exact multiple-choice knapsack in every world
(`SyntheticTruth.best_closure`). Elements *shared* by two genes (an enhancer or silencer of gene A that is also a
unit of gene B) are seen from each gene as one of its own units; closing one then costs specificity.

What each world rests on (../shared/PAPER.md; docs/worlds.md says more):

* `redundant` — the v2 default, unchanged: 10 OR groups of 2–4 members per marker gene and 6 single enhancers,
  ~85 % of the enhancer weight in OR groups (shadow enhancers, Osterwalder et al. 2018).
* `additive` — every element adds alone, w = activity × contact, contact = (1 + d / 5 kb)^−1 decaying with the
  distance d to the TSS (the power law the ABC model uses without Hi-C, exponent ≈ 1; Fulco et al. 2019); the
  promoter multiplies (Bergman et al. 2022). The positive control for first-order rankings.
* `synergy` — AND units of 2–3 elements that count only when all are open (Choi et al. 2021), beside single
  enhancers and a few OR groups.
* `silencer` — the redundant world plus silencers (negative weight), a third of them shared with a neighbouring
  gene (Pang & Snyder 2020).
* `mixed` — mostly additive elements with distance decay (Martinez-Ara et al. 2024: pairs combine near-additively;
  Fulco et al. 2019), a minority of OR groups and AND units, silencers, and a fifth of the single enhancers shared
  with a neighbouring gene. The promoter response stays linear in S: a non-linear response (Martinez-Ara et al.
  2024) would couple every unit through the promoter and the knapsack would no longer be exact.

The proportions are this benchmark's choices, informed by those papers, not measured fractions; they were set on
the development seed (1). Worlds other than `redundant` draw their planted regulation from their own random stream
(seeded by the seed and the world), after the genes, their home cell types, trans activities, magnitudes and TSS
positions, which every world shares.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_WORLD = "redundant"
CONTACT_SCALE_BP = 5_000  # the distance under which contact is ~1 (the ABC model's pseudo-distance is 5 kb)
CONTACT_EXPONENT = 1.0  # contact ∝ d^−γ; the ABC model's power-law fits to Hi-C give γ ≈ 1


@dataclass(frozen=True)
class Units:
    """How many units of each kind a gene gets, as inclusive (low, high) ranges drawn uniformly."""

    groups: tuple[int, int] = (0, 0)  # OR groups of 2–4 members
    coops: tuple[int, int] = (0, 0)  # AND units of 2–3 members
    singles: tuple[int, int] = (0, 0)  # single enhancers
    silencers: tuple[int, int] = (0, 0)


@dataclass(frozen=True)
class World:
    name: str
    summary: str
    marker: Units  # the paper's marker genes (deep loci)
    other: Units  # the other genes with cis-regulation (20 % of them, as in every world)
    distance_decay: bool = False  # weights = activity × contact(distance) instead of the v2 uniform draws
    shared_singles: float = 0.0  # share of a gene's single enhancers that also regulate a neighbouring gene
    shared_silencers: float = 0.0  # share of its silencers that also silence a neighbouring gene
    sources: tuple[str, ...] = ()
    code: int = 0  # the world's random stream: np.random.default_rng([seed, code])


# The redundant world's units are drawn by datasets/synthetic.py's v2 code (kept bit for bit); its entry here
# describes it for the docs and the `data` command.
WORLDS: dict[str, World] = {w.name: w for w in (
    World("redundant", "OR groups of shadow enhancers carry ~85 % of a marker's enhancer weight (the v2 default)",
          Units(groups=(10, 10), singles=(6, 6)), Units(groups=(0, 2), singles=(1, 3)),
          sources=("Osterwalder et al. 2018",), code=0),
    World("additive", "every element adds alone, weight = activity × contact decaying with distance (ABC-like)",
          Units(singles=(36, 36)), Units(singles=(2, 8)), distance_decay=True,
          sources=("Fulco et al. 2019", "Bergman et al. 2022", "Martinez-Ara et al. 2024"), code=1),
    World("synergy", "AND units of 2–3 cooperating elements beside single enhancers and a few OR groups",
          Units(groups=(4, 4), coops=(6, 6), singles=(10, 10)), Units(groups=(0, 1), coops=(0, 1), singles=(1, 3)),
          sources=("Choi et al. 2021",), code=2),
    World("silencer", "the redundant world plus silencers (negative weight), a third shared with a neighbouring gene",
          Units(groups=(10, 10), singles=(6, 6), silencers=(3, 3)),
          Units(groups=(0, 2), singles=(1, 3), silencers=(0, 2)), shared_silencers=1 / 3,
          sources=("Pang & Snyder 2020",), code=3),
    World("mixed", "mostly additive with distance decay; a few OR groups, AND units and silencers; shared enhancers",
          Units(groups=(3, 3), coops=(2, 2), singles=(22, 22), silencers=(2, 2)),
          Units(groups=(0, 1), coops=(0, 1), singles=(2, 6), silencers=(0, 1)), distance_decay=True,
          shared_singles=0.2, shared_silencers=1 / 3,
          sources=("Martinez-Ara et al. 2024", "Fulco et al. 2019", "Osterwalder et al. 2018", "Choi et al. 2021",
                   "Pang & Snyder 2020"), code=4),
)}

GROUP_SIZES = (2, 3, 4)  # members of an OR group (every world)
COOP_SIZES = (2, 3)  # members of an AND unit
MAX_COOP_MEMBERS = max(COOP_SIZES)
# weights of the worlds without distance decay: the v2 draws for OR groups and singles, the same range as an OR
# group for an AND unit, and silencers as strong as the stronger single enhancers — strong enough that a ranking
# by |gradient| meets them, few enough (3 per marker) that closing every activating element still leaves < 10 % of
# a marker's expression on average (tuned on seed 1)
UNIFORM_WEIGHTS = {"group": (0.5, 1.5), "coop": (0.5, 1.5), "single": (0.1, 0.5), "silencer": (0.2, 0.8)}
ACTIVITY_SIGMA = 0.5  # log-normal spread of an element's activity in the distance-decay worlds
SILENCER_ACTIVITY = 0.5  # mixed world: a silencer's activity relative to an enhancer's (2 per marker, tuned on seed 1
# so that closing every activating element leaves < 10 % on average)


def world_named(name: str) -> World:
    """The world called `name`; ValueError listing the worlds otherwise."""
    if name not in WORLDS:
        raise ValueError(f"unknown world {name!r}; the simulator has {', '.join(WORLDS)}")
    return WORLDS[name]


def contact(distance_bp) -> np.ndarray:
    """Contact frequency of an element at `distance_bp` from the TSS, 1 at the TSS: (1 + d / 5 kb)^−γ."""
    return (1.0 + np.abs(np.asarray(distance_bp, dtype=np.float64)) / CONTACT_SCALE_BP) ** -CONTACT_EXPONENT


@dataclass
class GenePlan:
    """One gene's planted units before they get peaks: member counts and weight draws (for the distance-decay
    worlds the draw is the activity; synthetic.py multiplies it by the contact of the unit's position)."""

    groups: list[int]
    coops: list[int]
    group_w: list[float]
    coop_w: list[float]
    single_w: list[float]
    silencer_w: list[float]  # magnitudes; the sign is applied when the arrays are built
    borrowed: list[tuple[int, int, float]]  # (owner gene, owner's element index among singles+silencers, weight)


def plan_units(world: World, rng: np.random.Generator, regulated: np.ndarray, is_marker: np.ndarray,
               home: np.ndarray, chrom: np.ndarray, tss: np.ndarray) -> list[GenePlan]:
    """Every gene's units in `world` (not `redundant`, which synthetic.py draws as v2 did). Genes without
    cis-regulation get none. Shared elements: a chosen single enhancer (silencer) of gene A becomes a single
    enhancer (silencer) of a neighbour B — among the regulated genes active in one of A's home cell types (where
    the element is open), the one with the nearest TSS on A's chromosome, else any of them — with a weight drawn
    as one of B's own (the simulator's TSSs lie megabases apart, so a contact computed from the true distance
    would make every shared effect vanish). `home`: genes × cell types, True where the gene is active."""
    plans = []
    for g in range(len(regulated)):
        if not regulated[g]:
            plans.append(GenePlan([], [], [], [], [], [], []))
            continue
        units = world.marker if is_marker[g] else world.other
        n = {k: int(rng.integers(lo, hi + 1)) for k, (lo, hi) in
             (("groups", units.groups), ("coops", units.coops), ("singles", units.singles),
              ("silencers", units.silencers))}
        groups = [int(s) for s in rng.choice(GROUP_SIZES, size=n["groups"])]
        coops = [int(s) for s in rng.choice(COOP_SIZES, size=n["coops"])]
        plans.append(GenePlan(groups, coops, _weights(world, rng, "group", n["groups"]),
                              _weights(world, rng, "coop", n["coops"]), _weights(world, rng, "single", n["singles"]),
                              _weights(world, rng, "silencer", n["silencers"]), []))
    reg = np.flatnonzero(regulated)
    for g in reg:
        p = plans[g]
        shares = ([world.shared_singles] * len(p.single_w) + [world.shared_silencers] * len(p.silencer_w))
        for e, share in enumerate(shares):
            if share <= 0 or rng.random() >= share or len(reg) < 2:
                continue
            others = reg[reg != g]
            active = others[(home[others] & home[g]).any(1)]
            others = active if len(active) else others
            same = others[chrom[others] == chrom[g]]
            partner = int(same[np.argmin(np.abs(tss[same] - tss[g]))]) if len(same) else int(rng.choice(others))
            kind = "single" if e < len(p.single_w) else "silencer"
            w = _weights(world, rng, kind, 1)[0]
            if world.distance_decay:  # as if it lay at a distance drawn like the partner's own elements
                w *= float(contact(rng.integers(2_000, 250_000)))
            plans[partner].borrowed.append((int(g), e, w))
    return plans


def _weights(world: World, rng: np.random.Generator, kind: str, n: int) -> list[float]:
    if world.distance_decay:
        scale = SILENCER_ACTIVITY if kind == "silencer" else 1.0
        return [scale * float(v) for v in rng.lognormal(0.0, ACTIVITY_SIGMA, n)]
    lo, hi = UNIFORM_WEIGHTS[kind]
    return [float(v) for v in rng.uniform(lo, hi, n)]
