"""Open-file limits against max_parallel: seen coming at launch, not as a crash at trial 500.

Every running trial costs the engine a few file descriptors (its two log readers and, once
``logs.max_mb`` trims them, two hole-punching handles; starting it briefly needs a folder
handle and the exec pipe). With ``max_parallel: 600`` under ``ulimit -n 1024`` the engine would
run out mid-study. So at launch the engine raises its soft limit towards what ``max_parallel``
needs (up to the hard limit, which any process may do), and where even the hard limit is too
low it runs fewer trials at once and says so. Trials inherit the raised soft limit.
"""

from __future__ import annotations

import errno
import resource
from dataclasses import dataclass

FDS_PER_TRIAL = 4
FDS_RESERVED = 64  # the database and its -wal / -shm, the wake-up pipe, the selector, stdio, NVML, a start
OUT_OF_FDS = (errno.EMFILE, errno.ENFILE)


@dataclass(frozen=True)
class Fit:
    parallel: int  # trials the limit allows at once (max_parallel when it fits)
    note: str | None  # what was raised or capped, for the study's events; None when nothing happened


def needed(max_parallel: int) -> int:
    return FDS_RESERVED + FDS_PER_TRIAL * max_parallel


def fit_parallel(max_parallel: int) -> Fit:
    """Raise the soft RLIMIT_NOFILE where ``max_parallel`` needs it; cap parallelism where it cannot."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = needed(max_parallel)
    if soft == resource.RLIM_INFINITY or soft >= need:
        return Fit(max_parallel, None)
    raised = need if hard == resource.RLIM_INFINITY else min(need, hard)
    note = None
    if raised > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            note = f"raised the open-file limit (ulimit -n) from {soft} to {raised} for max_parallel {max_parallel}"
            soft = raised
        except (ValueError, OSError):
            pass
    if soft >= need:
        return Fit(max_parallel, note)
    cap = max(1, (soft - FDS_RESERVED) // FDS_PER_TRIAL)
    return Fit(cap, f"the open-file limit (ulimit -n {soft}, hard {hard}) allows about {cap} trials at once, not "
                    f"max_parallel {max_parallel}: running at most {cap} at a time; raise it "
                    f"(`ulimit -n {need}`, or the hard limit in /etc/security/limits.conf) for more")


def out_of_fds(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in OUT_OF_FDS
