"""Train the tutorial's CNN on MNIST, print its test accuracy and save a checkpoint.

Usage: python train.py [--device cuda] [--epochs 3] [--out model.pt]   (flags beyond it: extras/)
"""
import argparse
import math
import os
import sys
import time

import torch
import torch.nn as nn

from common import (UserError, accuracy, add_data_and_device_arguments, add_extra_arguments,
                    check_extras, ctrl_c_held, device_line, extra, learning_rate, load_model,
                    output_path, positive_int, predict, run_main, save_atomically, seed_value,
                    set_threads)
from data import background, load_mnist, train_batches
from model import Net

# The tutorial's run in the terms of the flags beyond it, which extras/flags.py adds.
TUTORIAL_VALUES = {"augment": "none", "schedule": "constant", "weight_decay": 0.0,
                   "no_dropout_epochs": 0, "no_augment_epochs": 0, "extra_images_dir": [],
                   "extra_repeats": None, "init_from": None, "resume": None, "plot": None,
                   "snapshots": True}
DIVERGED_LOSS = 100.0  # or NaN: the weights blew up (guessing uniformly costs ln(10) = 2.30)


def build_parser():
    parser = argparse.ArgumentParser(description="Train the tutorial's CNN on MNIST.")
    parser.add_argument("--epochs", type=positive_int, default=3,
                        help="passes over the training set (default: 3)")
    parser.add_argument("--batch-size", type=positive_int, default=64,
                        help="images per training step (default: 64)")
    parser.add_argument("--lr", type=learning_rate, default=0.01,
                        help="learning rate; with --schedule onecycle, the peak (default: 0.01)")
    parser.add_argument("--seed", type=seed_value, default=0,
                        help="seed of initial weights, dropout, shuffling, augmentation (default: 0)")
    add_data_and_device_arguments(parser)
    parser.add_argument("--out", type=output_path,
                        help="checkpoint file to write (default: model.pt, or the --resume file)")
    parser.add_argument("--log-interval", type=positive_int, default=100,
                        help="steps between printed lines (default: 100)")
    add_extra_arguments(parser, TUTORIAL_VALUES)
    return parser


