"""What a record says made it: the code fingerprint follows the files that decide the numbers, and only those."""

import json
import os
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
    code["source"] = [*code["source"], "\n# edited\n\n"]  # a comment and blank lines: still this code
    notebook.write_text(json.dumps(cells))
    assert fingerprint(copy) == before
    code["source"] = [*code["source"], "\nepochs = 3"]
    notebook.write_text(json.dumps(cells))
    assert fingerprint(copy)["files"]["notebooks/train.ipynb"] != before["files"]["notebooks/train.ipynb"]


@pytest.mark.slow
def test_the_fingerprint_covers_the_validation_split_and_the_run_spec(copy):
    """config.py cuts the validation split (TRAIN_SIZE) and spec.py passes it to data loading: both decide numbers
    (a hand-written list of files once left them out, and a changed split kept its fingerprint)."""
    before = fingerprint(copy)
    edit(copy / "mnistlab" / "config.py", "FULL_TRAIN_SIZE = 50_000,", "FULL_TRAIN_SIZE = 55_000,")
    after = fingerprint(copy)
    assert after["fingerprint"] != before["fingerprint"]
    assert [name for name in after["files"] if after["files"][name] != before["files"].get(name)] == \
        ["mnistlab/config.py"]
    assert "mnistlab/spec.py" in after["files"] and "mnistlab/same_numbers.py" not in after["files"]


@pytest.mark.slow
def test_layout_comments_and_docstrings_are_still_this_code(copy):
    """A blank line, a comment or a reworded docstring in a fingerprinted file cannot change a number: the same
    fingerprint, so a sweep does not stop as "other training code" over it; a changed constant does change it."""
    before = fingerprint(copy)
    models = copy / "mnistlab" / "models.py"
    models.write_text(models.read_text().replace("\n\n", "\n\n\n# a comment\n", 1) + "\n\n")
    edit(copy / "mnistlab" / "train.py", '"""', '"""Reworded. ')
    edit(copy / "mnistlab" / "steps.py", "\nimport torch\n", "\nimport torch  # the tensors\n")
    assert fingerprint(copy) == before
    edit(copy / "mnistlab" / "data.py", "0.3081", "0.3082")
    assert fingerprint(copy)["files"]["mnistlab/data.py"] != before["files"]["mnistlab/data.py"]


# In a child: a tiny run trained as the train notebook trains it, then every mnistlab module that process loaded.
LOADED = """
import json, sys
import mnistlab
spec = mnistlab.RunSpec.from_params(model="bmodel", hidden_size=8, epochs=1, train_size=200, out_dir=sys.argv[1],
                                    run_name="tiny", checkpoint=sys.argv[1] + "/tiny.pt", tensorboard=True)
mnistlab.runner.check(spec)
mnistlab.runner.run(spec, progress=True)
print(json.dumps(sorted(name for name in sys.modules if name == "mnistlab" or name.startswith("mnistlab."))))
"""


@pytest.mark.slow
def test_every_module_a_training_run_loads_is_fingerprinted(tmp_path, data_dir):
    """The fingerprint's files are derived from the imports of what trains, never listed by hand: every mnistlab
    module a real (tiny) training run loads is among them, but the table of fingerprints checked to give the same
    numbers (which a --record changes)."""
    env = {**os.environ, "MNISTLAB_DATA": str(data_dir), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", LOADED, str(tmp_path)], capture_output=True, text=True,
                            check=True, env=env, timeout=600)
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert "mnistlab.train" in loaded and "mnistlab.config" in loaded
    covered = {name.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
               for name in origin.fingerprinted()}
    assert sorted(set(loaded) - covered - set(origin.NOT_FINGERPRINTED)) == []


def test_plugin_modules_and_what_they_import_are_fingerprinted(tmp_path, monkeypatch):
    """Models from outside the package (``MNISTLAB_PLUGINS``): the plugin's file and the modules of its own package
    that it imports are fingerprinted, each named; a change to one changes the fingerprint."""
    package = tmp_path / "layerplug"
    package.mkdir()
    (package / "__init__.py").write_text("from .layers import norm\n")
    (package / "layers.py").write_text("import math\n\n\ndef norm(x):\n    return x / math.sqrt(2)\n")
    (package / "unused.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(origin.PLUGINS, " layerplug , ")
    assert origin.plugin_modules() == ["layerplug"]
    before = origin.code()
    assert {"layerplug/__init__.py", "layerplug/layers.py"} <= set(before["files"])
    assert "layerplug/unused.py" not in before["files"]
    (package / "layers.py").write_text("import math\n\n\ndef norm(x):\n    return x / math.sqrt(3)\n")
    after = origin.code()
    assert after["fingerprint"] != before["fingerprint"]
    assert [name for name in after["files"] if after["files"][name] != before["files"][name]] == ["layerplug/layers.py"]
    monkeypatch.setenv(origin.PLUGINS, "no_such_plugin_module")
    with pytest.raises(ImportError, match="no_such_plugin_module"):
        origin.code()


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
