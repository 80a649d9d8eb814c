#!/usr/bin/env bash
# Start the model_discovery GUI (Streamlit) on http://localhost:${MODIS_GUI_PORT:-8501}.
#
#   ./run_demo.sh                      # run directory runs/default
#   ./run_demo.sh runs/discover 8502   # another run directory and port
#
# Creates .venv and installs the project first when needed (`make venv`), then runs `modis gui`.
set -euo pipefail
cd "$(dirname "$0")"
RUN_DIR="${1:-${MODIS_RUN_DIR:-runs/default}}"
PORT="${2:-${MODIS_GUI_PORT:-8501}}"
make venv
echo "model_discovery GUI: http://localhost:${PORT}  (run directory: ${RUN_DIR})"
exec .venv/bin/modis gui --run-dir "$RUN_DIR" --port "$PORT"
