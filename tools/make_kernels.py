"""Assemble page/kernels/*.wat (the maths' kernels in WebAssembly text: the parts of one module)
into page/kernels.wasm, the bytes the exported page runs, and page/kernels-fma.wasm, the same with
fused multiply-adds (relaxed SIMD), which it runs where the browser has them. Needs the test-only
package wasmtime (pip install wasmtime).

Usage: python -m tools.make_kernels [--check]   (--check: only say whether both are current)
"""
import argparse
import os

from common import UserError, run_main
from tools import ROOT, write_or_check

PAGE = os.path.join(ROOT, "page")
# The module's parts, in its order: each function's name is known in all of them.
PARTS = [os.path.join(PAGE, "kernels", f"{name}.wat") for name in ("products", "convolutions", "pointwise")]
TARGET, FUSED_TARGET = os.path.join(PAGE, "kernels.wasm"), os.path.join(PAGE, "kernels-fma.wasm")
ADD, MULTIPLY, FUSED = "(f32x4.add ", "(f32x4.mul ", "(f32x4.relaxed_madd "


def end_of(text, start):
    """Where the expression starting at start ends: a parenthesised one, or a word."""
    if text[start] != "(":
        while text[start] not in " ()\n":
            start += 1
        return start
    depth = 0
    for at in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[at], 0)
        if depth == 0:
            return at + 1
    raise UserError("page/kernels/: a parenthesis is not closed")


def next_expression(text, start):
    """Where the next expression starts after start, past spaces and line breaks."""
    while text[start] in " \n":
        start += 1
    return start


def operands(text, start):
    """The two expressions after an operator's name, which ends at start, and where the operation
    ends, after its closing parenthesis."""
    first = next_expression(text, start)
    second = next_expression(text, end_of(text, first))
    close = next_expression(text, end_of(text, second))
    if text[close] != ")":
        raise UserError("page/kernels/: an f32x4.add or f32x4.mul does not take two operands")
    return text[first:end_of(text, first)], text[second:end_of(text, second)], close + 1


def fused(text):
    """text with every (f32x4.add A (f32x4.mul X Y)) written (f32x4.relaxed_madd X Y A): A + X Y
    in one instruction with one rounding, where the processor has one."""
    at = text.find(ADD)
    if at < 0:
        return text
    left, right, end = operands(text, at + len(ADD))
    if right.startswith(MULTIPLY):
        x, y, _ = operands(right, len(MULTIPLY))
        written = f"{FUSED}{fused(x)} {fused(y)} {fused(left)})"
    else:
        written = f"{ADD}{fused(left)} {fused(right)})"
    return text[:at] + written + fused(text[end:])


def module():
    """The module's text: its memory (one page to start; kernels.js grows it) and the parts."""
    texts = []
    for path in PARTS:
        with open(path, encoding="utf-8") as file:
            texts.append(file.read())
    return '(module\n(memory (export "memory") 1)\n' + "\n".join(texts) + ")\n"


def assembled(text):
    try:
        import wasmtime
    except ImportError:
        raise UserError("this needs wasmtime, which assembles WebAssembly text: "
                        "pip install wasmtime") from None
    return bytes(wasmtime.wat2wasm(text))


def main(argv=None):
    parser = argparse.ArgumentParser(description="Assemble page/kernels/*.wat into page/kernels.wasm and "
                                                 "page/kernels-fma.wasm.")
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 if either is not page/kernels/'s bytes")
    args = parser.parse_args(argv)
    text = module()
    for target, source in ((TARGET, text), (FUSED_TARGET, fused(text))):
        write_or_check(target, assembled(source), "page/kernels/*.wat", "tools.make_kernels", args.check)


if __name__ == "__main__":
    run_main(main)
