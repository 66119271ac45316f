"""Shared fixtures: the real MNIST files, fetched as a user would (``make test`` runs ``mnistlab fetch``), and one
tiny sweep many tests read. What tests build for themselves lives in helpers.py."""

import contextlib
import os
import subprocess
from pathlib import Path

import pytest

# `make test` runs the suite on every core with pytest-xdist (`-n auto --dist loadgroup`). Each worker process then
# trains with its share of the cores, as the sweep gives each of its kernels: more threads than cores would make
# the workers wait on each other's spinning threads. Set before anything imports torch.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    share = max(1, len(os.sched_getaffinity(0)) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, str(share))

import mnistlab
from helpers import ROOT, TINY, make_project, project_env, write_params

# The programs a fast test may start: short queries, of the code and the machine a record comes from, or of the
# libraries and fonts on it. ldconfig: ctypes finding a library as torch loads; fc-list: Matplotlib listing the
# fonts once per machine, when it first builds its font cache (a fresh machine's first figure).
FAST_PROGRAMS = {"git", "nvidia-smi", "ldconfig", "fc-list"}


# The session fixtures that run a sweep: their tests are slow, and run in one xdist worker per fixture.
SHARED_SWEEPS = {"sweep_site", "finished_sweep"}


@contextlib.contextmanager
def no_process_started(item):
    """While a test not marked slow sets up, runs and tears down (its session fixtures included), starting a
    process fails it, naming the program: the fast tier (``make test-fast``: ``-m "not slow"``) starts none."""
    if item.get_closest_marker("slow"):
        yield
        return
    for shared in SHARED_SWEEPS & set(item.fixturenames):
        pytest.fail(f"a test of a shared sweep ({shared}) must be marked slow")
    start = subprocess.Popen.__init__

    def guarded(self, args, *more, **options):
        program = Path(str(args[0] if isinstance(args, (list, tuple)) else str(args).split()[0])).name
        if program not in FAST_PROGRAMS:
            pytest.fail(f"a test not marked slow starts a process ({program}): mark it @pytest.mark.slow")
        start(self, args, *more, **options)

    subprocess.Popen.__init__ = guarded
    try:
        yield
    finally:
        subprocess.Popen.__init__ = start


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the groups into the test ids
def pytest_collection_modifyitems(items):
    """Under xdist's ``--dist loadgroup``, the tests of one expensive fixture run in one worker, which builds it once:
    the shared sweeps', and each module's that has a module-scoped fixture (a site, a bundle, trained stacks); and
    the tests marked ``waits``, which mostly wait: in one worker, their waits overlap the other worker's computing
    instead of each other.
    xdist hands out the groups first (the largest first), then the other tests in the order collected: the ones
    marked ``long`` go first, then the other slow ones, so that no long test starts last while the other worker has
    nothing left (a worker takes its next test while it still has two to run)."""
    for item in items:
        shared = sorted(SHARED_SWEEPS & set(item.fixturenames))
        if shared:
            item.add_marker(pytest.mark.xdist_group(shared[0]))
            continue
        if item.get_closest_marker("waits"):  # one after another, so that their waits overlap others' work
            item.add_marker(pytest.mark.xdist_group("waits"))
            continue
        definitions = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
        if any(defs and defs[-1].scope == "module" for defs in definitions.values()):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))

    def order(item):
        if item.get_closest_marker("xdist_group") or not item.get_closest_marker("slow"):
            return 2
        return 0 if item.get_closest_marker("long") else 1

    misplaced = [item.nodeid for item in items if item.get_closest_marker("long") and order(item) != 0]
    if misplaced:  # a mark that would change nothing: the test is fast, or its group is handed out as a whole
        raise pytest.UsageError(f"marked long but not a slow test of its own: {misplaced[0]}")
    items.sort(key=order)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    with no_process_started(item):
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    with no_process_started(item):
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item):
    with no_process_started(item):
        yield


