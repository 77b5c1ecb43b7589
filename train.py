"""Train the tutorial's CNN on MNIST, print its test accuracy and save a checkpoint.

Usage: python train.py [--device cuda] [--epochs 3] [--out model.pt]   (flags beyond it: extras/)
"""
import argparse
import math
import sys
import time

import torch
import torch.nn as nn

from cli import (Snapshots, StepLog, UserError, add_data_and_device_arguments, check_extras,
                 checkpoint_of, ctrl_c_held, device_line, evaluate, extra, learning_rate,
                 load_model, non_negative_int, output_path, positive_int, run_main,
                 save_atomically, save_interrupted, seed_value, set_threads, weight_decay)
from data import background, load_mnist, train_batches
from model import Net


def build_parser():
    parser = argparse.ArgumentParser(description="Train the tutorial's CNN on MNIST.")
    parser.add_argument("--epochs", type=positive_int, default=3,
                        help="passes over the training set (default: 3)")
    parser.add_argument("--batch-size", type=positive_int, default=64,
                        help="images per training step (default: 64)")
    parser.add_argument("--lr", type=learning_rate, default=0.01,
                        help="learning rate; with --schedule onecycle, the peak (default: 0.01)")
    parser.add_argument("--weight-decay", type=weight_decay, default=0.0, metavar="W",
                        help="shrink every weight by lr * W each step (AdamW), which keeps the "
                             "weights small (default: 0, plain Adam as in the tutorial)")
    parser.add_argument("--schedule", choices=["constant", "onecycle"], default="constant",
                        help="learning rate over the run: constant as in the tutorial, or onecycle "
                             "(warm up to --lr, then anneal to almost 0, while adam's first beta "
                             "moves from 0.95 to 0.85 and back) (default: constant)")
    parser.add_argument("--augment", nargs="?", choices=["none", "light", "handwriting"],
                        default="none", const="light",
                        help="change each training image at random: light (turned up to 5 "
                             "degrees, resized up to 5%%, moved up to 1 pixel; the value when the "
                             "flag is given alone) or handwriting (also slant, width, stroke "
                             "thickness and blur) (default: none)")
    parser.add_argument("--no-dropout-epochs", type=non_negative_int, default=0, metavar="N",
                        help="train the last N epochs with dropout off, so the network fine-tunes "
                             "with all its units (default: 0)")
    parser.add_argument("--no-augment-epochs", type=non_negative_int, default=0, metavar="N",
                        help="train the last N epochs on the images as they are, without "
                             "--augment's changes (default: 0)")
    parser.add_argument("--extra-images-dir", action="append", metavar="DIR", default=[],
                        help="add your labelled pictures, DIR/0/*.png ... DIR/9/*.png, to MNIST's "
                             "training images, each prepared as test.py --image prepares it; may "
                             "be given several times (default: none)")
    parser.add_argument("--extra-repeats", type=positive_int, metavar="N",
                        help="how many times each extra picture is seen per epoch (default: "
                             "enough for about 8,000 an epoch, at most 30 each)")
    parser.add_argument("--init-from", metavar="CHECKPOINT",
                        help="start from the weights in CHECKPOINT (any checkpoint test.py reads) "
                             "instead of random ones: a short run then fine-tunes them "
                             "(default: none)")
    parser.add_argument("--seed", type=seed_value, default=0,
                        help="seed for initial weights, dropout, shuffling and augmentation "
                             "(default: 0)")
    add_data_and_device_arguments(parser)
    parser.add_argument("--out", type=output_path,
                        help="checkpoint file to write (default: model.pt, or the --resume file)")
    parser.add_argument("--resume", metavar="CHECKPOINT",
                        help="continue the run saved in CHECKPOINT (its weights, optimizer, "
                             "schedule, random numbers, history) up to --epochs; flags that would "
                             "change the run are refused (default: none)")
    parser.add_argument("--no-snapshots", dest="snapshots", action="store_false",
                        help="do not keep snapshots of the weights during training for the "
                             "drawing page's training slider (default: keep them)")
    parser.add_argument("--log-interval", type=positive_int, default=100,
                        help="steps between printed lines (default: 100)")
    parser.add_argument("--plot", type=output_path, metavar="PNG",
                        help="also save the loss and accuracy curves to this PNG; needs matplotlib "
                             "(default: none)")
    return parser


