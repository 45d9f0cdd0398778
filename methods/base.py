"""The explainer interface: `Explainer.explain(model, data, gene, L) -> Explanation`."""

from __future__ import annotations

import abc
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:
    from datasets.data import MultiomeData
    from methods.registry import MethodSpec
    from surrogates.protocol import ExplainedModel

# ok: finished as configured; budget_exceeded: its surrogate-evaluation budget stopped it early (deterministic), the
# peaks are the method's estimate so far; time_limit: the wall-clock safety stop cut it (depends on the machine and
# its load; the peaks are the estimate so far); not_converged: ran out of steps/budget before its convergence
# criterion; no_estimate: a budget ended before the method's first real estimate, so there are no peaks (a fallback
# ranking would be another method under this one's name); failed: raised or returned an invalid explanation (set by
# the harness).
STATUSES = ("ok", "budget_exceeded", "time_limit", "not_converged", "no_estimate", "failed")

# Reduced effort, independent of the status (a job can be `ok` and still have explained fewer cells than the method's
# default): a method lists what applies in `info["effort"]`, and the tables mark it.
# fewer_cells: explained or trained on fewer cells than its own defaults would (a profile's cap, or a budget cut);
# filled: some of the L peaks come from a fallback ranking (open frequency, a gradient ranking), not from the
# method's own scores; partial_pass: stopped before its first full pass (GRIDS before visiting every slot once,
# SAGE before refining its groups down to single peaks).
EFFORT_FLAGS = ("fewer_cells", "filled", "partial_pass")


@dataclass
class Explanation:
    """A global explanation: L distinct peak indices (best first), their scores, a status and run info.

    A `no_estimate` explanation carries no peaks (an empty array); build it with `Explanation.no_estimate(info)`."""

    peaks: np.ndarray
    scores: np.ndarray | None = None
    status: str = "ok"
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        self.peaks = np.asarray(self.peaks, dtype=np.int64)
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")

    @classmethod
    def no_estimate(cls, info: dict[str, Any]) -> "Explanation":
        """The result of a method whose budget ended before its first real estimate: status `no_estimate`, no peaks."""
        return cls(peaks=np.empty(0, dtype=np.int64), status="no_estimate", info=info)

    def flag(self, *flags: str) -> "Explanation":
        """Add reduced-effort flags (`EFFORT_FLAGS`) to `info["effort"]`; returns self."""
        unknown = set(flags) - set(EFFORT_FLAGS)
        if unknown:
            raise ValueError(f"unknown effort flag(s) {sorted(unknown)}; known: {EFFORT_FLAGS}")
        have = list(self.info.get("effort", []))
        self.info["effort"] = have + [f for f in flags if f not in have]
        return self

    def check(self, n_peaks: int, L: int) -> None:
        """Raise unless the explanation is L distinct valid peak indices, or `no_estimate` with no peaks (anything
        else is a method bug, reported as failed)."""
        if self.status == "no_estimate":
            if self.peaks.size:
                raise ValueError(f"a no_estimate explanation must carry no peaks, got {self.peaks.size}")
            return
        if self.peaks.shape != (L,):
            raise ValueError(f"explanation has {self.peaks.size} peaks, expected L={L}")
        if len(np.unique(self.peaks)) != L:
            raise ValueError("explanation contains duplicate peak indices")
        if self.peaks.min() < 0 or self.peaks.max() >= n_peaks:
            raise ValueError(f"peak indices must lie in [0, {n_peaks})")


@dataclass(frozen=True)
class Budget:
    """Per-job limits. `samples` decides a method's answer: surrogate evaluations (cells × forward passes) counted by
    the method, the same on every machine, so a method cut by it gives the same peaks on a quiet or a busy machine
    (status `budget_exceeded`). `seconds` is only a safety stop against a run that would never end, sized well above
    what a job needs; a job it cuts says so (status `time_limit`), because its answer depends on the machine."""

    seconds: float = 900.0
    samples: int = 5_000_000


class BudgetClock:
    """Tracks wall time and surrogate evaluations against a `Budget`; `stop_status()` says which one ran out."""

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
        return self.samples > self.budget.samples or self.seconds > self.budget.seconds

    def stop_status(self) -> str:
        """The status of a method this clock stopped: `budget_exceeded` when the evaluation count ran out (checked
        first: it is what a quiet machine would also have hit), else `time_limit`."""
        return "budget_exceeded" if self.samples > self.budget.samples else "time_limit"


class Explainer(abc.ABC):
    """Base class. Subclasses take their hyper-parameters (paper defaults) as keyword arguments and call
    ``super().__init__(seed=..., budget=..., progress=...)``; the registry attaches `spec`."""

    spec: ClassVar["MethodSpec"]

    def __init__(self, seed: int = 0, budget: Budget | None = None, progress: bool = False):
        self.seed = seed
        self.budget = budget or Budget()
        self.progress = progress

    @classmethod
    def default(cls, name: str):
        """The constructor's default value of parameter `name` (what "fewer cells than its default" compares
        against)."""
        import inspect

        for klass in cls.__mro__:  # the first class whose __init__ names it (subclasses pass **kwargs up)
            param = inspect.signature(klass.__init__).parameters.get(name) if "__init__" in vars(klass) else None
            if param is not None and param.default is not inspect.Parameter.empty:
                return param.default
        raise KeyError(f"{cls.__name__} has no parameter {name!r} with a default")

    @abc.abstractmethod
    def explain(self, model: "ExplainedModel", data: "MultiomeData", gene: str, L: int) -> Explanation:
        """Select L peaks whose joint closure should most suppress `gene` in `model` (the trained surrogate, the
        simulator's truth or a user's model: use only the protocol of surrogates/protocol.py), from `data` (the
        training cells of the gene's cell type)."""
