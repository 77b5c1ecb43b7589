"""The exercises of docs/exercises.md measured both ways: each model.py edit trained by train.py
(one thread), and each designed network trained in the exported file (headless Chromium).

Usage: python -m tools.exercises --data-dir files [--seeds 3] [--epochs 3] [--only 1 4]
"""
import argparse
import contextlib
import io
import os
import re
import statistics
import tempfile
import types
from unittest import mock

import train
from common import UserError, add_data_and_device_arguments, positive_int, run_main
from extras import checkpoints
from tools import ROOT

EXERCISES = os.path.join(ROOT, "docs", "exercises.md")


def exercises(path=EXERCISES):
    """[(number, title, the model.py edit as a diff or None, train.py's extra flags)] of the
    exercises' page, from its '## N. Title' sections."""
    with open(path, encoding="utf-8") as file:
        text = file.read()
    found = []
    for number, title, body in re.findall(r"^## (\d+)\. (.+?)\n(.*?)(?=^## |\Z)", text, re.M | re.S):
        diff = re.search(r"```diff\n(.*?)```", body, re.S)
        flags = re.search(r"`python train\.py ((?:--[a-z-]+ \S+ ?)+)`", body)
        found.append((int(number), title, diff and diff.group(1),
                      flags.group(1).split() if flags else []))
    return found


def apply_edit(source, diff):
    """source with diff applied: each run of '-' lines (each standing once in source, anywhere)
    goes, and the '+' lines after it come where the run's first line was. ValueError if a '-'
    line is not in source once, so that the page's instructions cannot go stale."""
    lines = source.split("\n")
    for hunk in re.findall(r"((?:^-.*\n)+)((?:^\+.*\n)*)", diff, re.M):
        removed = [line[1:] for line in hunk[0].splitlines()]
        added = [line[1:] for line in hunk[1].splitlines()]
        for line in removed:
            if lines.count(line) != 1:
                raise ValueError(f"not once in model.py: {line.strip()}")
        at = lines.index(removed[0])
        lines = [line for line in lines if line not in removed]
        lines[at:at] = added
    return "\n".join(lines)


def edited_net(diff):
    """The Net class of model.py with diff applied (model.py itself as it is for None)."""
    with open(os.path.join(ROOT, "model.py"), encoding="utf-8") as file:
        source = file.read()
    module = types.ModuleType("edited_model")
    exec(compile(apply_edit(source, diff) if diff else source, "model.py", "exec"),  # noqa: S102
         module.__dict__)
    return module.Net


def pytorch_run(net, flags, seed, args, folder):
    """train.py with net as model.py's Net, one thread: (test accuracy %, seconds an epoch)."""
    out = os.path.join(folder, "exercise.pt")
    argv = ["--data-dir", args.data_dir, "--device", "cpu", "--threads", "1", "--no-snapshots",
            "--epochs", str(args.epochs), "--seed", str(seed), "--out", out, *flags]
    with mock.patch.object(train, "Net", net), mock.patch.object(checkpoints, "Net", net), \
            contextlib.redirect_stdout(io.StringIO()) as printed:
        train.main(argv)
    run_time = float(re.search(r"Run Time: ([\d.]+) s", printed.getvalue()).group(1))
    accuracy = float(re.search(r"Test Accuracy: ([\d.]+)%", printed.getvalue()).group(1))
    return accuracy, run_time / args.epochs


def summary(runs):
    """'97.12% (96.9 to 97.4), 5.1 s' of [(accuracy %, seconds an epoch)]."""
    accuracies = [accuracy for accuracy, _ in runs]
    return (f"{statistics.mean(accuracies):.2f}% ({min(accuracies):.1f} to {max(accuracies):.1f}), "
            f"{statistics.median(seconds for _, seconds in runs):.1f} s")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Measure the exercises both ways.")
    parser.add_argument("--seeds", type=positive_int, default=3, help="seeds 0 ... N - 1 (default: 3)")
    parser.add_argument("--epochs", type=positive_int, default=3, help="epochs a run (default: 3)")
    parser.add_argument("--only", type=int, nargs="+", metavar="N",
                        help="these exercises only (default: all, and the tutorial's network as 0)")
    add_data_and_device_arguments(parser, downloads=False)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    chosen = [(0, "the tutorial's network", None, [])] + exercises()
    if args.only:
        chosen = [exercise for exercise in chosen if exercise[0] in args.only]
    if not chosen:
        raise UserError(f"--only {args.only}: no such exercise in docs/exercises.md")
    print(f"{'exercise':<40}{'PyTorch, one thread':>34}")
    with tempfile.TemporaryDirectory() as folder:
        for number, title, diff, flags in chosen:
            net = edited_net(diff)
            runs = [pytorch_run(net, flags, seed, args, folder) for seed in range(args.seeds)]
            print(f"{number}. {title:<37}{summary(runs):>34}", flush=True)


if __name__ == "__main__":
    run_main(main)
