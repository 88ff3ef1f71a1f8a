"""Who sees what is one rule: the batch page, the lists, the API, the CLI, the reports and the admin
show a user the same batches, also for an operation whose permission depends on the scope."""

from __future__ import annotations

import io
import itertools
import json
import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser, Group, Permission
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.models import Q
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from batches import operations, selectors
from batches.models import Batch, BatchStatus, ItemFailure
from batches.operations import ObjectId, Operation
from tests.support import HTMX
from tests.test_api import api_client

pytestmark = pytest.mark.django_db


class RelabelRecords(Operation):
    """Scope-dependent: a user may act on a ledger's records when they belong to the group named
    after its scope ("ledger:7"), and sees the batches of those scopes."""

    name, label = "relabel_records", "Relabel records"
    items_name = "records"

    class Params(Operation.Params):
        ledger_id: ObjectId

    def scope(self, params):
        return f"ledger:{params['ledger_id']}"

    def may_act(self, user, params):
        return user.groups.filter(name=self.scope(params)).exists()

    def may_see(self, user):
        return Q(scope_key__in=user.groups.values("name"))

    def items(self, params):
        raise NotImplementedError

    def handle(self, item, ctx):
        raise NotImplementedError


class AuditRecords(RelabelRecords):
    """Filters on params and on who started a batch: the test operation's permission shows all its batches;
    otherwise those of the ledgers one stewards and those one's group mates started."""

    name, label = "audit_records", "Audit records"

    def may_see(self, user):
        if user.has_perm("testapp.mark_records"):
            return True
        names = user.groups.filter(name__startswith="ledger:").values_list("name", flat=True)
        stewarded = [int(name.removeprefix("ledger:")) for name in names]
        mates = get_user_model().objects.filter(groups__in=user.groups.all())
        return Q(params__ledger_id__in=stewarded) | Q(created_by__in=mates)


@pytest.fixture
def scoped_operations(monkeypatch):
    for op in (RelabelRecords(), AuditRecords()):
        monkeypatch.setitem(operations._registry, op.name, op)


def steward(user, *ledgers) -> None:
    user.groups.add(*(Group.objects.get_or_create(name=f"ledger:{ledger.pk}")[0] for ledger in ledgers))


def finished(operation: str, ledger, created_by, *, failed_number: int = 3) -> Batch:
    batch = Batch.objects.create(
        operation=operation,
        scope_key=f"ledger:{ledger.pk}",
        params={"ledger_id": ledger.pk},
        scope_label=ledger.name,
        status=BatchStatus.FINISHED,
        total=10,
        done_count=9,
        failed_count=1,
        created_by=created_by,
    )
    ItemFailure.objects.create(
        batch=batch, item_key=str(failed_number), item_pk=failed_number, error="Record is refused."
    )
    return batch


ROW = re.compile(r'<tr data-batch="(\d+)">')
ADMIN_ROW = re.compile(r'href="/admin/batches/batch/(\d+)/change/')


def test_a_scope_dependent_operation_shows_the_same_batches_everywhere(scoped_operations, make_clerk, make_ledger):
    first, second = make_ledger(records=10, name="First"), make_ledger(records=10, name="Second")
    alice = make_clerk("alice", may_mark=False, is_staff=True)  # may act on the first ledger only
    alice.user_permissions.add(*Permission.objects.filter(codename__in=["view_batch", "view_itemfailure"]))
    steward(alice, first)
    bob = make_clerk("bob", may_mark=False)  # started both, on both ledgers
    steward(bob, first, second)
    seen = finished("relabel_records", first, bob)
    unseen = finished("relabel_records", second, bob)
    op = operations.get_operation("relabel_records")
    assert op.may_act(alice, seen.params) and not op.may_act(alice, unseen.params)

    web = Client()
    web.force_login(alice)
    api = api_client(alice)

    # Every list: the history page, the API's, the CLI's, the admin's.
    assert ROW.findall(web.get("/batches/").content.decode()) == [str(seen.pk)]
    assert [row["id"] for row in api.get("/api/batches").json()["results"]] == [seen.pk]
    out = io.StringIO()
    call_command("batches", "list", "--user", "alice", "--json", stdout=out)
    assert [row["id"] for row in json.loads(out.getvalue())] == [seen.pk]
    admin_list = web.get(reverse("admin:batches_batch_changelist")).content.decode()
    assert sorted(set(ADMIN_ROW.findall(admin_list))) == [str(seen.pk)]
    admin_failures = web.get(reverse("admin:batches_itemfailure_changelist")).content.decode()
    failure_rows = set(re.findall(r'href="/admin/batches/itemfailure/(\d+)/change/', admin_failures))
    assert failure_rows == {str(seen.failures.get().pk)}

    # Each page of the batch shown: the web's, the API's, the report, the CLI's, the admin's.
    for url in (f"/batches/{seen.pk}/", f"/batches/{seen.pk}/progress/", f"/batches/{seen.pk}/failures/"):
        assert web.get(url).status_code == 200, url
    assert web.get(f"/batches/{seen.pk}/cancel/").status_code == 200
    for url in (f"/api/batches/{seen.pk}", f"/api/batches/{seen.pk}/failures", f"/api/batches/{seen.pk}/report.csv"):
        assert api.get(url).status_code == 200, url
    out = io.StringIO()
    call_command("batches", "follow", str(seen.pk), "--user", "alice", "--json", stdout=out, stderr=io.StringIO())
    assert json.loads(out.getvalue())["id"] == seen.pk
    assert web.get(reverse("admin:batches_batch_change", args=[seen.pk])).status_code == 200

    # The other one answers as a batch that does not exist, everywhere.
    missing = Batch.objects.order_by("pk").last().pk + 1000
    for pk in (unseen.pk, missing):
        for page in ("", "progress/", "failures/", "cancel/"):
            assert web.get(f"/batches/{pk}/{page}").status_code == 404, page
        for url in (f"/batches/{pk}/cancel/", f"/batches/{pk}/retry-failed/"):
            assert web.post(url).status_code == 404, url
        for url in (f"/api/batches/{pk}", f"/api/batches/{pk}/failures", f"/api/batches/{pk}/report.csv"):
            response = api.get(url)
            assert (response.status_code, response.json()["error"]["code"]) == (404, "not_found"), url
        for url in (f"/api/batches/{pk}/cancel", f"/api/batches/{pk}/retry-failed"):
            assert api.post(url, content_type="application/json").status_code == 404, url
        for command in (["follow", str(pk), "--user", "alice"], ["cancel", str(pk), "--user", "alice"]):
            with pytest.raises(CommandError, match=f"No batch {pk}") as refused:
                call_command("batches", *command, stdout=io.StringIO())
            assert refused.value.returncode == 3
    # The admin's own "does not exist": the same answer for both.
    hidden, absent = (web.get(reverse("admin:batches_batch_change", args=[pk])) for pk in (unseen.pk, missing))
    assert (hidden.status_code, hidden.url) == (absent.status_code, absent.url) == (302, reverse("admin:index"))
    unseen.refresh_from_db()
    assert unseen.status == BatchStatus.FINISHED and not Batch.objects.filter(retry_of=unseen).exists()


