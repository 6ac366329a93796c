"""runner: matrices planned against the store and run by an executor.

Owns planning (plan.py: matrices expanded into checked run configs, compared with what the
store holds), running a plan (run.py: inline or through an executor, stale claims taken back,
the summary), and LION's ablation matrices (ablation.py). May import executors, training,
methods, data, store and the core modules; never reports, perf or the CLI.
"""

from .plan import Plan, build_plan, create_matrices, expand_matrix, plan_runs
from .run import RunSummary, reclaim_stale, run_matrix, run_plan

__all__ = ["Plan", "RunSummary", "build_plan", "create_matrices", "expand_matrix", "plan_runs",
           "reclaim_stale", "run_matrix", "run_plan"]
