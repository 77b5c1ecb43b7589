"""A training run's bookkeeping for train.py: what its checkpoint keeps so that --resume continues
it bit for bit, the refusals that keep it the same run, and what Ctrl-C saves.

Usage: from extras.runs import continue_run, checkpoint_of, restore   (train.py uses it)
"""
import argparse
import hashlib
import os
import sys

import torch

from cli import UserError, build_model, is_number, save_atomically, shown
from data import to_pixels

# What --resume takes from the run, and refuses to change: anything that makes it another run.
RUN_FLAGS = ("batch_size", "lr", "weight_decay", "schedule", "augment", "no_dropout_epochs",
             "no_augment_epochs", "seed", "snapshots", "extra_images_dir", "extra_repeats",
             "init_from")
# What Adam keeps for each weight it has stepped.
ADAM_STATE = {"step", "exp_avg", "exp_avg_sq"}
NOT_TRAIN_PY = "the checkpoint is damaged or was not written by train.py"


def flag_of(name):
    """The flag that sets the argument name: no_dropout_epochs is --no-dropout-epochs."""
    return "--no-snapshots" if name == "snapshots" else "--" + name.replace("_", "-")


def given_flags(parser, argv):
    """The flags that argv gives (their dest names), whatever their values; parser is changed,
    so give a fresh one."""
    for action in parser._actions:
        action.default = argparse.SUPPRESS  # a flag that is not given leaves no name behind
    return set(vars(parser.parse_args(argv)))


def snapshot_steps(total_steps):
    """The steps after which the weights are kept: 0 (the initial weights), 1, 2, 5, 10, 20, 50,
    ... (the network changes fastest in its first steps), and the last step."""
    steps, scale = [0], 1
    while scale < total_steps:
        steps += [factor * scale for factor in (1, 2, 5) if factor * scale < total_steps]
        scale *= 10
    return steps + [total_steps]


def on_cpu(value):
    """A copy of value (tensors, in dicts and lists) on the CPU, that later steps cannot change."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {key: on_cpu(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(on_cpu(item) for item in value)
    return value


def pictures_record(count, extra_images, extra_labels):
    """What a run trains on, to tell a changed training set when it resumes: the number of
    training images and the --extra-images-dir pictures' count and digest (None without any)."""
    if extra_labels is None:
        return {"train_images": count, "extra_pictures": None}
    # The digest of the prepared pictures' 8-bit levels and labels, as training sees them.
    levels = (to_pixels(extra_images.cpu()) * 255).round().to(torch.uint8)
    digest = hashlib.sha256(levels.numpy().tobytes() + extra_labels.cpu().numpy().tobytes())
    return {"train_images": count,
            "extra_pictures": {"count": len(extra_labels), "digest": digest.hexdigest()}}


def checkpoint_of(model, optimizer, scheduler, generator, args, run, record, device):
    """The run after its last completed epoch, as train.py saves it (without the test accuracy)."""
    return {"model": on_cpu(model.state_dict()), "optimizer": on_cpu(optimizer.state_dict()),
            "scheduler": scheduler and plain_state(scheduler), "epoch": run["epoch"],
            "args": vars(args), "snapshots": list(run["snapshots"]),
            "history": {key: list(values) for key, values in run["history"].items()},
            "rng": random_state(generator, device), "data": record, "test_accuracy": None}


def plain_state(scheduler):
    """The scheduler's state without its functions (PyTorch 2.3 keeps one there), which
    weights_only cannot load; the scheduler made anew for --resume has its own."""
    return {key: value for key, value in scheduler.state_dict().items() if not callable(value)}


