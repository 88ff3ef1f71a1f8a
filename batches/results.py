"""Files that batches produce (exports): where they are kept, and how one is handed to a person.

Every file goes through Django's storage API, the storage named by BATCHES_EXPORT_STORAGE (an alias
of STORAGES: FileSystemStorage under MEDIA_ROOT by default, S3 through django-storages as well), and
is streamed from it, never read into memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.core.files.storage import Storage, storages
from django.http import FileResponse

from .conf import batches_settings
from .models import Batch, ExportFile
from .operations import Export, UnknownOperation, get_operation

CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


def export_storage() -> Storage:
    return storages[batches_settings.EXPORT_STORAGE]


@dataclass(frozen=True)
class Result:
    """What a finished export offers: its figures, and whether it may still be downloaded."""

    rows: int
    bytes: int
    sha256: str
    expires_at: datetime
    expired: bool
    download_name: str


def export_file(batch: Batch) -> ExportFile | None:
    """The batch's file once assembled; None for a batch without one (yet)."""
    return ExportFile.objects.filter(batch_id=batch.pk).first()


def result_of(batch: Batch) -> Result | None:
    file = export_file(batch)
    if file is None:
        return None
    return Result(file.rows, file.bytes, file.sha256, file.expires_at, file.expired, file.download_name)


def files_of(batch_ids: list[int]) -> dict[int, ExportFile]:
    """The files of these batches, by batch, in one query (a page of the history)."""
    return {file.batch_id: file for file in ExportFile.objects.filter(batch_id__in=batch_ids)}


def makes_a_file(batch: Batch) -> bool:
    """Whether the batch's operation produces a file (an Export), installed or not any more."""
    try:
        return isinstance(get_operation(batch.operation), Export)
    except UnknownOperation:
        return ExportFile.objects.filter(batch_id=batch.pk).exists()


def expired_message(file: ExportFile) -> str:
    return (
        f"The file {file.download_name} was kept until {file.expires_at:%Y-%m-%d %H:%M %Z} and has been deleted. "
        "Run the export again for a fresh one."
    )


def file_response(file: ExportFile) -> FileResponse:
    """The file, streamed from the storage in blocks, saved under its name for people."""
    response = FileResponse(export_storage().open(file.name, "rb"), as_attachment=True, filename=file.download_name)
    response["Content-Type"] = file.content_type
    response["Content-Length"] = str(file.bytes)
    return response
