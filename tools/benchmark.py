"""Time one training epoch several ways (the tutorial's DataLoader over PIL images, ours, batches cut
in advance, ours with augmentation), then the whole scripts, and print ratios from this one run.

Usage: python -m tools.benchmark --data-dir files [--device cuda] [--batch-size 256]
"""
import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
import warnings

import torch
import torch.nn as nn
import torchvision

import train
from common import (add_data_and_device_arguments, device_line, non_negative_int, positive_int,
                    run_main, set_threads)
from data import background, load_mnist, train_batches, transform
from extras.augment import augmented
from model import Net
from tools import ROOT  # where train.py is



def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Benchmark the training data paths.")
    add_data_and_device_arguments(parser)
    parser.add_argument("--batch-size", type=positive_int, default=64,
                        help="images per step (default: 64)")
    parser.add_argument("--tutorial-workers", type=non_negative_int, default=8,
                        help="DataLoader workers for the tutorial's pipeline, 8 as written "
                             "(default: 8)")
    parser.add_argument("--repeats", type=positive_int, default=3,
                        help="times each of our epochs is timed; the fastest counts (default: 3)")
    parser.add_argument("--skip-scripts", action="store_true",
                        help="time only the epochs, not whole train.py and test.py runs "
                             "(default: off)")
    return parser.parse_args(argv)


def synchronize(device):
    """Wait until the device has finished its queued work, so the clock measures all of it."""
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
    elif device.startswith("mps"):
        torch.mps.synchronize()
    elif device != "cpu" and hasattr(torch, "accelerator"):
        torch.accelerator.synchronize()


def fresh_model(device):
    torch.manual_seed(0)
    model = Net().to(device).train()
    return model, torch.optim.Adam(model.parameters(), lr=0.01)


def tutorial_epoch(args):
    """The tutorial's pipeline as written: per-image PIL -> ToTensor -> Normalize in workers."""
    model, optimizer = fresh_model(args.device)
    criterion = nn.CrossEntropyLoss()
    trainset = torchvision.datasets.MNIST(root=args.data_dir, train=True, transform=transform)
    # PyTorch warns that 8 workers are too many for a small machine: that is the point measured.
    warnings.filterwarnings("ignore", message="This DataLoader will create")
    train_loader = torch.utils.data.DataLoader(trainset, batch_size=args.batch_size, shuffle=True,
                                               num_workers=args.tutorial_workers)
    start = time.perf_counter()
    loss, accuracy = [], []
    for batch_idx, (X_train_batch, Y_train_batch) in enumerate(train_loader):
        if Y_train_batch.shape[0] < args.batch_size:
            continue
        X_train_batch, Y_train_batch = X_train_batch.to(args.device), Y_train_batch.to(args.device)
        output = model(X_train_batch)
        curr_loss = criterion(output, Y_train_batch)
        loss.append(curr_loss.item())
        optimizer.zero_grad()
        curr_loss.backward()
        optimizer.step()
        _, predicted = torch.max(output.data, 1)
        correct = (predicted == Y_train_batch).sum().item()
        accuracy.append(correct / Y_train_batch.size(0))
        if batch_idx % 100 == 0:
            print(f"Step: {batch_idx + 1}/{len(train_loader)}, Loss: {curr_loss.item()}")
    synchronize(args.device)
    return time.perf_counter() - start, len(loss)


def our_epoch(args, train_images, train_labels, augmentation="none"):
    """train.py's epoch: preprocessed tensors on the device, indexed by a fresh permutation."""
    model, optimizer = fresh_model(args.device)
    steps = len(train_labels) // args.batch_size
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    batches = train_batches(train_images, train_labels, args.batch_size, generator)
    if augmentation != "none":
        batches = augmented(batches, steps * args.batch_size, generator, augmentation, background())
    log = {"epoch": 1, "epochs": 1, "interval": 100, "shown_steps": steps, "done": 0}
    losses, _ = train.train_epoch(model, optimizer, None, batches, log)
    losses.tolist()  # as train.py does; this also waits for the device to finish
    return time.perf_counter() - start, len(losses)


