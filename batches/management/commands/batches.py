"""`python manage.py batches recover`: the recovery sweep, once, from the command line (or cron)."""

from django.core.management.base import BaseCommand

from batches.recovery import recover_stale


class Command(BaseCommand):
    help = "Operate on batches. 'recover': re-enqueue the work of every stale batch."

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["recover"])

    def handle(self, *args, action: str, **options):
        recovered = recover_stale()
        for item in recovered:
            self.stdout.write(f"Batch {item.batch_id}: {item.action}. {item.detail}".rstrip())
        self.stdout.write(f"{len(recovered)} stale batch(es) recovered.")
