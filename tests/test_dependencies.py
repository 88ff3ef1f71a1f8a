"""Every third-party module the code imports is declared: the app's in requirements.txt, the tests' and the
benchmark's in requirements-dev.txt (which includes it), not merely present because something else pulled it in."""

from __future__ import annotations

import ast
import re
import sys
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
