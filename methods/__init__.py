"""Explainers, one per file, registered with `@register` (see methods/registry.py)."""

from methods.base import Explainer, Explanation
from methods.registry import MethodSpec, available, get, register, specs

__all__ = ["Explainer", "Explanation", "MethodSpec", "register", "get", "available", "specs"]
