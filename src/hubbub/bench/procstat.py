"""What Linux's /proc says about a process: resident memory, CPU time, run-queue wait."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def rss_kib(pid: int | str = "self") -> int:
    """VmRSS of the process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU time of the whole process (every thread)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_queue_wait_seconds(pid: int | str = "self") -> float:
    """Time the process's threads spent runnable but waiting for a CPU: contention."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, IndexError, ValueError):
            total += int((task / "schedstat").read_text().split()[1])
    return total / 1e9


def cpu_jiffies(cpus: list[int]) -> tuple[int, int]:
    """(busy, total) clock ticks of the given CPUs since boot, every process counted.

    Idle and I/O wait are not busy; time stolen by the hypervisor is (it was not ours).
    """
    busy = total = 0
    wanted = {f"cpu{c}" for c in cpus}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name in wanted:
            ticks = [int(v) for v in values[:8]]
            total += sum(ticks)
            busy += sum(ticks) - ticks[3] - ticks[4]
    return busy, total
