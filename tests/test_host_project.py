"""The engine as a newcomer gets it: the wheel built from this checkout, installed with the extras the README
names into a fresh virtualenv, in a fresh `django-admin startproject` with a model of its own, set up with the
README's "Use it in your project" blocks and nothing of this site. A real `rundramatiq` of that project and its
`runserver` run two 5,000-invoice batches, one through the JSON API and one through the panel on a page of the
project's own base.html.

The blocks are read from the README (each fenced block there follows a `<!-- host-project: NAME -->` marker), so
the README and this test cannot drift. Pass 1 only (Postgres and Redis): a database of its own beside the test
database, and its own namespace on the tests' Redis db. Slow the first time (the wheel's dependencies are
downloaded into uv's cache), seconds after.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import psycopg2
import pytest

from tests.support import Browserless, free_port, wait_until

BASE_DIR = Path(__file__).resolve().parent.parent
UV = Path(sys.executable).parent / "uv"
DISTRIBUTION = "django-bulk-batches"
WORKER_MIDDLEWARE = "batches.engine.middleware.WorkerLifecycle"
INVOICES_PER_CUSTOMER = 5000
PASSWORD = "pw-owner"

DATABASE_URL = os.environ.get("DATABASE_URL", "")
REDIS_URL = os.environ.get("REDIS_URL", "")

pytestmark = pytest.mark.skipif(
    not DATABASE_URL.startswith("postgres") or not REDIS_URL,
    reason="a host project on Postgres and Redis: DATABASE_URL (postgres://) and REDIS_URL, as make test's pass 1",
)


def readme_blocks() -> dict[str, str]:
    """The fenced blocks of the README's "Use it in your project", by their marker."""
    readme = (BASE_DIR / "README.md").read_text()
    section = readme.split("\n## Use it in your project\n", 1)[1].split("\n## ", 1)[0]
    blocks = dict(re.findall(r"<!-- host-project: (\S+) -->\n```\w*\n(.*?)\n```", section, re.S))
    assert set(blocks) == {"pip", "settings.py", "urls.py", "operations.py", "head", "panel"}, blocks.keys()
    return blocks


def run(command: list[str], cwd: Path, *, check: bool = True, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    if check and result.returncode != 0:
        raise AssertionError(f"{shlex.join(command)} exited {result.returncode}:\n{output}")
    return output


# --- The host project's own files (what the README leaves to the project) --------------------------------------

MODELS = """\
from django.db import models


class Customer(models.Model):
    name = models.CharField(max_length=100)


class Invoice(models.Model):
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="invoices")
    number = models.PositiveIntegerField()
    paid = models.BooleanField(default=False)

    class Meta:
        indexes = [models.Index(fields=["customer", "id"], name="invoice_customer_keyset")]
"""

# A page of the project's own with the panel: the README's two tags in the project's own base.html.
VIEWS = """\
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, render

from .models import Customer


@login_required
def customer(request, pk):
    return render(request, "invoices/customer.html", {"customer": get_object_or_404(Customer, pk=pk)})
"""

BASE_HTML = """\
<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>{{% block title %}}Invoices{{% endblock %}} | Shop</title>{head}</head>
<body data-host-base="shop">
  <header>The shop's own header</header>
  <main>{{% block content %}}{{% endblock %}}</main>
</body>
</html>
"""

CUSTOMER_HTML = """\
{{% extends "base.html" %}}
{{% block content %}}<h1>{{{{ customer.name }}}}</h1>{panel}{{% endblock %}}
"""

SETTINGS = """
# --- The project's own, beside the README's lines ---
INSTALLED_APPS += ["invoices"]
DATABASES = {{"default": {database}}}
DRAMATIQ_BROKER["OPTIONS"] = {{"url": {redis_url!r}, "namespace": {namespace!r}}}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
"""

URLS = """
from invoices.views import customer

urlpatterns += [path("customers/<int:pk>/", customer, name="customer")]
"""

# Customers A and B get a batch each; C's invoices are left alone.
SEED = f"""
import json
from django.contrib.auth import get_user_model
from batches.tokens import create_token
from invoices.models import Customer, Invoice

owner = get_user_model().objects.create_superuser("owner", "owner@example.com", {PASSWORD!r})
customers = [Customer.objects.create(name=name) for name in ("Acme", "Binford", "Cyberdyne")]
for customer, count in zip(customers, ({INVOICES_PER_CUSTOMER}, {INVOICES_PER_CUSTOMER}, 10)):
    Invoice.objects.bulk_create([Invoice(customer=customer, number=n) for n in range(count)], batch_size=2000)
print(json.dumps({{"customers": [c.pk for c in customers], "token": create_token(owner, "test")[1]}}))
"""

# Every committed change of an invoice, one row each: "changed exactly once" is then a count.
COUNT_CHANGES = """
CREATE TABLE invoice_changes (invoice_id integer, paid_before boolean, paid_after boolean);
CREATE FUNCTION record_invoice_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO invoice_changes VALUES (OLD.id, OLD.paid, NEW.paid);
    RETURN NEW;
END $$;
CREATE TRIGGER invoice_changed AFTER UPDATE ON invoices_invoice FOR EACH ROW EXECUTE FUNCTION record_invoice_change();
"""


@dataclass
class Host:
    directory: Path
    python: Path
    env: dict[str, str]
    database_url: str
    base_url: str = ""
    customers: tuple[int, ...] = ()
    token: str = ""

    def manage(self, *args: str, check: bool = True) -> str:
        return run([str(self.python), "manage.py", *args], self.directory, check=check, env=self.env)

    def query(self, sql: str, *params: object) -> list[tuple]:
        with psycopg2.connect(self.database_url) as connection, connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall() if cursor.description else []
        connection.close()
        return rows

    def api(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict[str, str], dict]:
        request = urllib.request.Request(
            self.base_url + path,
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, dict(response.headers), json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), json.loads(error.read() or b"{}")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(BASE_DIR)], BASE_DIR)
    (built,) = out.glob("*.whl")
    return built


