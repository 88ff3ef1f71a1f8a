from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q

from .operations import label_of


class BatchStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    FINISHED = "finished", "Finished"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


ACTIVE_STATUSES = (BatchStatus.QUEUED, BatchStatus.RUNNING)


class BatchQuerySet(models.QuerySet["Batch"]):
    def active(self) -> BatchQuerySet:
        return self.filter(status__in=ACTIVE_STATUSES)


class Batch(models.Model):
    """One run of an operation over the items of one scope; Postgres holds its whole truth."""

    operation = models.CharField(max_length=100, db_index=True)
    scope_key = models.CharField(max_length=255)
    scope_label = models.CharField(max_length=255, blank=True)
    params = models.JSONField(default=dict)
    status = models.CharField(max_length=20, choices=BatchStatus.choices, default=BatchStatus.QUEUED)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    total = models.PositiveIntegerField(null=True, blank=True, help_text="Known once planned.")
    done_count = models.PositiveIntegerField(default=0)
    failed_count = models.PositiveIntegerField(default=0)
    skipped_count = models.PositiveIntegerField(default=0)
    pending_chunks = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True, help_text="Why the batch failed, when it did.")
    retry_of = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="retries",
        help_text="The batch whose failed items this one runs again.",
    )
    cancelled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    recoveries = models.PositiveIntegerField(default=0, help_text="Times the recovery sweep re-enqueued it.")
    fairness_key = models.CharField(
        max_length=255, blank=True, help_text="Batches with one key share one fair share of the worker pool."
    )
    fairness_weight = models.FloatField(default=1.0, help_text="The key's share relative to other keys.")
    max_parallel = models.PositiveIntegerField(default=1, help_text="Chunks of this batch run at once, at most.")
    worker_lost_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When a worker running it that was found dead was last heard from: the time its loss is told by.",
    )
    processed_at_loss = models.PositiveIntegerField(
        null=True, blank=True, help_text="Items processed when that worker was lost: where the run resumes."
    )
    resumed_at = models.DateTimeField(
        null=True, blank=True, help_text="When that worker's chunks were handed over to run again."
    )
    paused_seconds = models.FloatField(
        default=0.0, help_text="Time it stood still for want of a worker: not counted in its rate."
    )
    notify = models.BooleanField(
        default=False, help_text="Email the person who started it when it ends (batches/engine/outbox.py)."
    )
    site_url = models.CharField(
        max_length=255,
        blank=True,
        help_text="The site's address as the start's request gave it: the base of the links its email carries.",
    )
    planning_worker = models.BigIntegerField(
        null=True,
        blank=True,
        help_text="The registry's id of the worker that last began planning it: re-planned at once if that one dies.",
    )

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(
        null=True, blank=True, help_text="Without a checkpoint by then, the batch is stale and gets recovered."
    )
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = BatchQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "batches"
        ordering = ["-created_at", "-id"]
        constraints = [
            # The last line of the guard: whatever happens above, one active batch per scope.
            models.UniqueConstraint(
                fields=["operation", "scope_key"],
                condition=Q(status__in=ACTIVE_STATUSES),
                name="one_active_batch_per_scope",
            ),
        ]
        indexes = [
            models.Index(fields=["operation", "scope_key", "-created_at"]),
            models.Index(fields=["lease_expires_at"], condition=Q(status__in=ACTIVE_STATUSES), name="active_lease"),
        ]

    def __str__(self) -> str:
        # As the app names it (the admin titles its pages with this): "Reissue tickets: Gala (#3)".
        return f"{label_of(self.operation)}: {self.scope_label or self.scope_key} (#{self.pk})"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def processed(self) -> int:
        return self.done_count + self.failed_count + self.skipped_count


class Notification(models.Model):
    """The email a batch's end owes the person who started it: written in the transaction that ends
    the batch (so an end without its row cannot commit), sent and marked by a worker."""

    batch = models.OneToOneField(Batch, on_delete=models.CASCADE, related_name="notification")
    recipient = models.CharField(max_length=254)
    created_at = models.DateTimeField()
    next_attempt_at = models.DateTimeField(help_text="Not sent before then (a failed send waits longer each time).")
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["next_attempt_at"], condition=Q(sent_at__isnull=True), name="unsent_notification")
        ]

    def __str__(self) -> str:
        return f"email to {self.recipient} for batch #{self.batch_id}"


class Chunk(models.Model):
    """A contiguous key range of a batch's items, run by one message at a time from its cursor."""

    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="chunks")
    index = models.PositiveIntegerField()
    after_key = models.BigIntegerField(null=True, blank=True, help_text="Items with key > this …")
    last_key = models.BigIntegerField(help_text="… and ≤ this belong to the chunk.")
    size = models.PositiveIntegerField()
    cursor = models.BigIntegerField(null=True, blank=True, help_text="Last item committed.")
    done_count = models.PositiveIntegerField(default=0)
    failed_count = models.PositiveIntegerField(default=0)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Who runs it now. A claim only schedules work (and shows it); what keeps two runners of one chunk
    # from doing an item twice is the checkpoint's commit, conditional on the claim's token and the
    # cursor it began from (batches/engine/runner.py).
    claimed_by = models.ForeignKey("Worker", null=True, blank=True, on_delete=models.SET_NULL, related_name="claims")
    claim_generation = models.PositiveBigIntegerField(
        default=0, help_text="The claim's fencing token: bumped by every claim, release and hand-over."
    )
    claimed_at = models.DateTimeField(null=True, blank=True, help_text="When it was last claimed.")
    handed_over_at = models.DateTimeField(
        null=True, blank=True, help_text="Taken from a dead worker, until its next checkpoint."
    )

    class Meta:
        constraints = [models.UniqueConstraint(fields=["batch", "index"], name="chunk_index_per_batch")]
        indexes = [
            models.Index(fields=["batch", "index"], condition=Q(finished_at__isnull=True), name="unfinished_chunk"),
            models.Index(fields=["claimed_by"], condition=Q(claimed_by__isnull=False), name="claimed_chunk"),
        ]

    def __str__(self) -> str:
        return f"chunk {self.index} of batch #{self.batch_id}"