def parse_args(argv=None):
    """The run's settings, and the checkpoint it continues (None for a new run)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    resumed = args.resume and extra("runs", "--resume").resumed_run(build_parser, args, argv)
    check_extras(parser, args, TUTORIAL_VALUES)
    args.out = args.out or "model.pt"
    return args, resumed


def train_epoch(model, optimizer, scheduler, batches, log, after_step=lambda step: None):
    """Train one epoch, printing the tutorial's progress line; return its losses and accuracies."""
    criterion = nn.CrossEntropyLoss()
    losses, accuracies = [], []  # on the device: loss.item() each step would wait for a GPU
    for step, (images, labels) in enumerate(batches):  # images (B, 1, 28, 28), labels (B,)
        output = model(images)                          # (B, 10) logits
        loss = criterion(output, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        losses.append(loss.detach())
        accuracies.append((output.argmax(dim=1) == labels).float().mean())
        if step % log["interval"] == 0:
            check_diverged(losses, log["epoch"])
            print(f"Epoch: {log['epoch']}/{log['epochs']}, Step: {step + 1}/{log['shown_steps']}, "
                  f"Loss: {loss.item():.4f}, Accuracy: {accuracies[-1].item() * 100:.2f}%")
        after_step(log["done"] + step + 1)
    check_diverged(losses, log["epoch"])
    return torch.stack(losses), torch.stack(accuracies)


def check_diverged(losses, epoch):
    """UserError naming the epoch's first step whose loss shows a blow-up."""
    losses = torch.stack(losses)
    bad = (~torch.isfinite(losses) | (losses > DIVERGED_LOSS)).nonzero()
    if len(bad):
        step = bad[0].item()
        raise UserError(f"training diverged (loss {losses[step].item():.4g} at epoch {epoch}, "
                        f"step {step + 1}); try a smaller --lr; nothing was saved")


def train(model, train_images, train_labels, args, resumed=None, record=None):
    """Train epoch by epoch (or on from the run resumed); yield the run after each epoch."""
    steps = len(train_labels) // args.batch_size  # the last incomplete batch is skipped
    if steps == 0:
        raise UserError(f"--batch-size {args.batch_size} is larger than the "
                        f"{len(train_labels)} training images")
    optimizer, scheduler = torch.optim.Adam(model.parameters(), lr=args.lr), None  # the tutorial's
    if args.weight_decay or args.schedule != "constant":  # AdamW, one-cycle: the recipe's
        optimizer, scheduler = extra("recipe", "--schedule").make_optimizer(
            model, args.lr, args.weight_decay, args.schedule, args.epochs, steps)
    generator = torch.Generator().manual_seed(args.seed)  # shuffling and augmentation
    run = (extra("runs", "--resume").restore(resumed, args, record, model, optimizer, scheduler,
                                              generator)
           if resumed else {"epoch": 0, "history": {"loss": [], "accuracy": []}, "snapshots": []})
    keep = snapshots_kept(model, run, args.epochs * steps if args.snapshots else 0)
    for epoch in range(run["epoch"] + 1, args.epochs + 1):
        model.train()
        if args.no_dropout_epochs:
            extra("recipe", "--no-dropout-epochs").set_dropout(
                model, active=epoch <= args.epochs - args.no_dropout_epochs)
        batches = train_batches(train_images, train_labels, args.batch_size, generator)
        if args.augment != "none" and epoch <= args.epochs - args.no_augment_epochs:
            batches = extra("augment", "--augment").augmented(
                batches, steps * args.batch_size, generator, args.augment, background())
        log = {"epoch": epoch, "epochs": args.epochs, "interval": args.log_interval,
               "shown_steps": math.ceil(len(train_labels) / args.batch_size),  # len(train_loader)
               "done": (epoch - 1) * steps}  # steps of the run before this epoch
        losses, accuracies = train_epoch(model, optimizer, scheduler, batches, log, keep)
        run["history"]["loss"] += losses.tolist()  # Python lists: the device has finished
        run["history"]["accuracy"] += accuracies.tolist()
        run["epoch"] = epoch
        yield checkpoint_of(model, optimizer, scheduler, generator, args, run, record)


def snapshot_steps(total_steps):
    """The steps after which the weights are kept for the page's training slider: 0 (untrained),
    1, 2, 5, 10, 20, 50, ... (the network changes fastest first), and the last step."""
    steps, scale = [0], 1
    while scale < total_steps:
        steps += [factor * scale for factor in (1, 2, 5) if factor * scale < total_steps]
        scale *= 10
    return steps + [total_steps]


def snapshots_kept(model, run, total_steps):
    """What keeps the weights in run["snapshots"] after the snapshot steps (0 steps: none)."""
    kept = set(snapshot_steps(total_steps)) if total_steps else set()
    # A run resumed to more epochs keeps the longer run's snapshots only.
    run["snapshots"] = [snapshot for snapshot in run["snapshots"] if snapshot["step"] in kept]

    def keep(step):
        if step in kept:
            run["snapshots"].append({"step": step, "model": on_cpu(model.state_dict())})
    if not run["snapshots"]:
        keep(0)
    return keep


def on_cpu(value):
    """A copy of value (tensors, in dicts and lists) on the CPU, that later steps cannot change."""
    if isinstance(value, dict):
        return {key: on_cpu(item) for key, item in value.items()}
    if isinstance(value, list):
        return [on_cpu(item) for item in value]
    return value.detach().to("cpu", copy=True) if isinstance(value, torch.Tensor) else value


def checkpoint_of(model, optimizer, scheduler, generator, args, run, record):
    """The run after its last whole epoch, all it takes to test, show and resume it (its test
    accuracy comes last); record: what it trained on."""
    device = next(model.parameters()).device
    return {"model": on_cpu(model.state_dict()), "optimizer": on_cpu(optimizer.state_dict()),
            "scheduler": scheduler and extra("recipe", "--schedule").plain_state(scheduler),
            "epoch": run["epoch"], "args": vars(args), "snapshots": list(run["snapshots"]),
            "history": {key: list(values) for key, values in run["history"].items()},
            "rng": {"shuffle": generator.get_state(), "cpu": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None},
            "data": record, "test_accuracy": None}


def save_interrupted(args, run):
    """After Ctrl-C: save the last whole epoch (beside a finished --out, not over it); exit 130."""
    if run is None:
        raise KeyboardInterrupt  # not one epoch done: run_main says so; the old file stays
    path = args.out
    if os.path.exists(path) and not (args.resume and os.path.samefile(path, args.resume)):
        path = os.path.splitext(args.out)[0] + ".partial.pt"
    save_atomically(path, lambda file: torch.save(run, file))
    saved = "epoch 1 is" if run["epoch"] == 1 else f"epochs 1 to {run['epoch']} are"
    out = "" if path == args.out else f" --out {args.out}"
    print(f"Interrupted (Ctrl-C) in epoch {run['epoch'] + 1}; {saved} saved in {path}; continue "
          f"with: python train.py --resume {path} --epochs {args.epochs}{out}", file=sys.stderr)
    sys.exit(130)


def main(argv=None):
    args, resumed = parse_args(argv)
    print(device_line(args.device, set_threads(args.threads)))
    torch.manual_seed(args.seed)  # initial weights and dropout masks
    train_images, train_labels = load_mnist(args.data_dir, train=True, device=args.device)
    test_images, test_labels = load_mnist(args.data_dir, train=False, device=args.device)
    record = {"train_images": len(train_labels), "extra_pictures": None}  # what it trains on
    if args.extra_images_dir:
        train_images, train_labels, record = extra("pictures", "--extra-images-dir") \
            .with_extra_pictures(train_images, train_labels, args)
    model = Net().to(args.device)
    if args.init_from and not resumed:
        model.load_state_dict(load_model(args.init_from, args.device).state_dict())
    start_time, run = time.time(), None
    try:
        for checkpoint in train(model, train_images, train_labels, args, resumed, record):
            run = checkpoint  # the last whole epoch, kept in case Ctrl-C stops the next one
    except KeyboardInterrupt:
        save_interrupted(args, run)
    print(f"Run Time: {time.time() - start_time:.2f} s")
    with ctrl_c_held() as held:  # the finished run is tested and saved whole, Ctrl-C or not
        test_accuracy = accuracy(predict(model, test_images), test_labels)
        print(f"Test Accuracy: {test_accuracy * 100:.2f}%")
        run["test_accuracy"] = test_accuracy  # fraction correct on the 10,000 test images
        save_atomically(args.out, lambda file: torch.save(run, file))
        print(f"Saved {args.out}")
    if held:
        sys.exit(130)  # the Ctrl-C held back
    if args.plot:
        extra("curves", "--plot").save_curves(args.plot, run["history"], test_accuracy, args.epochs)


if __name__ == "__main__":
    run_main(main)
