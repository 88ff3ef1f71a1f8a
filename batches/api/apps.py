from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "batches.api"
    label = "batches_api"
    verbose_name = "Bulk operations: JSON API"

    def ready(self) -> None:
        # Here, not at the top: it uses the user model, which exists once the apps are loaded.
        from . import accounts

        accounts.connect()  # a password change revokes the user's API tokens
