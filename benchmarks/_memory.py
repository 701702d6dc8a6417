"""Resident memory of the benchmark process (Linux /proc; getrusage elsewhere)."""

from __future__ import annotations

import resource
from pathlib import Path


def reset_peak_rss() -> bool:
    """Reset the process's peak resident memory (Linux >= 4.0); False when not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def rss_mb(key: str = "VmRSS") -> float:
    """Current (``VmRSS``) or peak (``VmHWM``) resident memory of the process in MB; the peak
    since start from getrusage where /proc is missing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
