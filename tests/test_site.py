"""The site without a browser: escaping, relative links, honest provenance, one number format, no machine paths."""

import base64
import hashlib
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

import helpers
from helpers import urls
from mnistlab.lab import assets, formatting as fmt
from mnistlab.lab.render import render, web_png
from mnistlab.lab.results import PageResult, RunResult, SweepResult
from mnistlab.lab.site import public_text, write_site
from mnistlab.paths import project_root
from mnistlab.records import Record

# The records of these tests: the tiny runs of a sweep, on the CPU.
SMALL = {"hidden_size": 16, "epochs": 2, "step_size": 1, "train_size": 500, "device": "cpu"}


def make_record(model="nmodel", **values) -> Record:
    return helpers.make_record(model, **{**SMALL, **values})


def run_result(name, record=None, status="complete", error="", html=None, **params) -> RunResult:
    return RunResult(name=name, params=params or {"model": "nmodel"}, status=status, executed=True, error=error,
                     record=record, html=html, notebook=f"runs/{name}.ipynb" if record else None,
                     record_file=f"runs/{name}.json" if record else None)


def sweep(runs, pages=()) -> SweepResult:
    return SweepResult(params=["params/ci.yaml"], started="2026-11-27T06:00:00Z", wall_seconds=75.0, runs=list(runs),
                       pages=list(pages))