def fresh_venv(directory: Path) -> Path:
    run([str(UV), "venv", "--quiet", "--python", sys.executable, str(directory)], directory.parent)
    return directory / "bin" / "python"


def pip_install(python: Path, requirement: str) -> None:
    run([str(UV), "pip", "install", "--quiet", "--python", str(python), requirement], python.parent)


def host_env() -> dict[str, str]:
    """Nothing of this checkout's environment: no settings module, no DATABASE_URL, no PYTHONPATH."""
    keep = ("PATH", "HOME", "LANG", "TMPDIR")
    return {**{name: os.environ[name] for name in keep if name in os.environ}, "PYTHONUNBUFFERED": "1"}


def postgres(url: str) -> dict[str, str]:
    parts = urllib.parse.urlsplit(url)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": parts.path.lstrip("/"),
        "USER": urllib.parse.unquote(parts.username or "postgres"),
        "PASSWORD": urllib.parse.unquote(parts.password or ""),
        "HOST": parts.hostname or "127.0.0.1",
        "PORT": str(parts.port or 5432),
    }


def server_url(database_url: str, name: str) -> str:
    return urllib.parse.urlsplit(database_url)._replace(path=f"/{name}").geturl()


@pytest.fixture(scope="module")
def host_database(worker_id: str) -> Iterator[str]:
    """A fresh database beside the tests' own, on the same server (`worker_id`: pytest-xdist's, "master" alone)."""
    name = f"{postgres(DATABASE_URL)['NAME']}_host_{worker_id}"
    admin = psycopg2.connect(server_url(DATABASE_URL, "postgres"))
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cursor.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server_url(DATABASE_URL, name)
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(scope="module")
def host(wheel, host_database, tmp_path_factory, worker_id) -> Host:
    """The project, installed, configured and migrated; not yet serving."""
    directory = tmp_path_factory.mktemp("host")
    blocks = readme_blocks()
    (pip_line,) = [line for line in blocks["pip"].splitlines() if line.startswith("pip install")]
    requirement = shlex.split(pip_line)[-1]
    assert requirement.startswith(DISTRIBUTION + "["), pip_line
    python = fresh_venv(directory / "venv")
    pip_install(python, str(wheel) + requirement.removeprefix(DISTRIBUTION))

    host = Host(directory, python, host_env(), host_database)
    run([str(python.parent / "django-admin"), "startproject", "shop", "."], directory, env=host.env)
    host.manage("startapp", "invoices")
    app = directory / "invoices"
    (app / "models.py").write_text(MODELS)
    (app / "operations.py").write_text(blocks["operations.py"] + "\n")
    (app / "views.py").write_text(VIEWS)
    (app / "templates" / "invoices").mkdir(parents=True)
    (app / "templates" / "base.html").write_text(BASE_HTML.format(head=blocks["head"]))
    (app / "templates" / "invoices" / "customer.html").write_text(CUSTOMER_HTML.format(panel=blocks["panel"]))

    settings = directory / "shop" / "settings.py"
    own = SETTINGS.format(
        database=postgres(host_database), redis_url=REDIS_URL, namespace=f"host-project-{worker_id}-{os.getpid()}"
    )
    settings.write_text(settings.read_text() + "\n" + blocks["settings.py"] + "\n" + own)
    urls = directory / "shop" / "urls.py"
    urls.write_text(urls.read_text() + "\n" + blocks["urls.py"] + "\n" + URLS)

    host.manage("makemigrations", "invoices")
    host.manage("migrate")
    host.query(COUNT_CHANGES)
    seeded = json.loads(host.manage("shell", "-c", SEED).strip().splitlines()[-1])
    host.customers, host.token = tuple(seeded["customers"]), seeded["token"]
    return host


