"""Benchmarks and generators; run each from the top folder as python -m tools.NAME."""
import os
import sys

from common import save_atomically

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_or_check(path, content, source, command, check):
    """A generator's last step: write content (bytes) to path atomically, or, with check, only say
    whether path already holds it (exit 1 with one line if not). source names what path is made
    from and command the generator, for that line."""
    name = os.path.relpath(path, ROOT)
    if check:
        try:
            with open(path, "rb") as file:
                current = file.read()
        except OSError:
            current = None
        if current != content:
            sys.exit(f"error: {name} is not what {source} makes; run: python -m {command}")
        print(f"{name} is up to date")
        return
    save_atomically(path, lambda file: file.write(content))
    print(f"Saved {name}")
