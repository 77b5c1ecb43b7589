"""Resuming a training run (train.py --resume): the run's checkpoint read back so that it
continues bit for bit, and the refusals that keep it the same run.

Usage: python train.py --resume model.pt --epochs 6   (train.py imports this only for --resume)
"""
import argparse

import torch

from common import UserError
from extras.checkpoints import build_model, is_number, read_checkpoint, shown
from extras.flags import flag_of
from extras.recipe import plain_state

# What --resume takes from the run, and refuses to change: anything that makes it another run.
RUN_FLAGS = ("batch_size", "lr", "weight_decay", "schedule", "augment", "no_dropout_epochs",
             "no_augment_epochs", "seed", "snapshots", "extra_images_dir", "extra_repeats",
             "init_from")
# What Adam keeps for each weight it has stepped.
ADAM_STATE = {"step", "exp_avg", "exp_avg_sq"}
NOT_TRAIN_PY = "the checkpoint is damaged or was not written by train.py"


def resumed_run(build_parser, args, argv):
    """The checkpoint that --resume names, read and checked, with args filled in from its run:
    UserError if the flags given would change it. build_parser makes train.py's parser."""
    checkpoint = read_checkpoint(args.resume)
    continue_run(args, checkpoint, given_flags(build_parser(), argv), build_parser())
    return checkpoint


def given_flags(parser, argv):
    """The flags that argv gives (their dest names), whatever their values; parser is changed,
    so give a fresh one."""
    for action in parser._actions:
        action.default = argparse.SUPPRESS  # a flag that is not given leaves no name behind
    return set(vars(parser.parse_args(argv)))


def restore(checkpoint, args, record, model, optimizer, scheduler, generator):
    """Put the run saved in checkpoint (read from args.resume) back in place; return its epoch,
    history and snapshots. UserError if it trained on other pictures than record describes, or if
    its states do not fit the ones made for the run."""
    path = args.resume
    check_same_pictures(args, checkpoint, record)
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

