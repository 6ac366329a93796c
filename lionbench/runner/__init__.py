"""runner: matrices planned against the store and run by an executor.

Owns planning (plan.py: matrices expanded into checked run configs, compared with what the
store holds), running a plan (run.py: inline or through an executor, stale claims taken back,
the summary), LION's ablation matrices (ablation.py) and tuning on validation (tune.py:
candidates, the choice, the winner's final seeds). May import executors, training,
methods, data, store and the core modules; never reports, perf or the CLI.
"""

from .plan import Plan, build_plan, create_matrices, expand_matrix, plan_runs
from .run import RunSummary, reclaim_stale, run_matrix, run_plan
from .tune import TunePlan, TuneResult, build_tune_plan, run_tune

__all__ = ["Plan", "RunSummary", "build_plan", "create_matrices", "expand_matrix", "plan_runs",
           "reclaim_stale", "run_matrix", "run_plan", "TunePlan", "TuneResult", "build_tune_plan",
           "run_tune"]
