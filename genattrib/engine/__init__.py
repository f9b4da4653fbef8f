"""Plans and runs attribution in batches across target steps."""

from genattrib.engine.plan import SequenceJob, plan_batches
from genattrib.engine.runner import EngineResult, run_attribution
from genattrib.engine.step_scores import step_score_rules, teacher_forced_step_scores

__all__ = ["EngineResult", "SequenceJob", "plan_batches", "run_attribution", "step_score_rules", "teacher_forced_step_scores"]
