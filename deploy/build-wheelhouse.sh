#!/bin/bash
# Build a wheelhouse: wheels of the gateway and of every dependency, for an offline install with
#   deploy/install.sh --wheelhouse DIR
# Run it on the target's architecture and Python minor version (wheels of spidev and
# systemd-python are compiled here; build them on a Pi, or in an arm64 container, for a Pi).
set -euo pipefail

usage() {
    cat <<USAGE
usage: $0 [--python PYTHON] [--source DIR] OUTDIR

  --python PYTHON  interpreter whose pip builds the wheels (default: python3); its minor
                   version must match the target's python3 (3.11 on Bookworm)
  --source DIR     the gateway's source tree (default: the tree holding this script)
  OUTDIR           where the wheels go (created; existing wheels are kept and reused)

Needs network access to the package index (or a configured pip mirror), and the build
dependencies of the packages that ship no wheel: libsystemd-dev pkg-config build-essential
python3-dev.
USAGE
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
python=python3
source_dir=$(dirname "$here")
outdir=""
while [ $# -gt 0 ]; do
    case "$1" in
        --python) python=${2:?--python needs a value}; shift 2 ;;
        --source) source_dir=${2:?--source needs a value}; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        -*) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
        *) [ -z "$outdir" ] || { usage >&2; exit 2; }; outdir=$1; shift ;;
    esac
done
[ -n "$outdir" ] || { usage >&2; exit 2; }
[ -f "$source_dir/pyproject.toml" ] || { echo "no pyproject.toml in $source_dir" >&2; exit 2; }

mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)
# An older wheel of the gateway itself would be picked up by the offline install; keep only the new one.
rm -f "$outdir"/thing_gateway-*.whl
# Build from a copy: an in-tree build would leave build/ and *.egg-info behind in the source.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
src="$work/src"
mkdir "$src"
tar -C "$source_dir" --exclude=./.git --exclude=./.venv --exclude=./build --exclude='*.egg-info' \
    --exclude=__pycache__ --exclude=.mypy_cache --exclude=.ruff_cache --exclude=.hypothesis \
    --exclude=./demo-run --exclude=./.install.log \
    -cf - . | tar -C "$src" -xf -
# The build runs in a virtual environment of its own with current pip, setuptools and wheel:
# Debian 12's own venv has pip 23.0 and setuptools 66 without `wheel`, which cannot build the
# packages that ship only a setup.py (spidev, systemd-python): "invalid command 'bdist_wheel'".
"$python" -m venv "$work/.build-venv"
"$work/.build-venv/bin/python" -m pip install --disable-pip-version-check --quiet --upgrade \
    pip setuptools wheel
"$work/.build-venv/bin/python" -m pip wheel --disable-pip-version-check --quiet \
    --wheel-dir "$outdir" "$src"
ls "$outdir"/thing_gateway-*.whl >/dev/null
tag=$("$python" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
machine=$(uname -m)
count=$(find "$outdir" -maxdepth 1 -name '*.whl' | wc -l)
echo "wheelhouse $outdir: $count wheels for $tag on $machine"
