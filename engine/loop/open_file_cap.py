"""How many trials may run at once: max_parallel, within what the open-file limit allows.

Why its own module: each running trial holds files (its two logs, pipes), so ``ulimit -n`` caps
parallelism. The cap is checked again whenever max_parallel changes (raised where the limit can
be, engine/trials/fd_limits.py), and lowered when the engine runs out of descriptors anyway, so the
study goes on with fewer trials instead of crashing. Both are said once and recorded.
"""

from __future__ import annotations

from ..core.events import Halt
from ..database.records import EventKind
from ..trials.fd_limits import fit_parallel, out_of_fds
from .loop_parts import LoopParts


class OpenFileCap:
    """The number of trials the loop may run now (see the module docstring)."""

    def __init__(self, parts: LoopParts) -> None:
        self.parts = parts
        self._checked_for, self._cap = 0, parts.core.state.max_parallel

    def allowed(self) -> int:
        """max_parallel, within what the open-file limit allows (raised where it can be)."""
        max_parallel = self.parts.core.state.max_parallel
        if max_parallel != self._checked_for:
            self._checked_for = max_parallel
            fit = fit_parallel(max_parallel)
            self._cap = fit.parallel
            if fit.note:
                self.parts.store.add_event(self.parts.study.id, None, EventKind.FD_LIMIT, fit.note,
                                           level="info" if fit.parallel == max_parallel else "warning")
                self.parts.say(fit.note)
        return min(max_parallel, self._cap)

    def ran_out(self, exc: OSError) -> None:
        """EMFILE / ENFILE anyway (other processes, a lower limit set from outside): stop launching, go on.

        Any other OSError is not ours to handle: raised again.
        """
        if not out_of_fds(exc):
            raise exc
        live = self.parts.live
        cap = max(1, len(live))
        if cap < self._cap or not live:
            self._cap = cap
            message = (f"out of file descriptors ({exc.strerror or exc}) with {len(live)} trials running: "
                       f"no new trial until one ends, at most {cap} at once from now on; raise `ulimit -n`")
            self.parts.store.add_event(self.parts.study.id, None, EventKind.FD_LIMIT, message, level="warning")
            self.parts.say(message)
        if not live and not self.parts.core.state.stop_reason:
            self.parts.core.handle(Halt("out of file descriptors with no trial running: nothing can start"))
