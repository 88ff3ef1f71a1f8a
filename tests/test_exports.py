"""Exports: an operation whose result is a file (batches.operations.Export; the demo's export_tickets).

In-process, a whole export on the test database: the file's rows, figures, name and download; then
real worker processes killed with kill -9 mid-export: every ticket still exactly once, in key order."""

from __future__ import annotations

import csv
import hashlib
import io
import random
import time
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from openpyxl import load_workbook

from batches import operations
from batches.engine import exports
from batches.models import Batch, BatchStatus, ExportFile, ExportPart
from batches.results import export_storage
from batches.services import start_batch
from batches.testing import run_batch
from batches.tokens import create_token
from site_config.demo.models import Event, Ticket
from tests.export_operation.operations import ExportTicketsSlowly
from tests.support import refreshed, wait_until

HEADER = ["Ticket", "Seat", "Holder", "Code", "Reissued"]


def expected_rows(event: Event) -> list[list[str]]:
    tickets = Ticket.objects.filter(event=event).order_by("pk")
    return [[str(t.pk), str(t.number), t.holder, t.code, str(t.reissue_count)] for t in tickets]


def stored_bytes(file: ExportFile) -> bytes:
    with export_storage().open(file.name, "rb") as handle:
        return handle.read()


def download(client: Client, url: str) -> bytes:
    response = client.get(url)
    assert response.status_code == 200, response
    return b"".join(response.streaming_content)


def csv_rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"))))


def assert_the_file_has_every_ticket_once_in_key_order(batch: Batch, event: Event) -> ExportFile:
    file = ExportFile.objects.get(batch=batch)
    data = stored_bytes(file)
    rows = csv_rows(data)
    assert rows[0] == HEADER
    assert rows[1:] == expected_rows(event)
    assert file.rows == len(rows) - 1
    assert file.bytes == len(data)
    assert file.sha256 == hashlib.sha256(data).hexdigest()
    return file


@pytest.mark.both_backends
def test_an_export_writes_every_ticket_once_in_key_order_with_its_figures(make_event, alice, settings):
    settings.DEMO_ITEM_DELAY_MS, settings.DEMO_FAIL_EVERY = 0, 0
    event = make_event(tickets=1200, name="Autumn Conference")
    Ticket.objects.filter(event=event, number=7).update(holder='=HYPERLINK("http://x")')
    Ticket.objects.filter(event=event, number=8).update(holder='Guest, "the" 8\nsecond line')

    batch = run_batch("export_tickets", {"event_id": event.pk, "format": "csv"}, user=alice)

    assert batch.status == BatchStatus.FINISHED, batch.error
    file = ExportFile.objects.get(batch=batch)
    rows = csv_rows(stored_bytes(file))
    seven = next(row for row in rows if row[1] == "7")
    assert seven[2] == '\'=HYPERLINK("http://x")'  # never a formula in a spreadsheet
    assert next(row for row in rows if row[1] == "8")[2] == 'Guest, "the" 8\nsecond line'
    expected = expected_rows(event)
    expected[6][2] = "'" + expected[6][2]
    assert rows[1:] == expected and rows[0] == HEADER
    assert file.rows == 1200 and file.download_name == f"tickets-autumn-conference-{timezone.localdate():%Y-%m-%d}.csv"
    assert not ExportPart.objects.filter(batch=batch).exists()
    assert file.expires_at - file.created_at == timedelta(days=7)


@pytest.mark.both_backends
def test_an_xlsx_export_opens_with_openpyxl_and_has_the_same_rows(make_event, alice, settings):
    settings.DEMO_ITEM_DELAY_MS, settings.DEMO_FAIL_EVERY = 0, 0
    event = make_event(tickets=300, name="Winter Festival")

    batch = run_batch("export_tickets", {"event_id": event.pk, "format": "xlsx"}, user=alice)

    file = ExportFile.objects.get(batch=batch)
    data = stored_bytes(file)
    sheet = load_workbook(io.BytesIO(data), read_only=True).active
    rows = [[str(cell) for cell in row] for row in sheet.iter_rows(values_only=True)]
    assert rows[0] == HEADER and rows[1:] == expected_rows(event)
    assert file.rows == 300 and file.sha256 == hashlib.sha256(data).hexdigest() and file.bytes == len(data)
    assert file.download_name.endswith(".xlsx")


