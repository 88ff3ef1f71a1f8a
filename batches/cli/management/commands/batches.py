"""`manage.py batches ...`: batches from a terminal or a cron job, and the operator's tools.

    start OPERATION key=value ... --user USERNAME [--notify] [--follow] [--json]   start (or join) a batch
    follow ID [--user USERNAME] [--json]                                follow it to its end
    list [--active] [--user USERNAME] [--json]                          the latest batches
    cancel ID --user USERNAME [--json]                                  cancel it
    health [--worker]                                                   /readyz's checks, or this host's worker
    recover | token USERNAME | workers [--all]                          the recovery sweep, an API token, workers

start and cancel go through the same services and guard as the web (a busy scope's batch is
joined, not duplicated); with --user, follow and list show only what that user may see.
Exit codes: 0 finished (or started, without --follow), 1 failed or cancelled, 2 bad usage,
3 refused (permission, no such scope, a limit), 130 detached with Ctrl-C (the batch runs on).
It prints its own output only: log lines with -v 2, on stderr (batches/cli/terminal.py).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from batches import formats
from batches.cli import terminal
from batches.engine import readiness
from batches.engine.recovery import recover_stale
from batches.engine.workers import is_alive, running_now
from batches.models import Batch, BatchStatus, Worker
from batches.operations import UnknownOperation, get_operation
from batches.representation import batch_body
from batches.services import StartLimitReached, cancel_batch, start_batch
from batches.tokens import create_token

BAD_USAGE, REFUSED, DETACHED, ENDED_BADLY = 2, 3, 130, 1


class _ActionParser(CommandParser):
    """An action's parser: -v/--verbosity after the action too (`batches list -v 2`), as before it."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_argument(
            "-v",
            "--verbosity",
            type=int,
            choices=[0, 1, 2, 3],
            default=argparse.SUPPRESS,  # given before the action, it stays
            help="2 or more: log lines too, on stderr.",
        )


