"""Fill ``wheelhouse/`` with every wheel the service image installs, from pyproject.toml's pins.

The image installs with ``pip install --no-index --find-links``: nothing is fetched while it
builds, so the build is reproducible and works on sites without internet (bring the folder).
pyproject.toml stays the one list of pinned dependencies, for CI and for the image alike.

    python scripts/wheelhouse.py                       # GPU image (onnxruntime-gpu), Python 3.11 and 3.12
    python scripts/wheelhouse.py --onnxruntime cpu --python 3.11   # CPU image on Debian bookworm

Wheels are fetched for each Python the image bases carry (Debian bookworm: 3.11; Ubuntu 24.04,
the CUDA base: 3.12) and for this machine's platform (x86_64 Linux, glibc). Files already there
are kept, so a second run only fetches what changed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVING_EXTRAS = ("serve",)  # with cpu or gpu: the serving stack only, no torch


def serving_requirements(pyproject: Path, onnxruntime: str) -> list[str]:
    """The pinned requirements of ``actionrec[<onnxruntime>,serve]``, read from pyproject.toml."""
    project = tomllib.loads(pyproject.read_text())["project"]
    extras = project["optional-dependencies"]
    requirements = list(project["dependencies"])
    for extra in (onnxruntime, *SERVING_EXTRAS):
        requirements += extras[extra]
    return requirements


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--onnxruntime", choices=("cpu", "gpu"), default="gpu", help="which onnxruntime build")
    parser.add_argument("--python", nargs="+", default=["3.11", "3.12"], help="Python versions of the bases")
    parser.add_argument("--out", type=Path, default=ROOT / "wheelhouse")
    args = parser.parse_args(argv)

    args.out.mkdir(parents=True, exist_ok=True)
    requirements = serving_requirements(ROOT / "pyproject.toml", args.onnxruntime)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    for version in args.python:
        print(f"wheelhouse: dependencies for Python {version}", flush=True)
        subprocess.run(
            [*pip, "download", "--quiet", "--only-binary=:all:", "--implementation", "cp"]
            + ["--python-version", version, "--dest", str(args.out), *requirements],
            check=True,
        )
    # The project itself: pure Python, one wheel for every version.
    for old in args.out.glob("actionrec-*.whl"):
        old.unlink()
    subprocess.run([*pip, "wheel", "--quiet", "--no-deps", "--wheel-dir", str(args.out), str(ROOT)], check=True)
    wheels = sorted(args.out.glob("*.whl"))
    size = sum(w.stat().st_size for w in wheels) / 2**20
    print(f"wheelhouse: {len(wheels)} wheels, {size:.0f} MiB in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