def parse_args(argv=None):
    """The run's settings, and the checkpoint it continues (None for a new run)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    resumed = (extra("runs", "--resume").resumed_run(build_parser, args, argv)
               if args.resume else None)
    check_extras(parser, args, augment="augment", extra_images_dir="pictures", plot="curves",
                 weight_decay="recipe", schedule="recipe", no_dropout_epochs="recipe",
                 no_augment_epochs="recipe")
    args.out = args.out or "model.pt"
    return args, resumed


def train_epoch(model, optimizer, scheduler, batches, log, after_step):
    """Train one epoch on the (images, labels) batches; log records each step, then after_step."""
    criterion = nn.CrossEntropyLoss()
    for step, (images, labels) in enumerate(batches):  # images (B, 1, 28, 28), labels (B,)
        output = model(images)                          # (B, 10) logits
        loss = criterion(output, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        log.record(step, loss, output, labels)          # prints every --log-interval steps
        after_step(step)
    return log.finish()


def train(model, train_images, train_labels, args, resumed=None, record=None):
    """Train epoch by epoch (or on from the run resumed); yield the run after each epoch."""
    steps = len(train_labels) // args.batch_size  # the last incomplete batch is skipped
    if steps == 0:
        raise UserError(f"--batch-size {args.batch_size} is larger than the "
                        f"{len(train_labels)} training images")
    shown_steps = math.ceil(len(train_labels) / args.batch_size)  # the tutorial's len(train_loader)
    optimizer, scheduler = torch.optim.Adam(model.parameters(), lr=args.lr), None  # the tutorial's
    if args.weight_decay or args.schedule != "constant":  # AdamW, one-cycle: the recipe's
        optimizer, scheduler = extra("recipe", "--schedule").make_optimizer(
            model, args.lr, args.weight_decay, args.schedule, args.epochs, steps)
    generator = torch.Generator().manual_seed(args.seed)  # shuffling and augmentation
    run = (extra("runs", "--resume").restore(resumed, args.resume, model, optimizer, scheduler,
                                              generator)
           if resumed else {"epoch": 0, "history": {"loss": [], "accuracy": []}, "snapshots": []})
    snapshots = Snapshots(model, run, args.epochs * steps if args.snapshots else None)
    for epoch in range(run["epoch"] + 1, args.epochs + 1):
        model.train()
        if args.no_dropout_epochs:
            extra("recipe", "--no-dropout-epochs").set_dropout(
                model, active=epoch <= args.epochs - args.no_dropout_epochs)
        batches = train_batches(train_images, train_labels, args.batch_size, generator)
        if args.augment != "none" and epoch <= args.epochs - args.no_augment_epochs:
            batches = extra("augment", "--augment").augmented(
                batches, steps * args.batch_size, generator, args.augment, background())
        log = StepLog(steps, shown_steps, epoch, args.epochs, args.log_interval,
                      train_labels.device)
        losses, accuracies = train_epoch(model, optimizer, scheduler, batches, log,
                                         snapshots.after_step((epoch - 1) * steps))
        run["history"]["loss"] += losses.tolist()  # Python lists: the device has finished
        run["history"]["accuracy"] += accuracies.tolist()
        run["epoch"] = epoch
        yield checkpoint_of(model, optimizer, scheduler, generator, args, run, record)


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
    if resumed is not None:
        extra("runs", "--resume").check_same_pictures(args, resumed, record)
    model = Net().to(args.device)
    if args.init_from and resumed is None:
        model.load_state_dict(load_model(args.init_from, args.device).state_dict())
    start_time = time.time()
    run = None
    try:
        for checkpoint in train(model, train_images, train_labels, args, resumed, record):
            run = checkpoint  # the last completed epoch, kept in case Ctrl-C stops the next one
    except KeyboardInterrupt:
        save_interrupted(args, run)
    print(f"Run Time: {time.time() - start_time:.2f} s")
    with ctrl_c_held() as held:  # the finished run is tested and saved whole, Ctrl-C or not
        test_accuracy = evaluate(model, test_images, test_labels)
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
