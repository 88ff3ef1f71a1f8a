"""Following a batch from a terminal (`manage.py batches follow`): a rich progress bar on a terminal,
one plain line every few seconds otherwise (a cron job's log, a pipe), and the batch's end.

What reaches the terminal is the command's own output: figures as the web writes them
(batches/formats.py), user-supplied text (labels, errors) with its control characters shown as
codes, not acted on, and log lines only when asked for (-v 2), on stderr.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from django.contrib.auth.models import AbstractBaseUser
from django.core.management.base import OutputWrapper
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import QuerySet
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn

from batches import formats
from batches.engine.status import with_liveness
from batches.models import Batch, BatchStatus
from batches.selectors import history, operation_nouns, progress, shown_batches, visible_batch

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


class PlainOutput(OutputWrapper):
    """A command's stdout or stderr on which no written text acts as a control sequence: a label
    or an error can neither clear the screen nor recolour it (formats.plain)."""

    def write(self, msg: str = "", style_func: Any = None, ending: str | None = None) -> None:
        super().write(formats.plain(msg, newlines=True), style_func, ending)


@contextmanager
def log_lines(verbosity: int) -> Iterator[None]:
    """Below verbosity 2, no INFO log line (a batch's `event=batch.created …`) amid the output;
    warnings and errors still go to stderr (settings.LOGGING's console handler)."""
    if verbosity >= 2:
        yield
        return
    before = logging.root.manager.disable
    logging.disable(logging.INFO)
    try:
        yield
    finally:
        logging.disable(before)


def summary(batch: Batch) -> str:
    """One line: where the batch is. Worked (done or failed) of the total, as the web counts it:
    a cancelled run that worked 293 of 2,000 says so, its skipped items apart."""
    figures = progress(batch)
    nouns = operation_nouns(batch.operation)
    line = (
        f"Batch {batch.pk} {batch.status}: {formats.number(figures.worked)} of {formats.items(figures.total, nouns)}"
        f" worked, {formats.number(figures.done)} done, {formats.number(figures.failed)} failed"
    )
    if figures.skipped:
        line += f", {formats.number(figures.skipped)} skipped"
    if batch.is_active:
        rate = formats.rate(figures.rate) if figures.rate else "no rate yet"
        left = f", {formats.duration(figures.eta)} left" if figures.eta is not None else ""
        return f"{line}; {rate}{left}"
    if figures.elapsed is not None:
        line += f" {'in' if batch.status == BatchStatus.FINISHED else 'after'} {formats.duration(figures.elapsed)}"
    return f"{line}. {formats.plain(batch.error)}" if batch.error else f"{line}."


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
        "completed": figures.worked,
        "total": figures.total or None,
        "worked": f"{formats.number(figures.worked)}/{formats.number(figures.total)}",
        "failed": formats.number(figures.failed),
        "rate": formats.rate(figures.rate) if figures.rate else "",
        "left": f"{formats.duration(figures.eta)} left" if figures.eta is not None else "",
        "status": batch.status,
    }


def _follow_with_bar(batch: Batch, user: AbstractBaseUser | None, out: TextIO) -> Batch:
    console = Console(file=out, force_terminal=True)
    columns = (
        TextColumn(f"Batch {batch.pk} [bold]{{task.fields[status]}}[/]"),
        BarColumn(),
        TextColumn("{task.fields[worked]}"),
        TextColumn("[red]{task.fields[failed]} failed[/]"),
        TextColumn("{task.fields[rate]}"),
        TextColumn("{task.fields[left]}"),
    )
    with Progress(*columns, console=console, auto_refresh=False) as bar:
        task = bar.add_task(escape(formats.plain(batch.scope_label)), **_fields(batch))
        while True:
            bar.update(task, **_fields(batch))
            bar.refresh()
            if not batch.is_active:
                break
            time.sleep(REDRAW_SECONDS)
            batch = _reload(batch, user)
    console.print(summary(batch), markup=False, highlight=False, emoji=False)
    return batch
