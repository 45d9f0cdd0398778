"""GRIDS-Bench: harness, evaluator, reports and the command line (`python -m bench`).

From Python: `bench.run(...)` runs the benchmark and returns its long table, `bench.fit(...)` trains (or reuses) the
surrogate and measures its fidelity, `bench.compare(...)` compares runs, `bench.report(...)` renders a finished
run again and `bench.worlds(...)` runs every explainer in every regulatory world (see bench/api.py). The rooms below the API: scoring/, running/, reporting/, fidelity/, studies/."""

import os

# Must be set before torch loads OpenMP. With the default active spin-wait, a 2-thread torch op on a 2-core machine
# that has any other busy process slowed GRIDS 30x (100 steps: 1.5 s alone, 49 s beside one busy process);
# passive waiting keeps it at 1.6 s. An explicit user setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from bench.api import compare, fit, report, run, worlds  # noqa: E402

__all__ = ["run", "fit", "compare", "report", "worlds"]
