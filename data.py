"""MNIST as preprocessed tensors (its raw files checked first) and shuffled training batches.

Usage: from data import load_mnist, train_batches
"""
import contextlib
import io
import math
import os
import struct

import torch
import torchvision
import torchvision.transforms as transforms

RAW_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

# The tutorial's normalisation, (x - 0.5) / 0.5, maps pixels 0..1 to -1..1. Everything else reads
# these two numbers, so MNIST's own statistics (0.1307, 0.3081) can be tried by changing them here.
MEAN, STD = 0.5, 0.5


class DataError(Exception):
    """A problem with the data or a picture that the user can fix, said in one line. This file
    imports nothing else of the project, so it can be copied alone into a course."""


# The tutorial's preprocessing (it defines the same one twice, for training and testing).
transform = transforms.Compose([
    transforms.ToTensor(),                   # uint8 0..255 -> float 0..1
    transforms.Normalize((MEAN,), (STD,)),   # (x - MEAN) / STD
])


def background():
    """The value of a black pixel (0) after normalisation: -1 with the tutorial's numbers."""
    return (0 - MEAN) / STD


def to_pixels(images):
    """Undo the normalisation: return images as brightness 0..1."""
    return images * STD + MEAN


def load_mnist(data_dir, train, device="cpu"):
    """Return one split as images (N, 1, 28, 28) float32 and labels (N,) int64, on device,
    preprocessed once: training only indexes tensors, with no per-image PIL conversion."""
    dataset = open_mnist(data_dir, train)
    # ToTensor reads an (H, W, C) array as C channels of H x W pixels. Putting the N images in the
    # channel slot converts them all in one call, to exactly the numbers of image-by-image use.
    images = transform(dataset.data.permute(1, 2, 0).numpy())  # (N, 28, 28)
    return images.unsqueeze(1).to(device), dataset.targets.to(device)


def raw_folder(data_dir):
    """Where MNIST's four raw files are, or go, in data_dir; and whether all four are there."""
    raw_dir = os.path.join(data_dir, "MNIST", "raw")
    return raw_dir, all(os.path.isfile(os.path.join(raw_dir, name)) for name in RAW_FILES)


def open_mnist(data_dir, train):
    """Return torchvision's MNIST dataset for one split, downloading the files if any is missing."""
    raw_dir, present = raw_folder(data_dir)
    if not present:
        download_mnist(data_dir, raw_dir)
    prefix = "train" if train else "t10k"
    images = check_idx_file(os.path.join(raw_dir, f"{prefix}-images-idx3-ubyte"), ndim=3)
    labels = check_idx_file(os.path.join(raw_dir, f"{prefix}-labels-idx1-ubyte"), ndim=1)
    if images != labels:
        raise DataError(f"{raw_dir}: {images} {prefix} images but {labels} labels; "
                        "replace both files")
    return torchvision.datasets.MNIST(data_dir, train=train, download=False)


def download_mnist(data_dir, raw_dir):
    print(f"Downloading MNIST into {raw_dir}")
    try:
        # torchvision prints every mirror it tries; one line of ours says it better.
        with contextlib.redirect_stdout(io.StringIO()):
            torchvision.datasets.MNIST(data_dir, train=True, download=True)
    except (RuntimeError, OSError) as error:
        reason = str(error).strip().splitlines()[-1]
        paths = ", ".join(os.path.join(raw_dir, name) for name in RAW_FILES)
        raise DataError(f"could not download MNIST ({reason}); without a network, put the four "
                        f"uncompressed raw files here: {paths}") from None


def check_idx_file(path, ndim):
    """Return the number of items in an MNIST IDX file, or DataError naming what is wrong: its
    header and length are checked first, as torchvision fails on damage with a bare assertion."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as file:
            header = file.read(4 + 4 * ndim)
    except OSError as error:  # a folder in its place, no permission to read, ...
        raise DataError(f"{path}: cannot be read ({error.strerror})") from None
    # Magic number: two zero bytes, type 0x08 (unsigned byte), number of dimensions.
    if len(header) < 4 + 4 * ndim or header[:4] != bytes([0, 0, 8, ndim]):
        raise DataError(f"{path}: not an MNIST IDX file of {ndim} dimension(s); "
                        "delete it and download again")
    dims = struct.unpack(f">{ndim}I", header[4:])  # big-endian sizes: (N,) or (N, 28, 28)
    expected = len(header) + math.prod(dims)
    if size != expected:
        raise DataError(f"{path}: truncated or corrupt ({size} bytes, its header promises "
                        f"{expected}); delete it and download again")
    if dims[1:] not in ((), (28, 28)):
        raise DataError(f"{path}: images are {dims[1]}x{dims[2]}, MNIST's are 28x28")
    return dims[0]


def train_batches(images, labels, batch_size, generator):
    """Return the (images, labels) batches of one epoch in a fresh random order, as the tutorial's
    shuffling loader gives them; the last incomplete batch is dropped, as the tutorial skips it."""
    steps = len(labels) // batch_size
    # The order is drawn now, on the CPU, so one seed gives the same batches on every device.
    order = torch.randperm(len(labels), generator=generator).to(labels.device)
    return ((images[index], labels[index])  # (B, 1, 28, 28), (B,)
            for index in order[:steps * batch_size].split(batch_size))
