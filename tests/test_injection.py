"""No code from data: what papermill injects into a notebook is assignments of literals to identifiers.

Papermill pastes parameter names unescaped into the injected cell (and values of types it does not know,
such as YAML's ``!!binary`` and ``!!set``). ``mnistlab.lab.injection`` replaces its Python translator
through an entry point, so the plain ``papermill`` command refuses such a name before a kernel starts.
The command-line tests run the real ``papermill`` on the real train notebook, with hostile keys and values
through -f, -y, -b, -p and -r; each hostile piece would write a marker file if it ran.
"""

import ast
import base64
import datetime
import math
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from helpers import ROOT

PAPERMILL = [sys.executable, "-m", "papermill"]
TRAIN = ROOT / "notebooks" / "train.ipynb"


def payload(marker: Path) -> str:
    return f"open({str(marker)!r}, 'w').write('ran')"


def hostile_names(marker: Path) -> list[str]:
    code = payload(marker)
    return [f"x = 0\n{code}\ny", f"x = {code} or 1; y", f"{code} #", "import os", "1x", "for", "model.x", ""]


def injected(parameters: dict) -> str:
    from papermill.translators import translate_parameters

    return translate_parameters("python3", "python", parameters)


def literal_assignments(code: str) -> dict:
    """The names and values ``code`` assigns; fails unless every statement assigns a literal to a plain name."""
    values = {}
    for statement in ast.parse(code).body:
        assert isinstance(statement, ast.Assign) and len(statement.targets) == 1, ast.dump(statement)
        target, value = statement.targets[0], statement.value
        assert isinstance(target, ast.Name), ast.dump(statement)
        if isinstance(value, ast.Call):  # papermill writes nan and the infinities as float('...')
            assert ast.unparse(value) in ("float('nan')", "float('inf')", "float('-inf')"), ast.unparse(value)
            values[target.id] = float(value.args[0].value)
        else:
            values[target.id] = ast.literal_eval(value)  # raises for anything but a literal
    return values


def test_the_translator_is_installed_as_a_papermill_entry_point():
    """Papermill finds its plugins with the ``entrypoints`` library (every distribution on sys.path; a stale
    egg-info in the checkout does not hide the installed one, as it can for importlib.metadata)."""
    import entrypoints

    found = [ep for ep in entrypoints.get_group_all("papermill.engine") if ep.name == "mnistlab"]
    assert found and found[0].module_name == "mnistlab.lab.injection" and not found[0].object_name, \
        "papermill does not load mnistlab.lab.injection: reinstall the package (pip install -e .), and delete a " \
        "stale mnistlab.egg-info in the checkout (it hides the installed metadata when the checkout is on sys.path)"
    import papermill  # noqa: F401  (loads the entry points)
    from papermill.translators import papermill_translators

    from mnistlab.lab.injection import SafePythonTranslator

    assert papermill_translators.find_translator("python3", "python") is SafePythonTranslator


def test_a_name_that_is_not_an_identifier_is_refused(tmp_path):
    from mnistlab.lab.injection import UnsafeParameter

    for name in hostile_names(tmp_path / "marker") + [1, None]:
        with pytest.raises(UnsafeParameter, match="is not a Python identifier"):
            injected({"model": "nmodel", name: 1})
    assert literal_assignments(injected({"model": "nmodel", "_x": 1, "λ": 2})) == {"model": "nmodel", "_x": 1, "λ": 2}


def test_every_value_becomes_a_literal_equal_to_it_or_to_its_string(tmp_path):
    code = payload(tmp_path / "marker")
    breakout = f'" + {code} + "'
    values = {
        "quotes": f'\'"{code}"\'', "backslashes": '\\" ' + code + " \\", "lines": f"a\n{code}\n\"\"\"\n",
        "nul_and_unicode": "\0é\u2028\U0001F600", "number": 3, "real": 0.1, "nan": math.nan, "inf": -math.inf,
        "flag": True, "nothing": None, "nested": {"k": [1, {"deep": breakout}], breakout: 2},
        "binary": breakout.encode(), "set": {breakout}, "when": datetime.date(2026, 1, 2),
    }
    expected = {**values, "nested": {"k": [1, {"deep": breakout}], breakout: 2}, "binary": str(breakout.encode()),
                "set": str({breakout}), "when": "2026-01-02"}
    got = literal_assignments(injected(values))
    assert math.isnan(got.pop("nan")) and expected.pop("nan") is values["nan"]
    assert got == expected


