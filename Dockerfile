# One image for the web server (granian, site_config/web_server.py) and the worker (rundramatiq).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    STATIC_ROOT=/app/staticfiles

WORKDIR /app
# Exactly the packages of the lock file, each checked against its hashes (`make lock` updates it).
COPY requirements.lock .
RUN pip install --require-hashes -r requirements.lock

COPY manage.py ./
COPY site_config ./site_config
COPY batches ./batches
COPY templates ./templates
COPY static ./static
# collectstatic needs a key to import the settings; it is not the one the app runs with.
RUN SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput \
    && useradd --system --uid 10001 --home-dir /app app \
    && mkdir /data && chown app:app /data && chmod 0700 /data
# The app's writable directory (/app is root's): the SECRET_KEY generated when none is set and, without
# DATABASE_URL, the SQLite database. Mount a volume there to keep them (`docker run -v batches-data:/data`).
ENV DATA_DIR=/data
USER app

# 8000: the web server (/healthz, /readyz, /metrics); 9191: a worker's Dramatiq exporter (DRAMATIQ_PROMETHEUS=1).
EXPOSE 8000 9191
# granian stops on SIGTERM once the requests in flight are answered (30 s at most).
CMD ["python", "-m", "site_config.web_server"]