class Command(BaseCommand):
    help = "Batches from a terminal: start, follow, list, cancel; and health, recover, token, workers."

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True, parser_class=_ActionParser)

        start = actions.add_parser("start", help="Start a batch (or join the one running on its scope).")
        start.add_argument("operation")
        start.add_argument("params", nargs="*", metavar="key=value")
        start.add_argument("--user", required=True, help="Who starts it: their rights and limits apply.")
        start.add_argument(
            "--notify",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="Email them when it ends (default: as the operation says; the link needs BATCHES_SITE_URL).",
        )
        self._follow_options(start)
        start.add_argument("--follow", action="store_true", help="Follow it to its end.")

        follow = actions.add_parser("follow", help="Follow a batch to its end.")
        follow.add_argument("batch_id", type=int)
        follow.add_argument("--user", help="Only if this user may see it.")
        self._follow_options(follow)

        listing = actions.add_parser("list", help="The latest batches, newest first.")
        listing.add_argument("--active", action="store_true", help="Only queued and running ones.")
        listing.add_argument("--user", help="Only what this user may see.")
        listing.add_argument("--limit", type=int, default=50)
        listing.add_argument("--json", action="store_true", help="One JSON list of the API's batch objects.")

        cancel = actions.add_parser("cancel", help="Cancel a batch (it stops at its next checkpoint).")
        cancel.add_argument("batch_id", type=int)
        cancel.add_argument("--user", required=True, help="Who cancels it (they must be able to see it).")
        cancel.add_argument("--json", action="store_true", help="Print the API's batch object.")

        checks = actions.add_parser("health", help="Postgres, migrations and the broker (exit 1 when one fails).")
        checks.add_argument("--worker", action="store_true", help="Instead: a live worker process on this host.")

        actions.add_parser("recover", help="Re-enqueue the work of every stale batch.")
        token = actions.add_parser("token", help="Create an API token and print it (shown only once).")
        token.add_argument("username")
        token.add_argument("--name", default="command line", help="What the token is for.")
        workers = actions.add_parser("workers", help="List the worker processes and what they run.")
        workers.add_argument("--all", action="store_true", help="Also the workers gone in the last day.")

    @staticmethod
    def _follow_options(parser) -> None:
        parser.add_argument("--json", action="store_true", help="Print the API's batch object (at the end).")
        parser.add_argument(
            "--every", type=float, default=5.0, help="Seconds between progress lines when not on a terminal."
        )

    def handle(self, *args, action: str, **options):
        self.stdout, self.stderr = terminal.PlainOutput(self.stdout._out), terminal.PlainOutput(self.stderr._out)
        self.stderr.style_func = self.style.ERROR
        handler = getattr(self, f"_{action}")
        with terminal.log_lines(options["verbosity"]):
            handler(**options)

    # --- batches ------------------------------------------------------------------------------

    def _start(
        self, *, operation: str, params: list[str], user: str, follow: bool, notify: bool | None, **options: Any
    ) -> None:
        starter = self._user(user)
        data = self._params(params)
        try:
            get_operation(operation).parse_params(data, from_form=True)
        except UnknownOperation as exc:
            raise CommandError(str(exc), returncode=BAD_USAGE) from None
        except ValidationError as exc:
            raise CommandError(f"Bad parameters: {' '.join(exc.messages)}", returncode=BAD_USAGE) from None
        try:
            result = start_batch(operation=operation, data=data, user=starter, from_form=True, notify=notify)
        except PermissionDenied:
            raise CommandError(f"{user} may not run {operation} on that scope.", returncode=REFUSED) from None
        except StartLimitReached as exc:
            raise CommandError(" ".join(exc.messages), returncode=REFUSED) from None
        except ValidationError as exc:  # the params' shape was fine: the scope is refused (not there)
            raise CommandError(f"Refused: {' '.join(exc.messages)}", returncode=REFUSED) from None
        batch = result.batch
        note = self.stderr if options["json"] else self.stdout
        if result.created:
            note.write(f"Batch {batch.pk} started: {operation} on {formats.plain(batch.scope_label)}.")
        elif result.resumed:
            note.write(f"Batch {batch.pk} on this scope had stopped and has been resumed; no new batch was started.")
        else:
            note.write(f"Batch {batch.pk} is already {batch.status} on this scope; no new batch was started.")
        if follow and not result.created:
            note.write(f"Following batch {batch.pk}.")
        self._show(batch.pk, starter, follow=follow, **options)

    def _follow(self, *, batch_id: int, user: str | None, **options: Any) -> None:
        self._show(batch_id, self._user(user) if user else None, follow=True, **options)

    def _show(
        self, batch_id: int, user: AbstractBaseUser | None, *, follow: bool, json: bool, every: float, **_: Any
    ) -> None:
        batch = terminal.load(batch_id, user)
        if batch is None:
            raise CommandError(f"No batch {batch_id}.", returncode=REFUSED)
        if follow:
            out = self.stderr._out if json else self.stdout._out
            try:
                batch = terminal.follow(batch, user, out, tty=out.isatty(), every=every)
            except KeyboardInterrupt:
                self.stderr.write(
                    f"\nDetached; batch {batch_id} keeps running. Re-attach: python manage.py batches follow {batch_id}"
                )
                raise SystemExit(DETACHED) from None
        if json:
            self.stdout.write(terminal.as_json(batch_body(batch)))
        if follow and batch.status in (BatchStatus.FAILED, BatchStatus.CANCELLED):
            sys.exit(ENDED_BADLY)

    def _list(self, *, active: bool, user: str | None, limit: int, json: bool, **_) -> None:
        viewer = self._user(user) if user else None
        batches = terminal.listed(viewer, active=active)[: max(1, limit)]
        if json:
            self.stdout.write(terminal.as_json([batch_body(batch) for batch in batches]))
            return
        for batch in batches:
            who = batch.created_by.get_username() if batch.created_by else "-"
            scope = formats.plain(batch.scope_label)
            self.stdout.write(f"{terminal.summary(batch)}  [{batch.operation} on {scope}, by {formats.plain(who)}]")
        if not batches:
            self.stdout.write("No active batch." if active else "No batch yet.")

    def _cancel(self, *, batch_id: int, user: str, json: bool, **_) -> None:
        try:
            batch, ended = cancel_batch(batch_id, user=self._user(user))
        except Batch.DoesNotExist:
            raise CommandError(f"No batch {batch_id}.", returncode=REFUSED) from None
        batch = terminal.load(batch.pk, None)
        if json:
            self.stdout.write(terminal.as_json(batch_body(batch)))
        elif ended:
            self.stdout.write(f"Batch {batch_id} cancelled; its worker stops at its next checkpoint.")
        else:
            self.stdout.write(f"Batch {batch_id} had already ended ({batch.status}).")

    def _user(self, username: str) -> AbstractBaseUser:
        user = get_user_model()._default_manager.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user {username!r}.", returncode=BAD_USAGE)
        if not user.is_active:
            raise CommandError(f"The user {username!r} is inactive.", returncode=REFUSED)
        return user

    @staticmethod
    def _params(pairs: list[str]) -> dict[str, str]:
        data: dict[str, str] = {}
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep or not key:
                raise CommandError(f"Parameters are key=value; got {pair!r}.", returncode=BAD_USAGE)
            data[key] = value
        return data

    # --- the operator's tools -----------------------------------------------------------------

    def _health(self, *, worker: bool, **_) -> None:
        checks = [readiness.worker_heartbeat()] if worker else readiness.readiness()
        for check in checks:
            self.stdout.write(f"{check.name}: {check.detail}")
        if any(check.ok is False for check in checks):
            sys.exit(1)

    def _recover(self, **_) -> None:
        recovered = recover_stale()
        for item in recovered:
            self.stdout.write(f"Batch {item.batch_id}: {item.action}. {item.detail}".rstrip())
        self.stdout.write(f"{len(recovered)} stale batch(es) recovered.")

    def _token(self, *, username: str, name: str, **_) -> None:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user {username!r}.")
        _, raw = create_token(user, name)
        self.stdout.write(raw)

    def _workers(self, *, all: bool, **_) -> None:
        now = timezone.now()
        listed = Worker.objects.order_by("gone_at", "-heartbeat_at")
        if not all:
            listed = listed.filter(gone_at__isnull=True)
        listed = list(listed)
        held = running_now([worker.pk for worker in listed])
        self.stdout.write(
            f"{'ID':>5}  {'WORKER':<28} {'THREADS':>7}  {'STATE':<7} {'STARTED':<12} {'LAST SEEN':>9} "
            f"{'ITEMS/S':>8}  RUNNING"
        )
        for worker in listed:
            alive = is_alive(worker, now)
            state = "alive" if alive else ("gone" if worker.gone_at else "silent")
            seen = f"{(now - worker.heartbeat_at).total_seconds():.0f}s ago"
            started = formats.clock(worker.started_at, seconds=True)
            running = ", ".join(f"#{chunk.batch_id}/{chunk.index}" for chunk in held[worker.pk]) or "-"
            self.stdout.write(
                f"{worker.pk:>5}  {f'{worker.host}:{worker.pid}':<28} {worker.threads:>7}  {state:<7} {started:<12} "
                f"{seen:>9} {worker.items_per_second:>8.1f}  {running}"
            )
        if not listed:
            self.stdout.write("No worker is running: start one with `python manage.py rundramatiq`.")
