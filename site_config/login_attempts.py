"""django-axes' database handler, with its reset-on-success narrowed.

axes' own reset deletes the failures of each lockout parameter on its own: every failure of the
account that logged in, and every failure recorded from the address it logged in from. So an
attacker who owns one account could guess another account's password four times, log in as
themselves, and start counting again: neither the per-account nor the per-address lock would
ever trip. Here a successful login forgives only what that account failed from that address
(its owner's own typos).

The database handler keeps the counts in the database, so they hold across web server processes
and work the same on Postgres and SQLite.
"""

from __future__ import annotations

from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_client_username
from axes.models import AccessAttempt
from django.http import HttpRequest


class LoginAttempts(AxesDatabaseHandler):
    def reset_user_attempts(self, request: HttpRequest, credentials: dict | None = None) -> int:
        username = get_client_username(request, credentials)
        deleted, _ = AccessAttempt.objects.filter(username=username, ip_address=request.axes_ip_address).delete()
        return deleted
