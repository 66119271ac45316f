"""The extension points, used as a researcher would (docs/extending.md): a fourth model, layer norm, declared once in
a few lines, trains alone and stacked, through the train notebook under papermill, and through a sweep beside nmodel."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest
import torch

import mnistlab
from mnistlab import MODELS, Config, ConfigError, run
from mnistlab.data import MNISTSplits, Split
from mnistlab.stacked import StackedModel
from mnistlab.train import train

# The whole definition, as docs/extending.md gives it. A plugin module: $MNISTLAB_PLUGINS names it for other processes.
LMODEL = textwrap.dedent('''
    """Layer norm, as a model of one's own."""
    from torch import nn

    import mnistlab


    @mnistlab.register_model("lmodel", "fc1 -> LayerNorm -> ReLU -> fc2")
    def lmodel(hidden_size):
        return mnistlab.one_hidden_layer(hidden_size, norm=nn.LayerNorm(hidden_size))
''')
TINY = dict(hidden_size=32, epochs=2, train_size=1000, device="cpu")
SEEDS = [0, 1, 7]


@pytest.fixture
def lmodel():
    """lmodel registered in this process for the test, and gone afterwards."""
    namespace = {}
    exec(compile(LMODEL, "lmodel_plugin.py", "exec"), namespace)
    yield MODELS["lmodel"]
    MODELS.pop("lmodel")


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """lmodel as a module other processes import: the environment that makes kernels and workers register it, and
    this process's path as a user's shell would have set it (a local sweep's workers start with this process's)."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "lmodel_plugin.py").write_text(LMODEL)
    monkeypatch.syspath_prepend(str(folder))
    return {"MNISTLAB_PLUGINS": "lmodel_plugin", "PYTHONPATH": str(folder)}


def test_a_registered_model_is_a_valid_config_and_builds_from_its_one_definition(lmodel):
    config = Config(model="lmodel", hidden_size=12)
    torch.manual_seed(3)
    model = mnistlab.build_model(config.model, config.hidden_size)
    assert [name for name, _ in model.named_children()] == ["fc1", "norm", "relu", "fc2"]
    assert isinstance(model.norm, torch.nn.LayerNorm) and model(torch.randn(5, 784)).shape == (5, 10)
    torch.manual_seed(3)  # the paired design holds for it too: one seed, the same fc1 and fc2 as nmodel's
    assert torch.equal(mnistlab.build_model("nmodel", 12).fc1.weight, model.fc1.weight)
    counted = mnistlab.models.sizes("lmodel", 12, 100)
    assert counted["parameters"] == mnistlab.count_parameters(model) == 784 * 12 + 12 + 2 * 12 + 12 * 10 + 10
    assert counted["activations"] == 100 * (3 * 12 + 10)  # fc1, norm and relu outputs (B, H), fc2's (B, 10)


def test_an_unregistered_model_is_refused_with_the_registered_names():
    with pytest.raises(ConfigError, match=r"model must be one of nmodel, bmodel, wmodel; got 'lmodel'.*"
                                          r"A model of your own is registered by its module, named in "
                                          r"\$MNISTLAB_PLUGINS \(unset now\)"):
        Config(model="lmodel")  # most often a plugin not loaded: the error says where models of one's own come from
    with pytest.raises(ValueError, match="already registered"):
        mnistlab.register_model("nmodel", "another nmodel")(lambda hidden_size: None)


def test_the_new_model_trains_alone_and_stacked_to_the_same_numbers(lmodel, small_data):
    data = MNISTSplits(Split(small_data.train.x[:1000], small_data.train.y[:1000]), small_data.val, small_data.test)
    configs = [Config(model="lmodel", seed=seed, **TINY) for seed in SEEDS]
    stacked = StackedModel.from_seeds("lmodel", 32, SEEDS)
    for model, seed in zip(stacked.unstack(), SEEDS):  # each seed's own initial weights
        torch.manual_seed(seed)
        for key, value in mnistlab.build_model("lmodel", 32).state_dict().items():
            assert torch.equal(model.state_dict()[key], value), (seed, key)
    together = train(configs, data=data)
    for config, record in zip(configs, together):
        alone = run(config, data=data)
        assert record.status == alone.status == "complete" and record.segments[0]["stacked_seeds"] == SEEDS
        # Layer norm, like batch norm, cancels the mean of the hidden units, so fc1's bias gets rounding noise
        # that Adam turns into steps: the tolerance of bmodel (tests/test_stacked.py), not nmodel's.
        for ours, theirs in zip(record.history, alone.history):
            for key in ("train_loss", "val_loss", "test_loss"):
                assert ours[key] == pytest.approx(theirs[key], abs=2e-2), (config.seed, key)
            for key in ("train_acc", "val_acc", "test_acc"):
                assert ours[key] == pytest.approx(theirs[key], abs=1.0), (config.seed, key)


@pytest.mark.slow
def test_the_new_model_trains_through_the_train_notebook_under_papermill(plugin, tmp_path, data_dir):
    import os

    out = tmp_path / "out.ipynb"
    env = {**os.environ, **plugin, "MNISTLAB_DATA": str(data_dir)}
    done = subprocess.run([sys.executable, "-m", "papermill", str(mnistlab.paths.project_root() / "notebooks" /
                                                                   "train.ipynb"), str(out), "-p", "model", "lmodel",
                           "-p", "hidden_size", "16", "-p", "epochs", "1", "-p", "train_size", "500",
                           "-p", "device", "cpu", "-p", "out_dir", str(tmp_path / "records")],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    record = mnistlab.Record.load(tmp_path / "records" / "lmodel-hs16-seed0.json")
    assert record.config["model"] == "lmodel" and record.status == "complete"
    assert "lmodel-hs16-seed0: epoch 1/1" in done.stderr  # the kernel's progress line, on papermill's terminal
    streams = "".join(output.get("text", "") for cell in nbformat.read(out, as_version=4).cells
                      for output in cell.get("outputs", []))
    assert "lmodel-hs16-seed0: 100%" in streams and "epoch 1/1" not in streams  # the bar, not the terminal's lines


@pytest.mark.slow
def test_a_plugin_that_cannot_be_imported_is_one_sentence_from_the_mnistlab_command_and_an_error_elsewhere(tmp_path):
    """The ``mnistlab`` command says a wrong $MNISTLAB_PLUGINS in one line (exit 2, as every mistake in a command),
    with its traceback on ``--traceback``; ``import mnistlab`` anywhere else fails as an import does."""
    command = [str(Path(sys.executable).with_name("mnistlab")), "train", "--model", "nmodel", "--check"]
    env = {**os.environ, "MNISTLAB_PLUGINS": "no_such_plugin_module"}
    said = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert said.returncode == 2 and said.stdout == "" and len(said.stderr.splitlines()) == 1
    assert said.stderr.startswith("mnistlab: $MNISTLAB_PLUGINS names 'no_such_plugin_module', which cannot be imported")
    traced = subprocess.run(command + ["--traceback"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert traced.returncode == 1 and "Traceback" in traced.stderr
    imported = subprocess.run([sys.executable, "-c", "import mnistlab"], capture_output=True, text=True, env=env)
    assert imported.returncode == 1 and "ImportError: $MNISTLAB_PLUGINS names 'no_such_plugin_module'" in \
        imported.stderr


@pytest.mark.slow  # the analysis of 45 records, twice: no process, but seconds
def test_registering_a_model_changes_nothing_the_published_hw5_analysis_says(lmodel_free_records, lmodel):
    """The HW5 report's claims are judged from its own design: a fourth model in the registry adds no missing cell,
    no pair and no word to the analysis of the committed paper records."""
    from mnistlab.lab import cells, claims, table1

    records, labels, before = lmodel_free_records
    after = ([(c.name, c.verdict, c.text) for c in claims.check(records, labels)], cells.missing_configs(records),
             table1.compute(records, labels).to_dict())
    assert after == before


@pytest.fixture(scope="module")
def lmodel_free_records():
    """The committed paper records, their test labels, and what the analysis says of them with the three models."""
    from mnistlab.lab import cells, claims, misclassified, table1

    assert "lmodel" not in MODELS
    records = [mnistlab.Record.load(p) for p in sorted((mnistlab.paths.project_root() / "reports" / "paper" / "runs")
                                                       .glob("*.json"))]
    _, labels = misclassified.test_set()
    said = ([(c.name, c.verdict, c.text) for c in claims.check(records, labels)], cells.missing_configs(records),
            table1.compute(records, labels).to_dict())
    return records, labels, said


@pytest.mark.slow
def test_a_sweep_of_the_new_model_beside_nmodel_gets_table_1_and_their_comparison(lmodel, plugin, tmp_path, data_dir):
    from helpers import make_project, project_env, write_params
    from mnistlab.lab import comparisons, table1
    from mnistlab.lab.sweep import sweep

    root = make_project(tmp_path / "project")
    tiny = {"hidden_size": 16, "epochs": 2, "step_size": 1, "train_size": 500, "seeds": [0, 1, 2]}
    for model in ("nmodel", "lmodel"):
        write_params(root / "params", f"{model}-tiny", {"model": model, **tiny})
    with project_env(root, data_dir, OMP_NUM_THREADS="1", **plugin):
        result = sweep(root / "params", "site", workers=2)
    assert result.ok, result
    records = [mnistlab.Record.load(p) for p in sorted((root / "site" / "runs").glob("*.json"))]
    assert sorted({r.config["model"] for r in records}) == ["lmodel", "nmodel"] and len(records) == 6
    rows = table1.compute(records)
    assert {key[0] for key in rows.index} == {"nmodel", "lmodel"} and set(rows["seeds"]) == {3}
    found = comparisons.comparisons(records)
    assert {frozenset((a, b)) for a, b in zip(found["a"], found["b"])} == {frozenset(("lmodel", "nmodel"))}
    page = (root / "site" / "analysis.html").read_text()
    assert "lmodel" in page and "nmodel" in page

    # Re-rendered in a shell that forgot the plugin: refused, naming the model and the variable, and nothing written
    # (rendered anyway, every run would read as made by other training code, its fingerprint missing the plugin).
    from mnistlab.lab.params import ParamsError
    from mnistlab.lab.site import rerender

    site = {path: path.read_bytes() for path in (root / "site").rglob("*") if path.is_file()}
    registered = MODELS.pop("lmodel")
    try:
        with project_env(root, data_dir, MNISTLAB_PLUGINS=""), \
                pytest.raises(ParamsError, match=r"holds runs of 'lmodel', which no module registers here.*"
                                                 r"\$MNISTLAB_PLUGINS \(unset now\)"):
            rerender(root / "site")
    finally:
        MODELS["lmodel"] = registered
    assert {path: path.read_bytes() for path in (root / "site").rglob("*") if path.is_file()} == site


def test_a_registered_dataset_trains_and_its_predictions_are_never_scored_against_mnists(small_data, data_dir):
    """A second dataset (here MNIST's test images with every label moved by one class, registered in a few lines as
    docs/extending.md shows) trains by name; its record names its own test labels, and the analysis refuses to score
    its predictions against MNIST's labels rather than count right answers as wrong."""
    from mnistlab.datasets import DATASETS, MNIST_TEST_LABELS, labels_digest, register_dataset
    from mnistlab.lab import misclassified

    @register_dataset("shifted-labels", "MNIST with every test label moved by one class")
    def shifted(data_dir=None, *, device="cpu", train_size=50_000, validation=True):
        test = Split(small_data.test.x, (small_data.test.y + 1) % 10)
        return MNISTSplits(train=small_data.train, val=small_data.val, test=test,
                           test_labels=labels_digest(test.y.numpy()))

    try:
        assert "shifted-labels" in mnistlab.DATASETS
        record = run(Config(dataset="shifted-labels", hidden_size=16, epochs=1, train_size=len(small_data.train),
                            device="cpu"))
        assert record.dataset["name"] == "shifted-labels"
        assert record.dataset["test_labels"] == labels_digest((small_data.test.y.numpy() + 1) % 10)
        assert record.dataset["test_labels"] != MNIST_TEST_LABELS
        _, labels = misclassified.test_set(data_dir)
        with pytest.raises(misclassified.WrongTestSet, match="shifted-labels"):
            misclassified.correct(record, "final", labels)
        assert misclassified.correct(record, "final", (labels + 1) % 10) is not None  # its own labels: scored
    finally:
        DATASETS.pop("shifted-labels", None)
    with pytest.raises(ConfigError, match="shifted-labels|dataset"):
        Config(dataset="shifted-labels")
