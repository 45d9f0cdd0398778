"""Fidelity: how far the explained surrogate can be trusted — interventional fidelity against the simulator's
exact model, the per-locus diagnostic of what the data identify, and fidelity against training epochs (fit curve)
and against cells and depth (data curve).

Imports from scoring, running and reporting."""