def precut_epoch(args, train_images, train_labels, steps=None):
    """The same steps on batches cut in advance, in order: no shuffling, no indexing, no progress
    lines. It does less than an epoch of train.py, so ours may be as fast but not much faster."""
    model, optimizer = fresh_model(args.device)
    criterion = nn.CrossEntropyLoss()
    count = len(train_labels) // args.batch_size if steps is None else steps
    batches = list(zip(train_images.split(args.batch_size)[:count],
                       train_labels.split(args.batch_size)[:count]))
    synchronize(args.device)
    start = time.perf_counter()
    for images, labels in batches:
        loss = criterion(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    synchronize(args.device)
    return time.perf_counter() - start, count


def time_command(*argv):
    """Wall time of one whole process, as a user would see it."""
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def time_scripts(args, precut_seconds):
    python = sys.executable
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "model.pt")
        common = ["--data-dir", args.data_dir, "--device", args.device, "--out", out]
        imports = time_command(python, "-c", "import torch, torchvision")
        one = time_command(python, os.path.join(ROOT, "train.py"), "--epochs", "1", *common)
        two = time_command(python, os.path.join(ROOT, "train.py"), "--epochs", "2", *common)
        evaluation = time_command(python, os.path.join(ROOT, "test.py"), out,
                                  "--data-dir", args.data_dir, "--device", args.device)
    rows = [("python -c 'import torch, torchvision'", imports, "1.00x"),
            ("python test.py model.pt", evaluation, f"{evaluation / imports:.2f}x the import"),
            ("python train.py --epochs 1", one, ""),
            ("python train.py --epochs 2", two, ""),
            ("marginal epoch (2 minus 1)", two - one,
             f"{(two - one) / precut_seconds:.2f}x epoch (c)")]
    print(f"\n{'whole process (wall)':<38}{'seconds':>9}  ratio")
    for name, seconds, ratio in rows:
        print(f"{name:<38}{seconds:>9.2f}  {ratio}".rstrip())


def main(argv=None):
    args = parse_args(argv)
    threads = set_threads(args.threads)  # as train.py chooses them
    print(f"{device_line(args.device, threads)}, batch size {args.batch_size}, "
          f"torch {torch.__version__}")
    train_images, train_labels = load_mnist(args.data_dir, train=True, device=args.device)
    precut_epoch(args, train_images, train_labels, steps=50)  # warm-up: kernels, caches, allocator
    epochs = {
        "(b) ours: tensors, indexed batches": lambda: our_epoch(args, train_images, train_labels),
        "(c) batches cut in advance": lambda: precut_epoch(args, train_images, train_labels),
        "(d) ours with --augment light":
            lambda: our_epoch(args, train_images, train_labels, "light"),
        "(e) ours with --augment handwriting":
            lambda: our_epoch(args, train_images, train_labels, "handwriting"),
    }
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):  # progress lines
        # Each of ours runs args.repeats times, taking turns, and the fastest counts: a shared
        # machine only ever adds time, so the minimum is the least disturbed figure.
        timings = {name: [] for name in epochs}
        for _ in range(args.repeats):
            for name, run in epochs.items():
                timings[name].append(run())
        results = [(name, *min(runs)) for name, runs in timings.items()]
        # Last and once: the epochs that follow the tutorial's 8 worker processes run up to 60%
        # slower for several seconds after they end (measured), which would flatter the tutorial.
        results.insert(0, ("(a) tutorial: DataLoader over PIL", *tutorial_epoch(args)))
    tutorial_seconds, ours_seconds, precut_seconds = (seconds for _, seconds, _ in results[:3])
    print(f"\n{'one epoch':<36}{'seconds':>9}{'images/s':>10}{'vs (c)':>10}{'vs tutorial':>13}"
          f"{'vs (b)':>9}")
    for name, seconds, steps in results:
        # The tutorial's own row has nothing to be faster than.
        faster = "" if seconds is tutorial_seconds else f"{tutorial_seconds / seconds:.2f}x faster"
        print(f"{name:<36}{seconds:>9.2f}{steps * args.batch_size / seconds:>10,.0f}"
              f"{seconds / precut_seconds:>9.2f}x{faster:>19}{seconds / ours_seconds:>8.2f}x")
    if not args.skip_scripts:
        time_scripts(args, precut_seconds)


if __name__ == "__main__":
    run_main(main)
