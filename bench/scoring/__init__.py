"""Scoring: what one job's selection is worth — the metrics (pure functions, each with its direction), the
evaluator that closes a selection on held-out cells, and the genomic context of the peaks chosen.

The lowest room of bench/: it imports nothing from the other rooms."""
