from django.apps import AppConfig


class ExportOperationConfig(AppConfig):
    name = "tests.export_operation"
    label = "export_operation"

    def ready(self) -> None:
        from batches.operations import register

        from .operations import ExportTicketsSlowly

        register(ExportTicketsSlowly)
