from django.apps import AppConfig


class CliConfig(AppConfig):
    """`manage.py batches`: start, follow, list and cancel batches from a terminal."""

    name = "batches.cli"
    label = "batches_cli"
    verbose_name = "Bulk operations: terminal client"
