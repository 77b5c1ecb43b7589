"""The exercises of docs/exercises.md measured both ways: each model.py edit trained by train.py
(one thread), and each designed network trained in the exported file (headless Chromium).

Usage: python -m tools.exercises --data-dir files [--seeds 3] [--epochs 3] [--only 1 4]
"""
import argparse
import base64
import contextlib
import copy
import io
import os
import re
import statistics
import tempfile
import types
from unittest import mock

import torch

import draw
import train
from common import UserError, add_data_and_device_arguments, positive_int, run_main
from extras import checkpoints
from page.design import TUTORIAL
from tools import ROOT
from tools.benchmark_export import chromium, open_file

EXERCISES = os.path.join(ROOT, "docs", "exercises.md")
# train.py's flags an exercise may give, as the file's trainRun takes them.
RUN_FIELDS = {"--lr": ("lr", float)}
# In the page: a call of window.routes[route](body); its answer, or {error}.
CALL = """
const [route, body, done] = arguments;
Promise.resolve().then(() => window.routes[route](body))
  .then(done, (error) => done({ error: error.message }));
"""


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


def file_layers(number):
    """The exercise's network as the file's Design panel makes it: the tutorial's layers with the
    change its "In the file" line says (exercise 8 and the tutorial's network, 0: none)."""
    layers = copy.deepcopy(TUTORIAL)
    convolutions = [layer for layer in layers if layer["type"] == "conv"]
    if number == 1:  # average pooling
        layers = [{**layer, "type": "avgpool"} if layer["type"] == "maxpool" else layer for layer in layers]
    elif number == 2:  # 3 x 3 kernels
        for layer in convolutions:
            layer["kernel"] = 3
    elif number == 3:  # more channels
        convolutions[0]["channels"], convolutions[1]["channels"] = 16, 32
    elif number == 4:  # a ReLU between fc1 and fc2
        layers.insert(len(layers) - 1, {"type": "relu"})
    elif number == 5:  # sigmoid instead of ReLU
        layers = [{"type": "sigmoid"} if layer["type"] == "relu" else layer for layer in layers]
    elif number == 6:  # no dropout
        layers = [layer for layer in layers if layer["type"] != "dropout"]
    elif number == 7:  # batch norm after each convolution
        for layer in convolutions:
            layers.insert(layers.index(layer) + 1, {"type": "batchnorm"})
    elif number == 9:  # padding 2
        convolutions[0]["padding"] = 2
    elif number not in (0, 8):
        raise UserError(f"exercise {number} has no layers for the file in tools/exercises.py")
    return layers


def run_settings(flags):
    """train.py's flags of an exercise as trainRun's fields."""
    fields = {}
    for flag, value in zip(flags[::2], flags[1::2]):
        if flag not in RUN_FIELDS:
            raise UserError(f"the file's trainRun takes no {flag}: add it to RUN_FIELDS")
        name, parse = RUN_FIELDS[flag]
        fields[name] = parse(value)
    return fields


def shapes(state):
    return {key: list(tensor.shape) for key, tensor in state.items()}


def call(session, route, body):
    """window.routes[route](body) in the page; UserError if it refuses."""
    answer = session.execute_async_script(CALL, route, body)
    if isinstance(answer, dict) and "error" in answer:
        raise UserError(f"the file refused {route}: {answer['error']}")
    return answer


def designed(session, number, net):
    """The exercise's network designed in the file (its model), checked to have the parameters'
    names and shapes of PyTorch's net."""
    model = call(session, "design", {"layers": file_layers(number)})["model"]
    checkpoint = base64.b64decode(call(session, "checkpoint", {"model": model}))
    found = shapes(torch.load(io.BytesIO(checkpoint), weights_only=True)["model"])
    if found != shapes(net().state_dict()):
        raise UserError(f"exercise {number}: the file's layers give {found}, its model.py edit "
                        f"{shapes(net().state_dict())}")
    return model


def file_run(session, model, flags, seed, args):
    """trainRun of the designed network from fresh weights of seed, with train.py's defaults but
    the exercise's flags: (test accuracy %, seconds an epoch)."""
    answer = call(session, "trainRun", {"model": model, "epochs": args.epochs, "seed": seed,
                                        **run_settings(flags)})
    return 100 * answer["testAccuracy"], answer["seconds"] / args.epochs


def exported_file(args, folder):
    """The page exported with all of --data-dir's MNIST (its training images too), for an untrained
    network of model.py; its path."""
    model, path = os.path.join(folder, "untrained.pt"), os.path.join(folder, "page.html")
    torch.manual_seed(0)
    torch.save({"model": edited_net(None)().state_dict()}, model)
    with contextlib.redirect_stdout(io.StringIO()):
        draw.main([model, "--data-dir", args.data_dir, "--device", "cpu", "--export", path])
    return path


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
    with tempfile.TemporaryDirectory() as folder:
        path, session = exported_file(args, folder), chromium()
        try:
            session.set_script_timeout(3600)  # a run of every epoch asked for
            open_file(session, path)
            print(f"headless Chromium {session.capabilities.get('browserVersion', '?')}; test accuracy, "
                  f"mean of {args.seeds} seed(s) (range), after {args.epochs} epoch(s); seconds an epoch")
            width = max(len(f"{number}. {title}") for number, title, _, _ in chosen) + 2
            print(f"{'exercise':<{width}}{'PyTorch, one thread':>30}{'the file (trainRun)':>30}")
            for number, title, diff, flags in chosen:
                net = edited_net(diff)
                model = designed(session, number, net)
                runs = [pytorch_run(net, flags, seed, args, folder) for seed in range(args.seeds)]
                in_file = [file_run(session, model, flags, seed, args) for seed in range(args.seeds)]
                print(f"{f'{number}. {title}':<{width}}{summary(runs):>30}{summary(in_file):>30}",
                      flush=True)
        finally:
            session.quit()


if __name__ == "__main__":
    run_main(main)
