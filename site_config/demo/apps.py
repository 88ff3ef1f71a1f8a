from django.apps import AppConfig


class DemoConfig(AppConfig):
    """The demo domain (events and their tickets) and its operation, kept apart from the engine."""

    name = "site_config.demo"
    label = "demo"
    verbose_name = "Demo: events and tickets"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Here, not at the top: the operation uses the demo's models, which exist once the apps are loaded.
        from . import operations  # noqa: F401 - registers the demo operation
