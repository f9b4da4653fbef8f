"""Generation with step hooks, producing :class:`GenerationTrace` objects."""

from genattrib.generation.generate import generate_traces, seeded
from genattrib.generation.trace import GenerationTrace

__all__ = ["GenerationTrace", "generate_traces", "seeded"]
