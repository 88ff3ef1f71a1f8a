"""The engine's settings (batches/conf.py): a default for each, the project's value when it sets one, the
site's environment variables as documented, the README's table, and no other setting read anywhere."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from django.conf import global_settings
from django.db import connection

from batches.conf import PREFIX, all_settings, batches_settings, settings_table
from tests.support import BASE_DIR, subprocess_env

ENGINE = BASE_DIR / "batches"


def attribute(setting) -> str:
    return setting.name.removeprefix(PREFIX)


def test_a_setting_the_project_leaves_out_has_its_default(settings):
    for setting in all_settings():
        if hasattr(settings, setting.name):
            delattr(settings, setting.name)
        assert getattr(batches_settings, attribute(setting)) == setting.default_value(), setting.name
    assert batches_settings.CHECKPOINT_SECONDS == 0.5
    assert batches_settings.METRICS_ALLOWED_ADDRESSES == ["127.0.0.1", "::1"]


def test_a_setting_the_project_sets_wins_at_once(settings):
    settings.BATCHES_CHECKPOINT_SECONDS = 2
    assert batches_settings.CHECKPOINT_SECONDS == 2


@pytest.mark.django_db
def test_the_engine_uses_a_default_the_project_left_out(settings, client, django_user_model):
    """BATCHES_API_MAX_BODY_BYTES, 64 KiB by default: a bigger body gets 413, that one does not."""
    if hasattr(settings, "BATCHES_API_MAX_BODY_BYTES"):
        del settings.BATCHES_API_MAX_BODY_BYTES
    for length, refused in ((64 * 1024 + 1, True), (64 * 1024, False)):
        response = client.post("/api/batches", "x" * length, content_type="application/json")
        assert (response.status_code == 413) is refused, (length, response.status_code)


@pytest.mark.both_backends
def test_the_checkpoint_pause_is_for_sqlite_alone(settings):
    if hasattr(settings, "BATCHES_CHECKPOINT_PAUSE_SECONDS"):
        del settings.BATCHES_CHECKPOINT_PAUSE_SECONDS
    pause = batches_settings.CHECKPOINT_PAUSE_SECONDS
    assert pause == (0.1 if connection.vendor == "sqlite" else 0)


def test_an_unknown_setting_is_an_error_in_the_engine_not_a_silent_none():
    with pytest.raises(AttributeError, match="not a setting of the engine"):
        batches_settings.CHECKPOINT_SECOND  # noqa: B018


def site_settings(**environment: str) -> dict[str, object]:
    """The engine's settings as the site's settings.py makes them from `environment`, in a fresh process."""
    script = textwrap.dedent(
        """
        import json, django
        django.setup()
        from django.conf import settings
        from batches.conf import all_settings
        # BATCHES_CLIENT_ADDRESS names the site's code; it does not come from the environment.
        names = [s.name for s in all_settings() if s.name != "BATCHES_CLIENT_ADDRESS"]
        print(json.dumps({name: getattr(settings, name) for name in names if hasattr(settings, name)}))
        """
    )
    env = subprocess_env(DJANGO_SETTINGS_MODULE="site_config.settings", **environment)
    for setting in all_settings():
        env.pop(setting.name, None)
    env.update(environment)
    run = subprocess.run([sys.executable, "-c", script], cwd=BASE_DIR, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.splitlines()[-1])


def test_the_site_sets_only_what_its_environment_says_under_the_documented_names():
    environment = {
        "API_MAX_BODY_BYTES": "1000",
        "API_BAD_TOKEN_LIMIT": "3",
        "API_BAD_TOKEN_WINDOW_SECONDS": "60",
        "METRICS_ALLOWED_ADDRESSES": "10.0.0.0/8, ::1",
        "METRICS_TOKEN": "t0ken",
        "METRICS_TOKEN_UNRELATED": "x",
        "BATCHES_CHECKPOINT_SECONDS": "1.5",
        "BATCHES_MAX_RECOVERIES": "3",
    }
    unset = ["API_MAX_BODY_BYTES", "API_BAD_TOKEN_LIMIT", "API_BAD_TOKEN_WINDOW_SECONDS", "METRICS_ALLOWED_ADDRESSES"]
    assert site_settings(**dict.fromkeys(unset, "")) == {}
    assert site_settings(**environment) == {
        "BATCHES_API_MAX_BODY_BYTES": 1000,
        "BATCHES_API_BAD_TOKEN_LIMIT": 3,
        "BATCHES_API_BAD_TOKEN_WINDOW_SECONDS": 60,
        "BATCHES_METRICS_ALLOWED_ADDRESSES": ["10.0.0.0/8", "::1"],
        "BATCHES_METRICS_TOKEN": "t0ken",
        "BATCHES_CHECKPOINT_SECONDS": 1.5,
        "BATCHES_MAX_RECOVERIES": 3,
    }


def test_every_batches_variable_the_readme_names_reaches_its_setting():
    """The README's `BATCHES_*` row: each engine setting from the variable of the same name."""
    texts = ("BATCHES_CLIENT_ADDRESS", "BATCHES_SITE_URL", "BATCHES_EXPORT_STORAGE")
    environment = {
        setting.name: "7"
        for setting in all_settings()
        if not setting.name.startswith(("BATCHES_API", "BATCHES_METRICS")) and setting.name not in texts
    }
    assert site_settings(**environment) == dict.fromkeys(environment, 7)


def test_the_readme_settings_table_is_confs():
    readme = (BASE_DIR / "README.md").read_text()
    assert settings_table() in readme, "README.md's settings table should read:\n" + settings_table()


def settings_reads(path: Path) -> list[tuple[int, str]]:
    """(line, name) of each `settings.NAME` and `getattr(settings, ...)` where `settings` is Django's."""
    tree = ast.parse(path.read_text())
    imported = any(
        isinstance(node, ast.ImportFrom)
        and node.module == "django.conf"
        and any(a.name == "settings" for a in node.names)
        for node in ast.walk(tree)
    )
    if not imported:
        return []
    reads = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "settings":
            reads.append((node.lineno, node.attr))
        elif isinstance(node, ast.Call) and [ast.unparse(arg) for arg in node.args[:1]] == ["settings"]:
            reads.append((node.lineno, f"{ast.unparse(node.func)}(settings, ...)"))
    return reads


def test_the_engine_reads_its_settings_in_conf_and_no_setting_of_the_site():
    djangos = {name for name in dir(global_settings) if name.isupper()}
    strays = []
    for path in sorted(ENGINE.rglob("*.py")):
        relative = path.relative_to(ENGINE).as_posix()
        if relative == "conf.py" or "migrations" in path.parts:
            continue
        strays += [f"batches/{relative}:{line} {name}" for line, name in settings_reads(path) if name not in djangos]
    assert strays == [], "read these through batches.conf.batches_settings"
