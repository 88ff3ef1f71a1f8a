from django.apps import AppConfig


class AdminConfig(AppConfig):
    """The batches' admin: an app of its own, so that a host chooses it (its registrations are in
    admin.py, autodiscovered as this app's; its templates in templates/admin/batches/)."""

    name = "batches.admin"
    label = "batches_admin"
    verbose_name = "Bulk operations: admin"
