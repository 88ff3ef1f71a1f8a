from django.db import models


class Ledger(models.Model):
    """The scope of a batch: one ledger's records."""

    name = models.CharField(max_length=200, unique=True)

    class Meta:
        ordering = ["id"]
        permissions = [("mark_records", "Can mark a ledger's records")]

    def __str__(self) -> str:
        return self.name


class Record(models.Model):
    # The keyset index below serves the foreign key too.
    ledger = models.ForeignKey(Ledger, on_delete=models.CASCADE, related_name="records", db_index=False)
    number = models.PositiveIntegerField(help_text="The record's number within its ledger, from 1.")
    # How many times the operation handled the record: exactly once is what the engine promises.
    marks = models.PositiveIntegerField(default=0)
    done = models.BooleanField(default=False)

    class Meta:
        ordering = ["ledger", "number"]
        constraints = [models.UniqueConstraint(fields=["ledger", "number"], name="one_record_per_number")]
        indexes = [models.Index(fields=["ledger", "id"], name="record_ledger_keyset")]

    def __str__(self) -> str:
        return f"{self.ledger} #{self.number}"
