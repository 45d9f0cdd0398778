"""Data model, loaders and the synthetic multiome simulator."""

from datasets.data import DataValidationError, MultiomeData, assign_split

__all__ = ["MultiomeData", "DataValidationError", "assign_split"]
