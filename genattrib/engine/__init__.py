"""Execution: runs the model in memory-sized chunks, defines the method contract, plans which
target steps share a batch, and runs a method over them.

Example:
    >>> sorted(n for n in __all__ if n.startswith("run"))
    ['run_attribution']
"""

from genattrib.engine.baselines import ResolvedBaseline, baseline_embeddings
from genattrib.engine.contract import Attributor, MethodOutput, MethodParams, MethodTraits, RowBatch
from genattrib.engine.execute import (
    GRANULAR_BUDGET_MB,
    EngineResult,
    granular_bytes,
    plan_run,
    resolve_keep_granular,
    run_attribution,
)
from genattrib.engine.explained import UNIT_RULES, Explained
from genattrib.engine.forward import ModelForward, eval_mode
from genattrib.engine.jobs import build_jobs
from genattrib.engine.model_hooks import ModelHook, ModuleRule, hooked
from genattrib.engine.planner import plan_batches
from genattrib.engine.resources import bind_resources
from genattrib.engine.row_refs import SequenceJob
from genattrib.engine.step_scores import step_score_rules, teacher_forced_step_scores

__all__ = [
    "GRANULAR_BUDGET_MB",
    "Attributor",
    "EngineResult",
    "Explained",
    "MethodOutput",
    "MethodParams",
    "MethodTraits",
    "ModelHook",
    "ModuleRule",
    "ModelForward",
    "ResolvedBaseline",
    "SequenceJob",
    "RowBatch",
    "UNIT_RULES",
    "baseline_embeddings",
    "bind_resources",
    "build_jobs",
    "eval_mode",
    "granular_bytes",
    "hooked",
    "plan_batches",
    "plan_run",
    "resolve_keep_granular",
    "run_attribution",
    "step_score_rules",
    "teacher_forced_step_scores",
]