def test_a_value_of_billions_of_items_is_refused_before_it_is_expanded():
    from mnistlab.lab.injection import UnsafeParameter

    # 9^6 = 531,441 strings from 300 bytes (a full bomb of 9^9 would also hang papermill's own translator).
    laughs = yaml.safe_load("\n".join(["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"] +
                                      [f"{n}: &{n} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]"
                                       for p, n in zip("abcde", "bcdef")]))
    with pytest.raises(UnsafeParameter, match="holds more than 100000 values"):
        injected(laughs)
    deep = []
    for _ in range(100):
        deep = [deep]
    with pytest.raises(UnsafeParameter, match="nested more than 32 levels"):
        injected({"deep": deep})


def papermill(tmp_path: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*PAPERMILL, str(TRAIN), str(tmp_path / "out.ipynb"), "--cwd", str(tmp_path), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("option", ["-f", "-y", "-b", "-p", "-r"])
def test_the_papermill_command_refuses_a_hostile_name_before_any_kernel_starts(tmp_path, option):
    marker = tmp_path / "marker"
    name = hostile_names(marker)[0]
    text = yaml.safe_dump({name: 1, "epochs": 1})
    args = {"-f": ["-f", str(tmp_path / "hostile.yaml")], "-y": ["-y", text],
            "-b": ["-b", base64.b64encode(text.encode()).decode()], "-p": ["-p", name, "1"], "-r": ["-r", name, "1"]}
    (tmp_path / "hostile.yaml").write_text(text)
    done = papermill(tmp_path, *args[option])
    assert not marker.exists(), "the parameter name ran as code"
    assert done.returncode == 2, done.stderr
    assert "Error: parameter name \"x = 0\\nopen(" in done.stderr and "is not a Python identifier" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "out.ipynb").exists()


@pytest.mark.slow
def test_hostile_values_through_every_option_are_injected_as_strings(tmp_path):
    """--prepare-only: papermill writes the parameterised notebook without executing it; its injected cell
    must hold only literals, each equal to the value given."""
    marker = tmp_path / "marker"
    breakout = f'" + {payload(marker)} + "'
    (tmp_path / "values.yaml").write_text(yaml.safe_dump({"model": f"'''\n{breakout}\n\"\"\""}))
    # !!binary: stock papermill pastes str(bytes) between quotes, unescaped; this one ran code before the fix.
    # (A !!set does too, but papermill cannot save a notebook whose metadata holds a set, so it never runs.)
    tagged = yaml.safe_dump({"run_name": breakout.encode()})
    assert "!!binary" in tagged
    done = papermill(tmp_path, "--prepare-only", "-f", str(tmp_path / "values.yaml"), "-y", tagged,
                     "-p", "out_dir", breakout, "-r", "checkpoint", "\\" + breakout)
    assert done.returncode == 0, done.stderr
    notebook = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    cell = next(c for c in notebook.cells if "injected-parameters" in c.metadata.get("tags", []))
    values = literal_assignments(cell.source)
    assert values == {"model": f"'''\n{breakout}\n\"\"\"", "run_name": str(breakout.encode()),
                      "out_dir": breakout, "checkpoint": "\\" + breakout}
    assert not marker.exists()


@pytest.mark.slow
def test_hostile_values_executed_stop_in_the_first_cell_and_run_nothing(tmp_path, data_dir):
    """The real thing: a kernel executes the train notebook with hostile values; the first cell refuses them."""
    marker = tmp_path / "marker"
    breakout = f'" + {payload(marker)} + "'
    done = papermill(tmp_path, "-y", yaml.safe_dump({"run_name": breakout.encode()}),
                     "-p", "model", breakout, "-p", "epochs", "1", "-p", "data_dir", str(data_dir))
    assert not marker.exists(), "a value ran as code"
    assert done.returncode != 0 and "model must be one of nmodel, bmodel, wmodel" in done.stderr
