#!/usr/bin/env bash
# Installs the project into the current Python environment (PYTHON, default python3).
# A CUDA build of torch that is already installed is left alone; otherwise torch==2.13.0 is
# installed first (on these machines pip finds the CPU build on disk), so that nothing that
# depends on torch pulls the multi-GB CUDA wheels. `--dev` adds the test tools.
set -euo pipefail
cd "$(dirname "$0")"
PY="${PYTHON:-python3}"
extras=""
[[ "${1:-}" == "--dev" ]] && extras="[dev]"

torch_state=$("$PY" - <<'PYEOF' 2>/dev/null || echo none
import torch
print("cuda" if torch.version.cuda else "cpu:" + torch.__version__)
PYEOF
)
case "$torch_state" in
  cuda) echo "install: CUDA torch already present; leaving it alone" ;;
  cpu:2.13.0*) echo "install: torch 2.13.0 (CPU) already present" ;;
  *) echo "install: installing torch==2.13.0 before anything that depends on it"
     "$PY" -m pip install --quiet ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "torch==2.13.0" ;;
esac

"$PY" -m pip install --quiet -e ".${extras}"
"$PY" - <<'PYEOF'
import logging
logging.getLogger("bitsandbytes").setLevel(logging.ERROR)  # an optional hub kernel it cannot fetch offline
import torch, ray, transformers, peft, duckdb, pyarrow
print(f"install: ok (torch {torch.__version__}, ray {ray.__version__}, transformers {transformers.__version__}, "
      f"peft {peft.__version__}, duckdb {duckdb.__version__}, pyarrow {pyarrow.__version__})")
PYEOF