@pytest.fixture(scope="module")
def serving_host(host, tmp_path_factory) -> Iterator[Host]:
    """The project's `rundramatiq` (4 threads) and its `runserver`, until the module's tests are done."""
    logs = tmp_path_factory.mktemp("host-logs")
    port = free_port()
    commands = {
        "worker": ["manage.py", "rundramatiq", "--processes", "1", "--threads", "4"],
        "web": ["manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
    }
    processes = {}
    try:
        for name, command in commands.items():
            with (logs / f"{name}.log").open("wb") as log:
                processes[name] = subprocess.Popen(
                    [str(host.python), *command],
                    cwd=host.directory,
                    env=host.env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )

        def up() -> bool:
            for name, process in processes.items():
                assert process.poll() is None, f"{name} exited:\n{(logs / f'{name}.log').read_text()}"
            worker_ready = "Worker process is ready for action." in (logs / "worker.log").read_text()
            return worker_ready and "Quit the server with" in (logs / "web.log").read_text()

        wait_until(up, timeout=120, what="the host project's worker and web server")
        host.base_url = f"http://127.0.0.1:{port}"
        yield host
    finally:
        for process in processes.values():
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


# --- The wheel -------------------------------------------------------------------------------------------------


def test_the_wheel_holds_the_engine_with_its_templates_static_files_and_migrations_and_nothing_of_the_site(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/", 1)[0] for name in names}
    assert tops == {"batches", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info"}
    for expected in (
        "batches/web/templates/batches/_panel.html",
        "batches/web/static/batches/js/batches.js",
        "batches/web/static/batches/css/batches.css",
        "batches/admin/templates/admin/batches/batch/cancel_selected_confirmation.html",
        "batches/migrations/0001_initial.py",
        "batches/api/throttle/migrations/0001_initial.py",
        "batches/management/commands/rundramatiq.py",
    ):
        assert expected in names
    assert not [name for name in names if re.search(r"site_config|demo|__pycache__|\.pyc$", name)]


def test_the_wheel_alone_installs_and_imports(wheel, tmp_path):
    python = fresh_venv(tmp_path / "venv")
    pip_install(python, str(wheel))
    output = run(
        [str(python), "-c", "import batches, django_dramatiq, django_htmx, pydantic; print('imported')"], tmp_path
    )
    assert output.strip() == "imported"


# --- The project -----------------------------------------------------------------------------------------------


def test_the_project_passes_its_checks(host):
    assert "System check identified no issues" in host.manage("check")


def test_without_the_worker_middleware_check_fails_and_names_the_line(host):
    settings = host.directory / "shop" / "settings.py"
    lines = settings.read_text().splitlines(keepends=True)
    kept = [line for line in lines if WORKER_MIDDLEWARE not in line]
    assert len(lines) - len(kept) == 1
    (host.directory / "shop" / "settings_without_worker.py").write_text("".join(kept))

    output = host.manage("check", "--settings", "shop.settings_without_worker", check=False)

    assert "batches.E002" in output
    assert f'Add "{WORKER_MIDDLEWARE}" to DRAMATIQ_BROKER["MIDDLEWARE"]' in output


def test_a_project_on_autofield_gets_no_migrations_for_the_engine(host):
    assert "No changes detected" in host.manage("makemigrations", "--check", "--dry-run")


# --- Batches in the project ------------------------------------------------------------------------------------


class FormFields(HTMLParser):
    """The action and fields of each <form method="post"> of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "form" and attributes.get("method") == "post":
            self.forms.append((attributes.get("action") or "", {}))
        elif tag == "input" and self.forms and attributes.get("name"):
            self.forms[-1][1][attributes["name"] or ""] = attributes.get("value") or ""


def batch_id(location: str) -> int:
    return int(re.search(r"/(\d+)/?(\?|$)", location).group(1))


def test_a_batch_through_the_api_and_one_through_the_panel_change_every_invoice_once(serving_host):
    host = serving_host
    by_api, by_panel, untouched = host.customers

    status, headers, body = host.api(
        "POST", "/api/batches", {"operation": "mark_invoices_paid", "params": {"customer_id": by_api}}
    )
    assert status == 202, body
    api_batch = batch_id(headers["Location"])

    browser = Browserless(host.base_url)
    browser.request("/admin/login/")  # the CSRF cookie
    status, _, _ = browser.request("/admin/login/", {"username": "owner", "password": PASSWORD, "next": "/admin/"})
    assert status == 302
    status, _, page = browser.request(f"/customers/{by_panel}/")
    assert status == 200 and 'data-host-base="shop"' in page
    assert "batches/js/batches.js" in page and "batches/css/batches.css" in page  # {% batches_assets %}
    parser = FormFields()
    parser.feed(page)
    ((action, fields),) = parser.forms
    assert action == "/batches/start/mark_invoices_paid/" and fields["customer_id"] == str(by_panel)
    fields.pop("csrfmiddlewaretoken")
    status, _, refusal = browser.request(action, {**fields, "customer_id": "0"})
    assert status == 400 and 'data-host-base="shop"' in refusal and "customer_id" in refusal, refusal
    status, headers, _ = browser.request(action, fields)
    assert status == 303, headers
    panel_batch = batch_id(headers["Location"])
    for path in (headers["Location"], "/batches/"):  # the batch's page, the history
        status, _, engine_page = browser.request(path)
        assert status == 200 and 'data-host-base="shop"' in engine_page, path

    def ended(pk: int) -> dict | None:
        status, _, body = host.api("GET", f"/api/batches/{pk}")
        assert status == 200, body
        return body if body["status"] not in ("queued", "running") else None

    for pk in (api_batch, panel_batch):
        batch = wait_until(lambda pk=pk: ended(pk), timeout=300, what=f"batch {pk} to end")
        assert (batch["status"], batch["total"], batch["done"], batch["failed"]) == (
            "finished",
            INVOICES_PER_CUSTOMER,
            INVOICES_PER_CUSTOMER,
            0,
        )

    changes = dict(
        host.query(
            """SELECT invoice.customer_id,
                      count(change.invoice_id) FILTER (WHERE NOT change.paid_before AND change.paid_after)
               FROM invoices_invoice invoice LEFT JOIN invoice_changes change ON change.invoice_id = invoice.id
               GROUP BY invoice.customer_id"""
        )
    )
    assert changes == {by_api: INVOICES_PER_CUSTOMER, by_panel: INVOICES_PER_CUSTOMER, untouched: 0}
    assert host.query("SELECT count(*) FROM invoice_changes")[0][0] == 2 * INVOICES_PER_CUSTOMER
    assert host.query("SELECT count(DISTINCT invoice_id) FROM invoice_changes")[0][0] == 2 * INVOICES_PER_CUSTOMER
    paid = dict(host.query("SELECT customer_id, count(*) FILTER (WHERE paid) FROM invoices_invoice GROUP BY 1"))
    assert paid == {by_api: INVOICES_PER_CUSTOMER, by_panel: INVOICES_PER_CUSTOMER, untouched: 0}
