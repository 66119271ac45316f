"""A reader's view of the site, offline: real headless Chromium over HTTP on loopback, driven by the DevTools protocol.

The test builds its own small site: the real backprop notebook executed with papermill and rendered with
``render``, a run page of a resumed run, and an index from hand-made records written by ``write_site``.
Chromium resolves no host name but 127.0.0.1, and every request it makes is recorded.
"""

import base64
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from mnistlab.lab.render import render
from mnistlab.lab.results import PageResult, RunResult, SweepResult
from mnistlab.lab.site import write_site
from mnistlab.paths import project_root
from test_site import make_record, notebook_with_figures, notebook_with_training_cell

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-domain-reliability", "--no-pings", "--window-size=1280,1600", "--remote-debugging-port=0",
         # offline: no name resolves, so nothing but loopback can be reached by name
         "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]

# Every <img> has loaded and has pixels; the index's runs table; every link; the visible text.
PAGE_FACTS = """JSON.stringify({
  title: document.title,
  images: [...document.images].map(img => ({src: img.getAttribute('src').slice(0, 40),
                                            loaded: img.complete && img.naturalWidth > 0})),
  runs: [...document.querySelectorAll('#runs tbody tr')].map(tr => tr.cells[0].firstChild.textContent.trim()),
  boldInRuns: document.querySelectorAll('#runs b').length,
  links: [...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href')),
  text: document.body.innerText,
})"""
# Every link on the page answers 200 from the server.
LINK_STATUSES = "Promise.all([...document.links].map(a => fetch(a.href).then(r => [a.getAttribute('href'), r.status])))"
# Wait for MathJax to finish typesetting; then its output elements, and any TeX errors.
MATHJAX = """MathJax.startup.promise.then(() => JSON.stringify({
  containers: document.querySelectorAll('mjx-container').length,
  errors: document.querySelectorAll('[data-mjx-error], mjx-merror').length,
}))"""


@pytest.fixture(scope="module")
def chromium():
    if not os.path.exists(CHROMIUM):
        message = f"{CHROMIUM} not found: install it (apt-get install -y chromium) to check the site in a browser"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The real backprop page, a resumed run's page, and the index of four runs (two seeds of one cell)."""
    import papermill

    root = tmp_path_factory.mktemp("browser-site")
    out = root / "site"
    started = time.perf_counter()
    papermill.execute_notebook(project_root() / "notebooks" / "backprop.ipynb", root / "backprop.ipynb",
                               kernel_name="python3", progress_bar=False, cwd=root)
    executed = time.perf_counter()
    render(root / "backprop.ipynb", out / "backprop.html", out)
    records = {"nmodel-tiny-seed0": make_record("nmodel", seed=0, acc=90),
               "nmodel-tiny-seed1": make_record("nmodel", seed=1, acc=91),
               "bmodel-tiny-seed0": make_record("bmodel", acc=92, resumed_after=2, threads=2),
               "<b>x-seed0": make_record("wmodel", acc=91)}
    runs = []
    for name, record in records.items():
        record.save(out / "runs" / f"{name}.json")
        page = render(notebook_with_training_cell(root / f"{name}.ipynb"), out / "runs" / f"{name}.html", out, record)
        # the settings of a real ablation or quick run: the widest parameters cell a table gets
        params = {"model": record.config["model"], "hidden_size": 5000, "epochs": 3, "step_size": 2, "lr": 0.001,
                  "train_size": 50000, "validation": False, "seed": record.config["seed"]}
        runs.append(RunResult(name=name, params=params, status="complete", executed=True,
                              record=record, html=f"runs/{page.name}", record_file=f"runs/{name}.json"))
    render(notebook_with_figures(out / "analysis.ipynb"), out / "analysis.html", out)  # figures as plots.show shows
    pages = [PageResult("analysis", "complete", True, "", "analysis.html"),
             PageResult("backprop", "complete", True, "", "backprop.html")]
    write_site(out, SweepResult(params=["params/ci.yaml"], started="2026-11-27T06:00:00Z", wall_seconds=60.0,
                                runs=runs, pages=pages))
    # One executed notebook rendered on its own, as the README says (`mnistlab render`), into a folder of its own.
    subprocess.run([sys.executable, "-m", "mnistlab", "render", str(root / "backprop.ipynb"), "--out",
                    str(out / "single" / "backprop.html")], check=True, capture_output=True, timeout=300)
    print(f"papermill backprop.ipynb: {executed - started:.1f} s; rendering and index: "
          f"{time.perf_counter() - executed:.1f} s")
    return out


