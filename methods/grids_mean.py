"""GRIDS with the released reference code's objective: minimise the mean predicted target expression.

Same search as `grids` (methods/grids.py); only the objective differs. Eq. 2 (`grids`) also keeps the other genes
where they were (β = 0.1), trading some target suppression for specificity; this variant, like the code behind the
paper's Table 1, optimises target suppression alone, which is exactly what Avg Δ / Rel Δ score.
Paper: Liu et al., ACML 2024 (see methods/grids.py); code: github.com/jhliu17/nnpert.
"""

from __future__ import annotations

from methods.grids import Grids
from methods.registry import register


@register("grids-mean", paper="Liu et al. (released reference code objective)", year=2024, kind="subset search",
          needs_gradients=True, in_default=False, version=2)
class GridsMean(Grids):
    """GRIDS minimising the mean predicted target expression (reference-code objective)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("objective", "mean")
        super().__init__(**kwargs)
