from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class BatchesConfig(AppConfig):
    name = "batches"
    verbose_name = "Bulk operations"
    # What the migrations were made with, whatever the host's DEFAULT_AUTO_FIELD.
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here, not at the top: the actors use models, which exist only once the apps are loaded.
        from . import checks  # noqa: F401 - the checks register themselves
        from .engine import actors  # noqa: F401 - the actors declare themselves on the broker

        # Every installed app's `operations` module registers its operations (as the admin finds each app's
        # `admin`): in the web server and in every worker process alike, since both load the apps.
        autodiscover_modules("operations")
