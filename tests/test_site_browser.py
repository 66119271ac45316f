"""A reader's view of the sweep site: real headless Chromium over HTTP, driven by the DevTools protocol."""

import base64
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1280,1600", "--remote-debugging-port=0"]

# Every <img> has loaded and has pixels; the index's runs table and its rows.
PAGE_FACTS = """JSON.stringify({
  title: document.title,
  images: [...document.images].map(img => ({src: img.src.slice(0, 40), loaded: img.complete && img.naturalWidth > 0})),
  runs: [...document.querySelectorAll('#runs tbody tr')].map(tr => tr.cells[0].textContent),
  boldInRuns: document.querySelectorAll('#runs b').length,
  links: [...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href')),
})"""
# Every link on the page answers 200 from the server.
LINK_STATUSES = "Promise.all([...document.links].map(a => fetch(a.href).then(r => [a.getAttribute('href'), r.status])))"


@pytest.fixture(scope="module")
def chromium():
    if not os.path.exists(CHROMIUM):
        message = f"{CHROMIUM} not found: install it (apt-get install -y chromium) to check the site in a browser"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


@pytest.fixture(scope="module")
def server(sweep_site):
    """``python -m http.server`` on a free port of 127.0.0.1, serving the sweep's out folder."""
    process = subprocess.Popen([sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1",
                                "--directory", str(sweep_site.out)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True)
    line = process.stdout.readline()  # "Serving HTTP on 127.0.0.1 port 40123 (http://127.0.0.1:40123/) ..."
    try:
        yield line.split("(")[1].split(")")[0]
    finally:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def browser(chromium, tmp_path_factory):
    profile = tmp_path_factory.mktemp("chromium-profile")
    process = subprocess.Popen([chromium, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield Browser(profile)
    finally:
        process.kill()
        process.wait()


class Browser:
    """One Chromium tab over the DevTools protocol: open a URL, evaluate JavaScript, take a screenshot."""

    def __init__(self, profile: Path, timeout: float = 30):
        import websocket  # websocket-client, which jupyter_server already depends on

        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while not port_file.exists() or not port_file.read_text().strip():
            assert time.monotonic() < deadline, "Chromium did not open its DevTools port"
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list"))
        page = next(t for t in targets if t["type"] == "page")
        self.socket = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=timeout)
        self.timeout, self.calls = timeout, 0

    def call(self, method: str, **params):
        self.calls += 1
        self.socket.send(json.dumps({"id": self.calls, "method": method, "params": params}))
        while True:  # events arrive in between; skip them
            reply = json.loads(self.socket.recv())
            if reply.get("id") == self.calls:
                assert "error" not in reply, reply["error"]
                return reply["result"]

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"]["value"]

    def open(self, url: str) -> dict:
        """Load ``url``, wait for it and its images, and return PAGE_FACTS."""
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + self.timeout
        while self.evaluate("location.href + ' ' + document.readyState") != f"{url} complete":
            assert time.monotonic() < deadline, f"{url} did not finish loading"
            time.sleep(0.1)
        return json.loads(self.evaluate(PAGE_FACTS))

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        path.write_bytes(base64.b64decode(data))
        return path


@pytest.mark.slow
def test_index_lists_the_runs_and_every_link_works(browser, server, sweep_site, tmp_path):
    facts = browser.open(f"{server}index.html")
    assert facts["title"].startswith("mnistlab report")
    assert sorted(facts["runs"]) == sorted(run["name"] for run in sweep_site.report["runs"])
    assert "<b>x-seed0" in facts["runs"] and facts["boldInRuns"] == 0  # shown as text, not markup
    statuses = dict(browser.evaluate(LINK_STATUSES))
    assert statuses and all(status == 200 for status in statuses.values()), statuses
    assert {"analysis.html", "data.html", "backprop.html"} <= set(statuses)
    shot = browser.screenshot(tmp_path / "index.png")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"screenshot: {shot}")


@pytest.mark.slow
@pytest.mark.parametrize("page", ["runs/%3Cb%3Ex-seed0.html", "runs/nmodel-tiny-seed0.html", "analysis.html"])
def test_run_and_analysis_pages_show_their_figures(browser, server, page):
    facts = browser.open(f"{server}{page}")
    assert facts["images"], f"{page} has no figure"
    assert all(image["loaded"] for image in facts["images"]), facts["images"]
