"""gunicorn, tuned as far as Postgres' connections allow: the runner-up of `make bench` row 4.

The app is served by granian (site_config/web_server.py); this file keeps gunicorn measured
beside it. gthread workers: every open progress page keeps a connection and polls it every
second, and a gthread worker (gunicorn 24+) holds a thread for a new connection until its first
request arrives (up to 5 s), so threads, not processes, absorb a burst of pages. Each thread
also keeps a Postgres connection (CONN_MAX_AGE): 2 x 32 = 64 threads is the most that leaves
room under max_connections (100) for the Dramatiq worker's and the admin's; 2 x 48 would
hold a burst of 200 pages better and does not fit.
"""

import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "32"))
# A page polls every second: keep its connection between polls (gunicorn's default is 2 s).
keepalive = 5
backlog = 4096
timeout = 60
accesslog = "-"
# gunicorn 27 listens for `gunicornc` on a control socket at one fixed path per user
# (~/.gunicorn/gunicorn.ctl): two gunicorns on a machine (tests, bench, a developer's run)
# would take it from each other. Nothing here uses it.
control_socket_disable = True