@pytest.fixture(scope="module")
def server(site):
    """``python -m http.server`` on a free port of 127.0.0.1, serving the site."""
    process = subprocess.Popen([sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1",
                                "--directory", str(site)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
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
    """One Chromium tab over the DevTools protocol: open a URL, evaluate JavaScript, take a screenshot.

    Every request the tab makes is kept in ``requests`` (the Network domain's requestWillBeSent events).
    """

    def __init__(self, profile: Path, timeout: float = 60):
        import websocket  # websocket-client, which jupyter_server already depends on

        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while not port_file.exists() or not port_file.read_text().strip():
            assert time.monotonic() < deadline, "Chromium did not open its DevTools port"
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list"))
        page = next(t for t in targets if t["type"] == "page")
        # no Origin header: Chromium 111+ refuses a DevTools socket from an origin it was not told to allow
        self.socket = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=timeout, suppress_origin=True)
        self.timeout, self.calls, self.requests = timeout, 0, []
        self.call("Network.enable")
        self.call("Network.setCacheDisabled", cacheDisabled=True)

    def call(self, method: str, **params):
        self.calls += 1
        self.socket.send(json.dumps({"id": self.calls, "method": method, "params": params}))
        while True:  # events arrive in between: keep the requests, skip the rest
            reply = json.loads(self.socket.recv())
            if reply.get("method") == "Network.requestWillBeSent":
                self.requests.append(reply["params"]["request"]["url"])
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


def left_the_machine(requests: list[str]) -> list[str]:
    """The requests that went anywhere but loopback (data: URLs stay in the page)."""
    return [url for url in requests if urlsplit(url).scheme not in ("data", "about", "blob")
            and urlsplit(url).hostname != "127.0.0.1"]


def assert_links_and_images(browser, facts):
    statuses = dict(browser.evaluate(LINK_STATUSES))
    assert statuses and all(status == 200 for status in statuses.values()), statuses
    assert all(image["loaded"] for image in facts["images"]), facts["images"]
    return statuses


@pytest.mark.slow
def test_index_offline_lists_the_runs_and_every_link_works(browser, server, tmp_path):
    browser.requests.clear()
    facts = browser.open(f"{server}index.html")
    assert facts["title"] == "mnistlab report: site"
    assert sorted(facts["runs"]) == sorted(["nmodel-tiny-seed0", "nmodel-tiny-seed1", "bmodel-tiny-seed0",
                                            "<b>x-seed0"])
    assert facts["boldInRuns"] == 0  # a hostile name is shown as text, not markup
    statuses = assert_links_and_images(browser, facts)
    assert {"backprop.html", "runs/%3Cb%3Ex-seed0.html", "runs/bmodel-tiny-seed0.json"} <= set(statuses)
    assert [image["src"] for image in facts["images"]] == ["table1.png"]
    assert "resumed after epoch 2" in facts["text"] and "Mean ± standard deviation over seeds" in facts["text"]
    assert not left_the_machine(browser.requests), browser.requests
    shot = browser.screenshot(tmp_path / "index.png")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"screenshot: {shot}")


@pytest.mark.slow
def test_backprop_maths_is_typeset_offline(browser, server, tmp_path):
    browser.requests.clear()
    facts = browser.open(f"{server}backprop.html")
    maths = json.loads(browser.evaluate(MATHJAX))
    assert maths["containers"] > 50 and maths["errors"] == 0, maths
    assert "$$" not in facts["text"] and "\\frac" not in facts["text"], "raw TeX left on the page"
    statuses = assert_links_and_images(browser, facts)
    assert statuses.get("index.html") == 200, "no working link back to the index"
    assert f"{server}_static/tex-svg-full.js" in browser.requests
    assert not left_the_machine(browser.requests), left_the_machine(browser.requests)
    print(f"{maths['containers']} formulas typeset; screenshot: {browser.screenshot(tmp_path / 'backprop.png')}")


@pytest.mark.slow
def test_resumed_run_page_shows_its_note_above_training(browser, server):
    browser.requests.clear()
    facts = browser.open(f"{server}runs/bmodel-tiny-seed0.html")
    placement = browser.evaluate("""(() => {
      const note = document.querySelector('.mnistlab-note');
      const training = [...document.querySelectorAll('.jp-CodeCell')]
        .find(c => c.textContent.includes('TRAINING CELL'));
      const follows = !!note && !!training && note.compareDocumentPosition(training);
      return {visible: !!note && note.offsetHeight > 0, before: !!(follows & Node.DOCUMENT_POSITION_FOLLOWING)};
    })()""")
    assert placement == {"visible": True, "before": True}
    assert "Trained before this notebook ran." in facts["text"]
    assert json.loads(browser.evaluate(MATHJAX))["containers"] == 2
    assert_links_and_images(browser, facts)
    assert facts["links"][0] == "../index.html"
    assert not left_the_machine(browser.requests), browser.requests


