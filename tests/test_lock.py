"""The lock files: every distribution installed here is pinned there, with hashes, and the locks agree with
their inputs (requirements.txt, requirements-dev.txt) and with each other."""

import re
import subprocess
import sys
from pathlib import Path

from packaging.markers import Marker
from packaging.utils import canonicalize_name

from tests.support import BASE_DIR

PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)\s*(?:;(?P<marker>[^\\]+))?")


def locked(path: Path) -> dict[str, tuple[str, str | None, int]]:
    """name: (version, marker, how many hashes), from a lock file of `make lock`."""
    pins: dict[str, tuple[str, str | None, int]] = {}
    name = None
    for line in path.read_text().splitlines():
        if match := PIN.match(line):
            name = canonicalize_name(match["name"])
            marker = match["marker"].strip() if match["marker"] else None
            pins[name] = (match["version"], marker, 0)
        elif name and line.strip().startswith("--hash=sha256:"):
            version, marker, hashes = pins[name]
            pins[name] = (version, marker, hashes + 1)
    return pins


def inputs(path: Path) -> dict[str, str]:
    """The pins of an input file, and of the files it includes with -r."""
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.startswith("-r "):
            pins |= inputs(path.parent / line.split(maxsplit=1)[1])
        elif match := PIN.match(line):
            pins[canonicalize_name(match["name"])] = match["version"]
    return pins


def installed() -> dict[str, str]:
    freeze = subprocess.run(
        [sys.executable, "-m", "pip", "freeze"], capture_output=True, text=True, check=True, timeout=120
    ).stdout.splitlines()
    unpinned = [line for line in freeze if "==" not in line]
    assert not unpinned, f"installed from elsewhere than the lock: {unpinned}"
    return {canonicalize_name(line.split("==")[0]): line.split("==")[1] for line in freeze}


def test_every_installed_distribution_is_in_the_dev_lock_at_its_version_and_nothing_locked_is_missing():
    lock = locked(BASE_DIR / "requirements-dev.lock")
    here = installed()

    assert {name: version for name, version in here.items() if lock.get(name, (None,))[0] != version} == {}
    applicable = {name for name, (_, marker, _) in lock.items() if marker is None or Marker(marker).evaluate()}
    assert applicable - set(here) == set()


def test_every_locked_package_has_hashes_and_the_image_runs_the_versions_the_tests_do():
    lock, dev_lock = locked(BASE_DIR / "requirements.lock"), locked(BASE_DIR / "requirements-dev.lock")

    assert [name for name, (_, _, hashes) in (lock | dev_lock).items() if hashes == 0] == []
    assert {name: pin for name, pin in lock.items() if dev_lock.get(name, (None,))[0] != pin[0]} == {}


def test_the_locks_are_up_to_date_with_their_inputs():
    """An input edited without `make lock` afterwards."""
    for source in ["requirements.txt", "requirements-dev.txt"]:
        lock_file = source.replace(".txt", ".lock")
        wanted = inputs(BASE_DIR / source)
        lock = locked(BASE_DIR / lock_file)
        assert {name: version for name, version in wanted.items() if lock.get(name, (None,))[0] != version} == {}, (
            f"{source} pins what {lock_file} does not: run `make lock`"
        )


def test_the_dockerfile_and_the_makefile_install_from_the_locks_with_hashes():
    dockerfile = (BASE_DIR / "Dockerfile").read_text()
    makefile = (BASE_DIR / "Makefile").read_text()
    assert "pip install --require-hashes -r requirements.lock" in dockerfile
    assert "COPY requirements.lock ." in dockerfile and "requirements.txt" not in dockerfile
    assert "DEV_LOCK := requirements-dev.lock" in makefile
    assert "pip install --quiet --require-hashes -r $(DEV_LOCK)" in makefile
