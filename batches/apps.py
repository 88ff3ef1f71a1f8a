from django.apps import AppConfig


class BatchesConfig(AppConfig):
    name = "batches"
    verbose_name = "Bulk operations"

    def ready(self) -> None:
        # Imported here, not at the top: the actors use models, which exist only once the apps are loaded.
        from .engine import actors  # noqa: F401 - the actors declare themselves on the broker
