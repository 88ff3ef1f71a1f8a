"""The paths the probes and Prometheus call. Free of Django imports: the site's access-log filter
reads it while logging is configured, before any app is loaded."""

PROBE_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
