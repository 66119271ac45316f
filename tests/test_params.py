"""Params files, read as a stranger's file should be: refused before anything runs, naming the file and the key."""

import time

import pytest
import yaml

import helpers
from helpers import write_params as write
from mnistlab import cli
from mnistlab.lab import params
from mnistlab.lab.params import ParamsError

TINY = {"model": "nmodel", **helpers.TINY}
# 396 bytes that a plain yaml.safe_load expands into 9^9 (387 million) strings.
LAUGHS = "\n".join(["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"] +
                   [f"{n}: &{n} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]"
                    for p, n in zip("abcdefgh", "bcdefghi")]) + "\n"


@pytest.mark.parametrize("content, message", [
    (LAUGHS, "line 1: anchors and aliases (&name, *name) are not allowed"),
    ("model: nmodel\nmodel: bmodel\n", "line 2: key 'model' is given twice"),
    ("model: [nmodel, bmodel]\n", "model must be one of nmodel, bmodel, wmodel; got ['nmodel', 'bmodel']"),
    ("- nmodel\n- bmodel\n", "expected a mapping of train-notebook parameter names to values; got list"),
    ("model: [nmodel\n", "not a valid params file: line 2"),
    ("hiden_size: 32\n", "unknown parameter(s) 'hiden_size' (did you mean 'hidden_size'?)"),  # as train -f says
    ("hidden_size: big\n", "hidden_size must be an integer; got 'big' (str)"),
    ("hidden_size: 1e29\n", "hidden_size must be an integer; got 1e+29 (float)"),
    ("out_dir: elsewhere\n", "out_dir is set by the sweep for each run; remove it from the file"),
    ("data_dir: no/such/folder\n", "data_dir 'no/such/folder' is not a folder"),
    ("x: " + "y" * 70_000 + "\n", "bytes; a params file is at most 65536 bytes"),
])
def test_a_bad_file_is_refused_naming_file_and_key(tmp_path, content, message):
    file = write(tmp_path, "bad", content)
    started = time.perf_counter()
    with pytest.raises(ParamsError) as error:
        params.jobs([file], tmp_path / "out")
    assert time.perf_counter() - started < 5  # the aliases are refused, never expanded
    assert str(error.value).startswith(f"{file}: ") and message in str(error.value)


def test_yaml_1_2_numbers():
    assert yaml.load("lr: 1e-3\ngamma: 5E-1\nseed: 7\n", Loader=params._StrictLoader) == \
        {"lr": 0.001, "gamma": 0.5, "seed": 7}


def test_one_job_per_file_with_its_seeds(tmp_path):
    folder = tmp_path / "params"
    write(folder, "a", TINY)
    write(folder, "b", {**TINY, "seeds": [1, 2]})
    write(folder, "c", {**TINY, "seed": 5})
    jobs = params.jobs([folder], tmp_path / "out")
    assert [(job.name, job.spec.seeds) for job in jobs] == [("a", (0,)), ("b", (1, 2)), ("c", (5,))]
    assert jobs[1].spec.record_path(2) == tmp_path / "out" / "runs" / "b-seed2.json"
    assert [job.spec.seeds for job in params.jobs([folder / "a.yaml"], tmp_path / "out", seeds=[0, 3])] == [(0, 3)]
    with pytest.raises(ParamsError, match="seed is set both here and by --seeds"):
        params.jobs([folder / "c.yaml"], tmp_path / "out", seeds=[0, 1])


def test_same_file_name_in_two_folders_is_refused_before_anything_runs(tmp_path):
    write(tmp_path / "a", "x", TINY)
    write(tmp_path / "b", "x", {**TINY, "model": "bmodel"})
    with pytest.raises(ParamsError) as error:
        params.jobs([tmp_path / "a", tmp_path / "b"], tmp_path / "out")
    assert "b/x.yaml: run name 'x' is also" in str(error.value) and "a/x.yaml" in str(error.value)


def test_every_invalid_file_is_named_at_once_and_nothing_is_written(tmp_path, capsys):
    folder = tmp_path / "params"
    write(folder, "good", TINY)
    write(folder, "one", {**TINY, "batch_size": -1})
    write(folder, "two", {**TINY, "model": "xmodel"})
    out = tmp_path / "site"
    assert cli.main(["sweep", str(folder), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert "one.yaml: batch_size" in error and "two.yaml: model" in error and "good.yaml" not in error
    assert not out.exists()


def test_bad_sweep_arguments_are_refused(tmp_path, capsys):
    good = write(tmp_path, "good", TINY)
    for args in (["--seeds", "0,x"], ["--seeds", "1,1"], ["--workers", "0"], ["--cluster", "pbs"]):
        with pytest.raises(SystemExit) as exit:
            cli.main(["sweep", str(good), *args])
        assert exit.value.code == 2
    assert cli.main(["sweep", str(tmp_path / "empty-folder")]) == 2
    assert "no params file" in capsys.readouterr().err
