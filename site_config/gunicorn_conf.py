"""gunicorn's settings for the Dockerfile, docker-compose.yml, the tests and `make bench`.

gthread workers: every open progress page keeps a connection and polls it every second, and a
gthread worker (gunicorn 24+) holds a thread for a new connection until its first request
arrives, so threads, not processes, absorb many pages. Each thread also keeps a Postgres
connection (CONN_MAX_AGE): workers x threads must stay under Postgres' max_connections (100 by
default). What this costs and buys is measured in bench/RESULTS.md (row 4) and the README.
"""

import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", "3"))
threads = int(os.environ.get("GUNICORN_THREADS", "16"))
timeout = 60
accesslog = "-"
