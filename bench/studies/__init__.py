"""Studies about the benchmark itself: anytime budget curves, the dimensionality sweep, and the performance
measurements with their hardware floor.

The top room: it may import every other room of bench/, and none imports it."""
