from django.apps import AppConfig


class ThrottleConfig(AppConfig):
    name = "batches.api.throttle"
    label = "throttle"
    verbose_name = "Throttles"
    default_auto_field = "django.db.models.BigAutoField"
