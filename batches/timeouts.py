"""A per-item time limit inside a worker thread.

Signals only reach the main thread, so the limit is raised in the item's thread as an asynchronous
exception (as Dramatiq's own TimeLimit middleware does). Python code is interrupted at once; a call
blocked in C (a socket read, time.sleep) is interrupted when it returns, and an item that overran
is failed then, its effects rolled back. Handlers should still give their I/O a timeout.
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


class ItemTimedOut(Exception):
    def __init__(self, seconds: float) -> None:
        super().__init__(f"Timed out after {seconds:g}s")


def _set_async_exc(thread_id: int, exc: type[BaseException] | None) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exc) if exc else None)


@contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    if not seconds:
        yield
        return
    thread_id = threading.get_ident()
    lock = threading.Lock()
    inside = True

    class _Expired(ItemTimedOut):
        def __init__(self) -> None:
            super().__init__(seconds)

    def expire() -> None:
        with lock:
            if inside:
                _set_async_exc(thread_id, _Expired)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    started = time.monotonic()
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        with lock:
            inside = False
            _set_async_exc(thread_id, None)  # drop one that was raised but not delivered yet
    if time.monotonic() - started > seconds:
        raise ItemTimedOut(seconds)
