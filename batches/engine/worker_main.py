"""Dramatiq's CLI with SIGQUIT taken as SIGTERM, in its main process and in the worker processes it forks.

Dramatiq's main process handles SIGTERM, SIGINT and SIGHUP; a SIGQUIT (some supervisors' and images'
stop signal) kills it on the spot and orphans its workers. Here a SIGQUIT becomes a SIGTERM to the
same process, before Dramatiq starts: the main process forwards it as it forwards a SIGTERM, and a
worker process (which inherits this handler) stops gracefully (batches/engine/middleware.py). Run by
`manage.py rundramatiq` (batches/management/commands/rundramatiq.py).
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType

from dramatiq import cli


def _as_sigterm(signum: int, frame: FrameType | None) -> None:
    os.kill(os.getpid(), signal.SIGTERM)


def main() -> None:
    signal.signal(signal.SIGQUIT, _as_sigterm)
    sys.argv[0] = "dramatiq"
    sys.exit(cli.main())


if __name__ == "__main__":
    main()