def notebook_with_training_cell(path: Path, tagged=True) -> Path:
    """A train-like notebook with outputs: some maths, a training cell (tagged ``training``), a result."""
    training = new_code_cell("record = mnistlab.run(config)  # TRAINING CELL",
                             outputs=[new_output("stream", name="stderr", text="100/100 [00:00]")])
    if tagged:
        training.metadata["tags"] = ["training"]
    maths = "The loss is $L = -\\log p_y$.\n\n$$\\frac{\\partial L}{\\partial o} = p - y$$"
    cells = [new_markdown_cell(f"# A run\n\n{maths}"),
             new_code_cell("print('settings')  # SETTINGS CELL", outputs=[new_output("stream", text="settings\n")]),
             training, new_code_cell("record.summary  # RESULT CELL")]
    nbformat.write(new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                      "language": "python"}}), path)
    return path


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A built site: a trained, a resumed, a failed (with paths in its error) and a hostile-named run."""
    root = tmp_path_factory.mktemp("site-build")
    out = root / "site"
    (out / "runs").mkdir(parents=True)
    trained, resumed = make_record("nmodel", acc=90), make_record("bmodel", acc=92, resumed_after=2, threads=2)
    hostile = make_record("wmodel", acc=91)
    for name, record in (("nmodel-tiny-seed0", trained), ("bmodel-tiny-seed0", resumed), ("<b>x-seed0", hostile)):
        record.save(out / "runs" / f"{name}.json")
        (out / "runs" / f"{name}.ipynb").write_text("{}")
        render(notebook_with_training_cell(root / f"{name}.ipynb"), out / "runs" / f"{name}.html", out, record)
    error = f"DataError: {root}/nowhere/MNIST/raw is missing; also {project_root()}/data/MNIST looked at"
    runs = [run_result("nmodel-tiny-seed0", trained, html="runs/nmodel-tiny-seed0.html"),
            run_result("bmodel-tiny-seed0", resumed, html="runs/bmodel-tiny-seed0.html", model="bmodel"),
            run_result("<b>x-seed0", hostile, html="runs/%3Cb%3Ex-seed0.html".replace("%3C", "<").replace("%3E", ">"),
                       model="<script>alert(1)</script>"),
            run_result("no-data-seed0", status="failed", error=error, model="nmodel", data_dir=str(root / "nowhere"))]
    (out / "NOTES.md").write_text("# How these runs were made\n")
    index = write_site(out, sweep(runs, [PageResult("backprop", "failed", True, "kernel died", None)]))
    return {"out": out, "root": root, "index": index, "html": index.read_text()}


def test_index_escapes_every_value(site):
    html = site["html"]
    assert "&lt;b&gt;x-seed0" in html and "<b>x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>" not in html


def test_every_link_is_relative_and_its_file_exists(site):
    out = site["out"]
    pages = [site["index"], *sorted((out / "runs").glob("*.html"))]
    for page in pages:
        for url in urls(page.read_text()):
            parts = urlsplit(url)
            assert not parts.scheme and not parts.netloc and not parts.path.startswith("/"), (page.name, url)
            if parts.path:
                assert (page.parent / unquote(parts.path)).is_file(), (page.name, url)
    index_urls = urls(site["html"])
    assert {"NOTES.md", "table1.png", "runs/%3Cb%3Ex-seed0.html", "runs/bmodel-tiny-seed0.json"} <= set(index_urls)
    for page in pages[1:]:
        assert "../index.html" in urls(page.read_text()), f"{page.name} has no link back to the index"


def test_no_page_loads_anything_from_the_network(site):
    for page in [site["index"], *(site["out"] / "runs").glob("*.html")]:
        html = page.read_text()
        loads = re.findall(r"<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)=[\"']?([^\"' >]+)", html)
        assert not [u for u in loads if urlsplit(u).scheme or u.startswith("//")], (page.name, loads)
        assert "cdn" not in html.lower() and "require.js" not in html and "mermaid" not in html.lower()
        assert not re.search(r"@import|url\(\s*['\"]?(https?:)?//", html), page.name
    script = site["out"] / "_static" / assets.MATHJAX_SCRIPT
    assert hashlib.sha256(script.read_bytes()).hexdigest() == assets.SHA256


def test_provenance_says_which_run_was_resumed(site):
    rows = {m.group(1): m.group(0) for m in re.finditer(r"<tr>\s*<td class=\"run\">.*?>([^<>]+)</a>.*?</tr>",
                                                       site["html"], re.S)}
    assert "resumed after epoch 2" in rows["bmodel-tiny-seed0"] and "2 threads" in rows["bmodel-tiny-seed0"]
    assert "trained in its notebook" in rows["nmodel-tiny-seed0"] and "1 thread" in rows["nmodel-tiny-seed0"]
    # the trained run's wall time is the sum of its epochs (1.5 + 3.0 s); a resumed run shows none
    assert "4.5 s" in rows["nmodel-tiny-seed0"] and "4.5 s" not in rows["bmodel-tiny-seed0"]
    assert "2.2 s" in rows["bmodel-tiny-seed0"]  # its median epoch
    assert "3 runs: 2 trained in their notebook, 1 resumed from a checkpoint trained earlier. Trained on cpu: AMD " \
           "EPYC (family 25 model 1, AVX2, 2 cores), with 1 thread or 2 threads. Median epoch 2.2 s." in site["html"]
    resumed = (site["out"] / "runs" / "bmodel-tiny-seed0.html").read_text()
    trained = (site["out"] / "runs" / "nmodel-tiny-seed0.html").read_text()
    note = resumed.index('class="mnistlab-note"')
    assert resumed.index("SETTINGS CELL") < note < resumed.index("TRAINING CELL"), "note not right above training"
    assert "resumed the run after epoch 2 from the checkpoint runs/checkpoints/x.pt" in resumed
    assert "trained no epoch" in resumed and 'class="mnistlab-note"' not in trained


def test_note_goes_to_the_top_without_a_training_cell(tmp_path):
    page = render(notebook_with_training_cell(tmp_path / "old.ipynb", tagged=False), tmp_path / "site" / "old.html",
                  tmp_path / "site", make_record(resumed_after=1))
    html = page.read_text()
    assert html.index('class="mnistlab-nav"') < html.index('class="mnistlab-note"') < html.index("SETTINGS CELL")
    assert "resumed the run after epoch 1" in html and "this notebook trained epoch 2;" in html
    hardware = "cpu: AMD EPYC (family 25 model 1, AVX2, 2 cores)"
    assert f"Training: epoch 1: {hardware}, 1 thread" in html and f"epoch 2: {hardware}, 2 threads" in html
    assert "code c0dec0dec0de (commit 6158bf1)" in html


def test_a_notebook_of_several_seeds_notes_each_resumed_one(tmp_path):
    seeds = [make_record(seed=0), make_record(seed=1, resumed_after=2), make_record(seed=2, resumed_after=1)]
    html = render(notebook_with_training_cell(tmp_path / "nb.ipynb"), tmp_path / "site" / "runs" / "nb.html",
                  tmp_path / "site", seeds).read_text()
    assert html.count('class="mnistlab-note"') == 1 and "Seed 0:" not in html
    assert "Seed 1: this notebook resumed the run after epoch 2" in html and "trained no epoch" in html
    assert "Seed 2: this notebook resumed the run after epoch 1" in html and "trained epoch 2;" in html
    assert 'href="../index.html"' in html and 'src="../_static/tex-svg-full.js"' in html


def test_a_version_1_record_resumed_elsewhere_says_what_is_not_known(tmp_path):
    """The published paper runs: version-1 records whose notebooks resumed after the last epoch."""
    data = make_record("bmodel", epochs=2).to_dict()
    data.update(format="mnistlab.record/1", environment={"device": "cpu", "device_name": "AMD EPYC (2 cores)",
                                                         "cpu_threads": 2, "resumed_after_epoch": 2})
    for key in ("provenance", "predictions", "diverged_reason"):
        data.pop(key)
    record = Record.from_dict(data)
    html = write_site(tmp_path, sweep([run_result("old", record)])).read_text()
    row = html[html.index('id="runs"'):]
    assert "resumed after epoch 2" in row and "device not recorded" in row and "2 threads" not in row
    assert "Device not recorded; threads not recorded." in html and "Median epoch 2.2 s." in html


def test_failed_runs_show_their_error_without_machine_paths(site):
    html = site["html"]
    assert 'id="failed"' in html and "no-data-seed0" in html
    assert "DataError: …/raw is missing; also data/MNIST looked at" in html
    assert "failed</span> <span class=\"error\">kernel died" in html


def test_built_site_names_no_absolute_path(site):
    """Neither the checkout's absolute path nor the temp folder the site was built in, in any file it wrote."""
    forbidden = [str(project_root()).encode(), str(site["root"]).encode(), str(site["root"].resolve()).encode()]
    for path in site["out"].rglob("*"):
        if path.is_file() and path.suffix != ".json":  # records are the trainer's, not the site's
            data = path.read_bytes()
            assert not [f for f in forbidden if f in data], f"{path.relative_to(site['out'])} names a machine path"


