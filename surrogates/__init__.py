"""The differentiable ATAC→RNA surrogate: model, training, checkpoints, fidelity."""

from surrogates.model import Surrogate, SurrogateConfig

__all__ = ["Surrogate", "SurrogateConfig"]
