"""`make run`: migrate, seed the demo, then serve the app with a worker beside it.

With a broker configured (REDIS_URL, or BROKER_URL for RabbitMQ), the worker is a separate
`rundramatiq` process (the production shape). Without one, a Dramatiq worker runs in this process
on the StubBroker.
"""

import subprocess
import sys

import dramatiq
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand
from dramatiq import Worker


class Command(BaseCommand):
    help = "Run the app for local use: migrations, demo data, web server and a Dramatiq worker."

    def add_arguments(self, parser):
        parser.add_argument("addrport", nargs="?", default="127.0.0.1:8000")
        parser.add_argument("--threads", type=int, help="Worker threads (default: 1 on SQLite, 2 otherwise).")

    def handle(self, *args, addrport: str, threads: int | None, **options):
        call_command("migrate", interactive=False, verbosity=0)
        call_command("seed_demo", demo_passwords=True)  # local only: the README's demo / demo
        database = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
        # SQLite has one writer at a time: a second worker thread would crowd out the web server.
        threads = threads or (1 if database == "sqlite3" else 2)
        if settings.BROKER_KIND != "stub":
            worker = subprocess.Popen(
                [sys.executable, "manage.py", "rundramatiq", "--processes", "1", "--threads", str(threads)]
            )
            self.stdout.write(f"Database: {database}. Broker: {settings.BROKER_KIND}; worker process {worker.pid}.")
            stop = worker.terminate
        else:
            worker = Worker(dramatiq.get_broker(), worker_threads=threads)
            worker.start()
            self.stdout.write(f"Database: {database}. Broker: in-process stub (set REDIS_URL for Redis).")
            stop = worker.stop
        self.stdout.write(f"Open http://{addrport}/ and log in as demo / demo.")
        try:
            call_command("runserver", addrport, use_reloader=False)
        finally:
            stop()
