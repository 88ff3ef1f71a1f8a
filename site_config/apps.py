from django.apps import AppConfig


class SiteConfig(AppConfig):
    """This site's own decisions around the engine: login lockout, the user admin's guard, security
    headers, error pages, the viewer's time zone, logs, `rundev`. None of it is the engine's."""

    name = "site_config"
    verbose_name = "Site"
