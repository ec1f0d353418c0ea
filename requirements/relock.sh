#!/usr/bin/env bash
# Rewrites requirements/lock.txt from the environment the tests passed in (PYTHON, default python3).
#
# Every package installed there is pinned to its installed version (a local label such as +cpu dropped)
# as a constraint of a universal `uv pip compile` of pyproject.toml and its dev extra, so the lock holds
# exactly the tested versions for that environment's Python and newer ones. For older Pythons, which
# some of those versions no longer support, the versions are resolved apart (the newest that support
# them), and stay as they are across relocks: uv prefers the versions already in the lock. Arguments go
# to uv: `--upgrade` re-resolves those too, `--upgrade-package NAME` one of them.
#
# torch is resolved with the dependencies of the installed CPU build (uv's dependency-metadata), not
# those of PyPI's Linux wheel, which is the CUDA build: so no nvidia-*, cuda-* or triton line enters the
# lock. The environment must therefore hold the CPU torch (install.sh installs it).
# Needs PyPI; uv is installed into a temporary folder at the version below, unless it is on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
UV_VERSION=0.13.9
lock=requirements/lock.txt

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

uv=uv
if [[ "$(uv --version 2>/dev/null | cut -d' ' -f2)" != "$UV_VERSION" ]]; then
  echo "relock: installing uv $UV_VERSION into a temporary folder"
  "$PY" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --target "$tmp/uv" "uv==$UV_VERSION"
  uv="$tmp/uv/bin/uv"
fi

"$PY" -m pip check >/dev/null || { echo "relock: pip check fails in $PY's environment; fix it first" >&2; exit 1; }
tested_python=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
tested_full=$("$PY" -c 'import platform; print(platform.python_version(), platform.system(), platform.machine())')
# name==version lines only (no editable installs or URLs; setuptools included), local labels dropped,
# from the tested Python on.
"$PY" -m pip freeze --all --exclude-editable \
  | grep -E '^[A-Za-z0-9][A-Za-z0-9._-]*==' \
  | sed -E "s/\+[A-Za-z0-9.]+\$//; s/\$/ ; python_version >= \"$tested_python\"/" > "$tmp/tested.txt"

# The installed torch's own dependencies, as uv configuration; refused if it is a CUDA build.
"$PY" - > "$tmp/uv.toml" <<'PYEOF'
import json
import re
import sys
from importlib.metadata import distribution

torch = distribution("torch")
requires = torch.requires or []
cuda = [r for r in requires if re.match(r"(nvidia-|cuda-|triton)", r, re.IGNORECASE)]
if cuda:
    sys.exit(f"relock: the installed torch {torch.version} is a CUDA build (it requires {cuda}); relock from an "
             "environment with the CPU torch (bash install.sh --dev in a fresh virtualenv)")
print("[[dependency-metadata]]")
print(f"name = {json.dumps(torch.metadata['Name'])}")
print(f"version = {json.dumps(torch.version.split('+')[0])}")
print(f"requires-dist = {json.dumps(requires)}")
print(f"requires-python = {json.dumps(torch.metadata['Requires-Python'] or '')}")
PYEOF

[[ -f "$lock" ]] && cp "$lock" "$tmp/lock.txt"  # the current pins are uv's preferences
"$uv" pip compile pyproject.toml --extra dev --universal --python-version 3.10 --no-python-downloads \
  --config-file "$tmp/uv.toml" --constraints "$tmp/tested.txt" --output-file "$tmp/lock.txt" --quiet \
  --custom-compile-command "PYTHON=$PY bash requirements/relock.sh" "$@"

if grep -q -i -E '^(nvidia-|cuda-|triton==)' "$tmp/lock.txt"; then
  echo "relock: a CUDA package entered the lock; not written" >&2
  exit 1
fi
{
  cat <<HEADER
# The exact versions the test suite passed with (Python $tested_full, CPU torch), as a universal lock
# for Python 3.10-3.12: each line's marker says where it applies. Lines for Python >= $tested_python are
# the tested environment's versions; those for older Pythons are the newest that still support them
# (resolved, not tested). torch is locked with the CPU build's dependencies: no CUDA package is here.
#
# install.sh installs the CPU torch first, then uses this file as pip *constraints*
# (pip install -c requirements/lock.txt -e .). Do not \`pip install -r\` it on Linux before the CPU
# torch is installed: PyPI's Linux torch is the CUDA build and would pull the CUDA wheels.
#
# To upgrade, see "Upgrading the locked versions" in README.md.
HEADER
  sed -e "s|-c $tmp/tested.txt|-c the tested environment|" "$tmp/lock.txt"
} > "$lock"
echo "relock: wrote $lock ($(grep -c '^[a-zA-Z]' "$lock") pins) from $PY ($tested_full)"
