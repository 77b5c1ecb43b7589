"""MNIST as preprocessed tensors, plus the small helpers every script shares.

Usage: from data import load_mnist, train_batches
"""
import argparse
import contextlib
import io
import math
import os
import struct
import sys

import torch
import torchvision
import torchvision.transforms as transforms
from PIL import Image

RAW_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

# The tutorial's preprocessing (it defines the same one twice, for training and testing).
transform = transforms.Compose([
    transforms.ToTensor(),                 # uint8 0..255 -> float 0..1
    transforms.Normalize((0.5,), (0.5,)),  # (x - 0.5) / 0.5 -> -1..1
])


class UserError(Exception):
    """A mistake the user can fix; the scripts print it as one line, without a traceback."""


def load_mnist(data_dir, train, device="cpu"):
    """Return one split as images (N, 1, 28, 28) float32 and labels (N,) int64, on device.

    The whole split is preprocessed once, so training only indexes tensors: no per-image PIL
    conversion and no worker processes.
    """
    dataset = open_mnist(data_dir, train)
    # ToTensor reads an (H, W, C) array as C channels of H x W pixels. Putting the N images in the
    # channel slot converts them all in one call, to exactly the numbers of image-by-image use.
    images = transform(dataset.data.permute(1, 2, 0).numpy())  # (N, 28, 28)
    return images.unsqueeze(1).to(device), dataset.targets.to(device)


def open_mnist(data_dir, train):
    """Return torchvision's MNIST dataset for one split, downloading the files if any is missing."""
    raw_dir = os.path.join(data_dir, "MNIST", "raw")
    if not all(os.path.isfile(os.path.join(raw_dir, name)) for name in RAW_FILES):
        download_mnist(data_dir, raw_dir)
    prefix = "train" if train else "t10k"
    images = check_idx_file(os.path.join(raw_dir, f"{prefix}-images-idx3-ubyte"), ndim=3)
    labels = check_idx_file(os.path.join(raw_dir, f"{prefix}-labels-idx1-ubyte"), ndim=1)
    if images != labels:
        raise UserError(f"{raw_dir}: {images} {prefix} images but {labels} labels; "
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
        raise UserError(f"could not download MNIST ({reason}); without a network, put the four "
                        f"uncompressed raw files here: {paths}") from None


def check_idx_file(path, ndim):
    """Return the number of items in an MNIST IDX file; raise UserError naming what is wrong.

    torchvision's parser fails on a damaged file with a bare assertion or shape error, so the
    header and the length are checked here first.
    """
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as file:
            header = file.read(4 + 4 * ndim)
    except OSError as error:  # a folder in its place, no permission to read, ...
        raise UserError(f"{path}: cannot be read ({error.strerror})") from None
    # Magic number: two zero bytes, type 0x08 (unsigned byte), number of dimensions.
    if len(header) < 4 + 4 * ndim or header[:4] != bytes([0, 0, 8, ndim]):
        raise UserError(f"{path}: not an MNIST IDX file of {ndim} dimension(s); "
                        "delete it and download again")
    dims = struct.unpack(f">{ndim}I", header[4:])  # big-endian sizes: (N,) or (N, 28, 28)
    expected = len(header) + math.prod(dims)
    if size != expected:
        raise UserError(f"{path}: truncated or corrupt ({size} bytes, its header promises "
                        f"{expected}); delete it and download again")
    if dims[1:] not in ((), (28, 28)):
        raise UserError(f"{path}: images are {dims[1]}x{dims[2]}, MNIST's are 28x28")
    return dims[0]


def prepare_digit(picture):
    """Return a PIL picture of one handwritten digit as a (1, 28, 28) tensor, prepared as MNIST was.

    MNIST's digits are bright ink on black, cropped to the ink, scaled to fit 20x20 keeping their
    aspect ratio, and centred by their centre of mass in a 28x28 field; any size and colours work.
    """
    if "A" in picture.getbands() or "transparency" in picture.info:  # transparent: lay on white
        white = Image.new("RGBA", picture.size, "white")
        picture = Image.alpha_composite(white, picture.convert("RGBA"))
    gray = transforms.functional.pil_to_tensor(picture.convert("L"))[0].float() / 255  # (H, W)
    background = gray.median()
    if background > 0.5:  # mostly light: dark ink on a light page, so turn it into light on dark
        gray, background = 1 - gray, 1 - background
    ink = (gray - background).clamp(min=0)  # paper is rarely pure white: its level becomes 0
    if ink.max() < 0.1:
        raise UserError("no digit found: the picture has (almost) one colour")
    ink = ink / ink.max()
    rows = (ink > 0.2).any(dim=1).nonzero()
    columns = (ink > 0.2).any(dim=0).nonzero()
    ink = ink[rows.min():rows.max() + 1, columns.min():columns.max() + 1]  # cropped to the ink
    scale = 20 / max(ink.shape)
    height, width = max(1, round(ink.shape[0] * scale)), max(1, round(ink.shape[1] * scale))
    ink = torch.nn.functional.interpolate(ink[None, None], size=(height, width), mode="bilinear",
                                          antialias=True)[0, 0]  # (height, width), both <= 20
    # MNIST's digits have their centre of mass at row 14, column 14 (measured: 13.99, 14.01).
    mass_row = (ink.sum(dim=1) * torch.arange(height)).sum() / ink.sum()
    mass_column = (ink.sum(dim=0) * torch.arange(width)).sum() / ink.sum()
    top = min(max(round(14 - mass_row.item()), 0), 28 - height)
    left = min(max(round(14 - mass_column.item()), 0), 28 - width)
    field = torch.zeros(28, 28)
    field[top:top + height, left:left + width] = ink
    # Back to 8-bit pixels as MNIST stores them, then the tutorial's transform.
    return transform((field * 255).round().to(torch.uint8).numpy())  # (1, 28, 28)


def train_batches(images, labels, batch_size, generator):
    """Yield (images, labels) batches in a fresh random order, as the tutorial's shuffling loader.

    The last incomplete batch is dropped, as the tutorial skips it.
    """
    # The order is drawn on the CPU, so one seed gives the same batches on every device.
    order = torch.randperm(len(labels), generator=generator).to(labels.device)
    for start in range(0, len(labels) - batch_size + 1, batch_size):
        index = order[start:start + batch_size]
        yield images[index], labels[index]


def augment(images, generator, degrees=5.0, scale=0.05, shift=1.0):
    """Return images (N, 1, 28, 28) each turned, resized and moved a little at random.

    Handwriting varies in slant, size and position; small random changes of each kind teach the
    network to ignore them. Drawn from the CPU generator, so a seed gives the same on every device.
    """
    count = len(images)

    def uniform(size, limit):  # values in [-limit, limit)
        return (torch.rand(size, generator=generator) * 2 - 1) * limit

    angle = uniform(count, math.radians(degrees))
    zoom = 1 + uniform(count, scale)
    offset = uniform((count, 2), shift / 14)  # affine_grid measures 14 pixels as 1
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos, -sin, offset[:, 0]], dim=1),
                         torch.stack([sin, cos, offset[:, 1]], dim=1)], dim=1)  # (N, 2, 3)
    grid = torch.nn.functional.affine_grid(theta.to(images.device), images.shape,
                                           align_corners=False)  # (N, 28, 28, 2)
    # grid_sample fills the uncovered border with 0, and the background is -1 after Normalize.
    return torch.nn.functional.grid_sample(images + 1, grid, align_corners=False) - 1


