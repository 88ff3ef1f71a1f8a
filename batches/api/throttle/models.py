from django.db import models


class FailureWindow(models.Model):
    """The failures of one kind (e.g. bad API tokens) from one client address since `started_at`."""

    kind = models.CharField(max_length=32)
    client = models.CharField(max_length=64)
    started_at = models.DateTimeField()
    failures = models.PositiveIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["kind", "client"], name="throttle_one_window_per_client")]
        indexes = [models.Index(fields=["kind", "started_at"], name="throttle_window_age")]

    def __str__(self) -> str:
        return f"{self.kind} from {self.client}: {self.failures} since {self.started_at:%Y-%m-%d %H:%M:%S}"
