"""The conventions of a Python research package: one version, `python -m`, a licence, a citation, a quiet build."""

import importlib.metadata
import subprocess
import sys
import tomllib
import warnings
from pathlib import Path

import pytest
import yaml

import mnistlab

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_python_m_mnistlab_and_version_come_from_one_place():
    result = subprocess.run([sys.executable, "-m", "mnistlab", "--version"], capture_output=True, text=True,
                            timeout=120, cwd=ROOT)
    assert result.returncode == 0 and result.stdout == f"mnistlab {mnistlab.__version__}\n", result
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" not in project and "version" in project["dynamic"]  # written once, in mnistlab/__init__.py
    # what pip installed says the same (a stale install would not: `make setup` reinstalls on a pyproject change)
    assert importlib.metadata.version("mnistlab") == mnistlab.__version__


def test_the_licence_is_an_spdx_expression_with_its_file_and_the_build_says_nothing_about_it():
    """setuptools' deprecation banner for ``license = { text = ... }`` was printed three times per `make setup`."""
    from setuptools import SetuptoolsDeprecationWarning
    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    licence = (ROOT / "LICENSE").read_text()
    assert licence.startswith("MIT License\n") and "Permission is hereby granted, free of charge" in licence
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dist = apply_configuration(Distribution(), ROOT / "pyproject.toml")
    deprecations = [str(w.message) for w in caught if issubclass(w.category, SetuptoolsDeprecationWarning)]
    assert not deprecations, deprecations
    assert dist.get_version() == mnistlab.__version__ and dist.metadata.license_expression == "MIT"


def test_citation_cites_the_project_and_the_hw5_report():
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0" and citation["type"] == "software" and citation["license"] == "MIT"
    assert citation["title"].startswith("mnistlab") and citation["authors"]
    assert "version" not in citation  # one version source: mnistlab/__init__.py
    (report,) = citation["references"]
    assert report["type"] == "report" and report["title"] == "CS 391L Machine Learning HW 5: Backpropagation"
    institute = "Oden Institute for Computational Engineering and Sciences, UT Austin"
    assert report["authors"] == [{"family-names": "Xie", "given-names": "Yuege", "affiliation": institute}]
    text = (ROOT / "CITATION.cff").read_text()
    assert "the HW5 report" in text and "the seed" not in text.lower()


def test_ci_installs_chromium_without_recommends():
    lines = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if "apt-get install" in line]
    assert lines and all("--no-install-recommends" in line and "chromium" in line for line in lines), lines


def test_everything_a_user_reads_calls_the_course_report_the_hw5_report():
    """'the seed' reads as a random seed in a project full of them: the package (its help texts, docstrings and
    templates), the notebooks, the benchmarks, the scripts, the params files and the docs."""
    owned = subprocess.run(["git", "-C", str(ROOT), "ls-files", "--", "mnistlab", "notebooks", "benchmarks", "scripts",
                            "params", "docs", "README.md"], capture_output=True, text=True, check=True).stdout.split()
    from mnistlab.lab.execute import ERRATA

    assert len(owned) > 50
    for path in owned:
        text = (ROOT / path).read_text()
        if path == "mnistlab/lab/execute.py":  # the one place that names the old wording, to correct it
            text = _without(text, [f'"{old}"' for old in ERRATA])
        for phrase in ("the seed's", "The seed's", "the seed report", "The seed report", "seed_paper"):
            assert phrase not in text, (path, phrase)


def test_every_committed_notebook_is_valid_and_the_sources_are_lean():
    """Jupyter Server refuses an invalid notebook ("Notebook validation failed"); the published ones are read by
    people, the sources executed by papermill. Sources keep outputs only where nbval checks them."""
    import nbformat

    committed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "*.ipynb"], capture_output=True, text=True,
                               check=True).stdout.split()
    assert any(path.startswith("reports/") for path in committed) and any(
        path.startswith("notebooks/") for path in committed)
    for path in committed:
        notebook = nbformat.read(ROOT / path, as_version=4)
        nbformat.validate(notebook)  # raises nbformat.ValidationError, naming the cell
        if path.startswith("notebooks/"):
            kept = [cell for cell in notebook.cells if cell.get("outputs")]
            assert all("NBVAL_CHECK_OUTPUT" in cell.source for cell in kept), f"{path}: outputs left uncleared"


