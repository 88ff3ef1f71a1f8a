"""Staff who are not superusers: tokens only for themselves, and in the admin only the batches the app shows them."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from batches.models import ApiToken, Batch, BatchStatus
from batches.tokens import create_token

TOKEN_ADD = reverse("admin:batches_apitoken_add")
TOKEN_LIST = reverse("admin:batches_apitoken_changelist")
BATCH_LIST = reverse("admin:batches_batch_changelist")
FAILURE_LIST = reverse("admin:batches_itemfailure_changelist")
USER_LIST = reverse("admin:auth_user_changelist")
SECRET = re.compile(r"bt_[A-Za-z0-9_-]{40,}")


def staff_client(make_user, username: str, *codenames: str, may_reissue: bool = False) -> tuple[object, Client]:
    user = make_user(username, may_reissue=may_reissue, is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="batches", codename__in=codenames))
    client = Client()
    client.force_login(user)
    return user, client


@pytest.fixture
def root(make_user):
    return make_user("root", is_staff=True, is_superuser=True)


@pytest.fixture
def mallory(make_user):
    """Staff, not a superuser, allowed to add, view and change API tokens."""
    return staff_client(make_user, "mallory", "add_apitoken", "view_apitoken", "change_apitoken")


def the_secret(response) -> str:
    found = SECRET.findall(response.content.decode())
    assert len(found) == 1, response.content.decode()
    return found[0]


def api_as(raw: str) -> int:
    return Client(HTTP_AUTHORIZATION=f"Bearer {raw}").get("/api/batches").status_code


def test_staff_cannot_create_a_token_for_the_superuser(mallory, root):
    user, client = mallory
    form = client.get(TOKEN_ADD).content.decode()
    assert 'name="name"' in form and 'name="user"' not in form  # nobody to choose

    response = client.post(TOKEN_ADD, {"user": root.pk, "name": "forged"})

    assert response.status_code == 200
    assert not ApiToken.objects.filter(user=root).exists()
    token = ApiToken.objects.get(name="forged")
    assert token.user == user  # the forged user id was ignored: the token is the requester's own
    raw = the_secret(response)
    assert raw.startswith(token.prefix) and api_as(raw) == 200


def test_the_new_secret_is_shown_once_in_the_page_and_never_in_the_messages_cookie(mallory):
    _, client = mallory
    response = client.post(TOKEN_ADD, {"name": "nightly sync"})

    raw = the_secret(response)
    assert "no-store" in response["Cache-Control"]
    assert "messages" not in response.cookies or raw not in response.cookies["messages"].value
    listing = client.get(TOKEN_LIST)
    assert "nightly sync" in listing.content.decode() and raw not in listing.content.decode()
    assert raw not in (listing.cookies.get("messages").value if listing.cookies.get("messages") else "")


def test_a_superuser_may_create_a_token_for_someone_else(client, root, make_user):
    alice = make_user("alice")
    client.force_login(root)
    assert 'name="user"' in client.get(TOKEN_ADD).content.decode()

    response = client.post(TOKEN_ADD, {"user": alice.pk, "name": "for alice"})

    token = ApiToken.objects.get(name="for alice")
    assert token.user == alice
    raw = the_secret(response)
    assert "alice" in response.content.decode() and api_as(raw) == 200


def test_staff_cannot_see_change_or_revoke_other_peoples_tokens(mallory, root):
    _, client = mallory
    theirs, raw = create_token(root, "root's deploy key")
    mine, _ = create_token(mallory[0], "mine")

    listing = client.get(TOKEN_LIST).content.decode()
    assert "mine" in listing and "deploy key" not in listing and theirs.prefix not in listing
    assert client.get(TOKEN_LIST + "?q=root").content.decode().count(theirs.prefix) == 0

    change = client.get(reverse("admin:batches_apitoken_change", args=[theirs.pk]))
    assert change.status_code == 302 and "deploy key" not in client.get(change.url).content.decode()
    assert client.get(reverse("admin:batches_apitoken_history", args=[theirs.pk])).status_code == 302

    client.post(reverse("admin:batches_apitoken_change", args=[mine.pk]), {"user": root.pk, "name": "mine"})
    assert ApiToken.objects.get(pk=mine.pk).user == mallory[0]  # nor can one hand one's own token over

    client.post(TOKEN_LIST, {"action": "revoke", "_selected_action": [theirs.pk, mine.pk]})

    theirs.refresh_from_db()
    mine.refresh_from_db()
    assert theirs.revoked_at is None and api_as(raw) == 200
    assert mine.revoked_at is not None


def test_the_token_admin_says_a_password_change_revokes_tokens(mallory):
    _, client = mallory
    token, _ = create_token(mallory[0], "mine")
    for url in (TOKEN_LIST, TOKEN_ADD, reverse("admin:batches_apitoken_change", args=[token.pk])):
        assert "revoked when" in client.get(url).content.decode(), url


@pytest.fixture
def alices_batch(make_user, make_finished_batch):
    return make_finished_batch("Alice's gala", tickets=3, failed=2, created_by=make_user("alice"))


def test_the_admin_shows_each_staff_user_only_the_batches_the_app_shows_them(make_user, alices_batch):
    viewer, client = staff_client(make_user, "viewer", "view_batch", "view_itemfailure")
    own = Batch.objects.create(operation="reissue_tickets", scope_key="event:own", scope_label="Own", created_by=viewer)
    assert client.get(f"/batches/{alices_batch.pk}/").status_code == 404  # the app's answer

    listing = client.get(BATCH_LIST).content.decode()
    assert "Own" in listing
    assert "Alice&#x27;s gala" not in listing and "alice" not in listing  # neither in the rows nor the filter
    change = client.get(reverse("admin:batches_batch_change", args=[alices_batch.pk]))
    assert change.status_code == 302 and "blocked" not in client.get(change.url).content.decode()
    assert client.get(reverse("admin:batches_batch_change", args=[own.pk])).status_code == 200

    failures = client.get(FAILURE_LIST).content.decode()
    assert "blocked" not in failures
    assert "blocked" not in client.get(FAILURE_LIST + f"?batch__id__exact={alices_batch.pk}").content.decode()
    failure = alices_batch.failures.get()
    assert client.get(reverse("admin:batches_itemfailure_change", args=[failure.pk])).status_code == 302

    # Who may reissue tickets sees every reissue batch, in the app and in the admin alike.
    _, operator = staff_client(make_user, "operator", "view_batch", "view_itemfailure", may_reissue=True)
    assert operator.get(f"/batches/{alices_batch.pk}/").status_code == 200
    listing = operator.get(BATCH_LIST).content.decode()
    assert "Alice&#x27;s gala" in listing and "Own" in listing
    assert "blocked" in operator.get(FAILURE_LIST).content.decode()


def test_admin_actions_leave_batches_the_user_may_not_see_alone(make_user, alices_batch):
    alice = alices_batch.created_by
    running = Batch.objects.create(
        operation="reissue_tickets", scope_key="event:running", status=BatchStatus.RUNNING, created_by=alice
    )
    stale = Batch.objects.create(
        operation="reissue_tickets",
        scope_key="event:stale",
        status=BatchStatus.QUEUED,
        lease_expires_at="2020-01-01T00:00Z",
        created_by=alice,
    )
    _, client = staff_client(make_user, "viewer", "view_batch")

    for action, batch in [("cancel", running), ("retry_failed_items", alices_batch), ("resume_stale", stale)]:
        response = client.post(BATCH_LIST, {"action": action, "_selected_action": [batch.pk]})
        assert response.status_code in (200, 302), action

    running.refresh_from_db()
    stale.refresh_from_db()
    assert running.status == BatchStatus.RUNNING
    assert stale.recoveries == 0 and stale.lease_expires_at.year == 2020
    assert not Batch.objects.filter(retry_of=alices_batch).exists()


@pytest.fixture
def user_manager(make_user):
    """Staff, not a superuser, allowed to view and change users (an office manager, say)."""
    user = make_user("manager", may_reissue=False, is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_user", "change_user", "delete_user"]))
    client = Client()
    client.force_login(user)
    return user, client


def change_user_form(user) -> dict[str, object]:
    return {
        "username": user.username,
        "is_active": "on",
        "is_staff": "on",
        "is_superuser": "on",
        "user_permissions": list(Permission.objects.values_list("pk", flat=True)),  # every right there is
        "date_joined_0": "2030-01-01",
        "date_joined_1": "10:00:00",
    }


def test_staff_who_may_change_users_cannot_give_rights_to_anyone_nor_touch_their_own_account(user_manager, make_user):
    manager, client = user_manager
    clerk = make_user("clerk", may_reissue=False)

    own = client.post(reverse("admin:auth_user_change", args=[manager.pk]), change_user_form(manager))
    other = client.post(reverse("admin:auth_user_change", args=[clerk.pk]), change_user_form(clerk))

    assert own.status_code == 403
    assert other.status_code == 302, other.content.decode()[:2000]
    for user in (manager, clerk):
        user.refresh_from_db()
        assert not user.is_superuser
    assert not clerk.is_staff and not clerk.user_permissions.exists()
    granted = set(manager.user_permissions.values_list("codename", flat=True))
    assert granted == {"view_user", "change_user", "delete_user"}


@pytest.mark.parametrize("target", ["root", "staff"])
def test_staff_who_may_change_users_cannot_take_over_or_delete_another_staff_account(
    user_manager, root, make_user, target
):
    _, client = user_manager
    victim = root if target == "root" else make_user("colleague", is_staff=True)
    change = client.post(reverse("admin:auth_user_change", args=[victim.pk]), change_user_form(victim))
    password = {"password1": "Taken-0ver-now", "password2": "Taken-0ver-now"}
    take_over = client.post(reverse("admin:auth_user_password_change", args=[victim.pk]), password)
    delete = client.post(reverse("admin:auth_user_delete", args=[victim.pk]), {"post": "yes"})

    assert (change.status_code, take_over.status_code, delete.status_code) == (403, 403, 403)
    victim.refresh_from_db()
    assert victim.check_password(f"pw-{victim.username}") and victim.is_staff


def test_a_bulk_delete_that_includes_a_staff_account_is_refused_whole(user_manager, make_user):
    _, client = user_manager
    clerk, colleague = make_user("clerk", may_reissue=False), make_user("colleague", is_staff=True)
    users = get_user_model().objects

    response = client.post(
        USER_LIST, {"action": "delete_selected", "_selected_action": [clerk.pk, colleague.pk], "post": "yes"}
    )

    assert response.status_code == 403
    assert users.filter(pk__in=[clerk.pk, colleague.pk]).count() == 2

    response = client.post(USER_LIST, {"action": "delete_selected", "_selected_action": [clerk.pk], "post": "yes"})
    assert response.status_code == 302
    assert not users.filter(pk=clerk.pk).exists() and users.filter(pk=colleague.pk).exists()


def test_staff_who_may_change_users_manage_ordinary_accounts_and_their_own_password(user_manager, make_user):
    manager, client = user_manager
    clerk = make_user("clerk", may_reissue=False)
    new = {"password1": "Fresh-start-42", "password2": "Fresh-start-42"}

    reset = client.post(reverse("admin:auth_user_password_change", args=[clerk.pk]), new)
    own = client.post(
        reverse("admin:password_change"),
        {"old_password": "pw-manager", "new_password1": "Mine-and-only-7", "new_password2": "Mine-and-only-7"},
    )

    assert (reset.status_code, own.status_code) == (302, 302)
    clerk.refresh_from_db()
    manager.refresh_from_db()
    assert clerk.check_password("Fresh-start-42") and manager.check_password("Mine-and-only-7")


def test_a_superuser_manages_staff_accounts(root, make_user):
    colleague = make_user("colleague", is_staff=True)
    client = Client()
    client.force_login(root)
    new = {"password1": "Reset-by-root-9", "password2": "Reset-by-root-9"}

    assert client.post(reverse("admin:auth_user_password_change", args=[colleague.pk]), new).status_code == 302
    colleague.refresh_from_db()
    assert colleague.check_password("Reset-by-root-9")
    response = client.post(USER_LIST, {"action": "delete_selected", "_selected_action": [colleague.pk], "post": "yes"})
    assert response.status_code == 302
    assert not get_user_model().objects.filter(pk=colleague.pk).exists()


def test_a_superuser_still_grants_rights(root, make_user):
    someone = make_user("someone", may_reissue=False)
    client = Client()
    client.force_login(root)

    response = client.post(reverse("admin:auth_user_change", args=[someone.pk]), change_user_form(someone))

    assert response.status_code == 302
    someone.refresh_from_db()
    assert someone.is_superuser and someone.is_staff


@pytest.mark.parametrize("forged", ["x", "99999999999999999999999"])
@pytest.mark.parametrize(
    "changelist,action",
    [
        (BATCH_LIST, "cancel"),
        (BATCH_LIST, "retry_failed_items"),
        (BATCH_LIST, "resume_stale"),
        (TOKEN_LIST, "revoke"),
        (USER_LIST, "delete_selected"),
    ],
)
def test_an_action_on_a_forged_selection_says_so_and_does_nothing(root, alices_batch, changelist, action, forged):
    client = Client()
    client.force_login(root)
    running = Batch.objects.create(operation="reissue_tickets", scope_key="event:running", status=BatchStatus.RUNNING)

    response = client.post(changelist, {"action": action, "_selected_action": [str(running.pk), forged]}, follow=True)

    assert response.status_code == 200
    assert (
        "Nothing was done: the selection holds something that is not an item of this list." in response.content.decode()
    )
    running.refresh_from_db()
    assert running.status == BatchStatus.RUNNING
    assert get_user_model().objects.filter(pk=root.pk).exists()
