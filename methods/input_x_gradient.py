"""Input × Gradient (Shrikumar et al., 2016) via captum: the first-order suppression score of each open peak.

For each training cell c of the gene's type, captum `InputXGradient` gives the signed x_cj · ∂ŷ_gene/∂x_cj; the
score of peak j is its mean over cells,

    S_j = mean_c x_cj · ∂ŷ_gene/∂x_cj,

and the top L (largest) peaks are returned. With binary ATAC and closing as x → 0, −x_cj · ∂ŷ/∂x_cj is the
first-order change of the target when peak j is closed in cell c, so a positive S_j means closing the peak lowers
the target; closed peaks score 0 and peaks whose closing would raise the target score below them.
Default: batches of 64 cells (memory O(batch × peaks)).
Paper: Shrikumar, Greenside, Shcherbina & Kundaje, "Not Just a Black Box: Learning Important Features Through
Propagating Activation Differences", arXiv:1605.01713, 2016.
"""

from __future__ import annotations

from captum.attr import InputXGradient as CaptumInputXGradient

from methods._aggregate import MeanAttribution
from methods.registry import register


@register("input-x-gradient", paper="Shrikumar et al., Not Just a Black Box", year=2016,
          kind="local→global", needs_gradients=True, code_url="https://captum.ai", ranking=True, version=1)
class InputXGradient(MeanAttribution):
    """Input × Gradient: mean signed x · ∂ŷ/∂x over training cells (first-order suppression) → top L."""

    def attribution(self, model):
        return CaptumInputXGradient(model).attribute
