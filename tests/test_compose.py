"""docker-compose.yml as it is run: with nothing but the example .env, or with the one `make env` writes.

The compose client validates the files when there is one (no Docker engine is needed for that); the web
container's environment is worked out here from the compose file and the .env, as the client does, and
given to `manage.py check --deploy` in a process of its own.
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support import BASE_DIR

COMPOSE_FILES = ["docker-compose.yml", "docker-compose.monitoring.yml"]
# The settings the compose shape must keep on, by default, for the TLS proxy in front of it.
PRODUCTION_DEFAULTS = {
    "DEBUG": "0",
    "SECURE_SSL_REDIRECT": "1",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_COOKIES": "1",
    "SECURE_PROXY_SSL_HEADER": "1",
    "TRUSTED_PROXY_COUNT": "1",
}
VARIABLE = re.compile(r"\$(?:\$|\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<default>[^}]*))?\})")


def compose_client() -> list[str] | None:
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


def read_dotenv(path: Path) -> dict[str, str]:
    lines = (line.strip() for line in path.read_text().splitlines())
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def interpolate(text: str, values: dict[str, str]) -> str:
    """Compose's ${NAME}, ${NAME:-default}, ${NAME-default} and $$; ${NAME:?...} fails, as it does in compose."""

    def value(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        name, op = match["name"], match["op"]
        if op in (":?", "?"):
            pytest.fail(f"${{{name}{op}...}} makes every compose command fail without {name}")
        given = values.get(name)
        if op == ":-":
            return given or match["default"]
        if op == "-":
            return match["default"] if given is None else given
        return given or ""

    return VARIABLE.sub(value, text)


def project(tmp_path: Path, dotenv: str | None = None) -> Path:
    """The compose files in a folder of their own, with .env.example copied to .env (or `dotenv`)."""
    folder = tmp_path / "project"
    folder.mkdir()
    for name in [*COMPOSE_FILES, "Makefile", ".env.example", "requirements-dev.lock"]:
        shutil.copy(BASE_DIR / name, folder / name)
    shutil.copytree(BASE_DIR / "monitoring", folder / "monitoring")
    (folder / ".env").write_text(dotenv if dotenv is not None else (BASE_DIR / ".env.example").read_text())
    return folder


def web_environment(folder: Path) -> dict[str, str]:
    compose = yaml.safe_load((folder / "docker-compose.yml").read_text())
    dotenv = read_dotenv(folder / ".env")
    return {name: interpolate(str(value), dotenv) for name, value in compose["services"]["web"]["environment"].items()}


def check_deploy(environment: dict[str, str], data_dir: Path) -> subprocess.CompletedProcess[str]:
    # Only what the container has: the compose environment and the image's DATA_DIR (its volume).
    env = {"PATH": "/usr/bin:/bin", **environment, "DATA_DIR": str(data_dir)}
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def compose_config(client: list[str], folder: Path, files: list[str]) -> dict:
    arguments = [argument for name in files for argument in ("-f", name)]
    env = {"PATH": "/usr/bin:/bin:/usr/local/bin"}  # none of this shell's variables: only .env
    run = subprocess.run([*client, *arguments, "config"], cwd=folder, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return yaml.safe_load(run.stdout)


def test_compose_config_works_with_only_the_example_env_and_keeps_production_settings_on(tmp_path: Path):
    client = compose_client()
    if client is None:
        reason = "no compose client here (docker compose or docker-compose; Debian: apt-get install docker-compose)"
        print(f"SKIPPED: {reason}")
        pytest.skip(reason)
    folder = project(tmp_path)

    config = compose_config(client, folder, COMPOSE_FILES[:1])
    web = {name: str(value) for name, value in config["services"]["web"]["environment"].items()}
    assert {name: web[name] for name in PRODUCTION_DEFAULTS} == PRODUCTION_DEFAULTS
    # The environment the other tests work out is the one the compose client gives the container.
    assert web == web_environment(folder)
    assert "networks" not in config or "ipam" not in str(config["networks"])

    with_monitoring = compose_config(client, folder, COMPOSE_FILES)
    assert with_monitoring["services"]["web"]["environment"]["METRICS_ALLOWED_ADDRESSES"].endswith(",172.28.0.250")
    assert with_monitoring["networks"]["monitoring"]["ipam"]["config"] == [{"subnet": "172.28.0.0/16"}]

    # Before `make env` too: no variable is required, so logs, ps and down work whatever .env holds.
    (folder / ".env").unlink()
    bare = compose_config(client, folder, COMPOSE_FILES[:1])
    assert bare["services"]["web"]["environment"]["SECRET_KEY"] in ("", None)


def test_the_web_containers_environment_passes_check_deploy_with_the_example_env(tmp_path: Path):
    environment = web_environment(project(tmp_path))
    assert environment["SECRET_KEY"] == ""  # the example's: the key generated in the data volume is used
    data_dir = tmp_path / "data"
    data_dir.mkdir()

    run = check_deploy(environment, data_dir)

    assert run.returncode == 0, run.stdout + run.stderr
    assert len((data_dir / ".secret_key").read_text().strip()) >= 50
    # The same key the next time, in this container or the worker's (they share the volume).
    key = (data_dir / ".secret_key").read_text()
    assert check_deploy(environment, data_dir).returncode == 0
    assert (data_dir / ".secret_key").read_text() == key


def test_check_deploy_would_fail_with_the_security_settings_turned_off(tmp_path: Path):
    """The guard of the test above: the compose defaults are what makes it pass."""
    dotenv = (BASE_DIR / ".env.example").read_text() + "".join(f"{name}=0\n" for name in PRODUCTION_DEFAULTS)
    run = check_deploy(web_environment(project(tmp_path, dotenv)), tmp_path)
    assert run.returncode != 0
    assert all(f"security.{code}" in run.stdout + run.stderr for code in ["W004", "W008", "W012", "W016"])


def test_make_env_writes_a_key_and_a_password_once_and_keeps_them(tmp_path: Path):
    folder = project(tmp_path)
    (folder / ".env").unlink()

    subprocess.run(["make", "--no-print-directory", "env"], cwd=folder, check=True, capture_output=True)
    first = read_dotenv(folder / ".env")
    subprocess.run(["make", "--no-print-directory", "env"], cwd=folder, check=True, capture_output=True)

    assert read_dotenv(folder / ".env") == first
    assert len(first["SECRET_KEY"]) >= 50 and len(first["POSTGRES_PASSWORD"]) >= 32
    assert first["SECRET_KEY"] != first["POSTGRES_PASSWORD"]
    # Documented: every other line is the example's.
    assert (folder / ".env").read_text().count("\n") == (BASE_DIR / ".env.example").read_text().count("\n")
    environment = web_environment(folder)
    assert environment["SECRET_KEY"] == first["SECRET_KEY"]
    assert f":{first['POSTGRES_PASSWORD']}@db:5432/" in environment["DATABASE_URL"]
    assert check_deploy(environment, tmp_path).returncode == 0


def test_the_compose_file_restarts_every_service_stops_the_worker_within_its_budget_and_fixes_no_subnet():
    compose = yaml.safe_load((BASE_DIR / "docker-compose.yml").read_text())
    monitoring = yaml.safe_load((BASE_DIR / "docker-compose.monitoring.yml").read_text())
    services = compose["services"]

    assert {name: service.get("restart") for name, service in services.items()} == dict.fromkeys(
        ["db", "redis", "web", "worker"], "unless-stopped"
    )
    assert monitoring["services"]["prometheus"]["restart"] == "unless-stopped"

    # Docker waits stop_grace_period after SIGTERM, then kills: longer than Dramatiq's shutdown budget.
    worker_command = services["worker"]["command"]
    budget_ms = int(worker_command[worker_command.index("--worker-shutdown-timeout") + 1])
    grace = services["worker"]["stop_grace_period"]
    assert grace.endswith("s") and int(grace[:-1]) * 1000 > budget_ms
    # ... and that budget covers an item at the default time limit, which the checkpoint waits for.
    from batches.operations import Operation

    assert budget_ms >= Operation.item_time_limit * 1000

    # Migrations may take longer than the healthcheck's retries without the web being marked unhealthy.
    web_check = services["web"]["healthcheck"]
    assert int(web_check["start_period"].removesuffix("s")) > int(web_check["interval"].removesuffix("s")) * int(
        web_check["retries"]
    )

    assert "networks" not in compose and not any("networks" in service for service in services.values())
    assert "ipv4_address" in monitoring["services"]["prometheus"]["networks"]["monitoring"]
    assert "subnet" in monitoring["networks"]["monitoring"]["ipam"]["config"][0]


def test_the_host_port_and_the_database_account_come_from_the_env():
    compose = yaml.safe_load((BASE_DIR / "docker-compose.yml").read_text())
    services = compose["services"]
    assert services["web"]["ports"] == ["${WEB_BIND:-127.0.0.1}:${WEB_PORT:-8000}:8000"]
    db = services["db"]["environment"]
    assert {db[name] for name in ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB")} == {
        "${POSTGRES_USER:-batches}",
        "${POSTGRES_PASSWORD:-batches}",
        "${POSTGRES_DB:-batches}",
    }
    password = interpolate(services["web"]["environment"]["DATABASE_URL"], {"POSTGRES_PASSWORD": "s3cret"})
    assert password == "postgres://batches:s3cret@db:5432/batches"
