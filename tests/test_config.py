"""Config and the run specification: validation, the training identity, the one path rule, the notebook's parameters."""

import os
import subprocess
import sys
from pathlib import Path

import papermill
import pytest

import mnistlab
from mnistlab import Config, ConfigError, RunSpec, paths, spec

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_are_the_paper_protocol():
    c = Config()
    assert (c.model, c.hidden_size, c.epochs, c.lr, c.step_size, c.gamma, c.batch_size, c.train_size, c.seed,
            c.validation) == ("wmodel", 1000, 100, 0.01, 20, 0.1, 100, 50_000, 0, True)


@pytest.mark.parametrize("settings, message", [
    ({"model": "xmodel"}, "model must be one of nmodel, bmodel, wmodel; got 'xmodel'"),
    ({"model": ["nmodel", "bmodel"]}, "model must be one of nmodel, bmodel, wmodel; got ['nmodel', 'bmodel']"),
    ({"hidden_size": 0}, "hidden_size must be between 1 and 100000; got 0"),
    ({"hidden_size": 10**29}, "hidden_size must be between 1 and 100000; got 1000000000000000"),
    ({"hidden_size": 1e29}, "hidden_size must be an integer; got 1e+29 (float)"),
    ({"hidden_size": "1000"}, "hidden_size must be an integer; got '1000' (str)"),
    ({"hidden_size": True}, "hidden_size must be an integer; got True (bool)"),
    ({"epochs": -1}, "epochs must be between 1 and 100000; got -1"),
    ({"epochs": "ten"}, "epochs must be an integer; got 'ten' (str)"),
    ({"lr": 0}, "lr must be a finite number greater than 0; got 0"),
    ({"lr": float("nan")}, "lr must be a finite number greater than 0; got nan"),
    ({"lr": "fast"}, "lr must be a number; got 'fast' (str)"),
    ({"train_size": 60_000}, "train_size must be between 1 and 50000; got 60000"),
    ({"validation": False, "train_size": 60_001}, "train_size must be between 1 and 60000; got 60001"),
    ({"validation": "no"}, "validation must be true or false; got 'no'"),
    ({"model": "bmodel", "batch_size": 1}, "batch_size must be between 2 and 50000; got 1"),
    ({"batch_size": 200, "train_size": 100}, "batch_size must be between 1 and 100; got 200"),
    ({"device": "gpu7"}, "device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'; got 'gpu7'"),
    ({"device": "meta"}, "device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'; got 'meta'"),
    ({"seed": -1}, "seed must be between 0 and 4294967295; got -1"),
    ({"seed": 2**64}, "seed must be between 0 and 4294967295; got 18446744073709551616"),
])
def test_invalid_settings_name_the_setting(settings, message):
    with pytest.raises(ConfigError) as error:
        Config(**settings)
    assert message in str(error.value)


def test_a_huge_value_is_shown_short():
    with pytest.raises(ConfigError) as error:
        Config(model="x" * 10_000)
    assert "x" * 61 not in str(error.value) and "10002 characters" in str(error.value)


def test_identity_is_what_trains_not_where():
    config = Config(model="nmodel", hidden_size=10, device="cpu", data_dir="elsewhere")
    from mnistlab.config import NAMED_WHEN_SET

    assert set(config.identity()) == set(Config.field_names()) - {"device", "data_dir", *NAMED_WHEN_SET}
    saved = {**config.to_dict(), "device": "cuda", "data_dir": None}
    assert config.differences(saved) == []
    assert config.differences({**saved, "hidden_size": 11, "seed": 1}) == ["hidden_size", "seed"]
    older = {k: v for k, v in saved.items() if k != "validation"}  # records from before 'validation'
    assert config.differences(older) == [] and Config(validation=False).differences(older) != []


