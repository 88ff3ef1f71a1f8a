from django.apps import AppConfig


class AdminConfig(AppConfig):
    """The batches' admin: an app of its own, so that a host chooses it (its registrations are in
    admin.py, autodiscovered as this app's; its templates in templates/admin/batches/)."""

    name = "batches.admin"
    label = "batches_admin"
    verbose_name = "Bulk operations: admin"

    def ready(self) -> None:
        from batches.selection import set_resolver

        from .selected_rows import resolve

        # In the workers too: they list an admin action's selection again when they plan it.
        set_resolver(resolve)
