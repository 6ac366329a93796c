"""Ray: one ``ray.remote(num_gpus=1)`` task per run (``lionbench run ... --executor ray``).

Ray gives each task its own GPU (``CUDA_VISIBLE_DEVICES``) and, with ``max_calls=1``, a fresh
worker process, so no GPU memory carries over; it retries a task whose worker or node died
(``max_retries``). The driver (lionbench.executors.remote) claims, beats and writes alone.
The driver must outlive the matrix: on a cluster, start it as a Ray job, so closing the shell
does not stop it::

    ray job submit --address http://HEAD:8265 --working-dir . -- \\
        lionbench run benchmarks/table1.yaml --executor ray --db postgresql://...

(``ray.init`` inside the job connects to that cluster; every node needs lionbench installed
and the data under the same ``--data-root``.) Without ``--address`` and ``$RAY_ADDRESS``, Ray
starts a local cluster on this machine.
"""

from __future__ import annotations

from typing import Any

from lionbench.executors import EventFn, ExecOptions, ExecutorError
from lionbench.executors.execute import compute, expectations
from lionbench.executors.remote import RemoteDriver
from lionbench.store import Store


def ray_compute(config: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    """The task body: train one run on the GPU Ray assigned, return the outcome to the driver."""
    return compute(config, **payload)


class RayDriver(RemoteDriver):
    name = "ray"

    def __init__(self, store: Store, hashes: list[str], options: ExecOptions, emit: EventFn):
        super().__init__(store, hashes, options, emit)
        try:
            import ray
        except ImportError:
            raise ExecutorError("the ray executor needs Ray: "
                                "pip install 'lionbench[ray]'") from None
        self.ray, self.started = ray, not ray.is_initialized()
        if self.started:
            ray.init(address=options.address, log_to_driver=False)
        resources = ray.cluster_resources()
        gpus = options.gpus_per_run
        if gpus is None:
            gpus = 1 if resources.get("GPU", 0) >= 1 else 0
        self.slots = int(resources.get("GPU", 0) // gpus if gpus else resources.get("CPU", 1))
        self.task = ray.remote(num_gpus=gpus, num_cpus=1,  # max_calls=1: a fresh process
                               max_retries=max(0, options.max_attempts - 1),
                               max_calls=1 if gpus else 0)(ray_compute)

    def capacity(self) -> int:
        return self.options.workers or max(1, self.slots)

    def submit(self, rows: list[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
        payload = self.payload()
        return {self.task.remote(self.config(row), {**payload, "expect": expectations(row)}): row
                for row in rows}

    def collect(self, timeout: float) -> list[tuple[Any, dict[str, Any] | BaseException]]:
        refs = list(self.inflight)
        ready, _ = self.ray.wait(refs, num_returns=1, timeout=timeout)
        if ready:  # and whatever else is done by now
            ready, _ = self.ray.wait(refs, num_returns=len(refs), timeout=0)
        out: list[tuple[Any, dict[str, Any] | BaseException]] = []
        for ref in ready:
            try:
                out.append((ref, self.ray.get(ref)))
            except self.ray.exceptions.RayError as exc:  # worker/node died past max_retries
                out.append((ref, exc))
        return out

    def cancel(self) -> None:
        for ref in list(self.inflight):
            try:
                self.ray.cancel(ref, force=True)
            except Exception:  # already finished or gone
                pass


def run_ray(store: Store, hashes: list[str], options: ExecOptions, emit: EventFn) -> None:
    """Run the pending runs among ``hashes`` as Ray tasks until none is left."""
    if not hashes:
        return
    driver = RayDriver(store, hashes, options, emit)
    try:
        driver.run()
    finally:
        if driver.started:  # a cluster we connected to (or started) for this matrix only
            driver.ray.shutdown()
