"""Every notebook runs under nbval with small parameters and is committed lean."""

import subprocess
import sys
from pathlib import Path

import nbformat
import papermill
import pytest
import yaml

import mnistlab
from mnistlab.lab.notebooks import is_checked

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
CI_PARAMS = yaml.safe_load((ROOT / "params" / "ci.yaml").read_text())


@pytest.fixture(scope="module")
def records_dir(tmp_path_factory, small_data):
    """Two tiny records for the analysis notebook: different models, as a sweep would leave them."""
    folder = tmp_path_factory.mktemp("records")
    for model in ("nmodel", "bmodel"):
        config = mnistlab.Config(model=model, hidden_size=16, epochs=2, train_size=2000)
        mnistlab.run(config, data=small_data).save(folder / f"{config.run_name}.json")
    return folder


def parameters_for(name, records_dir, tmp_path):
    return {
        "train.ipynb": {**CI_PARAMS, "out_dir": str(tmp_path / "records")},
        "analysis.ipynb": {"records_dir": str(records_dir)},
    }.get(name, {})


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_passes_nbval(name, records_dir, tmp_path):
    """Each notebook's checked outputs still hold. How the pages render is the shared sweep's test
    (test_sweep.py): it executes every real notebook as a sweep does."""
    prepared = tmp_path / name
    # The papermill pattern: inject the parameters, then let nbval execute and compare checked cells.
    papermill.execute_notebook(ROOT / "notebooks" / name, prepared, kernel_name="python3",
                               parameters=parameters_for(name, records_dir, tmp_path), prepare_only=True)
    result = subprocess.run([sys.executable, "-m", "pytest", "--nbval-lax", "-q", "-p", "no:cacheprovider",
                             "--rootdir", str(tmp_path), str(prepared)],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failed" not in result.stdout


@pytest.mark.slow
def test_train_notebook_writes_a_record_per_seed(tmp_path):
    out = tmp_path / "records"
    papermill.execute_notebook(ROOT / "notebooks" / "train.ipynb", tmp_path / "out.ipynb", kernel_name="python3",
                               parameters={**CI_PARAMS, "out_dir": str(out), "run_name": "ci", "seeds": [0, 1]},
                               progress_bar=False)
    for seed in (0, 1):
        record = mnistlab.Record.load(out / f"ci-seed{seed}.json")
        assert record.config["model"] == CI_PARAMS["model"] and record.config["seed"] == seed
        assert len(record.history) == CI_PARAMS["epochs"]


# One kernel per case: a value of the wrong type, a name papermill only warns about, and what only the machine can
# tell. Every other message is the spec's (test_config.py), checked without a kernel.
@pytest.mark.parametrize("parameters, message", [
    ({"epochs": "ten"}, "epochs must be an integer; got 'ten' (str)"),
    ({"hiddensize": 20},  # papermill only warns
     "unknown parameter(s) 'hiddensize' (did you mean 'hidden_size'?); valid: model, hidden_size"),
    ({"device": "cuda:7"}, "device 'cuda:7' is not available on this machine"),
])
@pytest.mark.slow
def test_bad_parameter_stops_papermill_with_the_message(parameters, message, tmp_path):
    with pytest.raises(papermill.PapermillExecutionError) as error:
        papermill.execute_notebook(ROOT / "notebooks" / "train.ipynb", tmp_path / "out.ipynb", kernel_name="python3",
                                   parameters={**parameters, "out_dir": str(tmp_path / "records")}, progress_bar=False)
    assert error.value.ename == "ConfigError" and message in error.value.evalue
    # the message alone, not the frames that found it (IPython's _render_traceback_)
    assert error.value.traceback == [f"ConfigError: {error.value.evalue}"]
    executed = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    assert not (tmp_path / "records").exists()
    # It stops in the first code cell after the parameters, before any data is loaded.
    code = [c for c in executed.cells if c.cell_type == "code"]
    injected = next(i for i, c in enumerate(code) if "injected-parameters" in c.metadata.get("tags", []))
    assert any(o.get("output_type") == "error" for o in code[injected + 1].outputs)
    assert all(c.execution_count is None for c in code[injected + 2:])


@pytest.mark.slow
def test_papermill_shows_a_bad_parameter_in_one_line_without_the_kernel_traceback(tmp_path):
    """What the plain ``papermill`` command prints: papermill's own frames (it allows no less), then the one line."""
    result = subprocess.run([Path(sys.executable).with_name("papermill"), str(ROOT / "notebooks" / "train.ipynb"),
                             str(tmp_path / "out.ipynb"), "-p", "hiddensize", "20"],
                            capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 1
    error = result.stdout + result.stderr
    assert ("\nConfigError: unknown parameter(s) 'hiddensize' (did you mean 'hidden_size'?); valid: model, "
            "hidden_size,") in error
    assert "spec.py" not in error and "Cell In[" not in error and "---->" not in error, error[-3000:]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_is_lean(name):
    notebook = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    assert notebook.metadata.kernelspec.name == "python3"
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert sum("parameters" in c.metadata.get("tags", []) for c in code) == 1
    for cell in code:
        assert bool(cell.outputs) == is_checked(cell), f"{name}: outputs must be stored exactly in checked cells"
        assert (cell.execution_count is not None) == is_checked(cell)


def test_readme_names_the_kernel_the_notebooks_open_with():
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec("python3")  # what every notebook's metadata names
    assert Path(spec.resource_dir).resolve().is_relative_to(Path(sys.prefix).resolve())  # the project's environment
    assert f'"{spec.display_name}"' in (ROOT / "README.md").read_text()


@pytest.mark.slow
def test_make_lab_starts_jupyterlab_as_root_too():
    """`make lab` (the README's way in) serves JupyterLab on the project root; as root, which Jupyter refuses by
    default, too."""
    import os
    import signal
    import socket
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = f"--no-browser --ip=127.0.0.1 --port={port} --ServerApp.token= --ServerApp.open_browser=False"
    process = subprocess.Popen(["make", "-s", "lab", f"LAB_ARGS={args}"], cwd=ROOT, start_new_session=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, status = time.monotonic() + 120, None
        while time.monotonic() < deadline and process.poll() is None and status != 200:
            try:
                status = urllib.request.urlopen(f"http://127.0.0.1:{port}/lab", timeout=5).status
            except OSError:
                time.sleep(0.5)
        assert status == 200, f"JupyterLab did not answer (exit status {process.poll()})"
        # its file browser shows the project root: the notebooks, the params files and the reports
        import json

        listed = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/contents", timeout=30))
        assert {"notebooks", "params", "reports"} <= {item["name"] for item in listed["content"]}, listed
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        output = process.communicate(timeout=60)[0]
    if os.getuid() == 0:
        assert "running as root: starting JupyterLab with --allow-root" in output


@pytest.mark.slow
def test_refresh_stores_the_checked_outputs_anew_and_clears_the_rest(tmp_path):
    """`python -m mnistlab.lab.notebooks` re-executes a notebook (its kernel on Unix sockets, as a sweep's, and with
    papermill's ``-p`` parameters) and stores back only the checked cells' outputs, each under its position among
    the code cells; every other output and count goes. A one-kernel notebook of its own: the committed ones'
    outputs are nbval's test above."""
    from nbformat.v4 import new_code_cell, new_notebook, new_output

    from mnistlab.lab.notebooks import CHECK

    stale = [new_output("stream", name="stdout", text="stale\n")]
    cells = [new_code_cell("factor = 1", metadata={"tags": ["parameters"]}),
             new_code_cell("print('not checked')", execution_count=7, outputs=stale),
             new_code_cell(f"{CHECK}\nprint(6 * factor)", execution_count=9, outputs=stale)]
    path = tmp_path / "n.ipynb"
    nbformat.write(new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                      "language": "python"}}), path)
    result = subprocess.run([sys.executable, "-m", "mnistlab.lab.notebooks", str(path), "-p", "factor", "7"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert "Kernel is running over TCP" not in result.stderr  # Unix sockets: no TCP port to race other kernels for
    refreshed = nbformat.read(path, as_version=4)
    nbformat.validate(refreshed)
    assert [cell.source for cell in refreshed.cells] == [cell.source for cell in cells]  # no injected cell kept
    assert [(cell.execution_count, cell.outputs) for cell in refreshed.cells] == [
        (None, []), (None, []), (3, [new_output("stream", name="stdout", text="42\n")])]


@pytest.mark.slow
def test_a_bare_nbval_run_trains_the_train_notebook_on_small_parameters_and_says_so(tmp_path):
    """`pytest --nbval notebooks/` (make nbval) used to sit in train.ipynb's 100-epoch wmodel: notebooks/conftest.py
    gives it params/ci.yaml's parameters, in memory, and pytest's header says so. A cell that trained the protocol
    would outlive the cell timeout."""
    import os

    before = (ROOT / "notebooks" / "train.ipynb").read_bytes()
    result = subprocess.run([sys.executable, "-m", "pytest", "--nbval", "-p", "no:cacheprovider", "-x",
                             "--nbval-cell-timeout", "240", "notebooks/train.ipynb"], cwd=ROOT, capture_output=True,
                            text=True, timeout=600, env={**os.environ, "MNISTLAB_NBVAL_OUT": str(tmp_path)})
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "notebooks/conftest.py: train.ipynb runs with the small parameters of params/ci.yaml" in result.stdout
    (path,) = tmp_path.glob("*.json")
    record = mnistlab.Record.load(path)
    assert {key: record.config[key] for key in CI_PARAMS if key in record.config} == \
        {key: value for key, value in CI_PARAMS.items() if key in record.config}
    assert (ROOT / "notebooks" / "train.ipynb").read_bytes() == before  # the committed notebook is unchanged
