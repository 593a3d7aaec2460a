#!/usr/bin/env bash
# Install the runtime (base install: no torch) and interpret a real 12-lead DICOM ECG with the demo bundle.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d .venv ] || python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
CMAKE_ARGS="$(bash scripts/llama_cmake_args.sh)" CMAKE_BUILD_PARALLEL_LEVEL=2 python -m pip install -q -e .
ecg=$(python -c 'import pydicom.data as d; print(d.get_testdata_file("waveform_ecg.dcm"))')
gem-run "$ecg" "$@"
