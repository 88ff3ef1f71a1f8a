from django.db import models


class Event(models.Model):
    name = models.CharField(max_length=200, unique=True)
    starts_at = models.DateTimeField()

    class Meta:
        ordering = ["starts_at", "id"]
        permissions = [("reissue_tickets", "Can reissue an event's tickets")]

    def __str__(self) -> str:
        return self.name


class Ticket(models.Model):
    # The keyset index below serves the foreign key too.
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="tickets", db_index=False)
    number = models.PositiveIntegerField(help_text="Seat number within the event, from 1.")
    holder = models.CharField(max_length=200)
    code = models.CharField(max_length=32)
    reissue_count = models.PositiveIntegerField(default=0)
    reissued_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["event", "number"]
        constraints = [models.UniqueConstraint(fields=["event", "number"], name="one_ticket_per_seat")]
        # The engine walks an event's tickets in primary-key pages (WHERE event_id = … AND id > …
        # ORDER BY id): this index makes every page a short range scan, however large the event.
        indexes = [models.Index(fields=["event", "id"], name="ticket_event_keyset")]

    def __str__(self) -> str:
        return f"{self.event} #{self.number}"
