from django.apps import AppConfig


class ReportOperationConfig(AppConfig):
    name = "tests.report_operation"
    label = "report_operation"

    def ready(self) -> None:
        from batches.operations import register

        from .operations import ReissueUnreissued

        register(ReissueUnreissued)
