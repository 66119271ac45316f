"""The node script rehearsed on this machine's CPU (``make gpu-rehearsal``): everything but the GPU, end to end.

1. the wheel folder (scripts/gpu_bundle.py, kept when built from the same lists), checked to resolve for
   CPython 3.10-3.12, and what would travel measured against the node's 64 MiB;
2. a stand-in node: a fresh virtual environment holding only scripts/gpu-node-packages.txt (``--node fresh``,
   kept between rehearsals while the list is the same; CPU torch from this machine's disk stands in for the
   CUDA one), or one that links those packages from this environment (``--node linked``: seconds, for tests);
3. the checkout copied as it would travel (git's tracked and untracked-but-not-ignored files, and the wheel
   folder): no .venv, no data, no build output;
4. ``scripts/gpu-node.sh RESULTS --rehearsal`` run in the copy by the stand-in's python3, with ``OUT`` set to an
   absolute folder in its environment (which must stay empty), pip and npm pointed at a closed port;
5. the results checked: at most 8 files of at most 16 MiB, each phase's status, the GPU-only parts reported as
   skipped and CUDA graphs off, only what the node lacks installed, the records and the site packed.

Findings go to WORK/rehearsal.json; the exit status is 1 when a check failed.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import venv
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu_bundle  # noqa: E402
import gpu_node  # noqa: E402

ROOT = gpu_node.ROOT
GPU_ONLY = ["cuda_tests", "replay_step", "graphs_vs_eager"]  # the check's parts that need a CUDA device
TINY_CHECK = "--hidden-sizes 16 --graph-hidden-size 16 --steps 3 --train-size 500"
CLOSED = "http://127.0.0.1:9/"  # nothing listens: a package registry asked for fails at once


def node_names() -> list[str]:
    return [gpu_node._name_of(line) for line in gpu_node.requirement_lines(gpu_node.NODE_PACKAGES)]


def fresh_node(folder: Path) -> Path:
    """A virtual environment of this machine's python3 with the node's package list installed by pip (this
    machine's pip configuration: torch from its disk); kept while the list is the same. Its python."""
    stamp = folder / ".node-packages"
    digest = hashlib.sha256(gpu_node.NODE_PACKAGES.read_bytes()).hexdigest()
    python = folder / "bin" / "python"
    if stamp.is_file() and stamp.read_text() == digest and python.exists():
        return python
    shutil.rmtree(folder, ignore_errors=True)
    base = shutil.which("python3") or sys.executable
    subprocess.run([base, "-m", "venv", str(folder)], check=True)
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "-r", str(gpu_node.NODE_PACKAGES)], check=True)
    stamp.write_text(digest)
    return python


def linked_node(folder: Path) -> Path:
    """A virtual environment of this Python that sees the node's packages (and pip), linked from this environment,
    and nothing else: a package the wheel folder forgot fails to import instead of being found here. Its python."""
    shutil.rmtree(folder, ignore_errors=True)
    venv.create(folder, with_pip=False, system_site_packages=False)
    (site,) = folder.glob("lib/python*/site-packages")
    links = folder / "node-packages"
    links.mkdir()
    for name in gpu_bundle.node_closure([*node_names(), "pip"]):
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        base = Path(dist.locate_file(""))
        for top in {Path(str(file)).parts[0] for file in dist.files or [] if not str(file).startswith("..")}:
            if (base / top).exists() and not (links / top).exists():
                (links / top).symlink_to(base / top)
    (site / "node-packages.pth").write_text(f"{links}\n")
    return folder / "bin" / "python"


def copy_checkout(target: Path, wheels: Path) -> None:
    """The checkout as it would travel: git's tracked and untracked-but-not-ignored files, and the wheel folder."""
    shutil.rmtree(target, ignore_errors=True)
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    shutil.copytree(wheels, target / gpu_node.WHEELS)


