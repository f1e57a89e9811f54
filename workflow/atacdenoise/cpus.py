"""How many CPU cores this process may use, and how much CPU time it has used.

The affinity mask where the system has one (Linux: a SLURM job bound to its cores by cpuset sees only those),
else the machine's count (macOS has no ``os.sched_getaffinity``). Thread and worker defaults derive from it.
"""

from __future__ import annotations

import os
import resource


def cpu_seconds() -> float:
    """Return the user + system CPU seconds of this process so far, all its threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def usable_cores() -> int:
    """Return the number of cores this process may run on (at least 1)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)
