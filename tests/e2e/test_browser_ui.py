"""A person's first look at the UI, in a real browser: log in, open the DAG list, and see every
DAG the dag-processor parsed and no import errors.

Headless Chromium (Debian's ``chromium``) is driven over the DevTools protocol with the
``websockets`` package Airflow already brings (no browser-automation package needed): it types
the credentials into the simple auth manager's login form and clicks *Sign in* as a person
does. What the page shows is cross-checked against the REST API. The screenshot is kept under
``.local/test-artifacts/browser_ui/`` (git-ignored), and its path is printed.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / ".local" / "test-artifacts" / "browser_ui"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# As the env doc starts it: no sandbox (root in a container), and no background connections,
# which this machine's closed network would refuse many at a time.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
    "--window-size=1440,1200",
]


class DevToolsPage:
    """One browser tab over the Chrome DevTools protocol: commands, and the events they cause."""

    def __init__(self, websocket_url: str):
        from websockets.sync.client import connect

        self._socket = connect(websocket_url, max_size=None, open_timeout=30)
        self._ids = itertools.count(1)
        self.events: list[dict] = []

    def call(self, method: str, timeout: float = 30.0, **params) -> dict:
        command_id = next(self._ids)
        self._socket.send(json.dumps({"id": command_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            message = json.loads(self._socket.recv(timeout=max(0.1, deadline - time.monotonic())))
            if message.get("id") == command_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]
            if "method" in message:
                self.events.append(message)

    def evaluate(self, expression: str):
        result = self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def _evaluate_unless_navigating(self, expression: str):
        """``evaluate``, or None when the page navigated away while it ran (as a login's redirect
        does; seen in CI33): a poll then simply asks again."""
        try:
            return self.evaluate(expression)
        except RuntimeError as error:
            if "Inspected target navigated or closed" not in str(error):
                raise
            return None

    def wait_for(self, expression: str, what: str, timeout: float = 60.0):
        """Poll ``expression`` until it is truthy; its value."""
        deadline = time.monotonic() + timeout
        while not (value := self._evaluate_unless_navigating(expression)):
            if time.monotonic() > deadline:
                text = self.evaluate("document.body ? document.body.innerText.slice(0, 2000) : ''")
                raise TimeoutError(f"{what} after {timeout:.0f}s; the page shows:\n{text}")
            time.sleep(0.25)
        return value

    def type_into(self, selector: str, text: str) -> None:
        """Focus the field and type, as keystrokes do (React sees real input events)."""
        self.evaluate(f"document.querySelector({json.dumps(selector)}).focus()")
        self.call("Input.insertText", text=text)

    def click_at(self, point_js: str, what: str) -> None:
        """A real mouse click at the point ``point_js`` gives (``[x, y]``, or null: wait)."""
        x, y = self.wait_for(point_js, what)
        for event in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=event, x=x, y=y, button="left", clickCount=1)

    def click_button(self, label: str, within: str = "body") -> None:
        """Click the last enabled button labelled ``label`` inside ``within`` (a selector)."""
        self.click_at(
            f"(() => {{ const b = [...document.querySelectorAll({json.dumps(within + ' button')})]"
            f".filter(b => b.innerText.trim() === {json.dumps(label)} && !b.disabled).pop();"
            " if (!b) return null; b.scrollIntoView({block: 'center'});"
            " const r = b.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()",
            f"no enabled button {label!r} in {within}",
        )

    def response_body(self, url_part: str) -> dict:
        """The JSON body of the last finished response whose URL contains ``url_part``."""
        finished = {e["params"]["requestId"] for e in self.events if e["method"] == "Network.loadingFinished"}  # fmt: skip
        responses = [
            e["params"]
            for e in self.events
            if e["method"] == "Network.responseReceived"
            and url_part in e["params"]["response"]["url"]
            and e["params"]["requestId"] in finished
        ]
        if not responses:
            return {}
        body = self.call("Network.getResponseBody", requestId=responses[-1]["requestId"])
        text = base64.b64decode(body["body"]) if body["base64Encoded"] else body["body"]
        return json.loads(text)

    def pump_events(self, seconds: float) -> None:
        """Collect the events that arrive in the next ``seconds`` (a no-op round trip)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.call("Runtime.evaluate", expression="0")
            time.sleep(0.1)

    def screenshot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(
            base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        )

    def close(self) -> None:
        self._socket.close()