def test_mean_sd_only_with_several_seeds(tmp_path):
    one = write_site(tmp_path / "one", sweep([run_result("a", make_record(seed=0))])).read_text()
    two = write_site(tmp_path / "two", sweep([run_result("a", make_record(seed=0, acc=90)),
                                              run_result("b", make_record(seed=1, acc=91))])).read_text()
    def table(html):
        return html[html.index('id="table1"'):html.index("</table>", html.index('id="table1"'))]
    assert "±" not in table(one) and "standard deviation" not in one and "One seed per cell" in one
    assert "90.50 ± 0.71" in table(two) and "Mean &plusmn; standard deviation over seeds" in two
    assert re.search(r"95 % \[\d+\.\d\d, \d+\.\d\d\]", table(two))
    assert (tmp_path / "two" / "table1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_complete_run_still_gives_a_page(tmp_path):
    html = write_site(tmp_path, sweep([run_result("x", status="failed", error="boom")])).read_text()
    assert "nothing to tabulate" in html and "table1.png" not in html and "boom" in html


def test_one_number_format():
    assert fmt.difference(0.13) == "+0.13" and fmt.difference(-0.054) == "-0.05" and fmt.difference(0) == "+0.00"
    assert fmt.accuracy(98.7349) == "98.73" and fmt.accuracy(None) == fmt.accuracy(math.nan) == "–"
    assert fmt.mean_sd(98.4, math.nan) == "98.40" and fmt.mean_sd(98.4, 0.071) == "98.40 ± 0.07"
    assert fmt.interval(98.3, 98.52) == "[98.30, 98.52]" and fmt.interval(math.nan, 1) == ""
    assert [fmt.duration(s) for s in (4.31, 48.4, 482, 7320)] == ["4.3 s", "48 s", "8 min 2 s", "2 h 2 min"]
    assert fmt.count(1, "thread") == "1 thread" and fmt.count(2, "thread") == "2 threads"


def test_public_text_keeps_paths_of_the_site_and_project_only(tmp_path):
    out = tmp_path / "site"
    text = f"{out}/runs/a.html and {project_root()}/params/ci.yaml and /etc/passwd, http://x.org/a/b, 1/2"
    assert public_text(text, out) == "runs/a.html and params/ci.yaml and …/passwd, http://x.org/a/b, 1/2"


@pytest.mark.slow
def test_fetch_mathjax_is_checked_and_idempotent(tmp_path, monkeypatch):
    path = assets.fetch_mathjax()  # the project's copy (make setup fetched it)
    start = time.perf_counter()
    assert assets.fetch_mathjax() == path
    assert time.perf_counter() - start < 0.5, "a present, intact copy must not be fetched again"
    monkeypatch.setenv("MNISTLAB_ROOT", str(tmp_path))  # a project whose copy is corrupt
    monkeypatch.delenv("MNISTLAB_DATA", raising=False)
    corrupt = tmp_path / "data" / "mathjax" / assets.MATHJAX_SCRIPT
    corrupt.parent.mkdir(parents=True)
    corrupt.write_text("not mathjax")
    assert assets.fetch_mathjax() == corrupt
    assert hashlib.sha256(corrupt.read_bytes()).hexdigest() == assets.SHA256
    monkeypatch.setenv("PATH", str(tmp_path / "no-npm-here"))
    corrupt.write_text("not mathjax")
    with pytest.raises(assets.AssetError, match=r"tex-svg-full.js is missing and npm is not on PATH"):
        assets.fetch_mathjax()


def test_the_index_says_what_the_profile_is(tmp_path):
    result = sweep([run_result("a", make_record(seed=0))])
    result.about = ["# The quick profile\n\nWhat this is: <the pipeline>.\n\nWhat this is not: the paper."]
    html = write_site(tmp_path, result).read_text()
    about = html[html.index('id="about"'):html.index("</section>")]
    assert "<p>What this is: &lt;the pipeline&gt;.</p>" in about and "<p>What this is not: the paper.</p>" in about
    assert "# The quick profile" not in about


def test_the_index_names_the_other_sweeps_records_its_pages_read(tmp_path):
    """The learning-rate report's pages compare its runs with the paper's lr 0.01 runs (``--also``): its index says
    so, since its runs table lists only its own."""
    result = sweep([run_result("a", make_record(seed=0))])
    assert "--also" not in write_site(tmp_path / "plain", result).read_text()
    result.also = ["reports/paper/runs"]
    html = write_site(tmp_path / "lr", result).read_text()
    assert "The pages also read, beside these runs, the records in reports/paper/runs (<code>--also</code>)." in html


def test_runs_table_shows_the_cell_and_only_the_settings_off_the_protocol(tmp_path):
    params = {"model": "bmodel", "hidden_size": 1000, "epochs": 3, "lr": 0.01, "batch_size": 100, "seed": 2}
    html = write_site(tmp_path, sweep([run_result("a", make_record(seed=2), **params)])).read_text()
    cell = re.search(r'<td class="params">(.*?)</td>', html).group(1)
    assert re.findall(r"<span>(.*?)</span>", cell) == ["model=bmodel", "hidden_size=1000", "epochs=3", "seed=2"]
    # lr 0.01 and batch 100 are the protocol's; each setting is kept whole on one line


def test_runs_of_older_training_code_are_marked_with_their_commit(tmp_path):
    """Runs kept with --keep-older-code: the index says so, row by row, naming the commit that made each."""
    from mnistlab import origin

    now = origin.code()
    older = {**now, "fingerprint": "0ld" * 21 + "0", "git_commit": "1234567" + "0" * 33, "git_dirty": True}
    unknown = make_record(seed=2)  # as a record from before format 3: no code named anywhere
    for segment in unknown.segments:
        segment.update(code=None, git_commit=None, git_dirty=None)
    runs = [run_result("current-seed0", make_record(seed=0, code=now)),
            run_result("older-seed0", make_record(seed=1, code=older)), run_result("unknown-seed0", unknown)]
    html = write_site(tmp_path, sweep(runs)).read_text()
    rows = {m.group(1): m.group(0) for m in re.finditer(r"<tr>\s*<td class=\"run\">([^<]+)<.*?</tr>", html, re.S)}
    assert "older code" not in rows["current-seed0"]
    assert "made by older code (commit 1234567, modified)" in rows["older-seed0"]
    assert "made by older code (not recorded which)" in rows["unknown-seed0"]
    note = html[html.index('id="older-code"'):html.index("</p>", html.index('id="older-code"'))]
    assert "older-seed0, unknown-seed0" in note and "current-seed0" not in note and "--keep-older-code" in note


def test_table1_promises_the_hw5_reports_numbers_only_where_it_has_them(tmp_path):
    quick = write_site(tmp_path / "quick", sweep([run_result("a", make_record(seed=0))])).read_text()
    assert "<h2>Table 1: test accuracy (%)</h2>" in quick and "HW5 report)</th>" not in quick
    assert "beside the HW5 report" not in quick and "difference</th>" not in quick
    protocol = make_record("bmodel", hidden_size=1000, epochs=100, step_size=20, train_size=50000, acc=98.0)
    paper = write_site(tmp_path / "paper", sweep([run_result("b", protocol, model="bmodel")])).read_text()
    assert "<h2>Table 1: best test accuracy (%) beside the HW5 report's</h2>" in paper
    table = paper[paper.index('id="table1"'):paper.index("</table>", paper.index('id="table1"'))]
    assert "<th>best test (HW5 report)</th><th>difference</th>" in table and ">98.73<" in table  # bmodel, H = 1000
    for html in (quick, paper):
        assert "seed's" not in html and "`" not in html


def test_the_profiles_words_show_code_as_code_and_markup_as_text(tmp_path):
    result = sweep([run_result("a", make_record(seed=0))])
    result.about = ["Run `mnistlab sweep params/paper --seeds 0,1` for *five* seeds; <script>x</script>."]
    html = write_site(tmp_path, result).read_text()
    about = html[html.index('id="about"'):html.index("</section>")]
    assert "<code>mnistlab sweep params/paper --seeds 0,1</code>" in about and "<em>five</em>" in about
    assert "&lt;script&gt;x&lt;/script&gt;" in about and "`" not in about


def test_pages_leave_test_markers_out(tmp_path):
    cells = [new_code_cell("# NBVAL_CHECK_OUTPUT\nprint('checked')", outputs=[new_output("stream", text="checked\n")]),
             new_code_cell("x = 1  # NBVAL_CHECK_OUTPUT is only a marker on a first line")]
    nbformat.write(new_notebook(cells=cells), tmp_path / "nb.ipynb")
    html = render(tmp_path / "nb.ipynb", tmp_path / "site" / "nb.html", tmp_path / "site").read_text()
    assert "checked" in html and "is only a marker on a first line" in html
    assert html.count("NBVAL_CHECK_OUTPUT") == 1  # the second cell's comment, which is no marker


@pytest.mark.slow
def test_mnistlab_render_makes_one_page_with_offline_maths(tmp_path):
    """`mnistlab render NOTEBOOK`: the page beside the notebook, MathJax copied beside it, no link to an index."""
    notebook = notebook_with_training_cell(tmp_path / "out.ipynb")
    result = subprocess.run([sys.executable, "-m", "mnistlab", "render", str(notebook)], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    page = tmp_path / "out.html"
    html = page.read_text()
    assert result.stdout.strip() == str(page) and 'src="_static/tex-svg-full.js"' in html
    assert hashlib.sha256((tmp_path / "_static" / assets.MATHJAX_SCRIPT).read_bytes()).hexdigest() == assets.SHA256
    assert "index.html" not in html and "cdn" not in html.lower()


def _trained_on(record: Record, **hardware) -> Record:
    """``record`` as if every process that trained it had run on a processor with ``hardware`` changed."""
    for segment in record.segments:
        segment["hardware"] = {**segment["hardware"], **hardware}
    return record


def test_the_analysis_says_which_seeds_trained_on_which_processor():
    from mnistlab.lab import provenance

    intel = {"name": "Intel Xeon", "vendor": "GenuineIntel", "family": 6, "model": 167, "capability": "AVX512"}
    runs = [helpers.make_record("nmodel", seed=0), _trained_on(helpers.make_record("nmodel", seed=1), **intel),
            helpers.make_record("bmodel", seed=0), helpers.make_record("bmodel", seed=1),
            helpers.make_record("wmodel", seed=0, status="diverged"),  # not a complete run: not counted
            _trained_on(helpers.make_record("bmodel", hidden_size=32, seed=0), **intel)]  # paired with nothing
    where = provenance.machines(runs)
    trained_on = {(m, h): text for m, h, text in zip(where["model"], where["hidden_size"], where["trained_on"])}
    assert list(trained_on) == [("nmodel", 16), ("bmodel", 16), ("bmodel", 32)]  # the models' order, H increasing
    assert list(where["processors"]) == [2, 1, 1]
    assert trained_on["nmodel", 16] == ("cpu: AMD EPYC (family 25 model 1, AVX2), 1 thread: seed 0; "
                                        "cpu: Intel Xeon (family 6 model 167, AVX512), 1 thread: seed 1")
    assert trained_on["bmodel", 16] == "cpu: AMD EPYC (family 25 model 1, AVX2), 1 thread: seeds 0, 1"
    note = provenance.machines_note(runs)
    # seed 0's pair trained on one processor, seed 1's on two
    assert "5 complete runs trained on 2 kinds of processor: 1 of 3 cells mix them" in note
    assert "1 of the 2 same-seed pairs of models" in note and "no interval on this page covers that" in note
    # the kernel set alone makes another processor: the same CPU model with AVX512 instead of AVX2
    same_cpu = [helpers.make_record("nmodel"), _trained_on(helpers.make_record("bmodel"), capability="AVX512")]
    assert "1 of the 1 same-seed pair of models" in provenance.machines_note(same_cpu)
    # the cores a process could use change no number; its threads may
    fewer_cores = [helpers.make_record("nmodel"), _trained_on(helpers.make_record("bmodel"), cores=1)]
    one_processor = "All 2 complete runs trained on cpu: AMD EPYC (family 25 model 1, AVX2), 1 thread."
    assert provenance.machines_note(fewer_cores) == one_processor
    assert "1 of the 1 same-seed pair" in provenance.machines_note(
        [helpers.make_record("nmodel"), helpers.make_record("bmodel", threads=2)])
    one = provenance.machines_note(runs[2:4])
    assert one == one_processor
    assert provenance.machines_note([]) == "No complete run." and provenance.machines([]).empty


# A light site: one stylesheet and MathJax, images as files, code folded, navigation on top --------------------

def notebook_with_figures(path: Path) -> Path:
    """A notebook that shows a plain image and a figure ``plots.show`` marked, with its SVG."""
    import base64
    import io

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4, 3))
    figure.add_subplot().plot([1, 2, 3], [3, 1, 2])
    png = io.BytesIO()
    figure.savefig(png, format="png")
    data = base64.b64encode(png.getvalue()).decode()
    plain = new_output("display_data", data={"image/png": data, "text/plain": "<Figure>"})
    marked = new_output("display_data", data={"image/png": data, "image/svg+xml": "<svg>a figure</svg>",
                                              "text/plain": "alt"},
                        metadata={"mnistlab": {"name": "figure-3", "alt": "Line chart: loss falls from 3 to 1."}})
    cells = [new_markdown_cell("# Figures"), new_code_cell("plot()  # PLAIN", outputs=[plain]),
             new_code_cell("plots.show(shown)  # MARKED", outputs=[marked])]
    nbformat.write(new_notebook(cells=cells), path)
    return path


