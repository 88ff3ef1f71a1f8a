"""The engine's system checks (batches/checks.py): each fails on its misconfiguration, says the line to
add, and passes on this site's configuration. And its apps' migrations, whatever the host's DEFAULT_AUTO_FIELD."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dramatiq
import pytest
from django.contrib.auth import get_user_model
from django.core.checks import run_checks
from django.core.management import call_command
from django.db import connection
from django.db.models import QuerySet
from django.db.utils import ConnectionHandler
from django.test import modify_settings
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import Retries

from batches import checks, operations
from batches.engine.middleware import WorkerLifecycle
from tests.support import BASE_DIR, subprocess_env


def batches_messages(**kwargs: Any) -> list[Any]:
    return [message for message in run_checks(tags=[checks.TAG], **kwargs) if message.id.startswith("batches.")]


def ids(messages: list[Any]) -> list[str]:
    return [message.id for message in messages]


@pytest.mark.both_backends
def test_this_sites_configuration_passes_every_check():
    assert batches_messages() == []
    call_command("check", fail_level="WARNING")  # raises SystemCheckError on any message


def test_postgres_passes_the_deploy_check_and_sqlite_is_warned_of(monkeypatch):
    assert connection.vendor == "postgresql"
    assert batches_messages(include_deployment_checks=True) == []

    monkeypatch.setattr(checks, "engine_connection", lambda: database("django.db.backends.sqlite3", IMMEDIATE))
    assert ids(batches_messages(include_deployment_checks=True)) == ["batches.W003"]


def test_a_host_whose_default_auto_field_is_autofield_gets_no_migrations(tmp_path):
    (tmp_path / "autofield_host.py").write_text(
        'from tests.settings import *  # noqa: F403\n\nDEFAULT_AUTO_FIELD = "django.db.models.AutoField"\n'
    )
    env = subprocess_env(DJANGO_SETTINGS_MODULE="autofield_host", PYTHONPATH=f"{tmp_path}:{BASE_DIR}")
    apps = ["batches", "throttle", "demo"]
    run = subprocess.run(
        [sys.executable, "manage.py", "makemigrations", "--check", "--dry-run", *apps],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "No changes detected" in run.stdout


# --- Dramatiq ------------------------------------------------------------------------------------


def manage_check(tmp_path: Path, settings_lines: str) -> subprocess.CompletedProcess[str]:
    """`manage.py check` in a process of its own, on this site's test settings and `settings_lines`."""
    (tmp_path / "host_settings.py").write_text("from tests.settings import *  # noqa: F403\n\n" + settings_lines)
    env = subprocess_env(DJANGO_SETTINGS_MODULE="host_settings", PYTHONPATH=f"{tmp_path}:{BASE_DIR}")
    return subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120
    )


def test_a_broker_without_the_worker_middleware_fails_check_with_the_line_to_add(tmp_path):
    run = manage_check(
        tmp_path,
        'DRAMATIQ_BROKER = {**DRAMATIQ_BROKER, "MIDDLEWARE": [\n'
        '    path for path in DRAMATIQ_BROKER["MIDDLEWARE"] if path != "batches.engine.middleware.WorkerLifecycle"\n'
        "]}\n",
    )
    assert run.returncode != 0
    assert "batches.E002" in run.stderr
    assert 'Add "batches.engine.middleware.WorkerLifecycle" to DRAMATIQ_BROKER["MIDDLEWARE"]' in run.stderr


def test_without_django_dramatiq_check_says_to_install_it():
    with modify_settings(INSTALLED_APPS={"remove": ["django_dramatiq"]}):
        (message,) = batches_messages()
    assert message.id == "batches.E001"
    assert message.hint == 'Add "django_dramatiq" to INSTALLED_APPS, after "batches".'


def test_the_worker_middleware_is_looked_for_on_the_broker_dramatiq_sends_to(monkeypatch):
    without = StubBroker(middleware=[Retries()])
    monkeypatch.setattr(dramatiq, "get_broker", lambda: without)
    assert ids(batches_messages()) == ["batches.E002"]

    without.add_middleware(WorkerLifecycle())  # added in code rather than in DRAMATIQ_BROKER: as good
    assert batches_messages() == []


# --- The database --------------------------------------------------------------------------------

IMMEDIATE = {"transaction_mode": "IMMEDIATE"}


def database(engine: str, options: Mapping[str, str] | None = None) -> Any:
    """A connection to a database configured so (none is opened)."""
    return ConnectionHandler({"default": {"ENGINE": engine, "NAME": ":memory:", "OPTIONS": dict(options or {})}})[
        "default"
    ]


def test_a_database_the_guard_does_not_support_fails_check(monkeypatch):
    monkeypatch.setattr(checks, "engine_connection", lambda: database("django.db.backends.dummy"))
    (message,) = batches_messages()
    assert message.id == "batches.E003"
    assert 'DATABASES["default"]["ENGINE"] = "django.db.backends.postgresql"' in message.hint