@pytest.fixture(scope="session")
def data_dir():
    """The verified raw files' root (``<root>/MNIST/raw``); fetches them when missing."""
    return mnistlab.fetch().folder.parent.parent


@pytest.fixture(scope="session")
def raw(data_dir):
    """The verified uint8 images and labels of both files, read once: ``raw[True]`` training, ``raw[False]`` test.
    Tests must not change them."""
    return {train: mnistlab.data.load_raw(data_dir, train=train) for train in (True, False)}


@pytest.fixture(scope="session")
def small_data(data_dir):
    """2,000 training images plus the full validation and test splits, on the CPU."""
    return mnistlab.load(data_dir, train_size=2000)


@pytest.fixture(scope="session")
def sweep_site(tmp_path_factory, data_dir):
    """One tiny sweep on a real two-worker Dask LocalCluster over loopback, built once, with every real page.

    ``nmodel-tiny`` (with TensorBoard) and ``<b>x`` (a wmodel, two seeds in one notebook) complete;
    ``no-gpu`` asks for a GPU this machine lacks and fails inside its notebook. The notebooks in flight are
    reported every 2 s (30 s in real sweeps), and each notebook may take 10 minutes (``--timeout``).
    """
    import io
    from types import SimpleNamespace

    import yaml

    from mnistlab.lab import progress
    from mnistlab.lab.sweep import sweep

    root = make_project(tmp_path_factory.mktemp("project"), every_page=True)
    params = root / "params"
    params.mkdir()
    files = {"nmodel-tiny": {"model": "nmodel", "tensorboard": True}, "<b>x": {"model": "wmodel", "seeds": [0, 1]},
             "no-gpu": {"model": "nmodel", "device": "cuda:7"}}
    for stem, values in files.items():
        (params / f"{stem}.yaml").write_text(yaml.safe_dump({**values, **TINY}))
    stray = root / "site" / "runs" / "stray-seed0.json"  # a record left by something else: read by neither page
    stray.parent.mkdir(parents=True)
    stray.write_bytes((ROOT / "tests" / "data" / "record-v1-bmodel-hs1000.json").read_bytes())
    log = io.StringIO()
    every, progress.EVERY = progress.EVERY, 2.0
    try:
        with project_env(root, data_dir, OMP_NUM_THREADS="1"), contextlib.redirect_stdout(log):
            result = sweep(params, "site", workers=2, timeout=600)
    finally:
        progress.EVERY = every
    return SimpleNamespace(root=root, params=params, out=root / "site", result=result, log=log.getvalue())


@pytest.fixture(scope="session")
def finished_sweep(tmp_path_factory, data_dir):
    """A project whose ``site`` holds one finished tiny run, ``a-seed0`` (nmodel, TINY, ``params/a.yaml``), with
    stand-in pages, swept once. Tests that start from a finished sweep (to kill, edit or overwrite it) take a copy
    of their own: ``copy_project(finished_sweep, tmp_path / "project")``; a sweep there finds the run up to date."""
    from mnistlab.lab.sweep import sweep

    root = make_project(tmp_path_factory.mktemp("finished") / "project", analysis=False)
    params = write_params(root / "params", "a", {"model": "nmodel", **TINY})
    with project_env(root, data_dir, OMP_NUM_THREADS="1"):
        assert sweep(params, "site").ok
    return root


def pytest_collection_finish(session):
    """In an xdist worker under ``--dist loadgroup``: a grouped test's id must carry its group, or xdist spreads the
    group over the workers and each builds the fixture again (pytest 9.2 broke that: pytest-dev/pytest-xdist#1386)."""
    if not getattr(session.config.option, "loadgroup", False):
        return
    lost = [item.nodeid for item in session.items if item.get_closest_marker("xdist_group") and "@" not in item.nodeid]
    if lost:
        raise pytest.UsageError(f"pytest-xdist did not group {len(lost)} tests (first: {lost[0]}); the pytest and "
                                "pytest-xdist versions do not work together (pyproject.toml's test extra)")