@pytest.fixture
def world(scoped_operations, make_clerk, make_ledger):
    """Users with different rights, and batches of every kind: three ledgers, four operations (one
    no longer installed), started by each user and by nobody (a deleted account)."""
    ledgers = [make_ledger(records=1, name=name) for name in ("E1", "E2", "E3")]
    root = make_clerk("root", may_mark=False, is_superuser=True)
    alice = make_clerk("alice", may_mark=False)
    bob = make_clerk("bob", may_mark=False)
    carol = make_clerk("carol")  # the test operation's permission
    dave = make_clerk("dave", may_mark=False)  # no right at all
    steward(alice, ledgers[0])
    steward(bob, ledgers[0], ledgers[1])
    users = [root, alice, bob, carol, dave]
    batches = [
        finished(operation, ledger, creator)
        for operation, ledger, creator in itertools.product(
            ["mark_records", "relabel_records", "audit_records", "uninstalled_op"], ledgers, [*users[1:], None]
        )
    ]
    return [AnonymousUser(), *users], batches


def expected(user, batch: Batch) -> bool:
    """The rule as the operations above state it, written out by hand."""
    if not user.is_authenticated:
        return False
    if user.is_superuser or batch.created_by_id == user.pk:
        return True
    groups = set(user.groups.values_list("name", flat=True))
    mates = set(get_user_model().objects.filter(groups__name__in=groups).values_list("pk", flat=True))
    return {
        "mark_records": user.has_perm("testapp.mark_records"),
        "relabel_records": batch.scope_key in groups,
        "audit_records": user.has_perm("testapp.mark_records")
        or batch.scope_key in groups
        or batch.created_by_id in mates,
    }.get(batch.operation, False)


def test_may_view_is_the_list_asked_of_one_batch_for_every_user_and_batch(world):
    users, batches = world
    for user in users:
        listed = list(selectors.visible_batches(user).values_list("pk", flat=True))
        assert len(listed) == len(set(listed)), f"a batch is listed twice for {user}"
        shown = {batch.pk for batch in batches if selectors.may_view(user, batch)}
        assert set(listed) == shown, user
        assert shown == {batch.pk for batch in batches if expected(user, batch)}, user
        assert {pk for pk in shown if selectors.visible_batch(user, pk)} == shown, user
        assert not any(selectors.visible_batch(user, batch.pk) for batch in batches if batch.pk not in shown), user
    sizes = {str(user): len(selectors.visible_batches(user)) for user in users}
    assert sizes == {"AnonymousUser": 0, "root": 60, "alice": 22, "bob": 29, "carol": 36, "dave": 12}, sizes


def test_the_rule_reads_nothing_more_than_the_operations_own_answer_when_it_is_true_or_false(world, client):
    """The progress poll of a batch someone else started costs what the poll of one's own does,
    plus only what the operation's `may_see` itself reads (here Django's permission lookup)."""
    users, batches = world
    carol = next(user for user in users if str(user) == "carol")
    markings = [batch for batch in batches if batch.operation == "mark_records"]
    own = next(batch for batch in markings if batch.created_by_id == carol.pk)
    theirs = next(b for b in markings if b.created_by_id not in (carol.pk, None) and b.scope_key != own.scope_key)
    Batch.objects.filter(pk__in=[own.pk, theirs.pk]).update(status=BatchStatus.RUNNING)  # one active per scope
    client.force_login(carol)

    def poll_queries(batch: Batch) -> int:
        with CaptureQueriesContext(connection) as queries:
            assert client.get(f"/batches/{batch.pk}/progress/?shown=running", **HTMX).status_code == 200
        return len(queries)

    as_loaded = get_user_model().objects.get(pk=carol.pk)  # as a request loads them: nothing cached
    with CaptureQueriesContext(connection) as rule_reads:
        operations.get_operation("mark_records").may_see(as_loaded)
    assert poll_queries(own) <= 3
    assert poll_queries(theirs) == poll_queries(own) + len(rule_reads)


def test_may_see_must_answer_with_a_filter(scoped_operations, monkeypatch, make_clerk):
    monkeypatch.setattr(RelabelRecords, "may_see", lambda self, user: None)
    with pytest.raises(TypeError, match=r"RelabelRecords.may_see must return True, False or a Q, not None"):
        selectors.visible_batches(make_clerk("alice"))
