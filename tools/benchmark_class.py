"""Time train.py runs sharing this machine, as a class's do on one server: 1, 2, 4 and 8 runs of
one epoch started together, against the same runs one after another, with PyTorch's own thread
count (one per CPU) and with the scripts' default; ratios from this one run.

Usage: python -m tools.benchmark_class --data-dir files [--runs 1 2 4 8] [--pytorch-runs 1 2 4 8]
       [--alone 5]
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

from common import positive_int, run_main, set_threads, usable_cpus
from tools import ROOT  # where train.py is



def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Time train.py runs that share this machine.")
    parser.add_argument("--data-dir", default="./files",
                        help="MNIST folder, as for train.py; never downloaded here (default: ./files)")
    parser.add_argument("--runs", type=positive_int, nargs="+", default=[1, 2, 4, 8],
                        help="how many runs start together, each count in turn (default: 1 2 4 8)")
    parser.add_argument("--pytorch-runs", type=positive_int, nargs="+", default=[1, 2, 4, 8],
                        help="the counts for PyTorch's own thread count, which take longest "
                             "(default: 1 2 4 8)")
    parser.add_argument("--alone", type=positive_int, default=5, metavar="N",
                        help="runs alone of each thread count, taking turns; the median is the "
                             "time of one run (default: 5)")
    parser.add_argument("--epochs", type=positive_int, default=1,
                        help="epochs each run trains (default: 1)")
    return parser.parse_args(argv)


def runs_together(count, threads, args, folder):
    """Start count train.py runs at once (threads None: the scripts' default); return the seconds
    until the last one has finished."""
    command = [sys.executable, os.path.join(ROOT, "train.py"), "--data-dir", args.data_dir,
               "--device", "cpu", "--epochs", str(args.epochs), "--no-snapshots"]
    # PyTorch's own default, one thread per CPU, is asked for by number: without --threads the
    # scripts now choose their own.
    extra = [] if threads is None else ["--threads", str(threads)]
    environment = dict(os.environ)
    start = time.perf_counter()
    processes = [subprocess.Popen([*command, *extra, "--out", os.path.join(folder, f"{index}.pt")],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                  env=environment) for index in range(count)]
    for process in processes:
        _, err = process.communicate(timeout=3600)
        if process.returncode != 0:
            raise SystemExit(f"error: train.py failed: {err.strip().splitlines()[-1]}")
    return time.perf_counter() - start


def runs_alone(settings, args, folder):
    """Time one run of each setting at a time, taking turns --alone times, and return each
    setting's median: a run alone varies by a fifth and more on a shared virtual machine, so
    one run of each would decide the ratio by chance."""
    times = {name: [] for name, _, _ in settings}
    for _ in range(args.alone):
        for name, threads, _ in settings:
            times[name].append(runs_together(1, threads, args, folder))
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, values in times.items():
        print(f"{name}, alone: {' '.join(f'{value:.1f}' for value in values)} s, "
              f"median {medians[name]:.1f} s")
    return medians


def main(argv=None):
    args = parse_args(argv)
    cpus = usable_cpus()
    settings = [(f"PyTorch's default ({cpus} per run)", cpus, args.pytorch_runs),
                (f"the scripts' default ({set_threads()} per run)", None, args.runs)]
    print(f"{cpus} usable CPUs; train.py --epochs {args.epochs}, real time until the last run ends")
    with tempfile.TemporaryDirectory() as folder:
        alone = runs_alone(settings, args, folder)
        print(f"\n{'threads':<34}{'runs':>5}{'together s':>12}{'one by one s':>14}{'ratio':>8}"
              f"{'alone vs PyTorch':>18}")
        for name, threads, counts in settings:
            for count in counts:
                together = alone[name] if count == 1 else runs_together(count, threads, args, folder)
                one_by_one = count * alone[name]  # the same runs one after another
                versus = alone[name] / alone[settings[0][0]]
                print(f"{name:<34}{count:>5}{together:>12.1f}{one_by_one:>14.1f}"
                      f"{together / one_by_one:>7.2f}x{versus:>17.2f}x", flush=True)


if __name__ == "__main__":
    run_main(main)
