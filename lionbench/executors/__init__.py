"""Executors: who trains the runs a matrix left pending.

All of them share one protocol with the store: a run is claimed with one atomic statement
(``Store.claim_next``), beats while it trains, and its outcome is written only while its claim
still holds it (``attempt`` fencing), so a run is stored exactly once however workers die.

- ``inline``: this process, one run after the other (the default ``lionbench run``).
- ``local``: N worker processes on this machine, one per GPU (``--gpus``) or ``--workers N``
  on CPU; each claims from the database itself (lionbench.executors.local).
- ``ray``: one ``ray.remote(num_gpus=...)`` task per run on a Ray cluster; the driver alone
  claims and writes, so SQLite is never written from several hosts (ray_executor.py).
- ``slurm``: submitit array jobs; preempted or timed-out jobs go back to pending and are
  resubmitted (slurm.py).

Nothing here imports torch: a worker that runs a cheap ``run_fn`` starts in about a second.
The executors may import training (lazily, where a run trains), the store and the core
modules; never the runner, reports or the CLI.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lionbench.errors import ConfigError, LionbenchError, UnknownNameError
from lionbench.files import check_folder_writable
from lionbench.settings import Setting

from .gpus import DeviceError, check_device, check_device_name, check_gpus

EventFn = Callable[[str, dict[str, Any]], None]
# (store, run hashes of the plan, options, emit) -> None; outcomes are read from the store after
Executor = Callable[..., None]

EXECUTORS = {
    "local": "lionbench.executors.local:run_local",
    "ray": "lionbench.executors.ray_executor:run_ray",
    "slurm": "lionbench.executors.slurm:run_slurm",
}


class ExecutorError(LionbenchError):
    """An executor that cannot start: a missing extra, a bad option, workers that die at once."""


@dataclass
class SlurmOptions:
    """Resources of one Slurm job (one run); ``cluster='local'`` runs the jobs on this machine
    through submitit's local executor (tests, a workstation without Slurm)."""

    partition: str | None = None
    time_min: int = 24 * 60
    cpus_per_run: int = 8
    mem_gb: float | None = None
    account: str | None = None
    folder: Path = Path("results/slurm")
    cluster: str | None = None  # None: Slurm; "local" or "debug": submitit's own executors
    additional: dict[str, Any] = field(default_factory=dict)  # more #SBATCH options


@dataclass
class ExecOptions:
    """How to execute a plan. Defaults suit a real matrix; tests shorten the intervals."""

    workers: int | None = None  # local: CPU worker processes; ray/slurm: most runs in flight
    gpus: list[int] | None = None  # local: one worker per GPU, pinned by CUDA_VISIBLE_DEVICES
    gpus_per_run: float | None = None  # ray/slurm: None = 1 when the cluster has GPUs, else 0
    address: str | None = None  # ray: cluster address (None: $RAY_ADDRESS or a local cluster)
    fresh_process: bool | None = None  # local: a new process per run; None = only on GPUs
    device: str = "auto"
    threads: int | None = None  # CPU: torch intra-op threads per run (None: torch's default)
    data_root: Path | None = None
    checkpoints: bool = True  # save each run's state at every epoch's end, resume from it
    checkpoint_dir: Path | None = None  # None: next to a SQLite file, else results/checkpoints
    run_fn: str | None = None  # "module:function" replacing lionbench.train:train_run
    heartbeat_seconds: float = 30.0
    stale_after: float = 600.0  # seconds without a heartbeat before a run is taken back
    max_attempts: int = 3  # claims lost to dying workers before a run is marked failed
    poll_seconds: float = 1.0
    wait: bool = False  # at the end, wait for the plan's runs other processes are training
    log_dir: Path | None = None  # local: worker logs (None: inherit the terminal)
    slurm: SlurmOptions = field(default_factory=SlurmOptions)

    def work_payload(self) -> dict[str, Any]:
        """What a worker elsewhere needs to train a run, as plain picklable data."""
        return {"device": self.device, "run_fn": self.run_fn, "threads": self.threads,
                "data_root": str(self.data_root) if self.data_root else None,
                "checkpoint_dir": str(self.checkpoint_dir) if self.checkpoint_dir else None}


def get_executor(name: str) -> Executor:
    """The executor function registered under ``name`` (imported on demand: extras are optional)."""
    if name not in EXECUTORS:
        raise UnknownNameError("executor", name, ["inline", *EXECUTORS])
    module, _, func = EXECUTORS[name].partition(":")
    return getattr(importlib.import_module(module), func)


def parse_gpus(value: str | list[int] | None) -> list[int] | None:
    """``"0,1,3"`` -> ``[0, 1, 3]``."""
    if value is None or value == "":
        return None
    items = value if isinstance(value, list) else str(value).split(",")
    try:
        gpus = [int(str(v).strip()) for v in items if str(v).strip()]
    except ValueError:
        raise ExecutorError(f"invalid --gpus '{value}'; expected GPU ids like 0,1,2") from None
    if len(set(gpus)) != len(gpus) or any(g < 0 for g in gpus):
        raise ExecutorError(f"invalid --gpus '{value}'; ids must be distinct and >= 0")
    return gpus


