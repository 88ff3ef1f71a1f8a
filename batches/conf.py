"""The engine's settings, each with its default and why: the one place the engine reads settings from.

A host project sets only what it wants different, as a Django setting of the same name
(`BATCHES_CHECKPOINT_SECONDS = 1.0` in its settings.py); every other one has the default below.
The engine reads them as `batches_settings.CHECKPOINT_SECONDS`, at each use, so `override_settings`
and pytest-django's `settings` fixture apply at once. It reads no other setting of the host's apart
from Django's own (AUTH_USER_MODEL, LOGIN_URL, TIME_ZONE ...) and Dramatiq's broker, which it asks
Dramatiq for. `manage.py check` refuses a value of the wrong kind (batches/checks.py), and the
README's settings table is checked against this module (tests/test_conf.py).

`BATCHES_*` names rather than one `BATCHES = {...}` dict: a host changes one value with one line,
with no rule needed for merging a partial dict with the defaults; `override_settings` and the
tests' `settings` fixture change one value without restating the others; `diffsettings` shows each;
and a site that reads its environment can give a variable and its setting the same name.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable
from typing import Any, Generic, TypeVar, overload

from django.conf import settings

T = TypeVar("T")

PREFIX = "BATCHES_"


def _seconds(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        return "a number of seconds, 0 or more"
    return None


def _positive_seconds(value: object) -> str | None:
    if _seconds(value) is not None or value == 0:
        return "a number of seconds, more than 0"
    return None


def _count(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return "a whole number, 0 or more"
    return None


def _positive_count(value: object) -> str | None:
    if _count(value) is not None or value == 0:
        return "a whole number, more than 0"
    return None


def _text(value: object) -> str | None:
    return None if isinstance(value, str) else "a string"


def _networks(value: object) -> str | None:
    wanted = 'a list of addresses or networks, e.g. ["127.0.0.1", "10.0.0.0/8"]'
    if isinstance(value, str) or not isinstance(value, list | tuple):
        return wanted
    for entry in value:
        try:
            ipaddress.ip_network(entry, strict=False)
        except (TypeError, ValueError):
            return f"{wanted}; {entry!r} is neither"
    return None


class Setting(Generic[T]):
    """One setting: read from the host's settings as BATCHES_<name>, else `default` (a callable
    default is worked out at each read). `problem(value)` says what a wrong value should be."""

    def __init__(
        self,
        default: T | Callable[[], T],
        why: str,
        problem: Callable[[object], str | None],
        *,
        shown: str | None = None,
    ) -> None:
        self.default = default
        self.why = why
        self.problem = problem
        self._shown = shown
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = PREFIX + name

    @overload
    def __get__(self, instance: None, owner: type) -> Setting[T]: ...
    @overload
    def __get__(self, instance: object, owner: type) -> T: ...
    def __get__(self, instance: object | None, owner: type) -> T | Setting[T]:
        return self if instance is None else self.value

    def default_value(self) -> T:
        return self.default() if callable(self.default) else self.default

    @property
    def is_set(self) -> bool:
        return hasattr(settings, self.name)

    @property
    def value(self) -> T:
        return getattr(settings, self.name, self.default_value())

    @property
    def shown(self) -> str:
        """The default as the README's table writes it."""
        if self._shown is not None:
            return self._shown
        value = self.default
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        if isinstance(value, list | tuple):
            return ", ".join(map(str, value))
        return str(value) if value != "" else "empty"


def _checkpoint_pause() -> float:
    from django.db import connection

    return 0.1 if connection.vendor == "sqlite" else 0.0