def test_a_page_links_one_stylesheet_and_mathjax_and_carries_neither(tmp_path):
    """nbconvert's lab template inlines about 260 KB of CSS into every page; the site's pages link it once."""
    page = render(notebook_with_training_cell(tmp_path / "nb.ipynb"), tmp_path / "site" / "runs" / "nb.html",
                  tmp_path / "site", make_record())
    html = page.read_text()
    assert re.search(r'<link href="../_static/mnistlab.css" rel="stylesheet"/?>', html)
    assert 'src="../_static/tex-svg-full.js"' in html
    styles = re.findall(r"<style[^>]*>(.*?)</style>", html, re.S)
    assert sum(len(style) for style in styles) < 1000, "CSS inlined into the page"
    assert len(html.encode()) < 20_000
    css = (tmp_path / "site" / "_static" / "mnistlab.css").read_text()
    assert ".jp-Notebook" in css and "nav.mnistlab-nav" in css and ".highlight" in css  # lab, ours, code colours


def test_a_page_opens_with_navigation_and_keeps_its_code_folded(tmp_path):
    out = tmp_path / "site"
    for name in ("analysis", "data"):
        (out / f"{name}.html").parent.mkdir(parents=True, exist_ok=True)
        (out / f"{name}.html").write_text("<p>page</p>")
    (out / "runs").mkdir()
    html = render(notebook_with_training_cell(out / "runs" / "a-seed0.ipynb"), out / "runs" / "a-seed0.html",
                  out).read_text()
    nav = html[html.index("<nav "):html.index("</nav>")]
    assert urls(nav) == ["../index.html", "../analysis.html", "../data.html", "a-seed0.ipynb"]  # no backprop page
    assert html.index("</nav>") < html.index("SETTINGS CELL")
    # each code cell folded behind "code", its output shown; no In [ ] / Out[ ] prompts
    assert html.count('<details class="mnistlab-code"><summary>code</summary>') == 3
    assert html.index('<details class="mnistlab-code">') < html.index("SETTINGS CELL") < html.index("</details>")
    assert "In&nbsp;[" not in html and "Out[" not in html and "settings\n" in html
    # a page of the site names itself, not linked
    analysis = render(notebook_with_training_cell(tmp_path / "analysis.ipynb"), out / "analysis.html", out,
                      pages=["analysis", "data", "backprop"]).read_text()
    assert re.search(r'<span aria-current="page" class="page">Findings and analysis</span>', analysis)
    assert urls(analysis[:analysis.index("</nav>")]).count("analysis.html") == 0


