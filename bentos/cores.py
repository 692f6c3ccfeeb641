"""One core per worker.

With a worker per core and nothing pinned, each worker's XLA runs every pass on a thread pool as
wide as the machine, so two workers' pools, batch threads and event loops all compete for both
cores, and a batch-1 pass pays for handing its work to the pool. A worker pinned to its own core
runs XLA on the calling thread (the pool is sized by the cores a process may use when XLA
starts) and leaves the other cores to the other workers.
"""

from __future__ import annotations

import os


def usable_cores() -> list[int]:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))


def should_pin(workers: int, devices: int | None, setting: bool | str = True) -> bool:
    """Whether to pin, for the service's ``pin_workers`` setting: never with False; with True when
    there is a core for every worker; with "auto" (the default) when there is exactly one, so the
    server holds every core it may use (two servers of one worker each are not both pinned to the
    first core). Always with one XLA device per worker: an explanation sharded over several devices
    needs several cores."""
    if setting is False or not hasattr(os, "sched_setaffinity") or (devices or 1) != 1:
        return False
    cores = len(usable_cores())
    return workers == cores if setting == "auto" else workers <= cores


def pin_to_core(index: int) -> int:
    """Run this process, every thread of it, on the ``index``-th usable core (0-based, wrapping)
    -> that core. Call before XLA starts."""
    cores = usable_cores()
    core = cores[index % len(cores)]
    for task in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(task), {core})
        except ProcessLookupError:  # a thread that ended meanwhile
            pass
    return core