def random_state(generator, device):
    """Every random number generator the run draws from, so a resumed run draws the same."""
    return {"shuffle": generator.get_state(), "cpu": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def restore(checkpoint, path, model, optimizer, scheduler, generator):
    """Put the run saved in checkpoint (read from path) back in place; return its epoch, history
    and snapshots. UserError if its states do not fit the ones made for the run."""
    problem = run_state_problem(checkpoint, optimizer, scheduler)
    if problem:
        raise UserError(f"{path}: {problem}; {NOT_TRAIN_PY}")
    model.load_state_dict(checkpoint["model"])
    # After the scheduler was made: its first step set a learning rate that this one replaces.
    optimizer.load_state_dict(checkpoint["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(checkpoint["scheduler"])
    generator.set_state(checkpoint["rng"]["shuffle"])
    torch.set_rng_state(checkpoint["rng"]["cpu"])
    if checkpoint["rng"]["cuda"] is not None and next(model.parameters()).is_cuda:
        torch.cuda.set_rng_state(checkpoint["rng"]["cuda"], next(model.parameters()).device)
    return {"epoch": checkpoint["epoch"], "history": checkpoint["history"],
            "snapshots": checkpoint.get("snapshots", [])}


def run_state_problem(checkpoint, optimizer, scheduler):
    """Why the saved optimizer, schedule or random states do not fit the ones made for this run
    (None when they do): loaded, a misfit would fail steps later, or never."""
    saved = checkpoint["optimizer"]
    if not fits(saved["param_groups"], optimizer.state_dict()["param_groups"]):
        return f"optimizer's settings {shown(saved['param_groups'])} are not Adam's for this network"
    problem = adam_state_problem(saved, optimizer)
    if problem:
        return problem
    if scheduler is not None and not fits(checkpoint["scheduler"], plain_state(scheduler)):
        return f"scheduler {shown(checkpoint['scheduler'])} is not a one-cycle schedule's state"
    for key in ("shuffle", "cpu"):
        try:
            torch.Generator().set_state(checkpoint["rng"][key])
        except RuntimeError:
            return f"rng {key} is not a state of random numbers"
    return None


def adam_state_problem(saved, optimizer):
    """Why Adam's saved state does not fit this network's weights (None when it does)."""
    shapes = {index: weight.shape for group, saved_group in zip(optimizer.param_groups,
                                                                saved["param_groups"])
              for index, weight in zip(saved_group["params"], group["params"])}
    for index, state in saved["state"].items():
        if not isinstance(state, dict) or state and not ADAM_STATE <= state.keys():
            return f"optimizer state {shown(index)} is {shown(state)}, not Adam's"
        for name, value in state.items():
            # The step count is one number; the rest are the shape of their weight (unknown
            # for an index that names no weight, which Adam then never reads).
            shape = torch.Size() if name == "step" else shapes.get(index)
            if not (isinstance(value, torch.Tensor) and shape in (None, value.shape)
                    or name == "step" and is_number(value)):
                return (f"optimizer state {shown(index)} {shown(name)} is {shown(value)}, not a "
                        f"tensor of shape {tuple(shape or ())}")
    return None


def fits(saved, fresh):
    """Whether saved has the form of fresh, made anew for the run: the same keys (switches,
    which newer PyTorch adds with their defaults, may be missing), values of the same kind,
    lists of the same length."""
    if isinstance(fresh, dict):
        return isinstance(saved, dict) and all(
            fits(saved[key], value) if key in saved else value is None or isinstance(value, bool)
            for key, value in fresh.items())
    if isinstance(fresh, (list, tuple)):
        return (isinstance(saved, (list, tuple)) and len(saved) == len(fresh)
                and all(map(fits, saved, fresh)))
    if fresh is None or isinstance(fresh, bool):
        return saved is None or isinstance(saved, bool)
    if isinstance(fresh, (int, float)):
        return is_number(saved) and (isinstance(fresh, float) or isinstance(saved, int))
    return type(saved) is type(fresh)


def continue_run(args, checkpoint, given, parser):
    """Fill args from the run in checkpoint (read from args.resume); UserError if the flags given
    would change it, or if it cannot go on to --epochs. parser: train.py's, for each flag's
    default and the values it can take."""
    path, run_args = args.resume, checkpoint.get("args")
    check_resumable(path, checkpoint, parser)
    for name in RUN_FLAGS:
        # A flag the run does not record is newer than the run, which trained without it: as
        # the flag's default does, since each new flag's default keeps what train.py did before.
        value = run_args.get(name, parser.get_default(name))
        if name in given and getattr(args, name) != value:
            raise UserError(f"{flag_of(name)} would change the run in {path} (it has {value}); "
                            "leave it out to continue that run")
        setattr(args, name, value)
    planned, done = run_args["epochs"], checkpoint["epoch"]
    if "epochs" not in given:
        args.epochs = planned  # an interrupted run goes on to the end it was planned for
    if args.epochs <= done:
        raise UserError(f"{path} has trained {done} epochs; give --epochs more than {done} to "
                        "train on")
    if args.epochs != planned and args.schedule == "onecycle":
        raise UserError(f"{path} is a one-cycle run planned for {planned} epochs, and its "
                        "learning rate falls to almost 0 by then: it cannot be stretched to "
                        f"{args.epochs}; train a new run with --epochs {args.epochs}")
    for name in ("no_dropout_epochs", "no_augment_epochs"):
        if args.epochs != planned and getattr(args, name):
            raise UserError(f"{path} ran its last {getattr(args, name)} epochs with "
                            f"{flag_of(name)}: it cannot be stretched to {args.epochs} epochs; "
                            "train a new run")
    if args.out is None:
        args.out = path


def check_resumable(path, checkpoint, parser):
    """UserError unless checkpoint holds a whole run of this network whose recorded flags each
    hold a value the flag can take: they stand in for the flags of the run that continues."""
    run_args = checkpoint.get("args")
    if not isinstance(run_args, dict) or not {"optimizer", "rng", "epoch"} <= checkpoint.keys():
        raise UserError(f"{path}: holds weights only, not a run train.py can resume")
    missing = [key for key in ("history", "scheduler") if key not in checkpoint]
    if missing:
        raise UserError(f"{path}: has no {missing[0]}, which --resume needs; {NOT_TRAIN_PY}")
    build_model(checkpoint["model"], path, "cpu")  # another network's weights: one line, here
    actions = {action.dest: action for action in parser._actions}
    for name in (*RUN_FLAGS, "epochs"):
        value = run_args.get(name, None if name == "epochs" else parser.get_default(name))
        if not could_be_given(actions[name], value):
            raise UserError(f"{path}: its args hold {flag_of(name)} {shown(value)}, which that "
                            f"flag cannot take; {NOT_TRAIN_PY}")


def could_be_given(action, value):
    """Whether the flag of this argparse action can leave value in the parsed arguments."""
    if isinstance(action.default, bool):  # a switch: --no-snapshots
        return isinstance(value, bool)
    if isinstance(action.default, list):  # given again and again: --extra-images-dir
        return isinstance(value, list) and all(could_be_given_once(action, item) for item in value)
    return value is None and action.default is None or could_be_given_once(action, value)


def could_be_given_once(action, value):
    """Whether value is what the flag makes of its own text: 64 for --batch-size, not "64",
    True or 0."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return False
    try:
        parsed = (action.type or str)(str(value))
    except (ValueError, argparse.ArgumentTypeError):
        return False
    return parsed == value and (action.choices is None or value in action.choices)


def check_same_pictures(args, checkpoint, record):
    """UserError if the run in checkpoint trained on other pictures than record describes: a
    changed --extra-images-dir folder or MNIST folder would make it another run."""
    path, saved = args.resume, checkpoint.get("data")
    new_run = "train a new run, or fine-tune this one with --init-from " + path
    if saved is None:  # written before train.py recorded what it trained on
        if args.extra_images_dir:
            raise UserError(f"{path} does not record which --extra-images-dir pictures it trained "
                            f"on, so it cannot be checked that they are the same; {new_run}")
        return
    before, now = saved["extra_pictures"], record["extra_pictures"]
    if before != now:
        folders = ", ".join(args.extra_images_dir)
        raise UserError(f"--extra-images-dir {folders} now holds {now['count']} pictures"
                        + (" (other ones)" if now["count"] == before["count"] else "")
                        + f"; the run in {path} trained on {before['count']}: {new_run}")
    if saved["train_images"] != record["train_images"]:
        raise UserError(f"--data-dir {args.data_dir} now gives {record['train_images']:,} training "
                        f"images; the run in {path} trained on {saved['train_images']:,}: {new_run}")


def save_interrupted(args, run):
    """After Ctrl-C: keep the last completed epoch, if any, and say how to continue; exit 130.

    A complete checkpoint already at --out (not the run being resumed) is not replaced by a
    partial run: the partial one goes beside it, as NAME.partial.pt.
    """
    if run is None:
        raise KeyboardInterrupt  # not one epoch done: run_main says so; the old file stays
    path = args.out
    resuming_it = args.resume and os.path.exists(path) and os.path.samefile(path, args.resume)
    if os.path.exists(path) and not resuming_it:
        path = os.path.splitext(args.out)[0] + ".partial.pt"
    save_atomically(path, lambda file: torch.save(run, file))
    out = "" if path == args.out else f" --out {args.out}"
    print(f"Interrupted (Ctrl-C) in epoch {run['epoch'] + 1}; epochs 1 to {run['epoch']} are "
          f"saved in {path}; continue with: python train.py --resume {path} "
          f"--epochs {args.epochs}{out}", file=sys.stderr)
    sys.exit(130)
