"""GRIDS-Bench: harness, evaluator, reports and the command line (`python -m bench`)."""
