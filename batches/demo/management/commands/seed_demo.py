"""Idempotent demo data: users, events and their tickets. Safe to run at every start."""

import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from batches.demo.models import Event, Ticket

DEMO_PASSWORD = "demo"
SMALL_EVENT_TICKETS = 40


class Command(BaseCommand):
    help = "Create the demo users, events and tickets if they are missing."

    def add_arguments(self, parser):
        parser.add_argument(
            "--tickets", type=int, default=settings.DEMO_TICKETS_PER_EVENT, help="Tickets for each large event."
        )

    @transaction.atomic
    def handle(self, *args, tickets: int, **options):
        self._users()
        now = timezone.now()
        for days, name, count in [
            (30, "Autumn Conference", tickets),
            (60, "Winter Festival", tickets),
            (7, "Team Offsite", SMALL_EVENT_TICKETS),
        ]:
            event, _ = Event.objects.get_or_create(name=name, defaults={"starts_at": now + timedelta(days=days)})
            self._tickets(event, count)
        self.stdout.write(f"Demo data ready. Log in as demo / {DEMO_PASSWORD} (or colleague / {DEMO_PASSWORD}).")

    def _users(self) -> None:
        users = get_user_model()
        if not users.objects.filter(username="demo").exists():
            users.objects.create_superuser("demo", "demo@example.com", DEMO_PASSWORD)
        if not users.objects.filter(username="colleague").exists():
            colleague = users.objects.create_user("colleague", "colleague@example.com", DEMO_PASSWORD)
            colleague.user_permissions.add(Permission.objects.get(codename="reissue_tickets"))

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