class BatchesSettings:
    # --- The engine ---
    CHECKPOINT_SECONDS = Setting(0.5, "longest time between two commits of progress", _seconds)
    CHECKPOINT_PAUSE_SECONDS = Setting(
        _checkpoint_pause,
        "a pause after each checkpoint, so that SQLite's one writer at a time lets the web server's writes in",
        _seconds,
        shown="0.1 on SQLite, else 0",
    )
    MESSAGE_SECONDS = Setting(
        60.0, "how long one message works on a chunk before handing over to a fresh message", _positive_seconds
    )
    LEASE_SECONDS = Setting(
        30.0, "a batch without a checkpoint for this long plus its item time limit is stale", _seconds
    )
    SWEEP_SECONDS = Setting(
        15.0, "how often each worker sweeps for stale batches (and once as it starts)", _positive_seconds
    )
    MAX_RECOVERIES = Setting(8, "recoveries in a row without one checkpoint before a batch is failed", _count)
    SLICE_SECONDS = Setting(
        2.0, "a runner's turn on a chunk while more chunks wait than the pool has threads", _positive_seconds
    )
    WORKER_HEARTBEAT_SECONDS = Setting(
        2.0, "how often each worker process heartbeats and looks for dead workers", _positive_seconds
    )
    WORKER_SILENCE_SECONDS = Setting(
        10.0, "a worker silent this long is declared dead and its chunks handed over", _positive_seconds
    )
    TRANSACTION_GRACE_SECONDS = Setting(
        5.0,
        "a checkpoint's transaction is ended by the database server once its worker is quiet in it this long"
        " past an item's time limit and a checkpoint (a frozen or cut-off worker's locks freed)",
        _seconds,
    )
    STALL_SECONDS = Setting(
        10.0, "a running batch without a checkpoint this long (workers alive) shows as stalled", _seconds
    )
    PROGRESS_LOG_SECONDS = Setting(
        30.0, "a running batch's progress line in the log, at most this often per worker process", _seconds
    )
    # --- Exports (operations whose result is a file) ---
    EXPORT_STORAGE = Setting(
        "default", "the alias in STORAGES that export files (and their parts while they run) are kept in", _text
    )
    EXPORT_EXPIRY_SECONDS = Setting(
        7 * 24 * 3600, "how long an export's file is kept before the sweep deletes it (7 days)", _positive_seconds
    )
    # --- Limits per user ---
    MAX_ACTIVE_PER_USER = Setting(10, "active batches one user may hold at once (0: no limit)", _count)
    STARTS_PER_MINUTE = Setting(20, "new batches one user may start per minute (0: no limit)", _count)
    # --- The JSON API ---
    API_MAX_BODY_BYTES = Setting(64 * 1024, "larger API request bodies get 413", _positive_count)
    API_BAD_TOKEN_LIMIT = Setting(
        20, "unknown API tokens from one client address within the window before it gets 429", _positive_count
    )
    API_BAD_TOKEN_WINDOW_SECONDS = Setting(
        600, "the window those unknown tokens are counted in, and how long the 429 lasts", _positive_seconds
    )
    CLIENT_ADDRESS = Setting(
        "",
        "dotted path to a callable(request) -> the client's address, for proxies the site trusts (empty: REMOTE_ADDR)",
        _text,
    )
    # --- Notifications ---
    SITE_URL = Setting(
        "",
        "the site's address for the links in emails, e.g. https://batches.example.com (empty: each start's request's)",
        _text,
    )
    NOTIFY_ATTEMPTS = Setting(
        8, "sends of a batch's email before it is given up (each failure waits twice as long)", _positive_count
    )
    # --- Operating it ---
    METRICS_ALLOWED_ADDRESSES = Setting(
        ["127.0.0.1", "::1"], "addresses or networks that may read /metrics and /readyz's details", _networks
    )
    METRICS_TOKEN = Setting("", "a bearer token that may read them from anywhere (empty: none)", _text)

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"{name!r} is not a setting of the engine (batches/conf.py lists them).")


def all_settings() -> list[Setting[Any]]:
    """Every setting, in the order declared above."""
    return [value for value in vars(BatchesSettings).values() if isinstance(value, Setting)]


def unknown_settings() -> list[str]:
    """Settings the project sets under the engine's prefix that the engine does not have."""
    known = {setting.name for setting in all_settings()}
    return sorted(name for name in dir(settings) if name.startswith(PREFIX) and name not in known)


def settings_table() -> str:
    """The README's settings table (Markdown), made from the declarations above."""
    rows = ["| setting | default | what |", "| --- | --- | --- |"]
    rows += [f"| `{setting.name}` | {setting.shown} | {setting.why} |" for setting in all_settings()]
    return "\n".join(rows)


batches_settings = BatchesSettings()
