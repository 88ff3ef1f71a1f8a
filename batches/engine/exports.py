"""Exports: the rows of each checkpoint written as a part, the parts assembled into the file once the
batch has finished, and the sweep that deletes expired files.

Exactly once, in key order, through crashes: a checkpoint writes the rows of the keys it did (after
its cursor, up to its new cursor) as one part, under a name of that attempt's own (its chunk, its
starting cursor and a random suffix), and records the part in its own transaction. Only committed
parts are recorded, and the file is their concatenation in key order. A checkpoint lost to a crash,
or refused because its claim was handed over (batches.engine.state.record_checkpoint: two runners
may then run the same range at once), leaves a part nobody recorded; it cannot replace a committed
part, since no two attempts share a name, and assembly deletes the parts folder whole.
Assembly runs under the batch's row lock (skip locked: two workers never both assemble) and
records the file in the same transaction that deletes the parts' records, so it is redone whole
if it dies half way, and done once.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import shutil
import tempfile
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import IO, Any

from django.core.files import File
from django.core.files.storage import Storage
from django.db import connection, transaction
from django.db.models import Case, CharField, F, QuerySet, TextField, Value, When
from django.db.models.functions import Cast, Coalesce, Concat
from django.utils import timezone
from django.utils.text import slugify

from batches.conf import batches_settings
from batches.csv_export import neutralise
from batches.models import Batch, BatchStatus, Chunk, ExportFile, ExportPart
from batches.operations import Export, UnknownOperation, all_operations, get_operation
from batches.results import CONTENT_TYPES, export_storage

from .items import batch_items

logger = logging.getLogger(__name__)

_FORMULA_START = "^[-=+@\t\r]"
_BLOCK = 1024 * 1024


def folder(batch_id: int) -> str:
    return f"batches/exports/{batch_id}"


def parts_folder(batch_id: int) -> str:
    return f"{folder(batch_id)}/parts"


def part_name(batch_id: int, chunk_index: int, after_key: int) -> str:
    return f"{parts_folder(batch_id)}/{chunk_index:06d}-{after_key:020d}-{uuid.uuid4().hex[:12]}.csv"


# --- parts, one per checkpoint ------------------------------------------------------------------


def rows(op: Export, items: QuerySet[Any], params: dict[str, Any]) -> QuerySet[Any]:
    """The items' rows as text cells, each neutralised in SQL (a leading ' before what a spreadsheet
    would run as a formula), in key order: the same query feeds COPY and the Python loop."""
    texts: dict[str, Any] = {}
    cells: dict[str, Any] = {}
    for index, (_, value) in enumerate(op.columns(params)):
        source = F(value) if isinstance(value, str) else value
        texts[f"_text{index}"] = Coalesce(Cast(source, TextField()), Value(""), output_field=TextField())
        cells[f"_cell{index}"] = Case(
            When(**{f"_text{index}__regex": _FORMULA_START}, then=Concat(Value("'"), F(f"_text{index}"))),
            default=F(f"_text{index}"),
            output_field=CharField(),
        )
    return items.alias(**texts).annotate(**cells).order_by("pk").values_list(*cells)


def write_rows(query: QuerySet[Any], out: IO[bytes]) -> int:
    """Write the query's rows as CSV to `out`; how many. One COPY statement on Postgres, streamed
    by the server; elsewhere a loop over a server-side iterator. Memory stays flat either way."""
    if connection.vendor == "postgresql":
        sql, params = query.query.sql_with_params()
        with connection.cursor() as cursor:
            raw = cursor.cursor
            raw.copy_expert(f"COPY ({raw.mogrify(sql, params).decode()}) TO STDOUT WITH (FORMAT csv)", out)
            return int(raw.rowcount)
    text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
    writer = csv.writer(text, lineterminator="\n")
    count = 0
    for row in query.iterator(chunk_size=2000):
        writer.writerow(row)
        count += 1
    text.detach()
    return count


def write_part(op: Export, chunk: Chunk, after: int | None) -> ExportPart:
    """Write the rows this checkpoint did (keys after `after`, up to the chunk's new cursor) to the
    storage; the part's record, to save in the checkpoint's transaction."""
    items = batch_items(chunk.batch, op).filter(pk__lte=chunk.cursor)
    if after is not None:
        items = items.filter(pk__gt=after)
    storage = export_storage()
    with tempfile.TemporaryFile() as out:
        count = write_rows(rows(op, items, chunk.batch.params), out)
        out.seek(0)
        wanted = part_name(chunk.batch_id, chunk.index, after or 0)
        name = storage.save(wanted, File(out, name=wanted))
    return ExportPart(batch_id=chunk.batch_id, after_key=after or 0, last_key=chunk.cursor, name=name, rows=count)


# --- the file, once the batch has finished -------------------------------------------------------


def export_operations() -> list[str]:
    return [op.name for op in all_operations() if isinstance(op, Export)]


def download_name(op: Export, batch: Batch) -> str:
    base = op.download_name(batch.params, timezone.localtime(batch.created_at))
    stem = slugify(base) or f"batch-{batch.pk}"
    return f"{stem}.{op.file_format(batch.params)}"


def assemble(batch_id: int, now: datetime | None = None) -> bool:
    """Assemble a finished export's parts into its file, once; False when there is nothing to do
    (not an export, not finished, already assembled, or another worker assembling it now)."""
    with transaction.atomic():
        batch = (
            Batch.objects.select_for_update(no_key=True, skip_locked=True)
            .filter(pk=batch_id, status=BatchStatus.FINISHED)
            .first()
        )
        if batch is None or ExportFile.objects.filter(batch_id=batch_id).exists():
            return False
        try:
            op = get_operation(batch.operation)
        except UnknownOperation:
            return False
        if not isinstance(op, Export):
            return False
        parts = list(ExportPart.objects.filter(batch_id=batch_id).order_by("after_key").values_list("name", "rows"))
        header = [title for title, _ in op.columns(batch.params)]
        file_format = op.file_format(batch.params)
        storage = export_storage()
        name = download_name(op, batch)
        with tempfile.TemporaryFile() as out:
            if file_format == "xlsx":
                _write_xlsx(out, header, [part for part, _ in parts], storage, title=op.label)
            else:
                _write_csv(out, header, [part for part, _ in parts], storage)
            size, digest = _measure(out)
            stored = _save(storage, f"{folder(batch_id)}/{name}", out)
        now = now or timezone.now()
        ExportFile.objects.create(
            batch=batch,
            name=stored,
            download_name=name,
            content_type=CONTENT_TYPES[file_format],
            rows=sum(count for _, count in parts),
            bytes=size,
            sha256=digest,
            created_at=now,
            expires_at=now + timedelta(seconds=batches_settings.EXPORT_EXPIRY_SECONDS),
        )
        ExportPart.objects.filter(batch_id=batch_id).delete()
        names = [part for part, _ in parts]
        transaction.on_commit(
            lambda: _delete_quietly(storage, names + _unrecorded(storage, batch_id, names)), robust=True
        )
    logger.info("Export of batch %s assembled: %s.", batch_id, name)
    return True


def _write_csv(out: IO[bytes], header: list[str], parts: Iterable[str], storage: Storage) -> None:
    text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
    csv.writer(text, lineterminator="\n").writerow([neutralise(title) for title in header])
    text.detach()
    for part in parts:
        with storage.open(part, "rb") as source:
            shutil.copyfileobj(source, out, _BLOCK)


def _write_xlsx(out: IO[bytes], header: list[str], parts: Iterable[str], storage: Storage, *, title: str) -> None:
    """A write-only workbook (rows streamed to disk as they come): the CSV parts read back row by row."""
    from openpyxl import Workbook
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(title=title[:31] or "Export")
    sheet.append([neutralise(cell) for cell in header])
    for part in parts:
        with storage.open(part, "rb") as source:
            for row in csv.reader(io.TextIOWrapper(source, encoding="utf-8", newline="")):
                sheet.append([ILLEGAL_CHARACTERS_RE.sub("", cell) for cell in row])
    workbook.save(out)


def _measure(out: IO[bytes]) -> tuple[int, str]:
    out.flush()
    out.seek(0)
    digest = hashlib.sha256()
    size = 0
    while block := out.read(_BLOCK):
        digest.update(block)
        size += len(block)
    out.seek(0)
    return size, digest.hexdigest()


def _save(storage: Storage, name: str, content: IO[bytes]) -> str:
    """Save under `name`, replacing what a lost attempt left there; the name the storage used."""
    storage.delete(name)
    return storage.save(name, File(content, name=name))


def _unrecorded(storage: Storage, batch_id: int, recorded: list[str]) -> list[str]:
    """Parts of attempts that never committed (crashed or refused), still in the parts folder."""
    try:
        _, files = storage.listdir(parts_folder(batch_id))
    except (FileNotFoundError, NotImplementedError):
        return []
    return sorted({f"{parts_folder(batch_id)}/{name}" for name in files} - set(recorded))


def _delete_quietly(storage: Storage, names: Iterable[str]) -> None:
    for name in names:
        try:
            storage.delete(name)
        except Exception as exc:  # a part left behind costs space, not correctness
            logger.warning("Could not delete the export part %s (%s).", name, exc)


# --- the sweep ----------------------------------------------------------------------------------


def sweep(now: datetime | None = None, *, limit: int = 20) -> dict[str, int]:
    """Assemble finished exports whose file is missing (their message lost), delete expired files,
    and the parts of exports that ended without finishing. Safe from many workers at once."""
    now = now or timezone.now()
    names = export_operations()
    assembled = 0
    if names:
        waiting = (
            Batch.objects.filter(operation__in=names, status=BatchStatus.FINISHED, export_file__isnull=True)
            .order_by("finished_at")
            .values_list("pk", flat=True)[:limit]
        )
        assembled = sum(assemble(batch_id, now) for batch_id in list(waiting))
    expired = 0
    storage = export_storage()
    for file in ExportFile.objects.filter(deleted_at__isnull=True, expires_at__lte=now).order_by("expires_at")[:limit]:
        if ExportFile.objects.filter(pk=file.pk, deleted_at__isnull=True).update(deleted_at=now):
            _delete_quietly(storage, [file.name])
            expired += 1
    ended = ExportPart.objects.filter(batch__status__in=[BatchStatus.CANCELLED, BatchStatus.FAILED])
    leftovers = list(ended.values_list("pk", "name")[: limit * 10])
    if leftovers:
        ExportPart.objects.filter(pk__in=[pk for pk, _ in leftovers]).delete()
        _delete_quietly(storage, [name for _, name in leftovers])
    return {"assembled": assembled, "expired": expired, "parts_deleted": len(leftovers)}
