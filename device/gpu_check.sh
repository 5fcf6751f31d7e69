#!/usr/bin/env bash
# The one command a lent GPU machine runs (device/README.md): installs the carried wheels (.whl/, from
# device/prepare.sh) beside the image's torch, says what it runs on, then runs the check. Its files stay in
# /tmp/gpu_check; the report (gpu_check.json, .md, _logs.txt) goes to $OUT, which the device tool brings back.
set -uo pipefail  # not -e: the report is printed whatever the check's status
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/gpu_check_report}"
mkdir -p "$OUT"

if ! ls .whl/*.whl > /dev/null 2>&1; then
    echo "no wheels in .whl/: run 'bash device/prepare.sh' here first, then carry [\".whl\"]" >&2
    exit 2
fi
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 2
export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}  # before site-packages: our timm over the image's

nvidia-smi || echo 'nvidia-smi failed'
python3 - <<'EOF' || exit 2
import platform

import hydra
import omegaconf
import timm
import torch

print(f"python {platform.python_version()}, torch {torch.__version__} (CUDA {torch.version.cuda}), timm "
      f"{timm.__version__} from {timm.__file__}, hydra {hydra.__version__}, omegaconf {omegaconf.__version__}")
if torch.cuda.is_available():
    print(f"{torch.cuda.get_device_name(0)}, bf16 {torch.cuda.is_bf16_supported()}, {torch.cuda.device_count()} GPU(s)")
else:
    print("no CUDA device: the check will refuse (exit 2) unless given --device cpu --tiny")
EOF

PYTHONUNBUFFERED=1 python3 -m src.bench.gpu_check --out /tmp/gpu_check --report "$OUT" "$@"
status=$?
echo "gpu_check exit status $status; $OUT holds:"
ls -la "$OUT"
cat "$OUT/gpu_check.md" 2>/dev/null | head -c 9000  # the device tool shows the output's last 12,000 characters
exit $status
