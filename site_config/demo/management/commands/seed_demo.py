"""Idempotent demo data: users, events and their tickets. Safe to run at every start.

The demo users get random passwords, printed once when they are created; only `make run`
(`manage.py rundev`, on 127.0.0.1) asks for the well-known demo / demo with --demo-passwords.
An existing user's password is never changed.
"""

import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from site_config.demo.models import Event, Ticket

DEMO_PASSWORD = "demo"
SMALL_EVENT_TICKETS = 40


class Command(BaseCommand):
    help = "Create the demo users, events and tickets if they are missing."

    def add_arguments(self, parser):
        parser.add_argument(
            "--tickets", type=int, default=settings.DEMO_TICKETS_PER_EVENT, help="Tickets for each large event."
        )
        passwords = parser.add_mutually_exclusive_group()
        passwords.add_argument(
            "--random-passwords",
            action="store_true",
            help="New demo users get random passwords, printed once (the default).",
        )
        passwords.add_argument(
            "--demo-passwords",
            action="store_true",
            help=f"New demo users get the password '{DEMO_PASSWORD}': only for a local `make run`.",
        )

    @transaction.atomic
    def handle(self, *args, tickets: int, demo_passwords: bool, **options):
        created = self._users(demo_passwords)
        now = timezone.now()
        for days, name, count in [
            (30, "Autumn Conference", tickets),
            (60, "Winter Festival", tickets),
            (7, "Team Offsite", SMALL_EVENT_TICKETS),
        ]:
            event, _ = Event.objects.get_or_create(name=name, defaults={"starts_at": now + timedelta(days=days)})
            self._tickets(event, count)
        for username, password in created.items():
            self.stdout.write(f"Created user {username} with password: {password}")
        self.stdout.write("Demo data ready. Existing users keep their passwords.")

    def _users(self, demo_passwords: bool) -> dict[str, str]:
        """Create the demo users that are missing; returns {username: password} of those created."""
        users = get_user_model()
        created: dict[str, str] = {}

        def password() -> str:
            return DEMO_PASSWORD if demo_passwords else secrets.token_urlsafe(12)

        if not users.objects.filter(username="demo").exists():
            created["demo"] = password()
            users.objects.create_superuser("demo", "demo@example.com", created["demo"])
        if not users.objects.filter(username="colleague").exists():
            created["colleague"] = password()
            colleague = users.objects.create_user("colleague", "colleague@example.com", created["colleague"])
            colleague.user_permissions.add(Permission.objects.get(codename="reissue_tickets"))
        return created

    def _tickets(self, event: Event, count: int) -> None:
        have = set(event.tickets.values_list("number", flat=True))
        Ticket.objects.bulk_create(
            [
                Ticket(event=event, number=n, holder=f"Guest {n}", code=secrets.token_hex(8))
                for n in range(1, count + 1)
                if n not in have
            ],
            batch_size=2000,
        )