class WorkerQuerySet(models.QuerySet["Worker"]):
    def alive(self, now: datetime, silence: timedelta) -> WorkerQuerySet:
        return self.filter(gone_at__isnull=True, heartbeat_at__gte=now - silence)


class Worker(models.Model):
    """A worker process (one per `rundramatiq` process), heartbeating from a thread of its own."""

    host = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    threads = models.PositiveIntegerField()
    queues = models.JSONField(default=list)
    version = models.CharField(max_length=100, blank=True)
    started_at = models.DateTimeField()
    heartbeat_at = models.DateTimeField()
    gone_at = models.DateTimeField(null=True, blank=True, help_text="Stopped, or declared dead.")
    gone_reason = models.CharField(max_length=255, blank=True)
    items_done = models.PositiveBigIntegerField(default=0, help_text="Items this process has committed.")
    items_per_second = models.FloatField(default=0.0, help_text="Over the last heartbeat interval.")

    objects = WorkerQuerySet.as_manager()

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["heartbeat_at"], condition=Q(gone_at__isnull=True), name="live_worker")]

    def __str__(self) -> str:
        return f"{self.host}:{self.pid} (#{self.pk})"


class ItemFailure(models.Model):
    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="failures")
    item_key = models.CharField(max_length=255)
    item_pk = models.BigIntegerField(help_text="The item's primary key: what a retry runs again.")
    error = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["batch", "item_key"], name="one_failure_per_item")]
        # A batch's failures in item order (selectors.failures), a page at a time, however many.
        indexes = [models.Index(fields=["batch", "item_pk"], name="failure_in_item_order")]

    def __str__(self) -> str:
        return f"item {self.item_key} of batch #{self.batch_id}"


class Checkpoint(models.Model):
    """What one committed checkpoint did: the keys of the items it did, written in the checkpoint's
    own transaction (so a checkpoint redone after a crash is recorded once). A batch's report lists
    its done items from these, not from what its operation's `items()` matches now."""

    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="checkpoints")
    first_key = models.BigIntegerField(help_text="The first item it did …")
    last_key = models.BigIntegerField(help_text="… and the last, by primary key.")
    done = models.PositiveIntegerField(help_text="Items it did (its failures are item failures).")
    done_keys = models.BinaryField(help_text="Their keys, as runs of consecutive keys (batches.done_keys).")
    committed_at = models.DateTimeField()

    class Meta:
        # A batch's checkpoints in key order (batches.report), a page at a time.
        indexes = [models.Index(fields=["batch", "first_key"], name="checkpoint_in_key_order")]

    def __str__(self) -> str:
        return f"items {self.first_key} to {self.last_key} of batch #{self.batch_id}"


class ApiToken(models.Model):
    """A personal API token, sent as `Authorization: Bearer <token>`. Only its hash is kept."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, help_text="What it is for, e.g. 'nightly sync'.")
    prefix = models.CharField(max_length=12, editable=False, help_text="The token's first characters.")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class IdempotencyRecord(models.Model):
    """A request made with an Idempotency-Key: claimed while in flight, then its response kept."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of the request's method, path and body.")
    response_status = models.PositiveSmallIntegerField(null=True, blank=True, help_text="Empty while in flight.")
    response_body = models.JSONField(null=True, blank=True)
    response_headers = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="one_record_per_user_key")]

    def __str__(self) -> str:
        return f"{self.key} ({self.user_id})"


class ExportPart(models.Model):
    """The rows one committed checkpoint of an export wrote: a file in the export storage, recorded in
    the checkpoint's own transaction. A checkpoint redone after a crash starts from the same cursor,
    so it writes the same name again (overwriting what the lost attempt left) and is recorded once."""

    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="export_parts")
    after_key = models.BigIntegerField(help_text="Its rows have keys > this (0: from the first) …")
    last_key = models.BigIntegerField(help_text="… and ≤ this.")
    name = models.CharField(max_length=500, help_text="The part's name in the export storage.")
    rows = models.PositiveIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["batch", "after_key"], name="one_part_per_cursor")]

    def __str__(self) -> str:
        return f"rows after {self.after_key} of batch #{self.batch_id}"


class ExportFile(models.Model):
    """The file an export batch produced, once assembled from its parts: where it is in the export
    storage, what it holds, and until when it is kept."""

    batch = models.OneToOneField(Batch, on_delete=models.CASCADE, related_name="export_file")
    name = models.CharField(max_length=500, help_text="The file's name in the export storage.")
    download_name = models.CharField(max_length=255, help_text="The name a download is saved under.")
    content_type = models.CharField(max_length=100)
    rows = models.PositiveBigIntegerField(help_text="Data rows, the header not counted.")
    bytes = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField(db_index=True)
    deleted_at = models.DateTimeField(null=True, blank=True, help_text="When the expired file was deleted.")

    def __str__(self) -> str:
        return self.download_name

    @property
    def expired(self) -> bool:
        from django.utils import timezone

        return self.deleted_at is not None or self.expires_at <= timezone.now()
