"""The site's choices in the admin (autodiscovered: site_config is an installed app)."""

from django.contrib import admin
from django.contrib.auth import get_user_model
from django_dramatiq import admin as dramatiq_admin

from .admin_users import GuardedUserAdmin

# django_dramatiq's task log: this site keeps none (its work is in batches), so the admin does not
# show an always-empty section. Importing its admin registers it first.
admin.site.unregister(dramatiq_admin.Task)
# Django's user admin lets staff who may change users make themselves superuser: not this one.
admin.site.unregister(get_user_model())
admin.site.register(get_user_model(), GuardedUserAdmin)