def test_images_are_files_beside_the_page_with_their_alt_text_and_figures_link_png_and_svg(tmp_path):
    source = notebook_with_figures(tmp_path / "nb.ipynb")
    before = source.read_bytes()
    html = render(source, tmp_path / "site" / "analysis.html", tmp_path / "site").read_text()
    files = tmp_path / "site" / "analysis_files"
    assert sorted(p.name for p in files.iterdir()) == ["cell-1-0.png", "figure-3.png", "figure-3.svg"]
    assert "data:image" not in html  # no image inline
    images = re.findall(r"<img ([^>]*)>", html)
    assert len(images) == 2 and 'src="analysis_files/cell-1-0.png"' in images[0]
    assert 'alt="Line chart: loss falls from 3 to 1."' in images[1] and 'src="analysis_files/figure-3.png"' in images[1]
    assert 'alt="A figure of this notebook; no description was stored with it."' in images[0]
    assert 'This figure as a file: <a download="" href="analysis_files/figure-3.png">PNG</a>, ' \
           '<a download="" href="analysis_files/figure-3.svg">SVG</a>' in html
    assert (files / "figure-3.svg").read_text() == "<svg>a figure</svg>"
    original = base64.b64decode(nbformat.read(source, as_version=4).cells[1].outputs[0].data["image/png"])
    for png in ("figure-3.png", "cell-1-0.png"):  # re-encoded for the page, never larger
        assert (files / png).read_bytes() == web_png(original) and len(web_png(original)) <= len(original)
    assert source.read_bytes() == before  # the notebook keeps its outputs
    # rendered again without the plain image: its file goes, the figure's stay
    notebook = nbformat.read(source, as_version=4)
    notebook.cells[1].outputs = []
    nbformat.write(notebook, source)
    render(source, tmp_path / "site" / "analysis.html", tmp_path / "site")
    assert sorted(p.name for p in files.iterdir()) == ["figure-3.png", "figure-3.svg"]


