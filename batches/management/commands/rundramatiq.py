"""django_dramatiq's `rundramatiq`, running Dramatiq's CLI through batches.engine.worker_main (SIGQUIT as
SIGTERM). It takes precedence because batches comes before django_dramatiq in INSTALLED_APPS."""

from __future__ import annotations

import os
import sys
from typing import Any
from unittest import mock

from django_dramatiq.management.commands.rundramatiq import Command as DramatiqCommand


class Command(DramatiqCommand):
    def handle(self, *args: Any, **options: Any) -> None:
        # The parent builds Dramatiq's command line and execs `dramatiq` with it: exec the same
        # arguments through our entry point instead.
        exec_dramatiq = os.execvp

        def exec_worker_main(path: str, argv: list[str]) -> None:
            exec_dramatiq(sys.executable, [sys.executable, "-m", "batches.engine.worker_main", *argv[1:]])

        with mock.patch.object(os, "execvp", exec_worker_main):
            super().handle(*args, **options)
