"""Assemble page/kernels.wat (the matrix products in WebAssembly) into page/kernels.wasm, the bytes
the exported page runs. Needs the test-only package wasmtime (pip install wasmtime).

Usage: python -m tools.make_kernels [--check]   (--check: only say whether kernels.wasm is current)
"""
import argparse
import os

from common import UserError, run_main
from tools import ROOT, write_or_check

PAGE = os.path.join(ROOT, "page")
SOURCE, TARGET = os.path.join(PAGE, "kernels.wat"), os.path.join(PAGE, "kernels.wasm")


def assembled():
    try:
        import wasmtime
    except ImportError:
        raise UserError("this needs wasmtime, which assembles WebAssembly text: "
                        "pip install wasmtime") from None
    with open(SOURCE, encoding="utf-8") as file:
        return bytes(wasmtime.wat2wasm(file.read()))


def main(argv=None):
    parser = argparse.ArgumentParser(description="Assemble page/kernels.wat into page/kernels.wasm.")
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 if kernels.wasm is not kernels.wat's bytes")
    args = parser.parse_args(argv)
    write_or_check(TARGET, assembled(), "page/kernels.wat", "tools.make_kernels", args.check)


if __name__ == "__main__":
    run_main(main)
