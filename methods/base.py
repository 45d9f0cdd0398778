"""The explainer interface: `Explainer.explain(surrogate, data, gene, L) -> Explanation`."""

from __future__ import annotations

import abc
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from bench.config import Budget

if TYPE_CHECKING:
    from datasets.data import MultiomeData
    from methods.registry import MethodSpec
    from surrogates.model import Surrogate

STATUSES = ("ok", "budget_exceeded", "not_converged", "failed")


@dataclass
class Explanation:
    """A global explanation: L distinct peak indices (best first), their scores, a status and run info."""

    peaks: np.ndarray
    scores: np.ndarray | None = None
    status: str = "ok"
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        self.peaks = np.asarray(self.peaks, dtype=np.int64)
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")

    def check(self, n_peaks: int, L: int) -> None:
        """Raise if the explanation is not L distinct valid peak indices (a method bug, reported as failed)."""
        if self.peaks.shape != (L,):
            raise ValueError(f"explanation has {self.peaks.size} peaks, expected L={L}")
        if len(np.unique(self.peaks)) != L:
            raise ValueError("explanation contains duplicate peak indices")
        if self.peaks.min() < 0 or self.peaks.max() >= n_peaks:
            raise ValueError(f"peak indices must lie in [0, {n_peaks})")


class BudgetClock:
    """Tracks wall time and surrogate evaluations against a `Budget`."""

    def __init__(self, budget: Budget):
        self.budget = budget
        self.start = time.perf_counter()
        self.samples = 0

    def spend(self, n: int) -> None:
        self.samples += int(n)

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start

    def exhausted(self) -> bool:
        return self.seconds > self.budget.seconds or self.samples > self.budget.samples


class Explainer(abc.ABC):
    """Base class. Subclasses take their hyper-parameters (paper defaults) as keyword arguments and call
    ``super().__init__(seed=..., budget=..., progress=...)``; the registry attaches `spec`."""

    spec: ClassVar["MethodSpec"]

    def __init__(self, seed: int = 0, budget: Budget | None = None, progress: bool = False):
        self.seed = seed
        self.budget = budget or Budget()
        self.progress = progress

    @abc.abstractmethod
    def explain(self, surrogate: "Surrogate", data: "MultiomeData", gene: str, L: int) -> Explanation:
        """Select L peaks whose joint closure should most suppress `gene`, from `data` (the training cells of the
        gene's cell type)."""


def top_l(scores: np.ndarray, L: int) -> np.ndarray:
    """Indices of the L largest scores, best first (ties broken by index for determinism)."""
    scores = np.asarray(scores, dtype=np.float64)
    order = np.lexsort((np.arange(scores.size), -scores))
    return order[:L]
