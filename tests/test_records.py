"""Config validation and the record file: round trip, atomic writes, malformed input."""

import json
from pathlib import Path

import pytest

import mnistlab
from mnistlab import Config, ConfigError, Record, RecordError, parse_params


def test_defaults_are_the_paper_protocol():
    c = Config()
    assert (c.model, c.hidden_size, c.epochs, c.lr, c.step_size, c.gamma, c.batch_size, c.train_size, c.seed) == \
        ("wmodel", 1000, 100, 0.01, 20, 0.1, 100, 50_000, 0)


@pytest.mark.parametrize("settings, message", [
    ({"model": "xmodel"}, "model must be one of nmodel, bmodel, wmodel; got 'xmodel'"),
    ({"hidden_size": 0}, "hidden_size must be at least 1; got 0"),
    ({"hidden_size": "1000"}, "hidden_size must be an integer; got '1000' (str)"),
    ({"hidden_size": True}, "hidden_size must be an integer; got True (bool)"),
    ({"epochs": -1}, "epochs must be at least 1; got -1"),
    ({"lr": 0}, "lr must be a finite number greater than 0; got 0"),
    ({"lr": float("nan")}, "lr must be a finite number greater than 0; got nan"),
    ({"lr": "fast"}, "lr must be a number; got 'fast' (str)"),
    ({"train_size": 60_000}, "train_size must be between 1 and 50000; got 60000"),
    ({"model": "bmodel", "batch_size": 1}, "batch_size must be at least 2; got 1"),
    ({"device": "gpu7"}, "device must be 'auto' or a torch device"),
    ({"seed": -1}, "seed must be at least 0; got -1"),
])
def test_invalid_settings_name_the_setting(settings, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Config(**settings)


def test_from_dict_refuses_unknown_keys():
    with pytest.raises(ConfigError, match="unknown setting.s. hiden_size; valid: model, hidden_size"):
        Config.from_dict({"hiden_size": 10})
    assert Config.from_dict({"lr": 1}).lr == 1.0


def test_parse_params_resolves_run_options():
    config, options = parse_params(model="nmodel", hidden_size=10, data_dir="", out_dir="out")
    assert config.data_dir is None and options.run_name == "nmodel-hs10-seed0"
    root = Path(mnistlab.__file__).resolve().parent.parent  # relative paths are taken from the checkout
    assert options.record_path == str(root / "out" / "nmodel-hs10-seed0.json") and options.tensorboard_dir is None
    assert parse_params(out_dir="/abs")[1].record_path == "/abs/wmodel-hs1000-seed0.json"
    with pytest.raises(ConfigError, match="unknown parameter.s. colour"):
        parse_params(colour="red")
    with pytest.raises(ConfigError, match="tensorboard must be true or false; got 'yes'"):
        parse_params(tensorboard="yes")
    with pytest.raises(ConfigError, match="run_name is a file name"):
        parse_params(run_name="../escape")


def sample_record():
    history = [{"epoch": e, "lr": 0.01, "train_loss": 0.5 / e, "train_acc": 90.0 + e, "val_loss": 0.3,
                "val_acc": 95.0 + e / 10, "test_loss": 0.31, "test_acc": 94.0 + e / 10, "seconds": 1.5}
               for e in (1, 2, 3)]
    return Record(config=Config(epochs=3).to_dict(), environment={"torch": "x"}, history=history)


def test_round_trip(tmp_path):
    record = sample_record()
    path = record.save(tmp_path / "sub" / "r.json")
    loaded = Record.load(path)
    assert loaded == record and loaded.summary == record.summary
    assert json.loads(path.read_text())["summary"]["best_test_epoch"] == 3
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]  # no temporary file left


def test_failed_save_keeps_the_old_file(tmp_path):
    path = sample_record().save(tmp_path / "r.json")
    before = path.read_text()
    broken = sample_record()
    broken.environment["bad"] = object()  # not JSON-serialisable: fails mid-save
    with pytest.raises(TypeError):
        broken.save(path)
    assert path.read_text() == before and [p.name for p in tmp_path.iterdir()] == ["r.json"]


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ("[]", "expected a JSON object, got list"),
    ('{"format": "other"}', "format is 'other', expected 'mnistlab.record/1'"),
    ('{"format": "mnistlab.record/1", "config": {}, "environment": {}, "history": {}, "status": "complete"}',
     "'history' must be a JSON list"),
    ('{"format": "mnistlab.record/1", "config": {}, "environment": {}, "history": [], "status": "done"}',
     "status must be one of complete, diverged"),
    ('{"format": "mnistlab.record/1", "config": {}, "environment": {}, "history": [{"epoch": 1}], '
     '"status": "complete"}', r"history\[0\] must have exactly the keys"),
])
def test_malformed_files_are_rejected_with_the_path(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(RecordError, match=message) as error:
        Record.load(path)
    assert str(path) in str(error.value)


def test_missing_file(tmp_path):
    with pytest.raises(RecordError, match="no such record file"):
        Record.load(tmp_path / "absent.json")
