from django.apps import AppConfig


class WebConfig(AppConfig):
    """The HTML UI: the panel, a batch's page, the history; its templates and static files."""

    name = "batches.web"
    label = "batches_web"
    verbose_name = "Bulk operations: web UI"
