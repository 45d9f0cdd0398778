"""The trust line: one sentence, under `bench fit` and in every synthetic leaderboard's header, on whether the
surrogate's interventional fidelity reaches the levels at which its ranking of explainers can stand for the truth
tier's (bench/fidelity/ measures the fidelity; this module only says what it means for a reader)."""

from __future__ import annotations

# The levels of interventional fidelity from which the fidelity curve (`python -m bench fidelity-curve`,
# results/examples/fidelity-curve/, seed 0) shows the surrogate tier ranking explainers as the truth tier does.
# Set from that curve; docs/trust.md says how.
# Seed 0, quick genes and peaks, 2,000–10,000 cells and 3.3× the depth, paired / locus / reference styles: τ between
# the tiers' rankings of seven explainers at L = 10 was 0.24–0.33 for the paired and reference styles and 0.43–0.62
# for the locus style (interventional Spearman 0.56–0.58), and every 95 % CI reached down to 0.33 or below; the
# group / member ratio stayed ≤ 1.11 everywhere (truth ~12). No level gives agreement, so both stay unset and the
# warning prints on every synthetic run.
TRUST_SPEARMAN = None
TRUST_RATIO = None
TRUST_REASON = ("τ between the tiers ≤ 0.62 at every point, 2,000–10,000 cells, with 95 % CIs reaching down to ≤ 0.33; "
                "group / Σ members ≤ 1.11 everywhere")


def trust_line(summary: dict) -> str:
    """One line for `bench fit` and the leaderboard header on synthetic data: the surrogate's interventional
    Spearman and group / member ratio, and a warning when they are below the trust levels above (always, when the
    curve found no level at which the tiers agree)."""
    rho, ratio = summary.get("interventional_spearman"), summary.get("group_member_ratio_surrogate")
    truth = summary.get("group_member_ratio_oracle")
    line = (f"Interventional fidelity (synthetic truth): Spearman {rho:.2f}, group / Σ members {ratio:.2f} "
            f"(truth {truth:.2f})")
    planted, planted_truth = summary.get("all_planted_surrogate_pct"), summary.get("all_planted_oracle_pct")
    line += (f", closing all of a marker's planted peaks {planted:+.0f} % (truth {planted_truth:+.0f} %)."
             if planted is not None and planted_truth is not None else ".")
    if TRUST_SPEARMAN is None:
        return (line + " ⚠ No point of the fidelity curve (results/examples/fidelity-curve) ranked explainers as the "
                "truth tier does" + (f" ({TRUST_REASON})" if TRUST_REASON else "") + ", so this ranking is about "
                "the surrogate, not about regulation: read it beside the truth tier (`--surrogate truth`).")
    low = rho < TRUST_SPEARMAN or (TRUST_RATIO is not None and ratio < TRUST_RATIO)
    if not low:
        return line + (f" At or above the levels (Spearman ≥ {TRUST_SPEARMAN:g}"
                       + (f", group / Σ members ≥ {TRUST_RATIO:g}" if TRUST_RATIO is not None else "")
                       + ") at which the fidelity curve's surrogate tier ranks explainers as the truth tier does"
                       + (f" ({TRUST_REASON})" if TRUST_REASON else "") + ".")
    return (line + f" ⚠ Below the levels (Spearman ≥ {TRUST_SPEARMAN:g}"
            + (f", group / Σ members ≥ {TRUST_RATIO:g}" if TRUST_RATIO is not None else "")
            + ") at which the fidelity curve (results/examples/fidelity-curve) shows the surrogate tier ranking "
            "explainers as the truth tier does" + (f" ({TRUST_REASON})" if TRUST_REASON else "")
            + ": this ranking is about the surrogate, not about regulation.")