@pytest.fixture
def browser(tmp_path):
    if CHROMIUM is None:
        message = "chromium is not installed (Debian: apt-get install chromium; make test tries)"
        if os.environ.get("HEADRACE_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    profile = tmp_path / "chromium-profile"
    log = (tmp_path / "chromium.log").open("w")
    process = subprocess.Popen(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=log, start_new_session=True,
    )  # fmt: skip
    page = None
    try:
        # Chromium writes the port it picked (and the browser's socket path) into the profile.
        active_port = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (active_port.exists() and active_port.read_text().strip()):
            assert process.poll() is None, (tmp_path / "chromium.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "chromium did not open its DevTools port"
            time.sleep(0.1)
        port = int(active_port.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as answer:
            (tab,) = [target for target in json.load(answer) if target["type"] == "page"]
        page = DevToolsPage(tab["webSocketDebuggerUrl"])
        page.call("Page.enable")
        page.call("Network.enable")
        yield page
    finally:
        if page is not None:
            page.close()
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _log_in(browser: DevToolsPage, stack, path: str) -> None:
    """Open ``path``; not logged in, the UI sends the browser to the simple auth manager's
    login form, which is filled in and sent as a person does, and then back to ``path``."""
    browser.call("Page.navigate", url=f"{stack.url}{path}")
    browser.wait_for("!!document.querySelector('input[name=password]')", "no login form")
    assert browser.evaluate("location.pathname") == "/auth/login"
    browser.type_into("input[name=username]", "admin")
    browser.type_into("input[name=password]", stack.password)
    browser.click_button("Sign in")
    browser.wait_for(f"location.pathname === {json.dumps(path)}", f"not back on {path}")


def test_login_shows_every_parsed_dag_and_no_import_errors(browser, local_stack, airflow_api):
    _log_in(browser, local_stack, "/dags")

    # The DAG list: its heading counts the DAGs ("13 Dags"; "0 Dags" until the list query has
    # answered) and each DAG card links to /dags/<dag_id>.
    heading_js = (
        "[...document.querySelectorAll('h2')].find(h => /^\\d+ Dags?$/.test(h.innerText.trim()))"
    )
    listed_js = (
        "[...new Set([...document.querySelectorAll('a[href^=\"/dags/\"]')]"
        ".map(a => a.getAttribute('href').split('/')[2]).filter(Boolean))]"
    )
    browser.wait_for(
        f"(() => {{ const h = {heading_js}; if (!h) return false;"
        " const count = parseInt(h.innerText);"
        f" return count > 0 && {listed_js}.length === count; }})()",
        "the DAG list did not load",
    )
    shown_count = browser.evaluate(f"parseInt({heading_js}.innerText)")
    listed = set(browser.evaluate(listed_js))
    # The import-error badge sits beside the heading when there are any; give its query time.
    browser.pump_events(2)
    header_text = browser.evaluate(f"{heading_js}.parentElement.innerText.trim()")
    ui_import_errors = browser.response_body("/api/v2/importErrors")
    screenshot = ARTIFACTS / "dag_list.png"
    browser.screenshot(screenshot)
    print(f"\nbrowser test screenshot: {screenshot}")

    assert browser.evaluate("location.pathname") == "/dags"
    # What the UI shows is what the dag-processor parsed (the REST API's view of the same DB).
    parsed = airflow_api.dag_ids()
    assert listed == parsed
    assert shown_count == len(parsed)
    assert {"lake_setup", "churn_training", "churn_model_approval"} <= listed
    # Zero import errors: in the REST API, in the answer the UI itself got, and on the page
    # (the heading stands alone: no error count beside it).
    assert airflow_api.import_errors() == []
    assert ui_import_errors.get("total_entries") == 0, ui_import_errors
    assert re.fullmatch(r"\d+ Dags?", header_text), header_text
    assert screenshot.stat().st_size > 10_000
