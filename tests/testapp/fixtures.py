"""Fixtures of the test app (a pytest plugin, conftest.py's `pytest_plugins`): ledgers of records and
people who may mark them."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from .models import Ledger, Record


@pytest.fixture
def make_ledger(db) -> Callable[..., Ledger]:
    def make(records: int, name: str | None = None) -> Ledger:
        ledger = Ledger.objects.create(name=name or f"Ledger {Ledger.objects.count() + 1}")
        Record.objects.bulk_create([Record(ledger=ledger, number=n) for n in range(1, records + 1)], batch_size=2000)
        return ledger

    return make


@pytest.fixture
def ledger(make_ledger) -> Ledger:
    return make_ledger(records=20, name="Accounts")


@pytest.fixture
def make_clerk(db) -> Callable[..., object]:
    """A user; with `may_mark` (the default), one who may mark every ledger's records."""

    def make(username: str, *, may_mark: bool = True, **extra: object) -> object:
        user = get_user_model().objects.create_user(username, password="pw-" + username, **extra)
        if may_mark:
            user.user_permissions.add(Permission.objects.get(codename="mark_records"))
        return user

    return make


@pytest.fixture
def quick_records(settings) -> None:
    """Records that take no time, one in seven failing: in-process runs with failures to show."""
    settings.RECORDS_ITEM_DELAY_MS = 0
    settings.RECORDS_FAIL_EVERY = 7