@pytest.mark.slow
def test_import_and_config_need_no_torch():
    code = ("import sys, mnistlab; mnistlab.Config(hidden_size=5); mnistlab.RunSpec.from_params(model='bmodel');"
            "from mnistlab.lab import params; assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.slow
def test_a_bad_params_file_is_refused_without_importing_torch(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: nmodel\nhidden_size: -5\n")
    code = (f"import sys; from mnistlab import cli; rc = cli.main(['sweep', {str(bad)!r}]);"
            "print(rc, 'torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.split() == ["2", "False"]
    assert "bad.yaml: hidden_size must be between 1 and 100000; got -5" in result.stderr


# The run specification -------------------------------------------------------------------------

def test_unknown_parameters_are_refused_with_the_valid_names():
    with pytest.raises(ConfigError) as error:
        RunSpec.from_params(hiddensize=20)
    message = str(error.value)
    assert "unknown parameter(s) 'hiddensize'" in message and "hidden_size" in message and "out_dir" in message


def test_every_relative_path_is_from_the_project_root_wherever_we_are(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a kernel started in notebooks/, a shell anywhere
    run = RunSpec.from_params(model="nmodel", hidden_size=10, out_dir="out", checkpoint="run.pt", tensorboard=True)
    root = paths.project_root()
    assert root == ROOT and run.out_dir == root / "out" and run.checkpoint == root / "run.pt"
    assert run.record_path(0) == root / "out" / "nmodel-hs10-seed0.json"
    assert run.tensorboard_dir(0) == root / "out" / "tensorboard" / "nmodel-hs10-seed0"
    absolute = RunSpec.from_params(out_dir=str(tmp_path / "abs"), checkpoint=str(tmp_path / "c.pt"))
    assert absolute.out_dir == tmp_path / "abs" and absolute.checkpoint == tmp_path / "c.pt"
    monkeypatch.setenv(paths.ROOT_ENV, str(tmp_path))
    assert RunSpec.from_params(out_dir="out").out_dir == tmp_path / "out"


def test_repr_names_no_machine_path():
    run = RunSpec.from_params(out_dir="reports/x", checkpoint="reports/x/c.pt")
    assert str(ROOT) not in repr(run) and "'reports/x'" in repr(run)


def test_a_published_path_is_relative_to_its_base_or_cut_to_its_name(tmp_path):
    assert paths.shown(ROOT / "reports" / "x") == "reports/x" and paths.shown("/elsewhere/x.json") == "…/x.json"
    assert paths.shown(tmp_path / "site" / "a.html", tmp_path / "site") == "a.html"
    assert paths.public(f"see {tmp_path}/site/a.html, /elsewhere/x.json, http://x.org/a/b", tmp_path) == \
        "see site/a.html, …/x.json, http://x.org/a/b"


def test_a_spec_gives_back_the_parameters_that_make_it_again():
    """A sweep hands papermill ``to_params()``; the notebook's kernel builds the same RunSpec from them."""
    run = RunSpec.from_params(model="nmodel", hidden_size=10, seed=3, checkpoint="c/x.pt", tensorboard=True)
    assert run.to_params() == {"model": "nmodel", "hidden_size": 10, "seeds": [3], "checkpoint": "c/x.pt",
                               "tensorboard": True, "out_dir": "reports/records", "run_name": "nmodel-hs10"}
    assert RunSpec.from_params(**run.to_params()) == run
    both = RunSpec.from_params(model="nmodel", seeds="0,1", run_name="r", checkpoint="c/r.pt")
    one = both.with_seeds([1], both.checkpoint_path(1))  # one seed's notebook, as a sweep on a CPU makes it
    assert one.seeds == (1,) and one.config.seed == 1 and one.record_path(1) == both.record_path(1)
    assert one.to_params()["seeds"] == [1] and one.to_params()["checkpoint"] == "c/r-seed1.pt"
    assert RunSpec.from_params(**one.to_params()) == one
    with pytest.raises(ValueError, match="not among"):
        both.with_seeds([2], None)
    assert spec.seed_list("0, 2") == [0, 2] and spec.seed_list([]) == []


def test_seeds_give_one_config_record_and_checkpoint_each():
    run = RunSpec.from_params(model="nmodel", seeds=[3, 1], run_name="cell", checkpoint="c/cell.pt")
    assert [c.seed for c in run.configs()] == [3, 1] and run.config.seed == 3
    assert [run.record_path(s).name for s in run.seeds] == ["cell-seed3.json", "cell-seed1.json"]
    assert [run.checkpoint_path(s).name for s in run.seeds] == ["cell-seed3.pt", "cell-seed1.pt"]
    assert RunSpec.from_params(seeds="0,2").seeds == (0, 2)  # papermill -p seeds 0,2
    assert RunSpec.from_params(seed=4, run_name="one", checkpoint="one.pt").checkpoint_path(4).name == "one.pt"


@pytest.mark.parametrize("params, message", [
    ({"seed": 2, "seeds": [0, 1]}, "seed (2) and seeds ([0, 1]) are both set; give one"),
    ({"seeds": [0, 0]}, "seeds must be distinct"),
    ({"seeds": [0, -1]}, "seed must be between 0 and 4294967295; got -1"),
    ({"seeds": "0,x"}, "seeds must be a list of whole numbers"),
    ({"run_name": "../escape"}, "run_name is a file name"),
    ({"tensorboard": "yes"}, "tensorboard must be true or false; got 'yes'"),
    ({"out_dir": ""}, "out_dir must not be empty"),
])
def test_bad_run_options_are_refused(params, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        RunSpec.from_params(**params)


def test_a_checkpoint_belongs_to_its_run_by_identity_seed_and_code(tmp_path):
    import torch

    from mnistlab.checkpoints import FORMAT as CHECKPOINT_FORMAT, owned_by
    from mnistlab.train import CODE

    run = RunSpec.from_params(model="nmodel", hidden_size=8, seeds=[0, 1], checkpoint=str(tmp_path / "c.pt"),
                              device="cpu")
    zero, one = (config.to_dict() for config in run.configs())
    ours = {"format": CHECKPOINT_FORMAT, "code": CODE["fingerprint"]}
    for name, state, owned in [("seed1", {**ours, "configs": [one]}, True),
                               ("stack", {**ours, "configs": [zero, one]}, True),
                               ("other-seed", {**ours, "configs": [{**one, "seed": 5}]}, False),
                               ("other-lr", {**ours, "configs": [zero, {**one, "lr": 0.5}]}, False),
                               ("other-stack", {**ours, "configs": [zero] * 3}, False),
                               ("other-code", {**ours, "code": "0" * 64, "configs": [one]}, False),
                               ("older-format", {"config": one, "configs": [one]}, False)]:
        torch.save(state, tmp_path / f"{name}.pt")
        assert owned_by(run, tmp_path / f"{name}.pt") == owned, name
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    assert not owned_by(run, tmp_path / "junk.pt")
    assert [p.name for p in run.checkpoints()] == ["c-seed0.pt", "c-seed1.pt", "c.pt"]
    assert not run.stacked() and RunSpec.from_params(cuda_graphs=True).stacked()  # CPU: seeds one after another


def test_check_refuses_before_training_what_only_the_machine_can_tell(tmp_path, data_dir):
    from mnistlab.runner import check

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="cannot write to"):
        check(RunSpec.from_params(out_dir=str(blocker / "records"), data_dir=str(data_dir)))
    with pytest.raises(ConfigError, match="is not a folder"):
        check(RunSpec.from_params(out_dir=str(tmp_path), data_dir=str(tmp_path / "nowhere")))
    with pytest.raises(ConfigError, match="data_dir: MNIST data is not usable"):
        check(RunSpec.from_params(out_dir=str(tmp_path), data_dir=str(tmp_path)))
    import torch

    if torch.cuda.device_count() < 8:
        with pytest.raises(ConfigError, match="device 'cuda:7' is not available on this machine"):
            check(RunSpec.from_params(out_dir=str(tmp_path), data_dir=str(data_dir), device="cuda:7"))
    with pytest.raises(ConfigError, match="cuda_graphs is for CUDA devices; this run trains on cpu"):
        check(RunSpec.from_params(out_dir=str(tmp_path), data_dir=str(data_dir), cuda_graphs=True, device="cpu"))
    check(RunSpec.from_params(out_dir=str(tmp_path), data_dir=str(data_dir)))  # all is well: no error


def test_notebook_parameters_cell_matches_the_spec():
    """The parameters cell (as papermill sees it) and RunSpec cannot drift apart."""
    cell = papermill.inspect_notebook(str(ROOT / "notebooks" / "train.ipynb"))
    expected = spec.parameters()
    assert list(cell) == list(expected)
    for name, (kind, default) in expected.items():
        assert cell[name]["inferred_type_name"] == kind.__name__, name
        assert eval(cell[name]["default"]) == default, name  # the cell's literal is the spec's default
        assert cell[name]["help"], f"{name} has no comment in the parameters cell"


@pytest.mark.slow
def test_cli_train_takes_the_notebooks_parameters(tmp_path, data_dir):
    result = subprocess.run([sys.executable, "-m", "mnistlab.cli", "train", "--model", "nmodel", "--hidden-size", "8",
                             "--epochs", "1", "--train-size", "500", "--seeds", "0,1", "--out-dir", str(tmp_path),
                             "--run-name", "cli", "--data-dir", str(data_dir)],
                            capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.glob("*.json")) == ["cli-seed0.json", "cli-seed1.json"]
    assert mnistlab.Record.load(tmp_path / "cli-seed1.json").config["seed"] == 1


@pytest.mark.slow
def test_cli_prints_expected_errors_without_a_traceback(tmp_path):
    checkpoint = tmp_path / "broken.pt"
    checkpoint.write_bytes(b"not a checkpoint")
    result = subprocess.run([sys.executable, "-m", "mnistlab.cli", "train", "--model", "nmodel", "--hidden-size", "8",
                             "--epochs", "1", "--train-size", "500", "--out-dir", str(tmp_path),
                             "--checkpoint", str(checkpoint)], capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("mnistlab train: ") and "cannot read checkpoint" in result.stderr


def test_a_new_option_left_at_its_default_changes_no_runs_identity():
    """Runs made before an option existed keep their identity, and so the key a sweep keeps them under: the options
    of NAMED_WHEN_SET are named in an identity only when set otherwise than their default."""
    from mnistlab.config import NAMED_WHEN_SET

    plain = Config(model="nmodel")
    assert not set(NAMED_WHEN_SET) & set(plain.identity())
    older = {k: v for k, v in plain.to_dict().items() if k not in NAMED_WHEN_SET}  # a record from before them
    assert plain.differences(older) == [] and Config(**older).identity() == plain.identity()
    dropped = Config(model="nmodel", dropout=0.2, schedule="cosine")
    assert {"dropout", "schedule"} <= set(dropped.identity())
    assert sorted(dropped.differences(older)) == ["dropout", "schedule"]
    assert plain.differences(dropped.to_dict()) == ["schedule", "dropout"]
