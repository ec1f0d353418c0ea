#!/usr/bin/env bash
# Installs the project into the current Python environment (PYTHON, default python3).
# A CUDA build of torch that is already installed is left alone; otherwise the CPU build of torch
# 2.13.0 is installed first (on these machines pip finds it on disk; elsewhere PyTorch's CPU index),
# so that nothing that depends on torch pulls the multi-GB CUDA wheels. `--dev` adds the test tools.
# Every version is the one in requirements/lock.txt (the versions the tests passed with), used as
# pip constraints; `--unlocked` installs from pyproject.toml's lower bounds instead (the newest
# releases). requirements/relock.sh regenerates the lock (README: "Upgrading the locked versions").
set -euo pipefail
cd "$(dirname "$0")"
PY="${PYTHON:-python3}"
TORCH=2.13.0
CPU_INDEX=https://download.pytorch.org/whl/cpu
usage="usage: [PYTHON=python3] [TORCH_INDEX_URL=URL] bash install.sh [--dev] [--unlocked]

Installs the project (editable) into PYTHON's environment, CPU torch $TORCH first.
  --dev       also the test tools (pytest, ruff, moto)
  --unlocked  the newest versions pyproject.toml allows, instead of the tested ones in
              requirements/lock.txt (the default, used as pip constraints)
  TORCH_INDEX_URL  the index to take torch from (default: what pip finds, else $CPU_INDEX)
A CUDA torch that is already installed is kept."
extras=""
locked=1
for arg in "$@"; do
  case "$arg" in
    --dev) extras="[dev]" ;;
    --unlocked) locked=0 ;;
    -h|--help) echo "$usage"; exit 0 ;;
    *) echo "$usage" >&2; exit 2 ;;
  esac
done

torch_state=$("$PY" - <<'PYEOF' 2>/dev/null || echo none
import torch
print(("cuda:" if torch.version.cuda else "cpu:") + torch.__version__)
PYEOF
)

constraints=()
if (( locked )); then
  lock=requirements/lock.txt
  if [[ "$torch_state" == cuda:* ]]; then
    # Keep the machine's CUDA torch: the lock's torch line gives way to the installed version.
    lock=$(mktemp)
    trap 'rm -f "$lock"' EXIT
    grep -v -E '^torch==' requirements/lock.txt > "$lock"
    echo "torch==${torch_state#cuda:}" >> "$lock"
  fi
  constraints=(-c "$lock")
  echo "install: versions from requirements/lock.txt"
else
  echo "install: --unlocked: any version pyproject.toml allows (the newest, for what is not installed yet)"
fi

# PyPI's Linux torch is the CUDA build (it pulls nvidia-* wheels); the CPU build carries the +cpu label.
torch_spec="torch==$TORCH"
[[ "$(uname -s)" == Linux ]] && torch_spec="torch==$TORCH+cpu"
case "$torch_state" in
  cuda:*) echo "install: CUDA torch already present; leaving it alone" ;;
  "cpu:$TORCH"*) echo "install: torch $TORCH (CPU) already present" ;;
  *) echo "install: installing $torch_spec before anything that depends on it"
     if [[ -n "${TORCH_INDEX_URL:-}" ]]; then  # that index may lack the locked versions of torch's dependencies
       "$PY" -m pip install --quiet --index-url "$TORCH_INDEX_URL" "$torch_spec"
     elif ! "$PY" -m pip install --quiet ${constraints[@]+"${constraints[@]}"} "$torch_spec"; then
       echo "install: $torch_spec not found where pip looks; trying $CPU_INDEX"
       "$PY" -m pip install --quiet ${constraints[@]+"${constraints[@]}"} --extra-index-url "$CPU_INDEX" "$torch_spec"
     fi ;;
esac

"$PY" -m pip install --quiet ${constraints[@]+"${constraints[@]}"} -e ".${extras}" || {
  (( locked )) && echo "install: the locked versions do not install here; \`bash install.sh --unlocked\` takes the newest" >&2
  exit 1
}
"$PY" - <<'PYEOF'
import logging
logging.getLogger("bitsandbytes").setLevel(logging.ERROR)  # an optional hub kernel it cannot fetch offline
import torch, ray, transformers, peft, duckdb, pyarrow
print(f"install: ok (torch {torch.__version__}, ray {ray.__version__}, transformers {transformers.__version__}, "
      f"peft {peft.__version__}, duckdb {duckdb.__version__}, pyarrow {pyarrow.__version__})")
PYEOF
