"""Target functions: what an attribution explains and what step scores report."""

from genattrib.targets.functions import BUILTIN_TARGETS, TargetContext, TargetFunction
from genattrib.targets.registry import list_targets, resolve_target

__all__ = ["BUILTIN_TARGETS", "TargetFunction", "TargetContext", "list_targets", "resolve_target"]
