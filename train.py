"""Train the tutorial's CNN on MNIST, print its test accuracy and save a checkpoint.

Usage: python train.py [--device cuda] [--epochs 3] [--out model.pt]
"""
import argparse
import contextlib
import math
import signal
import sys
import threading
import time

import torch
import torch.nn as nn

from cli import (UserError, add_data_and_device_arguments, checked, device_line, evaluate,
                 load_model, non_negative_int, output_path, positive_int, read_checkpoint,
                 run_main, save_atomically, set_threads)
from data import background, load_mnist, train_batches
from extras.augment import AUGMENTATIONS, augmented
from extras.curves import save_curves
from extras.pictures import read_labelled_folder
from extras.runs import (check_same_pictures, checkpoint_of, continue_run, flag_of, given_flags,
                         on_cpu, pictures_record, restore, save_interrupted, snapshot_steps)
from model import Net

# Training counts as diverged when a step's loss is NaN, infinite or above this. Guessing
# uniformly costs ln(10) = 2.30; a loss 40 times that means the weights have blown up (a huge
# --lr such as 1e6 gives losses of 1e9 and more that may never become NaN).
DIVERGED_LOSS = 100.0
# By default the --extra-images-dir pictures are repeated until an epoch sees about this many of
# them beside MNIST's 60,000, each at most EXTRA_MOST times: a few hundred pictures then count,
# and a few dozen are not learned by heart (measured: docs/handwriting.md).
EXTRA_PER_EPOCH, EXTRA_MOST = 8000, 30

# argparse types that refuse bad values before any work starts.
learning_rate = checked(float, lambda value: 0 < value <= 1e6,  # larger rates overflow float32
                        "above 0 and at most 1e6")
weight_decay = checked(float, lambda value: 0 <= value <= 1, "from 0 to 1")
seed_value = checked(int, lambda value: 0 <= value < 2**63, "a whole number from 0 to 2**63 - 1")


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
    parser.add_argument("--augment", nargs="?", choices=["none", *AUGMENTATIONS], default="none",
                        const="light",
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
                             f"enough for about {EXTRA_PER_EPOCH:,} an epoch, at most {EXTRA_MOST} "
                             "each)")
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
    resumed = read_checkpoint(args.resume) if args.resume else None
    if resumed is not None:
        continue_run(args, resumed, given_flags(build_parser(), argv), parser)
    check_combinations(parser, args)  # after --resume has filled in the run's own values
    return args, resumed


@contextlib.contextmanager
def ctrl_c_held():
    """Hold Ctrl-C back while the body runs; the list it gives is not empty if one came."""
    held = []
    if threading.current_thread() is not threading.main_thread():  # signals reach it only
        yield held
        return

    def hold(signal_number, frame):
        held.append(signal_number)
        print("Ctrl-C: the finished run is being tested and saved first", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, hold)
    try:
        yield held
    finally:
        signal.signal(signal.SIGINT, previous)


def check_combinations(parser, args):
    """Refuse flags that contradict each other, or that need what is not installed."""
    for flag in ("no_dropout_epochs", "no_augment_epochs"):
        if getattr(args, flag) > args.epochs:
            parser.error(f"{flag_of(flag)} {getattr(args, flag)} is more than --epochs {args.epochs}")
    if args.out is None and not args.resume:
        args.out = "model.pt"
    if args.plot:
        try:
            import matplotlib  # noqa: F401  (optional: only --plot needs it)
        except ImportError:
            parser.error("--plot needs matplotlib, which is not installed: pip install matplotlib")


def make_optimizer(model, lr, weight_decay, schedule, epochs, steps_per_epoch):
    """Return Adam, as the tutorial trains (AdamW with a weight decay), and a per-step learning
    rate scheduler (None for a constant rate)."""
    if weight_decay:
        # AdamW shrinks every weight by the fraction lr * weight_decay each step, outside Adam's
        # per-weight scaling; Adam's own weight_decay joins the gradient and is rescaled with it.
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    if schedule == "constant":
        return optimizer, None
    # The one-cycle policy lowers the momentum (Adam's first beta) from 0.95 to 0.85 while the
    # rate rises, and raises it back as the rate falls: PyTorch's defaults, on purpose.
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, epochs=epochs, steps_per_epoch=steps_per_epoch)
    return optimizer, scheduler


