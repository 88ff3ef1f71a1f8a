from django.apps import AppConfig


class BatchesConfig(AppConfig):
    name = "batches"
    verbose_name = "Bulk operations"
    # What the migrations were made with, whatever the host's DEFAULT_AUTO_FIELD.
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here, not at the top: they use models, which exist only once the apps are loaded.
        from . import accounts, actors, checks  # noqa: F401 - actors declare themselves on the broker; checks register

        accounts.connect()  # a password change revokes the user's API tokens
