"""The command line a mistake costs one line on: the nearest valid word, each command's own usage, every option
described, the models listed, a params file taken, a run checked without training."""

import argparse

import pytest
import yaml

from mnistlab import MODELS, ConfigError, cli


def error_of(capsys, *argv) -> list[str]:
    """The lines ``mnistlab ARGV`` prints to stderr when argparse refuses it (exit status 2)."""
    with pytest.raises(SystemExit) as exit:
        cli.main(list(argv))
    assert exit.value.code == 2
    return capsys.readouterr().err.splitlines()


def test_a_misspelt_option_is_named_with_the_nearest_one_under_its_commands_usage(capsys):
    """`mnistlab train --hiden-size 10` printed the top-level usage and "unrecognized arguments"."""
    lines = error_of(capsys, "train", "--hiden-size", "10")
    assert lines == ["usage: mnistlab train [options]  (`mnistlab train --help` for more)",
                     "mnistlab train: error: unrecognized option --hiden-size; did you mean --hidden-size?"]
    assert error_of(capsys, "sweep", "params/quick", "--dryrun")[-1] == \
        "mnistlab sweep: error: unrecognized option --dryrun; did you mean --dry-run?"
    assert error_of(capsys, "trian")[-1] == ("mnistlab: error: no command 'trian'; did you mean train? The commands: "
                                             "fetch, fetch-mathjax, train, sweep, render")
    assert error_of(capsys, "train", "--model", "wmodle")[-1] == \
        "mnistlab train: error: --model 'wmodle' is not one of nmodel, bmodel, wmodel; did you mean wmodel? A model " \
        "of your own is registered by its module, named in $MNISTLAB_PLUGINS (unset now) and found on PYTHONPATH " \
        "(docs/extending.md)."  # a plugin's model with its plugin not loaded reads as a misspelling too
    assert len(error_of(capsys, "train", "--epochs", "ten")) == 2  # argparse's own message, under the short usage


def test_every_option_of_every_command_is_described_and_train_and_sweep_list_the_models(capsys):
    parser, commands = cli.build_parser()
    for name, command in commands.items():
        for action in command._actions:
            if not isinstance(action, argparse._HelpAction):
                assert action.help and len(action.help) > 12, (name, action.dest)
    for name in ("train", "sweep"):
        with pytest.raises(SystemExit):
            cli.main([name, "--help"])
        text = capsys.readouterr().out
        for model, entry in MODELS.items():  # read from the registry: a model added there is listed here
            assert f"  {model:8} {getattr(entry, 'description', entry)}" in text, (name, model)
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = capsys.readouterr().out
    assert "hidden units H (default: 1000)" in text and "passes over the training images (default: 100)" in text
    assert "-f FILE, --file FILE" in text and "--check" in text


def params_file(tmp_path, values) -> str:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(values))
    return str(path)


def test_train_takes_a_params_file_whose_values_the_options_override(tmp_path, capsys, data_dir):
    file = params_file(tmp_path, {"model": "bmodel", "hidden_size": 32, "epochs": 2, "seeds": [0, 1],
                                  "out_dir": str(tmp_path / "records")})
    assert cli.main(["train", "-f", file, "--epochs", "3", "--seed", "4", "--check"]) == 0
    out = capsys.readouterr().out
    assert "model='bmodel', hidden_size=32, epochs=3" in out and "seeds=[4]" in out
    assert "nothing trained" in out and not (tmp_path / "records").exists() or not any((tmp_path / "records").iterdir())


def test_a_bad_params_file_is_one_line_with_the_nearest_name(tmp_path, capsys):
    file = params_file(tmp_path, {"model": "nmodel", "hiden_size": 32})
    assert cli.main(["train", "-f", file]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [f"mnistlab train: -f {file}: unknown parameter(s) 'hiden_size' (did you mean "
                                f"'hidden_size'?); valid: {', '.join(cli.parameters())}"]  # as a sweep says it
    assert cli.main(["train", "-f", str(tmp_path / "nope.yaml")]) == 2
    assert capsys.readouterr().err == f"mnistlab train: -f {tmp_path / 'nope.yaml'}: no such file\n"
    bad = params_file(tmp_path, {"model": "nmodel", "epochs": "two"})  # a bad value names the file, as a bad name does
    assert cli.main(["train", "-f", bad, "--check"]) == 2
    assert capsys.readouterr().err == f"mnistlab train: -f {bad}: epochs must be an integer; got 'two' (str)\n"
    assert cli.main(["train", "-f", bad, "--epochs", "2", "--check"]) == 0  # an option overrides the file's value
    assert "epochs=2" in capsys.readouterr().out
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    assert cli.main(["train", "-f", str(tmp_path / "list.yaml")]) == 2
    assert "expected a mapping of train-notebook parameter names" in capsys.readouterr().err
    with pytest.raises(ConfigError):  # the frames behind the message, when asked for
        cli.main(["train", "-f", file, "--traceback"])