@pytest.mark.slow
def test_built_site_names_no_absolute_path(site):
    """Neither the checkout's absolute path nor the temp folder it was built in, in any file of the site."""
    forbidden = {str(project_root()), str(site.parent), str(site.parent.resolve())}
    for path in site.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not [f for f in forbidden if f.encode() in data], f"{path.relative_to(site)} names a machine path"


# Where each link of the runs table is, against the window and the table's own box; how wide the page is.
RUNS_LAYOUT = """(() => {
  const table = document.querySelector('#runs'), box = table.parentElement, view = box.getBoundingClientRect();
  return {window: window.innerWidth, page: document.documentElement.scrollWidth,
          box: {overflow: getComputedStyle(box).overflowX, width: box.clientWidth, content: box.scrollWidth},
          hidden: [...table.querySelectorAll('tbody a')].map(a => [a.textContent, a.getBoundingClientRect()])
                    .filter(([, r]) => r.left < view.left || r.right > Math.min(view.right, window.innerWidth))
                    .map(([text]) => text)};
})()"""


@pytest.mark.slow
def test_runs_table_fits_a_1280_px_window_or_scrolls_in_its_box_with_every_link_in_view(browser, server, tmp_path):
    browser.open(f"{server}index.html")
    layout = browser.evaluate(RUNS_LAYOUT)
    assert layout["window"] == 1280, layout
    assert layout["page"] <= layout["window"], f"the page scrolls sideways: {layout}"  # no part of it off-screen
    assert layout["box"]["overflow"] == "auto", layout  # a wider table would scroll in its own box
    assert not layout["hidden"], f"links of the runs table out of view: {layout}"
    print(f"runs table {layout['box']['content']} px in a box of {layout['box']['width']} px; screenshot: "
          f"{browser.screenshot(tmp_path / 'index-1280.png')}")


@pytest.mark.slow
def test_pages_show_no_test_markers(browser, server):
    facts = browser.open(f"{server}backprop.html")
    assert "NBVAL" not in facts["text"], "a test marker is shown to readers"
    source = (project_root() / "notebooks" / "backprop.ipynb").read_text()
    assert "# NBVAL_CHECK_OUTPUT" in source  # the notebook has them: the page left them out


@pytest.mark.slow
def test_one_notebook_rendered_alone_has_offline_maths(browser, server):
    """`mnistlab render NOTEBOOK`: a page of its own, MathJax beside it, nothing from the network."""
    browser.requests.clear()
    facts = browser.open(f"{server}single/backprop.html")
    maths = json.loads(browser.evaluate(MATHJAX))
    assert maths["containers"] > 50 and maths["errors"] == 0, maths
    assert f"{server}single/_static/tex-svg-full.js" in browser.requests
    assert "index.html" not in facts["links"], "a page rendered alone links to an index that is not there"
    assert not left_the_machine(browser.requests), left_the_machine(browser.requests)


# Each image's size as drawn, its alt text, and how wide the page is.
IMAGES = """JSON.stringify({window: window.innerWidth, page: document.documentElement.scrollWidth,
  images: [...document.images].map(img => ({alt: img.alt, drawn: img.getBoundingClientRect().width,
                                            natural: img.naturalWidth}))})"""


@pytest.mark.slow
def test_a_page_of_figures_at_1280_px_has_navigation_alt_text_and_the_figures_files(browser, server, tmp_path):
    browser.requests.clear()
    facts = browser.open(f"{server}analysis.html")
    statuses = assert_links_and_images(browser, facts)
    assert {"index.html", "backprop.html", "analysis_files/figure-3.png", "analysis_files/figure-3.svg",
            "analysis.ipynb"} <= set(statuses), statuses  # navigation, the figure's files, the notebook
    assert facts["links"][0] == "index.html"
    layout = json.loads(browser.evaluate(IMAGES))
    assert layout["window"] == 1280 and layout["page"] <= layout["window"], layout  # no sideways scrolling
    assert all(image["alt"] for image in layout["images"]), layout["images"]
    assert all(0 < image["drawn"] <= layout["window"] for image in layout["images"]), layout["images"]
    assert "Line chart: loss falls from 3 to 1." in [image["alt"] for image in layout["images"]]
    assert "MARKED" not in facts["text"], "code shown unfolded"  # in the notebook, behind the "code" toggle
    assert not left_the_machine(browser.requests), browser.requests
    print(f"screenshot: {browser.screenshot(tmp_path / 'analysis-1280.png')}")
