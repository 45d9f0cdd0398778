"""Saliency (Simonyan et al., 2014) via captum: absolute input gradients of the target gene, averaged over cells.

For each training cell c of the gene's type, captum `Saliency` (default `abs=True`) gives |∂ŷ_gene/∂x_cj| for
every peak j, open or closed; the score of peak j is its mean over cells,

    S_j = mean_c |∂ŷ_gene/∂x_cj|,

and the top L peaks are returned. This is the conventional reading of saliency: how sensitive the prediction is
to each input, in either direction and whether or not the peak is open, so it is not a suppression score
(`input-x-gradient` is the first-order one). Default: batches of 64 cells (memory O(batch × peaks)).
Paper: Simonyan, Vedaldi & Zisserman, "Deep Inside Convolutional Networks: Visualising Image Classification
Models and Saliency Maps", ICLR workshop 2014.
"""

from __future__ import annotations

from functools import partial

from captum.attr import Saliency as CaptumSaliency

from methods._aggregate import MeanAttribution
from methods.registry import register


@register("saliency", paper="Simonyan et al., Deep Inside Convolutional Networks", year=2014,
          kind="local→global", needs_gradients=True, code_url="https://captum.ai", ranking=True, version=1)
class Saliency(MeanAttribution):
    """Saliency: mean absolute gradient over training cells, all peaks → top L."""

    def attribution(self, model):
        return partial(CaptumSaliency(model).attribute, abs=True)
