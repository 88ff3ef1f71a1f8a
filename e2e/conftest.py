"""A real browser (Debian's Chromium, driven by Playwright) against the live server and a real worker."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

# Playwright's sync API runs an event loop in this thread; the ORM calls the tests make are
# still plain synchronous calls.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]


def pytest_report_header() -> str:
    script = os.environ.get("AXE_CORE_JS") or "the copy axe-playwright-python ships"
    return f"axe-core for the accessibility checks: {script}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "e2e" in item.nodeid.split("/")[0]:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def chromium() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def browser(chromium: Browser) -> Iterator[Browser]:
    """The session's browser. What a test opened in it is closed when the test ends: a page left open
    would go on polling the live server (and loading the machine) through every later test."""
    yield chromium
    for context in chromium.contexts:
        context.close()


def screenshot(page: Page, name: str, **options: object) -> None:
    """One of the README's screenshots, written only when `make screenshots` asks (SCREENSHOTS_DIR):
    a test run writes nothing tracked."""
    if directory := os.environ.get("SCREENSHOTS_DIR"):
        page.screenshot(path=str(Path(directory) / name), **options)


def log_in(page: Page, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(f"pw-{username}")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base_url}/")


def watch_csp(page: Page) -> list[str]:
    """Collect what the page's Content-Security-Policy blocked, as Chromium reports it on the console."""
    violations: list[str] = []

    def on_console(message) -> None:
        if "Content Security Policy" in message.text or "htmx:evalDisallowedError" in message.text:
            violations.append(message.text)

    page.on("console", on_console)
    return violations


def confirm_in_dialog(page: Page, verb: str) -> None:
    """Answer the page's confirmation <dialog> (batches.js, made on first use) with the button named `verb`."""
    page.locator("#batches-confirm").get_by_role("button", name=verb).click()


def start_run(page: Page, label: str = "Reissue tickets") -> None:
    """Click the operation's start button and confirm in its dialog."""
    page.get_by_role("button", name=label).click()
    confirm_in_dialog(page, label)
