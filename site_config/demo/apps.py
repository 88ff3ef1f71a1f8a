from django.apps import AppConfig


class DemoConfig(AppConfig):
    """The demo domain (events and their tickets) and its operation, kept apart from the engine. Its
    operations.py is found by the engine, as any installed app's is."""

    name = "site_config.demo"
    label = "demo"
    verbose_name = "Demo: events and tickets"
    default_auto_field = "django.db.models.BigAutoField"
