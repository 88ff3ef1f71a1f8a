"""The email a batch's end sends the person who started it: its outcome, figures, link and failures.

Composed from the ended batch when it is sent (its figures no longer change), so that a resend after
a crash is the same message, with the same Message-ID (`message_id`), which mail clients and
receiving servers use to drop a copy they already have.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.core.mail import EmailMessage
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from . import results
from .conf import batches_settings
from .models import Batch, BatchStatus
from .operations import Operation, UnknownOperation, get_operation, label_of
from .selectors import failures

FAILURES_LISTED = 20

_OUTCOME = {
    BatchStatus.FINISHED: "Finished",
    BatchStatus.FAILED: "Failed",
    BatchStatus.CANCELLED: "Cancelled",
}


def site_base(batch: Batch) -> str:
    """The site's address for links: BATCHES_SITE_URL, else the one the start's request used."""
    return (batches_settings.SITE_URL or batch.site_url).rstrip("/")


def batch_url(batch: Batch) -> str | None:
    """The batch's page (the web UI's, else the API's), absolute; None without a site address."""
    base = site_base(batch)
    if not base:
        return None
    for name in ("batches:detail", "api:batch"):
        try:
            return base + reverse(name, args=[batch.pk])
        except NoReverseMatch:
            continue
    return None


def download_url(batch: Batch) -> str | None:
    """The absolute link to the file the batch produced (an export), while it may be downloaded."""
    base = site_base(batch)
    file = results.export_file(batch)
    if not base or file is None or file.expired:
        return None
    for name in ("batches:download", "api:batch_file"):
        try:
            return base + reverse(name, args=[batch.pk])
        except NoReverseMatch:
            continue
    return None


def ready(batch: Batch) -> bool:
    """Whether the email can go now. An export's file is assembled after its batch has finished,
    by a message of its own: its email waits for the file (outbox.WAIT_FOR_FILE at most), so that
    it carries the download link."""
    return (
        batch.status != BatchStatus.FINISHED
        or not results.makes_a_file(batch)
        or results.export_file(batch) is not None
    )


def message_id(batch: Batch) -> str:
    """Stable for the batch: every send of its email carries the same one. The creation time keeps
    it unique should a database be reset and batch numbers start again."""
    domain = urlsplit(site_base(batch)).hostname or "batches.invalid"
    return f"<batch-{batch.pk}-{int(batch.created_at.timestamp())}.ended@{domain}>"


def batch_ended(batch: Batch, recipient: str) -> EmailMessage:
    outcome = _OUTCOME.get(BatchStatus(batch.status), batch.get_status_display())
    subject = f"{outcome}: {label_of(batch.operation)} · {batch.scope_label or batch.scope_key} (#{batch.pk})"
    return EmailMessage(subject=subject, body=body(batch), to=[recipient], headers={"Message-ID": message_id(batch)})


def body(batch: Batch) -> str:
    try:
        op: Operation | None = get_operation(batch.operation)
    except UnknownOperation:
        op = None
    items_name = op.items_name if op else "items"
    ended = timezone.localtime(batch.finished_at or timezone.now())
    lines = [
        f"{label_of(batch.operation)} on {batch.scope_label or batch.scope_key} "
        f"{_verb(batch)} at {ended:%Y-%m-%d %H:%M} {ended.tzname()}.",
        "",
        f"{batch.total or 0:,} {items_name}: {batch.done_count:,} done, {batch.failed_count:,} failed, "
        f"{batch.skipped_count:,} skipped.",
    ]
    if batch.error:
        lines += ["", f"Why it stopped: {batch.error}"]
    if batch.failed_count:
        lines += ["", *_failure_lines(batch, op, items_name)]
    link = batch_url(batch)
    download = download_url(batch)
    lines += [""]
    if download:
        lines += [f"Download the file: {download}"]
    lines += [f"The batch's page: {link}" if link else f"Batch #{batch.pk} (the site's address is not configured)."]
    return "\n".join(lines) + "\n"


def _verb(batch: Batch) -> str:
    if batch.status == BatchStatus.CANCELLED:
        who = batch.cancelled_by.get_username() if batch.cancelled_by else None
        return f"was cancelled by {who}" if who else "was cancelled"
    return "failed" if batch.status == BatchStatus.FAILED else "finished"


def _failure_lines(batch: Batch, op: Operation | None, items_name: str) -> list[str]:
    shown = list(failures(batch)[:FAILURES_LISTED])
    try:
        labels = op.item_labels(batch.params, [f.item_pk for f in shown]) if op else {}
    except Exception:  # the scope's objects may be gone: keys then, rather than no email
        labels = {}
    more = batch.failed_count - len(shown)
    heading = f"Failed {items_name}" + (f" (the first {len(shown)} of {batch.failed_count:,}):" if more > 0 else ":")
    return [heading, *(f"- {labels.get(f.item_pk, f.item_key)}: {f.error}" for f in shown)]