# One number per fact: what the docs say twice, or say of the code or the records, is checked against its source.

def test_the_quick_profile_is_said_the_way_a_sweep_runs_it(tmp_path):
    """It was "9 runs in 9 notebooks" (the sweep), "9 runs in 3 notebooks" (performance.md) and "one after another
    in one notebook" (the params files' comments)."""
    import re

    from mnistlab.lab.params import jobs
    from mnistlab.lab.sweep import _notebook_seeds

    todo = jobs([ROOT / "params" / "quick"], tmp_path / "site")
    runs = sum(len(job.spec.seeds) for job in todo)
    on_cpu = sum(len(_notebook_seeds(job, per_seed=True)) for job in todo)
    on_gpus = sum(len(_notebook_seeds(job, per_seed=False)) for job in todo)
    sweeps = (ROOT / "docs" / "sweeps.md").read_text()
    assert f"The quick profile is {runs} runs" in sweeps and f"each is a notebook of its own, {on_cpu}\nnotebooks" \
        in sweeps and f"a params file's three seeds train together, {on_gpus} notebooks" in sweeps
    paths = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "params" / "quick").iterdir()]
    for path in paths:
        text = " ".join(path.read_text().replace("\n#", "\n").split())  # comments' lines joined
        assert "one after another in one notebook" not in text, path
        for said_runs, said_notebooks, gpus in re.findall(r"(\d+) runs in (\d+) notebooks( on GPUs)?", text):
            assert (int(said_runs), int(said_notebooks)) == (runs, on_gpus if gpus else on_cpu), (path, said_runs)


def test_the_setup_time_and_the_runs_costs_are_the_measured_ones():
    """The README states what setup took and what the defaults cost; performance.md lists the same measurements,
    and the per-run costs are the published records' own."""
    import re

    from mnistlab.lab import cells
    from mnistlab.lab.site import training_text

    readme, performance = (ROOT / "README.md").read_text(), (ROOT / "docs" / "performance.md").read_text()
    setup = re.search(r"first setup took (\d+ min \d+ s) here", readme.replace("\n", " ")).group(1)
    assert f"| {setup} |" in performance
    records = cells.load_records(ROOT / "reports" / "paper" / "runs")
    minutes = {}
    for record in records:
        minutes.setdefault(record.config["hidden_size"], []).append(record.summary["seconds"] / 60)
    ranges = {h: f"{round(min(m))}-{round(max(m))}" for h, m in minutes.items()}
    said = (f"{ranges[1000]} minutes per run at H = 1000, {ranges[2000]} at H = 2000 and {ranges[5000]} at "
            "H = 5000")
    assert said in " ".join(readme.split()), said
    assert f"{ranges[1000]} min at H = 1000, {ranges[2000]} min at H = 2000, {ranges[5000]} min at H = 5000" in \
        " ".join(performance.split())
    total = re.search(r"UTC: (.+?) of training in all", training_text(records)).group(1)
    assert f"{total} of training" in " ".join(performance.split())


def test_the_docs_say_when_a_checkpoint_is_saved_as_training_saves_it():
    """`--help-notebook` said "saved after each epoch", docs/notebooks.md "after the first and last epoch and once
    a minute": the docs say what ``train.CHECKPOINT_SECONDS`` does."""
    from mnistlab import train

    assert train.CHECKPOINT_SECONDS == 60  # "once a minute" below
    for path in ("docs/notebooks.md", "docs/performance.md"):
        text = " ".join((ROOT / path).read_text().split())
        assert "once a minute" in text and "CHECKPOINT_SECONDS" in text, path
        assert "after each epoch" not in text and "saved after every epoch" not in text, path


def _without(text: str, parts) -> str:
    for part in parts:
        text = text.replace(part, "")
    return text
