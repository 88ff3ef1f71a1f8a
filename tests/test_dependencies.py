"""Every third-party module the code imports is declared: the app's in requirements.txt, the tests' and the
benchmark's in requirements-dev.txt (which includes it), not merely present because something else pulled it in; and
the wheel's (pyproject.toml's [project]) declares what each part of the engine imports, in its dependencies or the
part's extra."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parent.parent
OURS = {"batches", "site_config", "tests", "e2e", "bench", "conftest", "manage"}


def imported_modules(*roots: str) -> dict[str, set[str]]:
    """Top-level third-party module -> the files that import it."""
    found: dict[str, set[str]] = {}
    for root in roots:
        path = BASE_DIR / root
        for source in [path] if path.is_file() else path.rglob("*.py"):
            if "migrations" in source.parts:
                continue
            for node in ast.walk(ast.parse(source.read_text(), str(source))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.partition(".")[0]
                    if top not in OURS and top not in sys.stdlib_module_names:
                        found.setdefault(top, set()).add(str(source.relative_to(BASE_DIR)))
    return found


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(requirements: str) -> set[str]:
    """The distributions a requirements file names, following its `-r` includes."""
    names = set()
    for line in (BASE_DIR / requirements).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            names |= declared(line[3:].strip())
        elif match := re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", line):
            names.add(normalized(match.group(0)))
    return names


@pytest.mark.parametrize(
    ("requirements", "roots"),
    [
        ("requirements.txt", ["batches", "site_config", "manage.py"]),
        ("requirements-dev.txt", ["batches", "site_config", "manage.py", "tests", "e2e", "bench", "conftest.py"]),
    ],
)
def test_every_imported_distribution_is_declared(requirements, roots):
    names = declared(requirements)
    distributions = packages_distributions()
    undeclared = {
        module: sorted(files)
        for module, files in imported_modules(*roots).items()
        if not any(normalized(dist) in names for dist in distributions.get(module, [module]))
    }
    assert undeclared == {}, f"imported but not declared in {requirements}: {undeclared}"


# --- The wheel's metadata (pyproject.toml's [project]) ----------------------------------------------------------

# Each optional part of the engine and the extras that bring what it imports; the rest of batches/ gets the
# plain dependencies only. The engine's readiness probe and its worker metrics import a broker's client and
# prometheus_client only where those are in use, which the broker's extra and `metrics` bring; an XLSX export
# imports openpyxl, which `xlsx` brings.
EXTRAS_OF_PART = {
    "batches/api": {"api"},
    "batches/ops": {"metrics"},
    "batches/cli": {"cli"},
    "batches/engine": {"redis", "rabbitmq", "metrics", "xlsx"},
}


def distributions_of(requirements: list[str]) -> set[str]:
    """The distributions these requirements install at the first level, a requirement's extras included."""
    from importlib.metadata import requires

    from packaging.requirements import Requirement

    names = set()
    for text in requirements:
        requirement = Requirement(text)
        names.add(normalized(requirement.name))
        for extra in requirement.extras:
            for dependency in map(Requirement, requires(requirement.name) or []):
                if dependency.marker is not None and dependency.marker.evaluate({"extra": extra}):
                    names.add(normalized(dependency.name))
    return names


@pytest.mark.parametrize("part", [*EXTRAS_OF_PART, "batches"])
def test_the_wheel_declares_what_each_part_of_the_engine_imports(part):
    project = tomllib.loads((BASE_DIR / "pyproject.toml").read_text())["project"]
    names = distributions_of(project["dependencies"])
    for extra in EXTRAS_OF_PART.get(part, ()):
        names |= distributions_of(project["optional-dependencies"][extra])
    if part in EXTRAS_OF_PART:
        roots = [part]
    else:  # the rest of batches/
        roots = [f"batches/{path.name}" for path in (BASE_DIR / "batches").iterdir() if path.name != "__pycache__"]
        roots = [root for root in roots if root not in EXTRAS_OF_PART]
    distributions = packages_distributions()
    undeclared = {
        module: sorted(files)
        for module, files in imported_modules(*roots).items()
        if not any(normalized(dist) in names for dist in distributions.get(module, [module]))
    }
    assert undeclared == {}, f"{part} imports these, which pyproject.toml does not declare for it: {undeclared}"