def set_dropout(model, active):
    """Switch every dropout layer on or off, leaving the rest of the model in training mode."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.train(active)


class StepLog:
    """Each step's loss and accuracy, kept on the device; prints the tutorial's progress lines.

    Reading loss.item() at every step would make the CPU wait for the GPU each time, so the
    values are read, and checked for divergence, only at log lines and at the end of the epoch.
    """

    def __init__(self, steps, shown_steps, epoch, epochs, log_interval, device):
        self.losses = torch.zeros(steps, device=device)
        self.accuracies = torch.zeros(steps, device=device)
        self.shown_steps, self.epoch, self.epochs = shown_steps, epoch, epochs
        self.log_interval = log_interval
        self.checked = 0  # steps before this one have passed check_diverged

    def record(self, step, loss, output, labels):
        self.losses[step] = loss.detach()
        self.accuracies[step] = (output.argmax(dim=1) == labels).float().mean()
        if step % self.log_interval == 0:
            self.check(step + 1)
            print(f"Epoch: {self.epoch}/{self.epochs}, Step: {step + 1}/{self.shown_steps}, "
                  f"Loss: {self.losses[step].item():.4f}, "
                  f"Accuracy: {self.accuracies[step].item() * 100:.2f}%")

    def check(self, end):
        check_diverged(self.losses[self.checked:end], self.epoch, first_step=self.checked + 1)
        self.checked = end

    def finish(self):
        """Check the steps since the last log line; return the losses and accuracies (steps,)."""
        self.check(len(self.losses))
        return self.losses, self.accuracies


def check_diverged(losses, epoch, first_step):
    """Raise UserError if any of these step losses (steps first_step, ...) shows a blow-up."""
    bad = (~torch.isfinite(losses) | (losses > DIVERGED_LOSS)).nonzero()
    if len(bad):
        index = bad[0].item()
        raise UserError(f"training diverged (loss {losses[index].item():.4g} at epoch {epoch}, "
                        f"step {first_step + index}); try a smaller --lr; nothing was saved")


def train_epoch(model, optimizer, scheduler, batches, log, after_step=None):
    """Train one epoch on the (images, labels) batches, recording each step in log."""
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
        if after_step is not None:
            after_step(step)
    return log.finish()


def train(model, train_images, train_labels, args, resumed=None, record=None):
    """Train epoch by epoch, from the start or from the checkpoint resumed; after each epoch,
    yield the run so far as a checkpoint (without the test accuracy). record: what it trains on."""
    steps = len(train_labels) // args.batch_size  # the last incomplete batch is skipped
    if steps == 0:
        raise UserError(f"--batch-size {args.batch_size} is larger than the "
                        f"{len(train_labels)} training images")
    shown_steps = math.ceil(len(train_labels) / args.batch_size)  # the tutorial's len(train_loader)
    optimizer, scheduler = make_optimizer(model, args.lr, args.weight_decay, args.schedule,
                                          args.epochs, steps)
    generator = torch.Generator().manual_seed(args.seed)  # shuffling and augmentation
    run = {"epoch": 0, "history": {"loss": [], "accuracy": []}, "snapshots": []}
    if resumed is not None:
        run = restore(resumed, args.resume, model, optimizer, scheduler, generator)
    keep = set(snapshot_steps(args.epochs * steps)) if args.snapshots else set()
    # A run resumed to more epochs keeps the snapshots of the longer run only: the last step of
    # the shorter one is not among them.
    run["snapshots"] = [snapshot for snapshot in run["snapshots"] if snapshot["step"] in keep]
    if 0 in keep and not run["snapshots"]:
        run["snapshots"].append({"step": 0, "model": on_cpu(model.state_dict())})

    for epoch in range(run["epoch"] + 1, args.epochs + 1):
        model.train()
        set_dropout(model, active=epoch <= args.epochs - args.no_dropout_epochs)
        batches = train_batches(train_images, train_labels, args.batch_size, generator)
        if args.augment != "none" and epoch <= args.epochs - args.no_augment_epochs:
            batches = augmented(batches, steps * args.batch_size, generator,
                                AUGMENTATIONS[args.augment], train_labels.device, background())
        log = StepLog(steps, shown_steps, epoch, args.epochs, args.log_interval,
                      train_labels.device)

        def keep_snapshot(step, done=(epoch - 1) * steps):
            if done + step + 1 in keep:
                run["snapshots"].append({"step": done + step + 1,
                                         "model": on_cpu(model.state_dict())})

        losses, accuracies = train_epoch(model, optimizer, scheduler, batches, log, keep_snapshot)
        run["history"]["loss"] += losses.tolist()  # Python lists: the device has finished
        run["history"]["accuracy"] += accuracies.tolist()
        run["epoch"] = epoch
        yield checkpoint_of(model, optimizer, scheduler, generator, args, run, record,
                            train_labels.device)


def with_extra_pictures(train_images, train_labels, args):
    """MNIST's training images and labels with the --extra-images-dir pictures added, each
    --extra-repeats times (the pictures are read and prepared once, here), and the record of
    what the run trains on."""
    if not args.extra_images_dir:
        return train_images, train_labels, pictures_record(len(train_labels), None, None)
    folders = [read_labelled_folder(folder) for folder in args.extra_images_dir]  # (N, 1, 28, 28)
    pictures = torch.cat([images for images, _ in folders]).to(train_images.device)
    digits = torch.cat([labels for _, labels in folders]).to(train_labels.device)
    repeats = args.extra_repeats or min(EXTRA_MOST, max(1, round(EXTRA_PER_EPOCH / len(digits))))
    args.extra_repeats = repeats  # kept in the checkpoint, so --resume repeats them as often
    print(f"Extra pictures: {len(digits)} from {', '.join(args.extra_images_dir)}, each seen "
          f"{repeats} times per epoch")
    return (torch.cat([train_images, pictures.repeat(repeats, 1, 1, 1)]),
            torch.cat([train_labels, digits.repeat(repeats)]),
            pictures_record(len(train_labels) + repeats * len(digits), pictures, digits))


def main(argv=None):
    args, resumed = parse_args(argv)
    print(device_line(args.device, set_threads(args.threads)))
    torch.manual_seed(args.seed)  # initial weights and dropout masks
    train_images, train_labels = load_mnist(args.data_dir, train=True, device=args.device)
    test_images, test_labels = load_mnist(args.data_dir, train=False, device=args.device)
    train_images, train_labels, record = with_extra_pictures(train_images, train_labels, args)
    if resumed is not None:
        check_same_pictures(args, resumed, record)
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
        save_curves(args.plot, run["history"], test_accuracy, args.epochs)


if __name__ == "__main__":
    run_main(main)
