"""Following a batch from a terminal (`manage.py batches follow`): a rich progress bar on a terminal,
one plain line every few seconds otherwise (a cron job's log, a pipe), and the batch's end."""

from __future__ import annotations

import json
import time
from typing import Any, TextIO

from django.contrib.auth.models import AbstractBaseUser
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import QuerySet
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from .models import Batch
from .selectors import history, progress, shown_batches, visible_batch
from .status import with_liveness
from .templatetags.batch_tags import duration

# How often the bar is redrawn (one query each): the web page polls every second.
REDRAW_SECONDS = 0.5


def load(batch_id: int, user: AbstractBaseUser | None) -> Batch | None:
    """The batch as the API shows it; with `user`, only if they may see it (the web's rule)."""
    if user is not None:
        return visible_batch(user, batch_id)
    return shown_batches().filter(pk=batch_id).first()


def listed(user: AbstractBaseUser | None, *, active: bool) -> QuerySet[Batch]:
    """The latest batches, newest first; with `user`, those they may see."""
    batches = with_liveness(history(user)) if user is not None else shown_batches().order_by("-created_at", "-id")
    return batches.active() if active else batches


def as_json(body: Any) -> str:
    return json.dumps(body, cls=DjangoJSONEncoder)


def summary(batch: Batch) -> str:
    """One line: where the batch is."""
    figures = progress(batch)
    total = "?" if figures.total is None else str(figures.total)
    line = f"Batch {batch.pk} {batch.status}: {figures.processed}/{total}, {figures.done} done, {figures.failed} failed"
    if figures.skipped:
        line += f", {figures.skipped} skipped"
    if batch.is_active:
        rate = f"{figures.rate:.1f} items/s" if figures.rate else "no rate yet"
        return f"{line}; {rate}, {duration(figures.eta)} left" if figures.eta is not None else f"{line}; {rate}"
    line += f" in {duration(figures.elapsed)}"
    return f"{line}. {batch.error}" if batch.error else f"{line}."


def follow(batch: Batch, user: AbstractBaseUser | None, out: TextIO, *, tty: bool, every: float) -> Batch:
    """Show the batch's progress on `out` until it ends; return it as it ended.

    KeyboardInterrupt goes through to the caller: detaching never cancels."""
    if tty:
        return _follow_with_bar(batch, user, out)
    return _follow_plainly(batch, user, out, every)


def _reload(batch: Batch, user: AbstractBaseUser | None) -> Batch:
    fresh = load(batch.pk, user)
    if fresh is None:  # deleted meanwhile (the admin): nothing more to follow
        raise Batch.DoesNotExist(f"Batch {batch.pk} is gone.")
    return fresh


def _follow_plainly(batch: Batch, user: AbstractBaseUser | None, out: TextIO, every: float) -> Batch:
    out.write(summary(batch) + "\n")
    last_line = time.monotonic()
    while batch.is_active:
        time.sleep(min(REDRAW_SECONDS, every))
        batch = _reload(batch, user)
        if batch.is_active and time.monotonic() - last_line >= every:
            out.write(summary(batch) + "\n")
            out.flush()
            last_line = time.monotonic()
    out.write(summary(batch) + "\n")
    return batch


def _fields(batch: Batch) -> dict[str, Any]:
    figures = progress(batch)
    return {
        "completed": figures.processed,
        "total": figures.total or None,
        "failed": figures.failed,
        "rate": f"{figures.rate:.1f} items/s" if figures.rate else "",
        "left": f"{duration(figures.eta)} left" if figures.eta is not None else "",
        "status": batch.status,
    }


def _follow_with_bar(batch: Batch, user: AbstractBaseUser | None, out: TextIO) -> Batch:
    console = Console(file=out, force_terminal=True)
    columns = (
        TextColumn(f"Batch {batch.pk} [bold]{{task.fields[status]}}[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("[red]{task.fields[failed]} failed[/]"),
        TextColumn("{task.fields[rate]}"),
        TextColumn("{task.fields[left]}"),
    )
    with Progress(*columns, console=console, auto_refresh=False) as bar:
        task = bar.add_task(batch.scope_label, **_fields(batch))
        while True:
            bar.update(task, **_fields(batch))
            bar.refresh()
            if not batch.is_active:
                break
            time.sleep(REDRAW_SECONDS)
            batch = _reload(batch, user)
    console.print(summary(batch))
    return batch
