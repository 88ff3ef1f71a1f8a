"""Per-item time limits inside worker threads, cheap enough to wrap every item.

Signals only reach the main thread, so an overrunning item's thread is sent an asynchronous
exception (as Dramatiq's own TimeLimit middleware does) by one watchdog thread per process that
checks the deadlines every 50 ms. Python code is interrupted at once; a call blocked in C (a
socket read, time.sleep) is interrupted when it returns, and an item that overran is failed then,
its effects rolled back. Handlers should still give their I/O timeouts of their own.
"""

from __future__ import annotations

import ctypes
import threading
import time
from types import TracebackType

_TICK_SECONDS = 0.05


class ItemTimedOut(Exception):
    """Raised in the item's thread; carries no arguments because the watchdog raises the class."""


def _set_async_exc(thread_id: int, exc: type[BaseException] | None) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exc) if exc else None)


class _Watchdog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._deadlines: dict[int, float] = {}
        self._started = False

    def arm(self, thread_id: int, deadline: float) -> None:
        with self._lock:
            self._deadlines[thread_id] = deadline
            if not self._started:
                self._started = True
                threading.Thread(target=self._watch, name="batches-item-watchdog", daemon=True).start()

    def disarm(self, thread_id: int) -> None:
        with self._lock:
            if self._deadlines.pop(thread_id, None) is None:
                # It fired: drop the exception if it has not been delivered yet.
                _set_async_exc(thread_id, None)

    def _watch(self) -> None:
        while True:
            time.sleep(_TICK_SECONDS)
            now = time.monotonic()
            with self._lock:
                for thread_id, deadline in list(self._deadlines.items()):
                    if now >= deadline:
                        del self._deadlines[thread_id]
                        _set_async_exc(thread_id, ItemTimedOut)


_watchdog = _Watchdog()


class time_limit:
    """Raise ItemTimedOut in this thread if the block runs longer than `seconds` (None: no limit)."""

    __slots__ = ("seconds", "started", "thread_id")

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds

    def __enter__(self) -> None:
        if self.seconds:
            self.thread_id = threading.get_ident()
            self.started = time.monotonic()
            _watchdog.arm(self.thread_id, self.started + self.seconds)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if not self.seconds:
            return
        _watchdog.disarm(self.thread_id)
        if exc_type is None and time.monotonic() - self.started > self.seconds:
            raise ItemTimedOut
