"""A password change or reset revokes the user's API tokens: whoever knew the old password may hold one.

Detected on save of the user model by comparing the stored password hash, so it covers every path
that saves the user: set_password() + save(), the admin's password form, the password change and
reset views, `manage.py changepassword`. A hash upgrade on login is not a change and revokes nothing.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db.models.signals import post_save, pre_save

from batches import tokens

_CHANGED = "_batches_password_changed"


def _is_hash_upgrade(user: AbstractBaseUser, update_fields: frozenset[str] | None) -> bool:
    # AbstractBaseUser.check_password re-hashes with the current hasher and saves exactly this way,
    # having reset `_password` (Django: "Password hash upgrades shouldn't be considered password changes").
    return update_fields == frozenset({"password"}) and getattr(user, "_password", None) is None


def note_password_change(
    sender: type[AbstractBaseUser],
    instance: AbstractBaseUser,
    raw: bool = False,
    update_fields: frozenset[str] | None = None,
    **kwargs: Any,
) -> None:
    if raw or instance._state.adding or (update_fields is not None and "password" not in update_fields):
        return
    stored = sender._default_manager.filter(pk=instance.pk).values_list("password", flat=True).first()
    changed = stored is not None and stored != instance.password and not _is_hash_upgrade(instance, update_fields)
    setattr(instance, _CHANGED, changed)


def revoke_tokens_after_password_change(
    sender: type[AbstractBaseUser], instance: AbstractBaseUser, **kwargs: Any
) -> None:
    if getattr(instance, _CHANGED, False):
        setattr(instance, _CHANGED, False)
        tokens.revoke_all_of(instance)


def connect() -> None:
    user_model = get_user_model()
    pre_save.connect(note_password_change, sender=user_model, dispatch_uid="batches.note_password_change")
    post_save.connect(
        revoke_tokens_after_password_change, sender=user_model, dispatch_uid="batches.revoke_tokens_on_password"
    )
