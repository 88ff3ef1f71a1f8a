"""The JSON API (django-ninja): an app of its own, `batches.api`; its routes are `batches.api.urls.api`."""
