"""Brute force on the login forms: a lockout per account and per client address, with a cool-off."""

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.db.models import F
from django.test import Client

pytestmark = [pytest.mark.django_db, pytest.mark.both_backends]

LOGIN = "/accounts/login/"
LIMIT = settings.AXES_FAILURE_LIMIT
ATTACKER = "203.0.113.7"


def log_in(client: Client, username: str, password: str, address: str = ATTACKER, url: str = LOGIN):
    return client.post(url, {"username": username, "password": password}, REMOTE_ADDR=address)


def signed_in(client: Client) -> bool:
    return client.get("/").status_code == 200


def assert_locked_out(response) -> None:
    assert response.status_code == 429
    assert "Too many failed logins" in response.content.decode()


def test_after_too_many_wrong_passwords_even_the_right_one_is_refused(alice):
    client = Client()
    for _ in range(LIMIT - 1):
        response = log_in(client, "alice", "wrong")
        assert response.status_code == 200 and "didn't match" in response.content.decode()

    assert_locked_out(log_in(client, "alice", "wrong"))
    assert_locked_out(log_in(client, "alice", "pw-alice"))
    assert not signed_in(client)
    admin = Client()
    assert_locked_out(log_in(admin, "alice", "pw-alice", url="/admin/login/"))


def test_the_lock_is_per_account_whatever_the_address(alice):
    for n in range(LIMIT):
        log_in(Client(), "alice", "wrong", address=f"198.51.100.{n + 1}")

    assert_locked_out(log_in(Client(), "alice", "pw-alice", address="192.0.2.99"))


def test_the_lock_is_per_address_whatever_the_account(alice):
    for n in range(LIMIT):
        log_in(Client(), f"guess{n}", "wrong")

    assert_locked_out(log_in(Client(), "alice", "pw-alice"))
    elsewhere = Client()
    assert log_in(elsewhere, "alice", "pw-alice", address="192.0.2.99").status_code == 302
    assert signed_in(elsewhere)


def test_the_login_page_says_when_logins_pause():
    page = Client().get(LOGIN).content.decode()
    minutes = round(settings.AXES_COOLOFF_TIME.total_seconds() / 60)
    assert f"After {LIMIT} failed attempts for one account, or from one address" in page
    assert f"logins are paused for {minutes} minutes" in page


def test_after_the_cool_off_the_right_password_works_again(alice):
    for _ in range(LIMIT):
        log_in(Client(), "alice", "wrong")
    assert_locked_out(log_in(Client(), "alice", "pw-alice"))

    # Travel past the cool-off: the recorded failures age instead of the test sleeping.
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - settings.AXES_COOLOFF_TIME - timedelta(seconds=1))

    client = Client()
    assert log_in(client, "alice", "pw-alice").status_code == 302
    assert signed_in(client)


def test_a_successful_login_forgives_the_owners_own_typos(alice):
    client = Client()
    for _ in range(LIMIT - 1):
        log_in(client, "alice", "wrong")
    assert log_in(client, "alice", "pw-alice").status_code == 302
    client.post("/accounts/logout/")

    for _ in range(LIMIT - 1):
        assert log_in(client, "alice", "wrong").status_code == 200
    assert log_in(client, "alice", "pw-alice").status_code == 302


def test_an_attacker_logging_into_their_own_account_does_not_reset_the_count_against_another(alice, make_user):
    make_user("mallory")
    attacker = Client()
    for _ in range(LIMIT - 1):
        log_in(attacker, "alice", "wrong")
    assert log_in(attacker, "mallory", "pw-mallory").status_code == 302
    attacker.post("/accounts/logout/")

    log_in(attacker, "alice", "wrong")

    assert_locked_out(log_in(Client(), "alice", "pw-alice", address="192.0.2.99"))


def test_behind_a_proxy_the_address_it_saw_counts_not_what_the_client_wrote(alice, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    proxy = "10.0.0.2"

    def via_proxy(username: str, password: str, forwarded_for: str):
        data = {"username": username, "password": password}
        return Client().post(LOGIN, data, REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR=forwarded_for)

    for n in range(LIMIT):  # the attacker writes a new address each time; the proxy appends the real one
        via_proxy(f"guess{n}", "wrong", f"192.0.2.{n}, {ATTACKER}")

    assert_locked_out(via_proxy("alice", "pw-alice", f"192.0.2.200, {ATTACKER}"))
    assert via_proxy("alice", "pw-alice", "198.51.100.5").status_code == 302  # another client, same proxy
