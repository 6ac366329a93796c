"""Slurm through submitit: the pending runs go out as array jobs, one run per job.

``lionbench run ... --executor slurm --partition gpu --time 12:00:00`` submits from the login
node; keep that driver alive (``tmux``/``screen``, or submit the driver itself as a small CPU
job) since it claims, beats and writes for the jobs (lionbench.executors.remote). A job that
Slurm preempts or times out ends (``SlurmTask.checkpoint`` declines submitit's in-place
requeue), its run goes back to pending, and the next array resubmits it; it resumes from its
last epoch checkpoint, which must therefore live on a filesystem the nodes share (the default
is next to the database). ``cluster="local"`` runs the jobs here through submitit's local
executor (tests, a workstation without Slurm).
"""

from __future__ import annotations

import time
from typing import Any

from lionbench.executors import EventFn, ExecOptions, ExecutorError
from lionbench.executors.execute import compute, expectations
from lionbench.executors.remote import RemoteDriver
from lionbench.store import Store


class SlurmTask:
    """What each array job runs. ``checkpoint`` returning None makes submitit end a preempted or
    timed-out job (UncompletedJobError) rather than requeue it behind the driver's back."""

    def __call__(self, config: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
        from submitit.core.utils import UncompletedJobError  # raised by the preemption signal

        return compute(config, reraise=(UncompletedJobError,), **payload)

    def checkpoint(self, *args: Any, **kwargs: Any) -> None:
        return None


class SlurmDriver(RemoteDriver):
    name = "slurm"

    def __init__(self, store: Store, hashes: list[str], options: ExecOptions, emit: EventFn):
        super().__init__(store, hashes, options, emit)
        try:
            import submitit
        except ImportError:
            raise ExecutorError("the slurm executor needs submitit: "
                                "pip install 'lionbench[slurm]'") from None
        s = options.slurm
        gpus = options.gpus_per_run
        if gpus is None:
            gpus = 0 if s.cluster in ("local", "debug") else 1
        self.executor = submitit.AutoExecutor(folder=str(s.folder / "%j"), cluster=s.cluster)
        params: dict[str, Any] = {"name": "lionbench", "timeout_min": s.time_min,
                                  "gpus_per_node": int(gpus), "cpus_per_task": s.cpus_per_run,
                                  "tasks_per_node": 1, "nodes": 1}
        if s.mem_gb:
            params["mem_gb"] = s.mem_gb
        if self.executor.cluster == "slurm":
            extra = {"partition": s.partition, "account": s.account,
                     "array_parallelism": options.workers, "additional_parameters": s.additional}
            params.update({f"slurm_{k}": v for k, v in extra.items() if v})
        self.executor.update_parameters(**params)
        self.task = SlurmTask()

    def submit(self, rows: list[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
        payload = self.payload()
        jobs = self.executor.map_array(self.task, [self.config(r) for r in rows],
                                       [{**payload, "expect": expectations(r)} for r in rows])
        return dict(zip(jobs, rows, strict=True))

    def collect(self, timeout: float) -> list[tuple[Any, dict[str, Any] | BaseException]]:
        deadline = time.monotonic() + timeout
        while True:
            finished = [job for job in self.inflight if job.done()]
            if finished or time.monotonic() >= deadline:
                break
            time.sleep(min(0.2, timeout))
        out: list[tuple[Any, dict[str, Any] | BaseException]] = []
        for job in finished:
            try:
                out.append((job, job.result()))
            except Exception as exc:  # preempted, timed out, node failure, cancelled
                out.append((job, exc))
        return out

    def describe_loss(self, error: BaseException) -> str:
        lines = str(error).strip().splitlines() or [""]
        return ("slurm job ended without a result (preempted, timed out or failed): "
                f"{type(error).__name__}: {lines[-1][:300]}")

    def cancel(self) -> None:
        for job in list(self.inflight):
            try:
                job.cancel(check=False)
            except Exception:  # already finished or gone
                pass


def run_slurm(store: Store, hashes: list[str], options: ExecOptions, emit: EventFn) -> None:
    """Run the pending runs among ``hashes`` as submitit array jobs until none is left."""
    if hashes:
        SlurmDriver(store, hashes, options, emit).run()
