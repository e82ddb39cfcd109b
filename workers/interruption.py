"""Raising an exception inside the running handler, from the watchdog's thread.

Python runs signal handlers on the main thread, which is where a worker process runs its
handler, and a signal handler that raises turns a blocking sleep or read into that exception at
once (PEP 475). So the watchdog names the exception and signals the main thread
(``SIGUSR2``); the exception is raised only while the runtime has the interruption armed around
a handler call, so a signal that lands after the handler returned raises nothing.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class Interruption:
    """The armed flag and the pending exception of one worker process, under one lock.

    The worker runtime owns one (workers/runtime.py) and hands it to its watchdog.
    """

    signum = signal.SIGUSR2

    def __init__(self) -> None:
        # Reentrant: the signal handler runs on the main thread between two bytecodes, possibly
        # while that thread holds the lock to arm or disarm; a plain lock would deadlock there.
        self._lock = threading.RLock()
        self._armed = False
        self._pending: type[BaseException] | None = None

    def install(self) -> bool:
        """Route the signal here. False off the main thread, where a signal cannot be handled:
        handlers run there are not interrupted (the hard limit still applies)."""
        if threading.current_thread() is not threading.main_thread():
            return False
        if signal.getsignal(self.signum) != self._on_signal:
            signal.signal(self.signum, self._on_signal)
        return True

    @contextmanager
    def armed(self, enabled: bool) -> Iterator[None]:
        """Let ``interrupt`` reach the code run inside (when ``enabled``)."""
        self._set_armed(enabled)
        try:
            yield
        finally:
            self._set_armed(False)

    def interrupt(self, exc: type[BaseException]) -> None:
        """Raise ``exc`` in the main thread, if a handler call is armed."""
        with self._lock:
            if not self._armed:
                return
            self._pending = exc
        signal.pthread_kill(threading.main_thread().ident or 0, self.signum)

    def _set_armed(self, armed: bool) -> None:
        with self._lock:
            self._armed, self._pending = armed, None

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        with self._lock:
            exc, self._pending = (self._pending if self._armed else None), None
        if exc is not None:
            raise exc()
