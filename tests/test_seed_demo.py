"""The demo users: random passwords wherever seed_demo runs, demo / demo only for `make run`."""

import re
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client

pytestmark = [pytest.mark.django_db, pytest.mark.both_backends]


def seed(*flags: str) -> str:
    out = StringIO()
    call_command("seed_demo", "--tickets", "3", *flags, stdout=out)
    return out.getvalue()


def can_log_in(username: str, password: str) -> bool:
    response = Client().post("/accounts/login/", {"username": username, "password": password})
    return response.status_code == 302


@pytest.mark.parametrize("flags", [("--random-passwords",), ()])
def test_seeded_users_get_random_passwords_printed_once_and_never_demo(flags):
    output = seed(*flags)

    passwords = dict(re.findall(r"Created user (\w+) with password: (\S+)", output))
    assert set(passwords) == {"demo", "colleague"}
    assert len(set(passwords.values())) == 2 and "demo" not in passwords.values()
    assert all(len(password) >= 16 for password in passwords.values())
    assert can_log_in("demo", passwords["demo"]) and can_log_in("colleague", passwords["colleague"])
    assert not can_log_in("demo", "demo") and not can_log_in("colleague", "demo")


def test_seeding_again_changes_no_password_and_prints_none():
    first = dict(re.findall(r"Created user (\w+) with password: (\S+)", seed("--random-passwords")))

    again = seed("--random-passwords")

    assert "password:" not in again and "Existing users keep their passwords" in again
    assert can_log_in("demo", first["demo"])


def test_make_run_asks_for_the_known_demo_logins():
    seed("--demo-passwords")
    assert can_log_in("demo", "demo") and can_log_in("colleague", "demo")
