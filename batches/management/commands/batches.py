"""`manage.py batches recover`: the recovery sweep, once (from a shell or cron).
`manage.py batches token USERNAME`: a new API token for USERNAME, printed once."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from batches.api.tokens import create_token
from batches.recovery import recover_stale


class Command(BaseCommand):
    help = "Operate on batches: 'recover' re-enqueues stale batches; 'token USERNAME' creates an API token."

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True)
        actions.add_parser("recover", help="Re-enqueue the work of every stale batch.")
        token = actions.add_parser("token", help="Create an API token and print it (shown only once).")
        token.add_argument("username")
        token.add_argument("--name", default="command line", help="What the token is for.")

    def handle(self, *args, action: str, **options):
        if action == "token":
            user = get_user_model().objects.filter(username=options["username"]).first()
            if user is None:
                raise CommandError(f"No user {options['username']!r}.")
            _, raw = create_token(user, options["name"])
            self.stdout.write(raw)
            return
        recovered = recover_stale()
        for item in recovered:
            self.stdout.write(f"Batch {item.batch_id}: {item.action}. {item.detail}".rstrip())
        self.stdout.write(f"{len(recovered)} stale batch(es) recovered.")
