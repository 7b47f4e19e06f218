"""The browser suite: the real application served over HTTP by waitress (as
`make run` serves it) in a thread of the test process, driven by Playwright
in Debian's Chromium, on a desktop and on a 390 px phone. Every page a test
visits can be scanned by axe-core (``axe(page)``), which fails on any
violation, and photographed (``shoot(page, name)``) into var/screenshots/.

Chromium is never downloaded: the suite fails, naming what is missing, when
/usr/bin/chromium or axe-core (installed by `make browser-deps` and `make test`) is absent."""
from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from guestguard.testing import REPO_ROOT, AppFactory, settings_for

CHROMIUM = Path(os.environ.get("GG_TEST_CHROMIUM", "/usr/bin/chromium"))
AXE = REPO_ROOT / ".venv" / "node" / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = REPO_ROOT / "var" / "screenshots"
# Real browsers' user agents: headless Chromium names itself HeadlessChrome,
# which the guard rightly takes for a program rather than a guest.
DESKTOP = {"viewport": {"width": 1280, "height": 900},
           "user_agent": ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                          "Chrome/131.0.0.0 Safari/537.36")}
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True,
         "user_agent": ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
                        "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1")}
# What axe-core checks: WCAG 2.1 A and AA, and its best practices.
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]


@pytest.fixture(scope="session")
def chromium():
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        pytest.fail(f"the browser suite needs Chromium at {CHROMIUM} (Debian's chromium package; "
                    "`make browser-deps` and `make test` install it)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield browser
        browser.close()


class Site:
    """The application served on a port of its own: its URL, the test
    client's registry (for the outbox) and a way to run code in a request."""

    def __init__(self, url: str, client):
        self.url = url
        self.client = client
        self.registry = client.app.registry

    def messages_to(self, recipient: str) -> list:
        """What the console provider delivered to ``recipient``, newest first."""
        return [message for _, message in self.registry["notifications.providers_by_name"]["console"].messages
                if message.recipient == recipient]


@pytest.fixture(scope="module")
def site(module_db_url) -> Iterator[Site]:
    from waitress.server import create_server

    factory = AppFactory(settings_for(module_db_url))
    port_holder = create_server(lambda environ, start_response: [], host="127.0.0.1", port=0)
    port = port_holder.effective_port
    port_holder.close()
    url = f"http://127.0.0.1:{port}"
    # Every test's pages open live streams on this one server, and a closed
    # page's stream is let go only at its next heartbeat: room for them all,
    # so a page is never turned away by the limit one server sets in production.
    client = factory({"app.base_url": url, "guard.stream.max_streams": "64", "guard.stream.max_per_holder": "16"})
    server = create_server(client.app, host="127.0.0.1", port=port, threads=8)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield Site(url, client)
    server.close()
    thread.join(timeout=5)
    factory.close()


@pytest.fixture
def browse(chromium, site, axe_source):
    """``browse(device)``: a page in a new browser context (its own cookies)
    on "desktop" or "phone" (``options``: more of the context's, such as
    ``timezone_id``); script errors on it fail the test, but for those
    ``expected`` (a pattern) matches."""
    opened = []

    def open_(device: str = "desktop", expected: re.Pattern | None = None, **options):
        context = chromium.new_context(base_url=site.url, **{"desktop": DESKTOP, "phone": PHONE}[device], **options)
        # Injected the way the browser's tools inject scripts, so the pages'
        # Content-Security-Policy stays as it is served.
        context.add_init_script(script=axe_source)
        page = context.new_page()
        opened.append((context, script_errors(page), expected))
        return page

    yield open_
    for context, _, _ in opened:
        context.close()
    problems = [error for _, errors, expected in opened for error in errors
                if not (expected and expected.search(error))]
    assert not problems, "script errors on the pages:\n" + "\n".join(problems)


@pytest.fixture
def browse_filmed(chromium, site, axe_source):
    """``browse_filmed(film, device)``: like ``browse``, in a browser of its
    own whose camera (allowed) shows ``film``, a Motion JPEG file, looped."""
    opened = []

    def open_(film: Path, device: str = "phone"):
        browser = chromium.browser_type.launch(executable_path=str(CHROMIUM), args=[
            "--no-sandbox", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-video-capture={film}"])
        context = browser.new_context(base_url=site.url, permissions=["camera"],
                                      **{"desktop": DESKTOP, "phone": PHONE}[device])
        context.add_init_script(script=axe_source)
        page = context.new_page()
        opened.append((browser, script_errors(page)))
        return page

    yield open_
    for browser, _ in opened:
        browser.close()
    problems = [error for _, errors in opened for error in errors]
    assert not problems, "script errors on the pages:\n" + "\n".join(problems)


@pytest.fixture(scope="session")
def axe_source() -> str:
    if not AXE.exists():
        pytest.fail(f"the browser suite needs axe-core at {AXE} (`make install` installs it with npm)")
    return AXE.read_text()


@pytest.fixture
def axe():
    """``axe(page)``: scan the page as it is now; fails listing every violation."""

    def scan(page) -> None:
        from playwright.sync_api import Error as PlaywrightError

        # A click that navigates returns once the navigation starts: scan the
        # page it leads to, once loaded, never the one being replaced.
        for attempt in range(3):
            page.wait_for_load_state("load")
            try:
                result = page.evaluate("tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})",
                                       AXE_TAGS)
                break
            except PlaywrightError:  # the document changed under the scan
                if attempt == 2:
                    raise
        problems = [f"{violation['id']} ({violation['impact']}): {violation['help']} at "
                    + ", ".join(" ".join(node["target"]) for node in violation["nodes"][:5])
                    for violation in result["violations"]]
        assert not problems, f"axe-core on {page.url}:\n" + "\n".join(problems)

    return scan


@pytest.fixture
def shoot():
    """``shoot(page, name)``: a full-page PNG under var/screenshots/."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(page, name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


def script_errors(page) -> list[str]:
    """From now on: the page's uncaught script errors and console errors,
    and every resource it loads (not the page itself, whose status the test
    checks) that fails or answers with an error."""
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(f"console: {message.text}")
            if message.type == "error" and not message.text.startswith("Failed to load resource") else None)
    page.on("response", lambda response: errors.append(f"{response.status} from {response.url}")
            if response.status >= 400 and response.request.resource_type != "document" else None)
    # A request the next navigation cut short (net::ERR_ABORTED) is no failure.
    page.on("requestfailed", lambda request: errors.append(f"{request.failure} for {request.url}")
            if request.resource_type not in {"document", "eventsource"} and request.failure != "net::ERR_ABORTED"
            else None)
    return errors