def test_web_png_is_the_same_picture_in_fewer_bytes():
    import io

    import numpy as np
    from PIL import Image

    pixels = np.zeros((60, 80, 3), np.uint8)
    pixels[:, :, 0] = np.arange(80)  # 80 colours: exact in a palette
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=0)
    smaller = web_png(buffer.getvalue())
    assert len(smaller) < len(buffer.getvalue())
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(smaller)).convert("RGB")), pixels)


def test_a_published_notebook_has_its_images_as_its_page_shows_them_and_its_run_stays_up_to_date(tmp_path):
    """A sweep publishes each image of an executed notebook in 256 colours (``publishable``): most of a report's
    bytes were its runs' figures. A notebook published before is re-encoded where its manifest vouches for it,
    which then vouches for the new file; once only (a second pass changes nothing); never where the manifest
    vouched for less (a sweep redoes that run)."""
    from mnistlab.lab import cache
    from mnistlab.lab.execute import publishable, republish

    runs = tmp_path / "site" / "runs"
    runs.mkdir(parents=True)
    notebook = notebook_with_figures(runs / "a-seed0.ipynb")
    original = base64.b64decode(nbformat.read(notebook, as_version=4).cells[1].outputs[0].data["image/png"])
    assert original[25] != 3 and len(web_png(original)) < len(original)  # RGBA, as matplotlib writes it
    fresh = publishable(nbformat.read(notebook, as_version=4))  # what a sweep publishes now
    assert base64.b64decode(fresh.cells[1].outputs[0].data["image/png"]) == web_png(original)
    record, html = runs / "a-seed0.json", runs / "a-seed0.html"
    make_record().save(record)
    render(notebook, html, tmp_path / "site", Record.load(record))
    manifest = runs / ".a-seed0.done"
    cache.stamp(manifest, "key", [notebook, html, record])
    before = notebook.read_bytes()
    saved = republish(notebook)
    assert saved and len(notebook.read_bytes()) < len(before) and cache.fresh(manifest, "key")
    slim = nbformat.read(notebook, as_version=4)
    nbformat.validate(slim)
    images = [base64.b64decode(cell.outputs[0].data["image/png"]) for cell in slim.cells[1:]]
    assert images == [web_png(original)] * 2 and slim.cells[2].outputs[0].metadata["mnistlab"]["name"] == "figure-3"
    after = notebook.read_bytes()
    assert republish(notebook) == 0 and notebook.read_bytes() == after  # once only
    # a manifest that vouches for less: nothing written
    other = notebook_with_figures(runs / "b-seed0.ipynb")
    make_record(seed=1).save(runs / "b-seed0.json")
    (runs / "b-seed0.html").write_text("<p>page</p>")
    cache.stamp(runs / ".b-seed0.done", "key", [other, runs / "b-seed0.html", runs / "b-seed0.json"])
    make_record(seed=2).save(runs / "b-seed0.json")
    unchanged = other.read_bytes()
    assert republish(other) is None and other.read_bytes() == unchanged
    assert republish(tmp_path / "nowhere.ipynb") is None


@pytest.mark.parametrize("redraw", ["\r", ""], ids=["as-executed", "published-by-older-code"])
def test_a_published_notebook_shows_the_bars_last_state_not_the_terminals_lines(redraw):
    """Kernels of older code wrote a line per epoch to a terminal ipykernel also copied into the notebook, as stderr
    between the bar's redraws: published, only the bar's last state stays (from a fresh execution, whose pieces
    start with a carriage return, and from a notebook an older publish had cut them from), and a real warning."""
    from mnistlab.lab.execute import publishable

    bar = [f"{redraw}run-seed0: {10 * k:3d}%| | {k}/10 [00:0{k}<00:00]" for k in range(11)]
    outputs = [new_output("stream", name="stdout", text="settings\n"),
               new_output("stream", name="stdout", text=bar[0]),
               new_output("stream", name="stderr", text="run-seed0: training 10 epochs on cpu (1 thread)\n")]
    for k in range(1, 11):
        outputs += [new_output("stream", name="stdout", text=bar[k]),
                    new_output("stream", name="stderr",
                               text=f"run-seed0: epoch {k}/10, train_loss 0.1, test_acc 98.00 %, 1.0 s/epoch, "
                                    f"about {10 - k} s left\n" if k < 10 else "run-seed0: epoch 10/10, done\n")]
    outputs += [new_output("stream", name="stderr", text="UserWarning: a real warning\n"),
                new_output("stream", name="stdout", text="\nseed 0: complete\n")]
    notebook = publishable(new_notebook(cells=[new_code_cell("train()", outputs=outputs)]))
    shown = [(o.name, o.text) for o in notebook.cells[0].outputs]
    assert shown == [("stdout", f"settings\n{bar[10].lstrip(chr(13))}"), ("stderr", "UserWarning: a real warning\n"),
                     ("stdout", "\nseed 0: complete\n")]


