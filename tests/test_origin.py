"""What a record says made it: the code fingerprint follows the files that decide the numbers, and only those."""

import json
import shutil
import subprocess
import sys

import pytest

from helpers import ROOT
from mnistlab import origin

# In a child: the fingerprint of the package copied to argv[1] (not the editable install's), as JSON.
CHILD = """
import json, sys
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__.lower()]
sys.path.insert(0, sys.argv[1])
import mnistlab.origin as origin
assert origin.__file__.startswith(sys.argv[1])
print(json.dumps(origin.code()))
"""


def fingerprint(copy):
    result = subprocess.run([sys.executable, "-c", CHILD, str(copy)], capture_output=True, text=True, check=True,
                            env={"MNISTLAB_ROOT": str(copy), "PATH": "/usr/bin:/bin"})
    return json.loads(result.stdout)


@pytest.fixture
def copy(tmp_path):
    """The package and the train notebook copied outside any git checkout."""
    shutil.copytree(ROOT / "mnistlab", tmp_path / "mnistlab", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "notebooks").mkdir()
    shutil.copy(ROOT / "notebooks" / "train.ipynb", tmp_path / "notebooks")
    return tmp_path


def edit(path, old, new):
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


@pytest.mark.slow
def test_the_fingerprint_changes_with_the_training_code_and_names_the_file(copy):
    before = fingerprint(copy)
    assert before["git_commit"] is None and before["git_dirty"] is None  # not a checkout
    assert before["fingerprint"] == origin.code()["fingerprint"]  # the same files give the same fingerprint
    edit(copy / "mnistlab" / "models.py", "nn.ReLU()", "nn.Tanh()")  # a student's edit of a model
    after = fingerprint(copy)
    assert after["fingerprint"] != before["fingerprint"]
    assert [name for name in after["files"] if after["files"][name] != before["files"][name]] == ["mnistlab/models.py"]


@pytest.mark.slow
def test_the_fingerprint_ignores_what_cannot_change_a_result(copy):
    before = fingerprint(copy)
    edit(copy / "mnistlab" / "cli.py", "Command line", "The command line")
    edit(copy / "mnistlab" / "lab" / "site.py", '"""', '"""Edited. ')
    notebook = copy / "notebooks" / "train.ipynb"
    cells = json.loads(notebook.read_text())
    markdown = next(cell for cell in cells["cells"] if cell["cell_type"] == "markdown")
    markdown["source"] = ["An edited explanation."]
    for cell in cells["cells"]:
        cell["outputs"] = [] if cell["cell_type"] == "code" else cell.get("outputs")
        if cell["cell_type"] != "code":
            cell.pop("outputs", None)
    notebook.write_text(json.dumps(cells))
    assert fingerprint(copy) == before
    code = next(cell for cell in cells["cells"] if cell["cell_type"] == "code")
    code["source"] = [*code["source"], "\n# edited"]
    notebook.write_text(json.dumps(cells))
    assert fingerprint(copy)["files"]["notebooks/train.ipynb"] != before["files"]["notebooks/train.ipynb"]


def test_hardware_names_the_cpu_precisely():
    import torch

    hardware = origin.hardware(torch.device("cpu"))
    assert hardware["kind"] == "cpu" and hardware["capability"] == torch.backends.cpu.get_cpu_capability()
    assert hardware["family"] is not None and hardware["name"]
    assert f"family {hardware['family']} model {hardware['model']}, {hardware['capability']}," \
        in origin.describe(hardware)  # the model tells two EPYC generations of family 25 apart


def test_code_checked_to_give_the_same_numbers_counts_as_this_code(monkeypatch):
    """A fingerprint noted in same_numbers.SAME_NUMBERS (by scripts/same-history.py --record) is this code's."""
    import mnistlab.same_numbers

    now = origin.code()
    checked, other = "c" * 64, "d" * 64
    monkeypatch.setattr(mnistlab.same_numbers, "SAME_NUMBERS", {checked: "checked bit for bit"})
    assert origin.same_numbers(now["fingerprint"], now) and origin.same_numbers(checked, now)
    assert not origin.same_numbers(other, now) and not origin.same_numbers(None, now)
