"""Plans and runs attribution in batches across target steps."""

from genattrib.engine.plan import SequenceJob, plan_batches
from genattrib.engine.runner import EngineResult, run_attribution
from genattrib.engine.step_scores import teacher_forced_step_scores

__all__ = ["EngineResult", "SequenceJob", "plan_batches", "run_attribution", "teacher_forced_step_scores"]