def test_the_download_is_streamed_to_those_who_may_see_the_batch_and_404_to_others(
    make_event, alice, make_user, client, settings
):
    settings.DEMO_ITEM_DELAY_MS, settings.DEMO_FAIL_EVERY = 0, 0
    event = make_event(tickets=50, name="Team Offsite")
    batch = run_batch("export_tickets", {"event_id": event.pk}, user=alice)
    url = f"/batches/{batch.pk}/download/"

    client.force_login(alice)
    response = client.get(url)
    assert response.status_code == 200 and response.streaming
    assert response["Content-Disposition"] == (
        f'attachment; filename="tickets-team-offsite-{timezone.localdate():%Y-%m-%d}.csv"'
    )
    assert csv_rows(b"".join(response.streaming_content))[1:] == expected_rows(event)
    page = client.get(f"/batches/{batch.pk}/").content.decode()
    assert f'href="{url}"' in page and "50 rows" in page
    assert f'href="{url}"' in client.get("/batches/").content.decode()

    _, token = create_token(alice, "tests")
    body = Client(HTTP_AUTHORIZATION=f"Bearer {token}").get(f"/api/batches/{batch.pk}").json()
    file = ExportFile.objects.get(batch=batch)
    assert body["result"]["url"] == f"/api/batches/{batch.pk}/file"
    assert (body["result"]["rows"], body["result"]["bytes"], body["result"]["sha256"]) == (50, file.bytes, file.sha256)
    assert download(Client(HTTP_AUTHORIZATION=f"Bearer {token}"), body["result"]["url"]) == stored_bytes(file)

    outsider = make_user("mallory", may_reissue=False)
    client.force_login(outsider)
    assert client.get(url).status_code == 404
    _, outsiders_token = create_token(outsider, "tests")
    outsiders_api = Client(HTTP_AUTHORIZATION=f"Bearer {outsiders_token}")
    assert outsiders_api.get(f"/api/batches/{batch.pk}/file").status_code == 404


def test_an_expired_file_is_deleted_by_the_sweep_and_its_link_says_so(make_event, alice, client, settings):
    settings.DEMO_ITEM_DELAY_MS, settings.DEMO_FAIL_EVERY = 0, 0
    event = make_event(tickets=20, name="Gala")
    batch = run_batch("export_tickets", {"event_id": event.pk}, user=alice)
    file = ExportFile.objects.get(batch=batch)
    assert export_storage().exists(file.name)

    exports.sweep(now=file.expires_at + timedelta(seconds=1))

    assert not export_storage().exists(file.name)
    client.force_login(alice)
    response = client.get(f"/batches/{batch.pk}/download/")
    assert response.status_code == 410
    assert "has been deleted" in response.content.decode() and "Run the export again" in response.content.decode()
    assert "expired on" in client.get(f"/batches/{batch.pk}/").content.decode()
    _, token = create_token(alice, "tests")
    api = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert api.get(f"/api/batches/{batch.pk}/file").status_code == 410
    assert api.get(f"/api/batches/{batch.pk}").json()["result"]["expired"] is True


# --- real worker processes, killed -------------------------------------------------------------

WORKER_ENV = {
    "DJANGO_SETTINGS_MODULE": "tests.settings_export",  # the slow export is installed in the workers
    "EXPORT_ROW_DELAY_US": "400",
    "BATCHES_WORKER_HEARTBEAT_SECONDS": "0.5",
    "BATCHES_WORKER_SILENCE_SECONDS": "2",
    "BATCHES_LEASE_SECONDS": "2",
    "BATCHES_SWEEP_SECONDS": "1",
}
KILLS = 12


@pytest.mark.slow
@pytest.mark.parametrize("file_format", ["csv", "xlsx"])
def test_an_export_killed_with_kill_9_again_and_again_has_every_ticket_once_in_key_order(
    worker_process, make_event, alice, monkeypatch, file_format
):
    monkeypatch.setitem(operations._registry, ExportTicketsSlowly.name, ExportTicketsSlowly())
    event = make_event(tickets=100_000, name="Autumn Conference")
    workers = [worker_process(threads=1, **WORKER_ENV), worker_process(threads=1, **WORKER_ENV)]
    batch = start_batch(
        operation=ExportTicketsSlowly.name, data={"event_id": event.pk, "format": file_format}, user=alice
    ).batch
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    print(f"kill moments seeded with {seed}")
    for kill in range(KILLS):
        seen = refreshed(batch).processed
        wait_until(
            lambda seen=seen: refreshed(batch).processed > seen or not batch.is_active, timeout=60, what="progress"
        )
        assert batch.is_active, f"the export finished after {kill} kills; give it more work"
        time.sleep(rng.uniform(0, 0.4))  # mid-page, mid-part, mid-commit or between checkpoints
        victim = kill % 2
        workers[victim].kill()
        workers[victim] = worker_process(threads=1, **WORKER_ENV)
    wait_until(lambda: ExportFile.objects.filter(batch=batch).exists(), timeout=300, what="the file")

    batch.refresh_from_db()
    assert batch.status == BatchStatus.FINISHED and batch.done_count == 100_000, batch.error
    file = ExportFile.objects.get(batch=batch)
    data = stored_bytes(file)
    assert file.bytes == len(data) and file.sha256 == hashlib.sha256(data).hexdigest()
    if file_format == "csv":
        rows = csv_rows(data)
    else:
        sheet = load_workbook(io.BytesIO(data), read_only=True).active
        rows = [[str(cell) for cell in row] for row in sheet.iter_rows(values_only=True)]
    assert rows[0] == HEADER
    assert rows[1:] == expected_rows(event)  # every ticket, once, in key order
    assert file.rows == 100_000
    assert not ExportPart.objects.filter(batch=batch).exists()
