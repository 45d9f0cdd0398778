"""Running: from a plan to job records — the plan (methods × cell types × genes × L × seeds), the pipeline that
loads inputs and fits or reuses the model, the harness and its result cache, the runner of one job, the code
versions that key the cache, and the machine and memory facts a run records.

Imports from scoring only (a job is scored as it finishes)."""
