"""The batches' Django admin: an app of its own (batches.admin), its registrations in admin.py."""