@pytest.mark.slow
def test_publishing_a_studys_finished_runs_copies_each_once_with_its_images_re_encoded(tmp_path):
    """``scripts/publish-finished.py`` copies each finished run of a study's checkout (one whose code predates
    ``publishable``'s re-encoding, say) into this one and commits it, re-encoded; a later round copies it again
    only when the run was redone (new key or record), never for its bytes alone, and never a half-written run."""
    import shutil

    from mnistlab.lab import cache

    def git(*args):
        return subprocess.run(["git", "-C", str(here), *args], capture_output=True, text=True, check=True).stdout

    here, study = tmp_path / "here", tmp_path / "study"
    (here / "scripts").mkdir(parents=True)
    shutil.copy(project_root() / "scripts" / "publish-finished.py", here / "scripts")
    git("init", "-q")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "start")
    runs = study / "reports" / "beyond" / "runs"
    runs.mkdir(parents=True)

    def finish(name, seed, key):
        notebook, record, html = (runs / f"{name}.{ext}" for ext in ("ipynb", "json", "html"))
        notebook_with_figures(notebook)
        make_record(seed=seed).save(record)
        html.write_text(f"<p>{name}</p>")
        cache.stamp(runs / f".{name}.done", key, [notebook, html, record])

    def publish():
        env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
               "GIT_COMMITTER_EMAIL": "t@t"}
        done = subprocess.run([sys.executable, str(here / "scripts" / "publish-finished.py"), str(study),
                               "--reports", "beyond", "--once"], capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    finish("a-seed0", 0, "key-a")
    finish("b-seed0", 1, "key-b")
    make_record(seed=5).save(runs / "b-seed0.json")  # b's record changed after its manifest: not finished
    assert "a-seed0" in publish() and "b-seed0" not in git("log", "-1", "--stat")
    target = here / "reports" / "beyond" / "runs"
    assert len((target / "a-seed0.ipynb").read_bytes()) < len((runs / "a-seed0.ipynb").read_bytes())
    assert cache.fresh(target / ".a-seed0.done", "key-a") and not (target / "b-seed0.json").exists()
    commits = git("rev-list", "--count", "HEAD")
    assert publish() == "" and git("rev-list", "--count", "HEAD") == commits  # the same run: not again
    finish("a-seed0", 0, "key-a2")  # redone with other settings
    (here / "reports" / "beyond" / "NOTES.md").write_text("being written\n")  # this checkout's own work in progress
    assert "a-seed0" in publish() and cache.fresh(target / ".a-seed0.done", "key-a2")
    assert int(git("rev-list", "--count", "HEAD")) == int(commits) + 1
    assert git("status", "--porcelain", "reports") == "?? reports/beyond/NOTES.md\n"  # committed: only what it copied


def test_published_reports_share_one_static_folder(tmp_path, monkeypatch):
    """The reports in the project's reports/ load one stylesheet and one MathJax from reports/_static/; a site
    anywhere else has its own."""
    source = assets.mathjax_script()
    monkeypatch.setenv("MNISTLAB_ROOT", str(tmp_path / "project"))
    monkeypatch.setenv("MNISTLAB_DATA", str(source.parent.parent))
    reports = tmp_path / "project" / "reports"
    for name in ("paper", "lr"):
        page = render(notebook_with_training_cell(tmp_path / f"{name}.ipynb"), reports / name / "runs" / "a.html",
                      reports / name, make_record())
        assert 'href="../../_static/mnistlab.css"' in page.read_text()
        index = write_site(reports / name, sweep([run_result("a", make_record(), html="runs/a.html")])).read_text()
        assert '<link rel="stylesheet" href="../_static/mnistlab.css">' in index
    assert sorted(p.relative_to(reports).as_posix() for p in reports.rglob("_static")) == ["_static"]
    elsewhere = render(notebook_with_training_cell(tmp_path / "x.ipynb"), tmp_path / "build" / "x.html",
                       tmp_path / "build")
    assert 'href="_static/mnistlab.css"' in elsewhere.read_text() and (tmp_path / "build" / "_static").is_dir()


def test_a_page_rendered_anew_leaves_its_run_up_to_date(tmp_path):
    """The manifest that vouched for the notebook, record and page vouches for the new page; one that vouched for
    less (a record changed since) is left as it is: a sweep redoes that run, and only that one."""
    from mnistlab.lab import cache
    from mnistlab.lab.render import rerender

    runs = tmp_path / "site" / "runs"
    runs.mkdir(parents=True)
    notebook = notebook_with_training_cell(runs / "a-seed0.ipynb")
    record = runs / "a-seed0.json"
    make_record().save(record)
    html = runs / "a-seed0.html"
    html.write_text("<p>a page of an older template</p>")
    manifest = runs / ".a-seed0.done"
    cache.stamp(manifest, "key", [notebook, html, record])
    html.write_text("<p>a page changed by hand</p>")
    assert cache.only_derived_stale(manifest, "key", html) and not cache.fresh(manifest, "key")
    assert rerender(notebook, html, tmp_path / "site", [Record.load(record)])
    assert cache.fresh(manifest, "key") and "mnistlab-nav" in html.read_text()
    record.write_text(record.read_text().replace('"seed": 0', '"seed": 0 '))  # the run's result changed
    assert not rerender(notebook, html, tmp_path / "site", [Record.load(record)])
    assert not cache.fresh(manifest, "key") and not cache.only_derived_stale(manifest, "key", html)


def test_the_index_says_when_the_runs_were_trained_and_how_much_training_they_took(tmp_path):
    """From the records, not from the sweep that last rendered them (a re-render took 23 s for a 45-run study)."""
    runs = [run_result(f"r{seed}", make_record(seed=seed, epochs=4, seconds=900.0)) for seed in range(3)]
    html = write_site(tmp_path, sweep(runs), rendered="2026-12-07 10:00 UTC").read_text()
    training = html[html.index('id="training"'):html.index("</p>", html.index('id="training"'))]
    # each run: epochs of 900, 1800, 2700, 3600 s from 2026-11-20 10:00 UTC
    assert "Trained between 2026-11-20 10:00 and 2026-11-20 12:30 UTC: 7 h 30 min of training in all, the sum of " \
           "the epoch times of 3 runs." in training
    swept = html[html.index('id="swept"'):]
    assert "took 1 min 15 s" in swept and "last re-rendered 2026-12-07 10:00 UTC from the executed notebooks" in swept
    assert html.index('id="pages"') < html.index('id="table1"') < html.index('id="runs"')  # the pages first
    assert "No run has a record: nothing was trained." in write_site(tmp_path / "none", sweep([])).read_text()


def test_a_published_notebooks_old_wording_is_corrected_in_its_prose_only(tmp_path):
    """A run published when the HW5 report was still called "the seed" says so in its prose: republished, its
    markdown says "the HW5 report" (``execute.ERRATA``), the correction is listed in its metadata, its code cells
    and outputs are byte for byte what ran, its page says the new words and its run stays up to date."""
    from mnistlab.lab import cache
    from mnistlab.lab.execute import ERRATA, republish

    runs = tmp_path / "site" / "runs"
    runs.mkdir(parents=True)
    notebook = notebook_with_figures(runs / "a-seed0.ipynb")
    old, new = next(iter(ERRATA.items()))
    executed = nbformat.read(notebook, as_version=4)
    executed.cells.insert(1, nbformat.v4.new_markdown_cell(f"Loss and accuracy per epoch. {old} over all epochs."))
    executed.cells[2].source = f"# {old}: code keeps what it said\n" + executed.cells[2].source
    nbformat.write(executed, notebook)
    code = [(cell.source, cell.outputs) for cell in executed.cells if cell.cell_type == "code"]
    assert old in code[0][0]
    record, html = runs / "a-seed0.json", runs / "a-seed0.html"
    make_record().save(record)
    render(notebook, html, tmp_path / "site", Record.load(record))
    assert old in html.read_text()
    manifest = runs / ".a-seed0.done"
    cache.stamp(manifest, "key", [notebook, html, record])
    republish(notebook)
    render(notebook, html, tmp_path / "site", Record.load(record))
    assert cache.restamp(manifest, html) and cache.fresh(manifest, "key")
    corrected = nbformat.read(notebook, as_version=4)
    nbformat.validate(corrected)
    assert corrected.cells[1].source == f"Loss and accuracy per epoch. {new} over all epochs."
    assert [cell.source for cell in corrected.cells if cell.cell_type == "code"] == [source for source, _ in code]
    assert corrected.metadata["mnistlab"]["errata"] == [f"{old!r} → {new!r} (prose only)"]
    page = html.read_text()
    assert new in page and f"Loss and accuracy per epoch. {old}" not in page


def test_the_index_leads_with_the_verdicts_its_complete_analysis_page_displayed(tmp_path):
    """The findings the analysis notebook displayed as data (``findings.show``) open the index: a count of each
    verdict, the tested rows with where each was judged and its deciding number, the untested ones by name, all
    escaped. A page that failed (after its findings cell, say) or a notebook without the data give no section."""
    from mnistlab.lab import findings

    out = tmp_path / "site"
    (out / "runs").mkdir(parents=True)
    record = make_record("nmodel", acc=90)
    record.save(out / "runs" / "a-seed0.json")
    rows = [{"name": "<i>Ordering</i> — a — b", "claim": "<i>Ordering</i> — a — b — a > b at <every> size.",
             "whose": "the HW5 report", "verdict": "supported", "judged at": "at lr 0.01 & H = 1000, 3 seeds per cell",
             "deciding number (95 % interval)": "a − b = +0.20 points [+0.05, +0.35]", "rule": "Supported: ..."},
            {"name": "Stable", "claim": "Stable — says", "whose": "the HW5 report", "verdict": "not tested here",
             "judged at": "–", "deciding number (95 % interval)": "–", "rule": "–"},
            {"name": "Faster?", "claim": "Faster? — asks", "whose": "this project's question",
             "verdict": "within noise", "judged at": "at lr 0.001, H = 1000, 3 seeds per cell",
             "deciding number (95 % interval)": "n − w = -0.01 [-0.02, +0.00]", "rule": "..."}]
    bundle = {"text/html": "<table></table>", "text/plain": "table", findings.MIME: rows}
    nbformat.write(new_notebook(cells=[new_code_cell("findings.show(found)", outputs=[
        new_output("display_data", data=bundle)])]), out / "analysis.ipynb")
    (out / "analysis.html").write_text("<p>analysis</p>")
    runs = [run_result("a-seed0", record, html=None)]

    def index(status="complete"):
        html = write_site(out, sweep(runs, [PageResult("analysis", status, True, "", "analysis.html")])).read_text()
        return html[html.index("<h2>Findings</h2>"):html.index("<h2>Pages</h2>")] if "<h2>Findings</h2>" in html \
            else None

    lead = index()
    assert "3 claims and questions: 1 supported, 1 within noise, 1 not tested here." in lead
    assert "&lt;i&gt;Ordering&lt;/i&gt; — a — b" in lead and "<i>" not in lead
    assert "the HW5 report: a &gt; b at &lt;every&gt; size." in lead  # the claim's words, its name not repeated
    assert "at lr 0.01 &amp; H = 1000, 3 seeds per cell" in lead and "a − b = +0.20 points [+0.05, +0.35]" in lead
    assert "n − w = -0.01 [-0.02, +0.00]" in lead and 'href="analysis.html"' in lead
    untested = lead[lead.index('id="untested"'):]
    assert "Stable" in untested and "Stable" not in lead[:lead.index('id="untested"')]
    assert index("failed") is None  # its findings are no evidence
    nbformat.write(new_notebook(cells=[new_code_cell("1")]), out / "analysis.ipynb")  # older code: no data
    assert index() is None
