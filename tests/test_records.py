"""The record file: round trip, atomic writes, malformed input, old formats, predictions and provenance."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from helpers import make_record
from mnistlab import Config, Record, RecordError
from mnistlab.records import FORMAT, decode_labels, divergence, encode_labels, epoch_row, unknown_segment, val_selected

# Two records as version 1 wrote them (published in reports/paper before it was republished as version 2).
VERSION_1 = sorted((Path(__file__).resolve().parent / "data").glob("record-v1-*.json"))


def sample_record():
    """Three epochs, predictions of four test images, the training set measured after the last epoch."""
    return make_record(epochs=3, predictions={"val_selected": "7210", "final": "7211"},
                       train_eval={"epoch": 3, "loss": 0.1, "acc": 97.5},
                       code={"fingerprint": "ab12", "git_commit": "cd34", "git_dirty": False})


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
    ('{"format": "other"}',
     "format is 'other', expected one of mnistlab.record/1, mnistlab.record/2, mnistlab.record/3"),
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


def row(epoch, val_acc=95.0, val_loss=0.3, test_acc=94.0, **values):
    return {"epoch": epoch, "lr": 0.01, "train_loss": 0.5, "train_acc": 90.0, "val_loss": val_loss,
            "val_acc": val_acc, "test_loss": 0.31, "test_acc": test_acc, "seconds": 1.0, **values}


def test_round_trip_keeps_predictions_and_provenance(tmp_path):
    record = sample_record()
    data = json.loads(record.save(tmp_path / "r.json").read_text())
    assert data["format"] == FORMAT and data["predictions"] == {"val_selected": "7210", "final": "7211"}
    assert data["provenance"]["segments"][0]["threads"] == 1 and data["provenance"]["resumed_after_epoch"] is None
    loaded = Record.load(tmp_path / "r.json")
    assert loaded == record
    assert loaded.predicted("final").tolist() == [7, 2, 1, 1] and loaded.predicted("final").dtype == np.uint8
    assert data["summary"]["wall_seconds"] == 9.0 and data["summary"]["median_epoch_seconds"] == 3.0  # 1.5, 3, 4.5 s
    assert data["summary"]["train_eval_acc"] == 97.5 and loaded.segments[0]["hardware"]["family"] == 25


def test_labels_are_stored_as_one_digit_each():
    labels = np.array([7, 2, 1, 0, 9], dtype=np.uint8)
    assert encode_labels(labels) == "72109" and decode_labels("72109").tolist() == labels.tolist()
    with pytest.raises(ValueError, match="digits 0-9"):
        encode_labels([10])


def test_val_selection_breaks_ties_by_validation_loss_then_epoch():
    # Epochs 2, 3 and 4 tie on validation accuracy; 3 and 4 tie on loss too: epoch 3 is selected.
    history = [row(1, 96.0, 0.20, 95.0), row(2, 97.0, 0.25, 96.0), row(3, 97.0, 0.10, 97.1),
               row(4, 97.0, 0.10, 97.3), row(5, 96.5, 0.05, 97.5)]
    assert val_selected(history)["epoch"] == 3
    summary = Record(config=Config(epochs=5).to_dict(), history=history).summary
    assert (summary["val_selected_epoch"], summary["val_selected_test_acc"]) == (3, 97.1)
    assert (summary["best_test_epoch"], summary["best_test_acc"]) == (5, 97.5)
    tied_test = [row(1, test_acc=97.0), row(2, test_acc=97.0)]
    assert Record(config={}, history=tied_test).summary["best_test_epoch"] == 1  # the HW5 report's: first of ties


def test_complete_record_must_have_every_epoch(tmp_path):
    for rows in ([], [row(1), row(2)]):
        data = sample_record().to_dict() | {"history": rows}
        path = tmp_path / "short.json"
        path.write_text(json.dumps(data))
        with pytest.raises(RecordError, match=f"{path}: status is complete but history has {len(rows)} epochs, "
                                              "config epochs is 3"):
            Record.load(path)
    diverged = sample_record().to_dict() | {"history": [row(1)], "status": "diverged", "diverged_epoch": 1}
    assert Record.from_dict(diverged).status == "diverged"


def test_run_without_validation_has_no_val_selected_numbers(tmp_path):
    history = [row(e, val_acc=None, val_loss=None, test_acc=97.0 + e) for e in (1, 2)]
    record = Record(config=Config(epochs=2, validation=False).to_dict(), history=history,
                    predictions={"final": "12"})
    data = json.loads(record.save(tmp_path / "r.json").read_text())
    assert data["history"][0]["val_acc"] is None and data["history"][0]["val_loss"] is None
    loaded = Record.load(tmp_path / "r.json")
    assert loaded.history[0]["val_acc"] is None  # not measured: None, not NaN
    s = loaded.summary
    assert s["val_selected_test_acc"] is None and s["val_selected_epoch"] is None
    assert (s["best_test_acc"], s["final_test_acc"]) == (99.0, 99.0)
    assert loaded.predicted("val_selected") is None and loaded.predicted("final").tolist() == [1, 2]


def test_divergence_rule():
    assert divergence(row(1)) is None
    assert divergence(row(1, val_acc=None, val_loss=None)) is None  # no validation is not a divergence
    assert "train_loss is nan" in divergence(row(1, train_loss=math.nan))
    assert "test_loss is inf" in divergence(row(1, test_loss=math.inf))
    assert "above 2303" in divergence(row(1, train_loss=1.5e14))  # finite, but blown up
    assert divergence(row(1, train_loss=2000.0)) is None
    # At chance from the first epoch on, by both the training pass and the test set; either alone can be low early.
    assert "train_acc 11.00 % and test_acc 10.40 % at epoch 1 are below 20 %" in divergence(
        row(1, train_acc=11.0, test_acc=10.4))
    assert divergence(row(1, train_acc=11.0)) is None and divergence(row(1, test_acc=11.0)) is None


def test_epoch_row_from_sums():
    r = epoch_row(2, 0.01, 3.5, (50.0, 90, 100), None, (20.0, 95, 100))
    assert r == {"epoch": 2, "lr": 0.01, "train_loss": 0.5, "train_acc": 90.0, "val_loss": None, "val_acc": None,
                 "test_loss": 0.2, "test_acc": 95.0, "seconds": 3.5}


def test_version_1_records_still_load():
    assert len(VERSION_1) == 2
    for path in VERSION_1:
        old = json.loads(path.read_text())
        assert old["format"] == "mnistlab.record/1"
        record = Record.load(path)
        assert record.predictions == {} and record.predicted("final") is None
        assert record.summary["best_test_acc"] == old["summary"]["best_test_acc"]
        resumed = old["environment"].get("resumed_after_epoch")
        assert record.resumed_after_epoch == resumed and record.resumed_from is None
        if resumed == len(record.history):  # trained elsewhere, by a process that left no trace
            assert record.segments == [unknown_segment(1, resumed)] and record.segments[0]["device"] is None
        assert record.environment["threads"] == old["environment"]["cpu_threads"]  # the writing process's
        again = Record.from_dict(json.loads(json.dumps(record.to_dict())))
        assert again == record and again.to_dict()["format"] == FORMAT


def test_version_2_records_still_load_with_what_they_lack_as_none():
    """A record as reports/paper published it before format 3: no code, no hardware, no training set in eval mode."""
    path = Path(__file__).resolve().parent / "data" / "record-v2-bmodel-hs1000.json"
    old = json.loads(path.read_text())
    assert old["format"] == "mnistlab.record/2"
    record = Record.load(path)
    assert record.train_eval is None and record.code == {} and record.summary["train_eval_acc"] is None
    assert all(segment["hardware"] is None and segment["code"] is None for segment in record.segments)
    assert record.summary["best_test_acc"] == old["summary"]["best_test_acc"]
    assert Record.from_dict(json.loads(json.dumps(record.to_dict()))) == record