def rehearse(work: Path, node: str = "fresh", fast: bool = False, budget: float = 1500.0,
             limit_mib: float | None = None, profile: str = "params/ci.yaml", seeds: str = "0,1",
             wheels: Path = ROOT / gpu_node.WHEELS) -> dict:
    """Run the rehearsal in ``work`` with the wheel folder ``wheels`` (built when missing or stale); return its
    findings (``ok``, ``checks``: name -> (passed, detail))."""
    work.mkdir(parents=True, exist_ok=True)
    gpu_bundle.build(wheels)
    checks: dict[str, tuple[bool, str]] = {}
    unresolved = {v: p for v, p in gpu_bundle.resolves(wheels).items() if p}
    checks["wheels resolve for CPython 3.10-3.12"] = (not unresolved, json.dumps(unresolved) if unresolved else "")
    sizes = gpu_bundle.travel(wheels)
    over = limit_mib is not None and sizes["total_bytes"] > limit_mib * 2**20
    checks["travel"] = (not over, gpu_bundle.describe(sizes) + (f"; over the {limit_mib:g} MiB asked" if over
                                                                      else ""))
    python = fresh_node(work / "node") if node == "fresh" else linked_node(work / "node-linked")
    checkout, results, out_env = work / "checkout", work / "results", work / "out-from-the-environment"
    copy_checkout(checkout, wheels)
    for folder in (results, out_env, work / "tmp"):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MNISTLAB_", "PYTHON", "VIRTUAL_ENV", "PIP_", "JUPYTER", "CONDA"))}
    env.update(PATH=f"{python.parent}{os.pathsep}{env.get('PATH', '')}", OUT=str(out_env), TMPDIR=str(work / "tmp"),
               PIP_INDEX_URL=f"{CLOSED}simple", PIP_FIND_LINKS="", npm_config_registry=CLOSED, OMP_NUM_THREADS="1")
    phases = "probe,data,check,install" + ("" if fast else ",sweep")
    command = [str(checkout / "scripts" / "gpu-node.sh"), str(results), "--rehearsal", "--budget", str(budget),
               "--profile", profile, "--seeds", seeds, "--phases", phases, "--check-args", TINY_CHECK]
    started = time.monotonic()
    done = subprocess.run(command, cwd=work, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=budget + 120)
    (work / "gpu-node.out").write_text(done.stdout + done.stderr)
    checks["gpu-node.sh exits 0"] = (done.returncode == 0, f"exit {done.returncode} after "
                                                           f"{time.monotonic() - started:.0f} s")
    checks["OUT from the environment is not written"] = (not any(out_env.iterdir()), str(out_env))
    files = {p.name: p.stat().st_size for p in results.iterdir()}
    checks["at most 8 files of at most 16 MiB come back"] = (
        len(files) <= gpu_node.MAX_FILES and max(files.values(), default=0) <= gpu_node.MAX_FILE_BYTES
        and {"node.json", "node.log", "check.json", "records.tar.gz"} <= set(files), json.dumps(files))
    summary = json.loads((results / "node.json").read_text()) if (results / "node.json").is_file() else {}
    phases_seen = {name: phase.get("status") for name, phase in summary.get("phases", {}).items()}
    expected = {name: "ok" for name in [*phases.split(","), "pack"]}
    checks["every phase ok"] = (phases_seen == expected, json.dumps(phases_seen))
    probe = summary.get("phases", {}).get("probe", {})
    checks["the probe says a CPU stands in"] = (probe.get("cuda") is False and "rehearsal" in probe.get("note", ""),
                                                probe.get("note", ""))
    check = summary.get("phases", {}).get("check", {})
    checks["the GPU-only parts say they were skipped"] = (
        check.get("skipped") == GPU_ONLY and check.get("graphs", {}).get("use") is False,
        f"skipped {check.get('skipped')}; graphs {check.get('graphs')}")
    install = summary.get("phases", {}).get("install", {})
    installed = set(install.get("installed", {}))
    node_has = gpu_bundle.node_closure(node_names())
    checks["only what the node lacks is installed"] = (
        {"papermill", "nbconvert", "ipykernel", "distributed"} <= installed and not installed & node_has,
        f"installed {sorted(installed)}; the node's own: {sorted(installed & node_has)}")
    if not fast:
        sweep = summary.get("phases", {}).get("sweep", {})
        n_seeds = len(seeds.split(","))
        with tarfile.open(results / "records.tar.gz") as tar:
            records = [n for n in tar.getnames() if n.endswith(".json")]
        checks["the sweep trained eagerly and its records came back"] = (
            sweep.get("graphs") is False
            and len(records) == sweep.get("records") == n_seeds * _files(checkout, profile),
            f"{records}; graphs {sweep.get('graphs')} ({sweep.get('graphs_because')})")
        with tarfile.open(results / "site.tar.gz") as tar:
            names = tar.getnames()
        checks["the site came back without checkpoints"] = (
            any(n.endswith("/index.html") for n in names) and not any("checkpoints" in n for n in names),
            f"{len(names)} files")
    findings = {"ok": all(passed for passed, _ in checks.values()), "checks": checks, "travel": sizes,
                "node": node, "fast": fast, "results": str(results)}
    (work / "rehearsal.json").write_text(json.dumps(findings, indent=1) + "\n")
    return findings


def _files(checkout: Path, profile: str) -> int:
    path = checkout / profile
    return len(list(path.glob("*.yaml"))) if path.is_dir() else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/gpu_rehearsal.py", description=__doc__.splitlines()[0])
    parser.add_argument("--work", default=str(ROOT / "build" / "gpu-rehearsal"))
    parser.add_argument("--node", choices=["fresh", "linked"], default="fresh")
    parser.add_argument("--fast", action="store_true", help="no sweep: probe, data, check and install")
    parser.add_argument("--budget", type=float, default=1500.0, help="gpu-node.sh's --budget (a CPU is slow)")
    parser.add_argument("--limit-mib", type=float, help="fail when what travels is larger (the node allows 64)")
    parser.add_argument("--profile", default="params/ci.yaml")
    parser.add_argument("--seeds", default="0,1")
    args = parser.parse_args(argv)
    findings = rehearse(Path(args.work).resolve(), args.node, args.fast, args.budget, args.limit_mib, args.profile,
                        args.seeds)
    for name, (passed, detail) in findings["checks"].items():
        print(f"{'ok  ' if passed else 'FAIL'} {name}" + (f": {detail}" if detail else ""))
    print(f"gpu-rehearsal: {'passed' if findings['ok'] else 'FAILED'}; the node script's output: "
          f"{Path(args.work) / 'gpu-node.out'}, its results: {findings['results']}")
    return 0 if findings["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
