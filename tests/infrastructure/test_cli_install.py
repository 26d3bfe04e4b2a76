"""`pip install .[oncall]` gives a `postbacks` command: the wheel holds the `functions` package only, its
runtime dependencies are the Lambda's, and the on-call extra adds boto3 and chalice."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

from functions import __version__

pytestmark = pytest.mark.infrastructure

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _pins(lines: list[str]) -> set[str]:
    return {line.split("#")[0].strip() for line in lines if line.split("#")[0].strip() and not line.startswith("-")}


def test_the_package_depends_on_exactly_the_lambda_runtime_pins() -> None:
    requirements = _pins((ROOT / "requirements.txt").read_text().splitlines())
    assert set(PYPROJECT["project"]["dependencies"]) == requirements
    development = _pins((ROOT / "requirements-dev.txt").read_text().splitlines())
    assert set(PYPROJECT["project"]["optional-dependencies"]["oncall"]) <= development
    assert PYPROJECT["project"]["scripts"] == {"postbacks": "functions.cli.app:main"}


def test_pip_install_gives_a_postbacks_command_with_the_version(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = wheels.glob("postbacks-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(next(name for name in names if name.endswith(".dist-info/METADATA"))).decode()
        entry_points = archive.read(next(name for name in names if name.endswith("entry_points.txt"))).decode()
    assert {name.split("/", 1)[0] for name in names if not name.startswith("postbacks-")} == {"functions"}
    assert "functions/cli/app.py" in names
    assert f"Version: {__version__}" in metadata
    assert re.search(r'Requires-Dist: boto3==[\d.]+; extra == "oncall"', metadata)
    assert "postbacks = functions.cli.app:main" in entry_points

    # A fresh environment: the wheel installed from disk, its dependencies taken from this one's.
    target = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(target)
    site = next(target.glob("lib/python*/site-packages"))
    ours = next(path for path in map(Path, sys.path) if path.name == "site-packages" and (path / "boto3").is_dir())
    (site / "dependencies.pth").write_text(str(ours) + "\n")
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    script = site / "bin" / "postbacks"
    command = script if script.exists() else target / "bin" / "postbacks"
    version = subprocess.run(
        [str(target / "bin" / "python"), str(command), "--version"],
        cwd=tmp_path,  # not the checkout: the installed package answers
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (version.returncode, version.stdout.strip()) == (0, f"postbacks {__version__}"), version.stderr
    located = subprocess.run(
        [str(target / "bin" / "python"), "-c", "import functions; print(functions.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert located.stdout.startswith(str(site))