def test_sqlite_must_take_its_write_lock_at_begin(monkeypatch):
    monkeypatch.setattr(checks, "engine_connection", lambda: database("django.db.backends.sqlite3"))
    (message,) = batches_messages()
    assert message.id == "batches.E004"
    assert message.hint == 'Set DATABASES["default"]["OPTIONS"]["transaction_mode"] = "IMMEDIATE" in your settings.'

    monkeypatch.setattr(checks, "engine_connection", lambda: database("django.db.backends.sqlite3", IMMEDIATE))
    assert batches_messages() == []


# --- The settings --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "must_be"),
    [
        ("BATCHES_CHECKPOINT_SECONDS", "0.5", "a number of seconds, 0 or more"),
        ("BATCHES_LEASE_SECONDS", -1, "a number of seconds, 0 or more"),
        ("BATCHES_WORKER_HEARTBEAT_SECONDS", 0, "a number of seconds, more than 0"),
        ("BATCHES_MAX_ACTIVE_PER_USER", 2.5, "a whole number, 0 or more"),
        ("BATCHES_STARTS_PER_MINUTE", True, "a whole number, 0 or more"),
        ("BATCHES_METRICS_ALLOWED_ADDRESSES", "127.0.0.1", "a list of addresses or networks"),
        ("BATCHES_METRICS_ALLOWED_ADDRESSES", ["10.0.0.0/8", "intranet"], "'intranet' is neither"),
        ("BATCHES_METRICS_TOKEN", None, "a string"),
    ],
)
def test_a_setting_of_the_wrong_kind_fails_check_naming_it(settings, name, value, must_be):
    setattr(settings, name, value)
    (message,) = batches_messages()
    assert message.id == "batches.E005"
    assert message.msg.startswith(f"{name} is {value!r}: it must be ") and must_be in message.msg
    assert message.hint.startswith(f"Set {name} = ")


def test_the_hint_gives_the_default_as_the_line_to_write(settings):
    settings.BATCHES_SWEEP_SECONDS = "15"
    (message,) = batches_messages()
    assert message.hint == "Set BATCHES_SWEEP_SECONDS = 15.0 (its default) in your settings, or leave it out."


def test_workers_must_not_be_declared_dead_between_two_heartbeats(settings):
    settings.BATCHES_WORKER_HEARTBEAT_SECONDS, settings.BATCHES_WORKER_SILENCE_SECONDS = 5, 5
    (message,) = batches_messages()
    assert message.id == "batches.E006"
    assert message.hint == "Set BATCHES_WORKER_SILENCE_SECONDS = 25 in your settings."


def test_a_misspelt_setting_is_named_with_the_one_meant(settings):
    settings.BATCHES_CHECKPOINT_SECOND = 2
    (message,) = batches_messages()
    assert message.id == "batches.W002"
    assert message.hint.startswith("Did you mean BATCHES_CHECKPOINT_SECONDS?")


# --- The keyset walk -----------------------------------------------------------------------------


class _OverUsers(operations.Operation):
    """A test-only operation over auth's users (not the demo's models)."""

    name = "_check_over_users"
    label = "Over users"

    class Params(operations.Operation.Params):
        staff: bool
        last_name: str

    def items(self, params: Mapping[str, Any]) -> QuerySet[Any]:
        return get_user_model().objects.filter(is_staff=params["staff"], last_name=params["last_name"])


class _OneUser(_OverUsers):
    name = "_check_one_user"

    class Params(operations.Operation.Params):
        username: str

    def items(self, params: Mapping[str, Any]) -> QuerySet[Any]:
        return get_user_model().objects.filter(username=params["username"])


class _AfterALookup(_OverUsers):
    name = "_check_after_a_lookup"

    class Params(operations.Operation.Params):
        user_id: operations.ObjectId

    def items(self, params: Mapping[str, Any]) -> QuerySet[Any]:
        user = get_user_model().objects.get(pk=params["user_id"])  # a query: nothing to see without one
        return get_user_model().objects.filter(last_name=user.last_name)


@pytest.fixture
def registered(monkeypatch):
    def register(op: type[operations.Operation]) -> None:
        monkeypatch.setitem(operations._registry, op.name, op())

    return register


def test_items_filtered_on_columns_no_index_serves_in_key_order_are_warned_of(registered):
    registered(_OverUsers)
    (message,) = batches_messages()
    assert message.id == "batches.W001" and message.obj is _OverUsers
    assert "auth.User" in message.msg and "is_staff, last_name" in message.msg
    assert message.hint == (
        'Add models.Index(fields=["is_staff", "last_name", "id"], name="user_is_staff_last_name_keyset") '
        "to User.Meta.indexes, then makemigrations."
    )


def test_the_demos_keyset_index_a_unique_scope_and_an_unseeable_items_pass(registered):
    assert "reissue_tickets" in operations._registry  # filtered on the event; Ticket has (event, id)
    for op in (_OneUser, _AfterALookup):
        registered(op)
    assert batches_messages() == []
