from django.apps import AppConfig


class TestAppConfig(AppConfig):
    name = "tests.testapp"
    label = "testapp"
    verbose_name = "Test app: ledgers and their records"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Here, not at the top: the operation uses this app's models, which exist once the apps are loaded.
        from . import operations  # noqa: F401 - registers the test operation