def parse_minutes(value: str | int | None) -> int | None:
    """Slurm's ``--time`` formats -> whole minutes (rounded up): ``90``, ``MM:SS``, ``HH:MM:SS``,
    ``D-HH``, ``D-HH:MM``, ``D-HH:MM:SS``."""
    if value is None or isinstance(value, int):
        return value
    text = str(value).strip()
    try:
        days, dash, clock = text.partition("-") if "-" in text else ("0", "", text)
        parts = [int(p) for p in clock.split(":")]
        if len(parts) > 3 or any(p < 0 for p in parts):
            raise ValueError
        if dash:  # D-HH[:MM[:SS]]
            h, m, s = (parts + [0, 0])[:3]
        elif len(parts) == 3:  # HH:MM:SS
            h, m, s = parts
        else:  # MM or MM:SS
            h, (m, s) = 0, (parts + [0])[:2]
        total = int(days) * 1440 + h * 60 + m + (1 if s else 0)
    except ValueError:
        raise ExecutorError(f"invalid --time '{value}'; expected minutes, HH:MM:SS or "
                            "D-HH:MM:SS") from None
    if total <= 0:
        raise ExecutorError(f"invalid --time '{value}'; must be positive")
    return total


# Sane bounds of the numeric execution flags (lionbench.settings' vocabulary)
OPTION_BOUNDS = {
    "--workers": Setting("int", low=1, high=4096),
    "--threads": Setting("int", low=1, high=1024),
    "--max-attempts": Setting("int", low=1, high=1000),
    "--gpus-per-run": Setting("float", low=0.0, high=64.0),
    "--cpus-per-run": Setting("int", low=1, high=4096),
    "--mem-gb": Setting("float", low=0.0, high=1e6, low_open=True),
}


def check_option(flag: str, value: Any) -> Any:
    """``value`` of a numeric flag within OPTION_BOUNDS, or an ExecutorError naming both."""
    if value is None:
        return None
    spec = OPTION_BOUNDS[flag]
    try:
        return spec.check(flag, value)
    except ConfigError:
        raise ExecutorError(f"invalid {flag} {value}; must be {spec.describe()}") from None


def make_options(*, executor: str | None = None, workers: int | None = None,
                 gpus: str | None = None, fresh_process: bool | None = None,
                 address: str | None = None, gpus_per_run: float | None = None,
                 partition: str | None = None, time: str | None = None,
                 cpus_per_run: int | None = None, mem_gb: float | None = None,
                 slurm_extra: list[str] | None = None, checkpoints: bool = True,
                 checkpoint_dir: Path | None = None, max_attempts: int | None = None,
                 log_dir: Path | None = None, threads: int | None = None,
                 device: str = "auto", wait: bool = False) -> tuple[str, ExecOptions]:
    """The CLI's execution flags -> (executor name, options), checked before anything runs
    (and before torch loads: this module never imports it). Numbers lie within OPTION_BOUNDS;
    ``--device`` and ``--gpus`` name devices this machine has (lionbench.executors.gpus),
    unless the runs train elsewhere (Ray, Slurm).

    No ``--executor``: ``local`` when ``--workers`` or ``--gpus`` is given, else ``inline``.
    """
    for flag, value in (("--workers", workers), ("--threads", threads),
                        ("--max-attempts", max_attempts), ("--gpus-per-run", gpus_per_run),
                        ("--cpus-per-run", cpus_per_run), ("--mem-gb", mem_gb)):
        check_option(flag, value)
    gpu_list = parse_gpus(gpus)
    name = executor or ("local" if workers or gpu_list else "inline")
    if name not in ("inline", *EXECUTORS):
        raise UnknownNameError("executor", name, ["inline", *EXECUTORS])
    if gpu_list and workers and workers != len(gpu_list):
        raise ExecutorError("--gpus starts one worker per GPU; leave out --workers")
    if gpu_list and name != "local":
        raise ExecutorError(f"--gpus is for local workers; with --executor {name} use "
                            "--gpus-per-run (the cluster assigns the GPUs)")
    if name == "inline" and workers and workers > 1:
        raise ExecutorError("--executor inline runs one run at a time; use --executor local")
    if address and name != "ray":
        raise ExecutorError("--address is the Ray cluster's; add --executor ray")
    if gpus_per_run is not None and name not in ("ray", "slurm"):
        raise ExecutorError("--gpus-per-run is for Ray and Slurm; add --executor ray or slurm "
                            "(local workers take --gpus)")
    slurm_flags = {"--partition": partition, "--time": time, "--cpus-per-run": cpus_per_run,
                   "--mem-gb": mem_gb, "--slurm": slurm_extra or None}
    given = [flag for flag, value in slurm_flags.items() if value is not None]
    if given and name != "slurm":
        raise ExecutorError(f"{', '.join(given)}: Slurm options; add --executor slurm")
    if name in ("inline", "local"):  # runs train on this machine: it must have the devices
        check_device(device)
        if gpu_list:
            check_gpus(gpu_list)
    elif device not in ("auto", "cpu"):
        check_device_name(device)
    if checkpoint_dir is not None:
        check_folder_writable(checkpoint_dir, "--checkpoint-dir")
    slurm = SlurmOptions(partition=partition, mem_gb=mem_gb)
    for item in slurm_extra or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ExecutorError(f"malformed --slurm '{item}'; expected KEY=VALUE, e.g. qos=high")
        if key.strip() == "account":
            slurm.account = value.strip()
        else:
            slurm.additional[key.strip()] = value.strip()
    if time is not None:
        slurm.time_min = parse_minutes(time) or slurm.time_min
    if cpus_per_run is not None:
        slurm.cpus_per_run = cpus_per_run
    options = ExecOptions(workers=workers, gpus=gpu_list, gpus_per_run=gpus_per_run,
                          address=address, fresh_process=fresh_process, device=device,
                          checkpoints=checkpoints, checkpoint_dir=checkpoint_dir,
                          log_dir=log_dir, slurm=slurm, threads=threads, wait=wait)
    if max_attempts is not None:
        options.max_attempts = max_attempts
    return name, options


__all__ = ["DeviceError", "ExecOptions", "SlurmOptions", "ExecutorError", "OPTION_BOUNDS",
           "check_option", "get_executor", "parse_gpus", "parse_minutes", "make_options",
           "EXECUTORS"]
