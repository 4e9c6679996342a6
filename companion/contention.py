"""What else used the machine while a run ran: per-core busy and stolen time, load averages.

:class:`ContentionMonitor` reads /proc/stat, the load averages, this process's CPU time and the
wall clock on entering and leaving a block; its record is the ``contention`` section of a
timing file (:mod:`companion.timing_file`), from which the loader judges whether the run had
its cores to itself. Plain Python: no torch; on a system without /proc/stat the per-core data
are None, and a loader refuses the file.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

__all__ = [
    "ContentionMonitor",
    "cpu_name",
    "affinity",
    "load_average",
    "proc_stat",
]


def proc_stat(path: str = "/proc/stat") -> dict[str, tuple[int, int, int]] | None:
    """Per core: (busy, steal, idle) clock ticks since boot, from /proc/stat; None where there
    is no /proc/stat (not Linux)."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return None
    cores = {}
    for line in lines:
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit():
            user, nice, system, idle, iowait, irq, softirq, steal = (
                int(v) for v in (fields + ["0"] * 8)[:8]
            )
            cores[name[3:]] = (user + nice + system + irq + softirq, steal, idle + iowait)
    return cores


def load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def affinity() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux: every core
        return list(range(os.cpu_count() or 1))


class ContentionMonitor:
    """What else used the machine while a run ran.

    ``with ContentionMonitor() as monitor: ...`` reads the load averages, every core's busy,
    stolen and idle time (/proc/stat), this process's CPU time and the wall clock on entry and
    exit; :meth:`record` is the ``contention`` section of a results file. Another process's
    CPU time on the run's cores is the cores' busy and stolen time minus this process's own.
    """

    def __enter__(self) -> ContentionMonitor:
        self.load_before = load_average()
        self._stat = proc_stat()
        self._own = time.process_time()
        self._wall = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.wall_s = time.perf_counter() - self._wall
        self.own_cpu_s = time.process_time() - self._own
        after = proc_stat()
        self.load_after = load_average()
        self.cores = None
        if self._stat is not None and after is not None:
            tick = os.sysconf("SC_CLK_TCK")
            self.cores = {
                k: dict(
                    zip(
                        ("busy_s", "steal_s", "idle_s"),
                        (round((a - b) / tick, 3) for a, b in zip(after[k], self._stat[k])),
                    )
                )
                for k in after
                if k in self._stat
            }

    def record(self) -> dict:
        """The ``contention`` section (without the summaries :func:`finish_results` adds)."""
        return {
            "wall_s": round(self.wall_s, 3),
            "own_cpu_s": round(self.own_cpu_s, 3),
            "cores": self.cores,
            "load_before": self.load_before,
            "load_after": self.load_after,
        }


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "CPU"