def device_name(name):
    """argparse type for --device: 'auto' (the accelerator, if any) or a device this machine has."""
    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if torch.backends.mps.is_available() else "cpu"
    available = ["cpu"]
    if torch.cuda.is_available():
        available += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        available.append("mps")
    if name not in available:
        raise argparse.ArgumentTypeError(
            f"{name!r} is not available on this machine; choose auto, {', '.join(available)}")
    return name


def add_data_and_device_arguments(parser):
    """Add the --data-dir and --device flags that every script takes."""
    parser.add_argument("--data-dir", default="./files",
                        help="MNIST folder; downloaded into when empty (default: ./files)")
    parser.add_argument("--device", type=device_name, default="auto",
                        help="auto, cpu, cuda, cuda:N or mps; auto picks the accelerator when "
                             "there is one (default: auto)")


def checked(convert, is_valid, requirement):
    """Return an argparse type that converts the text and refuses values that fail is_valid."""
    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not is_valid(value):  # nan fails every comparison, so it is refused
            raise argparse.ArgumentTypeError(f"must be {requirement}, not {text!r}")
        return value
    return parse


positive_int = checked(int, lambda value: value >= 1, "a whole number of at least 1")


def output_path(path):
    """argparse type for a file to write: refuse at once if it could not be written later."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise argparse.ArgumentTypeError(f"folder {folder} does not exist; create it first")
    if os.path.isdir(path):
        raise argparse.ArgumentTypeError(f"{path} is a folder; give a file name")
    if not os.access(folder, os.W_OK):
        raise argparse.ArgumentTypeError(f"folder {folder} is not writable")
    return path


def save_atomically(path, write):
    """Call write(file) on a temporary file beside path, then rename it to path.

    The rename is atomic, so a crash or a kill at any moment leaves path either as it was or
    complete: never half-written.
    """
    temporary = os.path.join(os.path.dirname(os.path.abspath(path)),
                             f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())  # the bytes reach the disk before the name points at them
        os.replace(temporary, path)
    except OSError as error:  # disk full, folder removed meanwhile, ...
        raise UserError(f"{path}: could not be written ({error.strerror or error})") from None
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def run_main(main):
    """Run a script's main(): a UserError becomes one line on stderr and exit 1, Ctrl-C exit 130."""
    try:
        main()
    except UserError as error:
        sys.exit(f"error: {error}")
    except BrokenPipeError:  # output piped into a program that stopped reading, such as head
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        sys.exit(1)
    except KeyboardInterrupt:
        print("Interrupted (Ctrl-C); files are only written when complete, so none is "
              "half-written.", file=sys.stderr)
        sys.exit(130)
