"""requirements/lock.txt (issue 13 §6): it pins, with `==`, every dependency of pyproject.toml (core and dev)
at a version pyproject allows, on each supported Python, holds no CUDA package, and these tests run with
exactly its versions; install.sh installs the CPU torch first, then the project with the lock as constraints."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "requirements" / "lock.txt"
PYTHONS = ["3.10", "3.11", "3.12"]


def _pyproject_requirements() -> list[Requirement]:
    """The runtime and dev requirements, the extras the dev extra names of the project itself expanded."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    own = canonicalize_name(project["name"])
    extras = project["optional-dependencies"]
    listed = [Requirement(r) for r in project["dependencies"] + extras["dev"]]
    itself = [r for r in listed if canonicalize_name(r.name) == own]
    return [r for r in listed if r not in itself] + [
        Requirement(r) for req in itself for extra in sorted(req.extras) for r in extras[extra]
    ]


def _lock() -> list[Requirement]:
    lines = [line.strip() for line in LOCK.read_text().splitlines()]
    return [Requirement(line) for line in lines if line and not line.startswith("#")]


def _linux(python: str) -> dict[str, str]:
    """The marker environment of CPython `python` on x86-64 Linux."""
    return {
        "python_version": python, "python_full_version": f"{python}.0", "implementation_name": "cpython",
        "implementation_version": f"{python}.0", "platform_python_implementation": "CPython", "os_name": "posix",
        "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
    }  # fmt: skip


def _pins(environment: dict[str, str] | None = None) -> dict[str, list[str]]:
    """Package → its pinned versions whose markers hold in `environment` (this interpreter's if None)."""
    pins: dict[str, list[str]] = {}
    for req in _lock():
        if req.marker is None or req.marker.evaluate(environment):
            pins.setdefault(canonicalize_name(req.name), []).append(str(req.specifier).removeprefix("=="))
    return pins


def test_every_line_of_the_lock_pins_one_exact_version():
    for req in _lock():
        assert req.url is None and not req.extras, req
        assert len(req.specifier) == 1 and next(iter(req.specifier)).operator == "==", req
        assert "*" not in str(req.specifier), req


@pytest.mark.parametrize("python", PYTHONS)
def test_the_lock_pins_every_pyproject_dependency_within_its_bounds(python):
    pins = _pins(_linux(python))
    assert all(len(versions) == 1 for versions in pins.values()), {n: v for n, v in pins.items() if len(v) > 1}
    for req in _pyproject_requirements():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not in {LOCK.name} for Python {python}: run requirements/relock.sh"
        assert req.specifier.contains(pins[name][0], prereleases=True), (
            f"{LOCK.name} pins {req.name}=={pins[name][0]}, outside pyproject's {req}: run requirements/relock.sh"
        )


def test_these_tests_run_with_the_locked_versions():
    """The installed version of every direct dependency is the locked one (a local label such as +cpu aside),
    so a lock that passes here is one the whole suite passed with."""
    pins = _pins()
    differ = {}
    for req in _pyproject_requirements():
        name = canonicalize_name(req.name)
        try:
            installed = version(req.name)
        except PackageNotFoundError:
            installed = None
        locked = pins.get(name, [None])[0]
        if installed is None or installed.split("+")[0] != locked:
            differ[req.name] = f"installed {installed}, locked {locked}"
    assert not differ, (
        f"{differ}: install with `bash install.sh --dev`, or, upgrading, relock this environment with "
        "`bash requirements/relock.sh` (README: 'Upgrading the locked versions')"
    )


def test_the_lock_holds_no_cuda_package():
    """torch is locked with the CPU build's dependencies, so constraints from the lock never pull CUDA wheels."""
    cuda = [str(req) for req in _lock() if re.match(r"(nvidia-|cuda-|triton$)", canonicalize_name(req.name))]
    assert not cuda


# install.sh, run with a stand-in for Python that answers the torch probe and records each pip command.
FAKE_PYTHON = r"""#!/usr/bin/env bash
if [[ "$1" == "-" ]]; then
  if grep -q torch.version.cuda; then [[ -n "$FAKE_TORCH" ]] && echo "$FAKE_TORCH" || exit 1; fi
  exit 0
fi
shift 2  # -m pip
line="pip $*"
for ((i = 1; i <= $#; i++)); do
  if [[ "${!i}" == "-c" ]]; then j=$((i + 1)); line="$line | constraints: $(grep -E '^torch==' "${!j}")"; fi
done
echo "$line" >> "$FAKE_LOG"
"""


def _install(tmp_path: Path, *args: str, torch: str = "") -> list[str]:
    fake = tmp_path / "python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    log = tmp_path / "pip.log"
    env = {"PATH": os.environ["PATH"], "PYTHON": str(fake), "FAKE_TORCH": torch, "FAKE_LOG": str(log)}
    subprocess.run(["bash", str(REPO / "install.sh"), *args], env=env, check=True, capture_output=True)
    return log.read_text().splitlines()


def test_install_sh_installs_the_cpu_torch_first_then_the_project_with_the_lock(tmp_path):
    (torch,) = _pins(_linux("3.11"))["torch"]
    torch_install, project = _install(tmp_path, "--dev")
    assert f"torch=={torch}+cpu" in torch_install.split()
    assert "-c requirements/lock.txt" in torch_install and "-c requirements/lock.txt" in project
    assert "-e .[dev]" in project and project.endswith(f"constraints: torch=={torch}")


def test_install_sh_unlocked_installs_without_the_lock(tmp_path):
    torch_install, project = _install(tmp_path, "--unlocked")
    assert "-c" not in torch_install.split() and "-c" not in project.split()
    assert project.split()[-1] == "."


def test_install_sh_keeps_a_present_torch(tmp_path):
    (torch,) = _pins(_linux("3.11"))["torch"]
    assert _install(tmp_path, torch=f"cpu:{torch}+cpu") == [
        f"pip install --quiet -c requirements/lock.txt -e . | constraints: torch=={torch}"
    ]
    # A CUDA torch is neither replaced nor constrained to the lock's version: to its own.
    (tmp_path / "cuda").mkdir()
    (project,) = _install(tmp_path / "cuda", torch="cuda:2.5.1+cu121")
    assert "-e ." in project and project.endswith("constraints: torch==2.5.1+cu121")
