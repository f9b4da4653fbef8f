"""Target functions: what an attribution explains and what step scores report."""

from genattrib.targets.functions import BUILTIN_TARGETS, TargetContext, TargetFunction
from genattrib.targets.kl_filters import kl_divergence_of
from genattrib.targets.registry import list_targets, resolve_target

__all__ = ["BUILTIN_TARGETS", "TargetFunction", "TargetContext", "kl_divergence_of", "list_targets", "resolve_target"]
