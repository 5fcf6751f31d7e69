#!/usr/bin/env bash
# Run here, where PyPI is reachable, before a device call: fetches the wheels the GPU image lacks
# (device/requirements.txt, device/sdists.txt) into .whl/ at the repo root, hash-checked, for the image's
# CPython 3.12 on x86_64; then checks what it got. The device call carries .whl (device/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"

rm -rf .whl
mkdir -p .whl
"$PYTHON" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux2014_x86_64 --platform any -d .whl --require-hashes -r device/requirements.txt

# antlr4-python3-runtime 4.9.3 exists only as a source archive: download it hash-checked, build its wheel here
# (pure python, so the wheel built with this Python serves the image's 3.12)
sdists="$(mktemp -d)"
trap 'rm -rf "$sdists"' EXIT
"$PYTHON" -m pip download --no-deps --no-binary=:all: -d "$sdists" --require-hashes -r device/sdists.txt
"$PYTHON" -m pip wheel --no-deps -w .whl "$sdists"/*.tar.gz

# One wheel per pinned requirement, at its version, installable on CPython 3.12 x86_64, and nothing else
"$PYTHON" - <<'EOF'
import hashlib
import re
import sys
from pathlib import Path

def normal(name):
    return re.sub(r"[-_.]+", "_", name).lower()

pins = {}
for listing in ("device/requirements.txt", "device/sdists.txt"):
    for line in Path(listing).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split()[0].split("==")
            pins[normal(name)] = version
wheels = {normal(path.name.split("-")[0]): path for path in Path(".whl").iterdir()}
problems = [f"no wheel for {name}" for name in pins if name not in wheels]
problems += [f"unexpected file {path.name}" for name, path in wheels.items() if name not in pins]
for name, path in wheels.items():
    version, tags = path.name.split("-")[1], path.name[:-len(".whl")].split("-")[-3:]
    if name in pins and version != pins[name]:
        problems.append(f"{path.name}: version {version}, pinned {pins[name]}")
    if not (tags[:2] == ["py3", "none"] and tags[2] == "any" or tags[0] == "cp312" and "x86_64" in tags[2]):
        problems.append(f"{path.name}: not installable on CPython 3.12 x86_64")
total = 0
for path in sorted(wheels.values()):
    total += path.stat().st_size
    print(f"{path.stat().st_size / 2**20:6.2f} MiB  {hashlib.sha256(path.read_bytes()).hexdigest()}  {path.name}")
print(f"{total / 2**20:6.2f} MiB in .whl ({len(wheels)} wheels)")
if total > 16 * 2**20:
    problems.append("over 16 MiB: the device call carries at most 64 MiB with the tree")
if problems:
    sys.exit("device/prepare.sh: " + "; ".join(problems))
EOF
