"""What the test modules share: a synthetic MNIST in the raw IDX format, the tutorial's own class
and transform as references, pictures of digits, and ways to run the scripts.

Usage: from fixtures import make_fake_mnist, run_script, temporary_folder, ...   (tests only)
"""
import base64
import contextlib
import io
import os
import signal
import struct
import subprocess
import sys
import tempfile
import unittest
import zlib

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision.transforms as transforms
from PIL import Image, ImageDraw

import cli
import data

HERE = os.path.dirname(os.path.abspath(__file__))
# Real MNIST, for the few tests that need it; they skip with this reason without it.
MNIST_ROOT = os.environ.get("MNIST_ROOT", "")
NO_REAL_MNIST = (not os.path.isfile(os.path.join(MNIST_ROOT, "MNIST", "raw", "t10k-images-idx3-ubyte")),
                 "set MNIST_ROOT to a folder holding MNIST/raw/ (real MNIST) to run this test")


class TutorialModel(nn.Module):
    """The tutorial's class, copied as written: the reference our model must match."""

    def __init__(self):
        super(TutorialModel, self).__init__()
        self.convolution1 = nn.Conv2d(in_channels=1, out_channels=6, kernel_size=5)
        self.convolution2 = nn.Conv2d(in_channels=6, out_channels=16, kernel_size=5)
        self.conv_dropout = nn.Dropout()
        self.fc1 = nn.Linear(in_features=16*4*4, out_features=30)
        self.fc2 = nn.Linear(in_features=30, out_features=10)
        self.pool = nn.MaxPool2d(2, 2)

    def forward(self, x):
        x = self.pool(F.relu(self.convolution1(x)))
        x = self.conv_dropout(x)
        x = self.pool(F.relu(self.convolution2(x)))
        x = x.view(-1, 16*4*4)
        x = self.fc1(x)
        y = self.fc2(x)
        return y


# The tutorial's transform, as written.
TUTORIAL_TRANSFORM = transforms.Compose([
    transforms.ToTensor(),
    transforms.Normalize((0.5,), (0.5,)),
])


def temporary_folder():
    """Return a new temporary folder, removed when the test module ends (call in setUpModule)."""
    folder = tempfile.TemporaryDirectory()
    unittest.addModuleCleanup(folder.cleanup)
    return folder.name


def write_idx(path, array):
    """Write a uint8 tensor in MNIST's raw IDX format: magic, big-endian sizes, bytes."""
    with open(path, "wb") as file:
        file.write(bytes([0, 0, 8, array.dim()]))
        file.write(struct.pack(f">{array.dim()}I", *array.shape))
        file.write(array.numpy().tobytes())


def make_fake_mnist(root, train_size=1000, test_size=200, seed=0):
    """Write a small MNIST look-alike under root/MNIST/raw: digit d is a bright bar at row 2 + 2d.

    The bars make the task learnable in a few steps; noise makes every image different.
    """
    generator = torch.Generator().manual_seed(seed)
    raw_dir = os.path.join(root, "MNIST", "raw")
    os.makedirs(raw_dir, exist_ok=True)
    for prefix, size in (("train", train_size), ("t10k", test_size)):
        labels = torch.randint(0, 10, (size,), generator=generator)
        images = torch.randint(0, 60, (size, 28, 28), generator=generator)
        rows = 2 + 2 * labels
        images[torch.arange(size), rows, 4:24] = 255
        write_idx(os.path.join(raw_dir, f"{prefix}-images-idx3-ubyte"), images.to(torch.uint8))
        write_idx(os.path.join(raw_dir, f"{prefix}-labels-idx1-ubyte"), labels.to(torch.uint8))
    return root


def run_script(module, argv):
    """Run module.main(argv) as its script does, in this process: return (exit code, out, err)."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            cli.run_main(lambda: module.main(argv))
        except SystemExit as exit:
            code = exit.code
            if isinstance(code, str):  # sys.exit("message") prints it and exits 1
                err.write(code + "\n")
                code = 1
    return code, out.getvalue(), err.getvalue()


def run_subprocess(script, *argv, **kwargs):
    """Run one of our scripts as a user would; return the CompletedProcess."""
    return subprocess.run([sys.executable, os.path.join(HERE, script), *argv], cwd=HERE,
                          capture_output=True, text=True, timeout=120, **kwargs)


def start_script(script, *argv):
    """Start one of our scripts as a user does in a terminal, to send it Ctrl-C; return the Popen.

    A shell that runs the suite in the background starts it with Ctrl-C (SIGINT) ignored, and
    children inherit that, so the script would never see it: the child gets the default back.
    """
    return subprocess.Popen([sys.executable, os.path.join(HERE, script), *argv], cwd=HERE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def draw_digit(size, box, ink="black", paper="white", mode="RGB"):
    """A picture of a thick 'L': a bar down the left of box and one along its bottom."""
    picture = Image.new(mode, size, paper)
    draw = ImageDraw.Draw(picture)
    left, top, right, bottom = box
    thickness = (right - left) // 4
    draw.rectangle((left, top, left + thickness, bottom), fill=ink)
    draw.rectangle((left, bottom - thickness, right, bottom), fill=ink)
    return picture


def draw_shape(label, generator):
    """A picture (dark ink on white, 140 x 140) of a simple shape standing for digit label.

    A 1 is a near-vertical stroke and a 0 an ellipse, as people draw them; the other digits get
    other shapes, so that a network trained on these in a second tells 1 from 0 from the rest.
    """
    def jitter(limit):
        return (torch.rand(1, generator=generator).item() * 2 - 1) * limit

    picture = Image.new("L", (140, 140), 255)
    pen = ImageDraw.Draw(picture)
    width = int(8 + jitter(3))
    x, y = 70 + jitter(15), 70 + jitter(15)  # the centre
    high, wide = 45 + jitter(10), 28 + jitter(8)  # half the height and half the width
    slant = jitter(12)
    strokes = {
        1: [((x + slant, y - high), (x - slant, y + high))],
        2: [((x - wide, y), (x + wide, y))],
        3: [((x - wide, y - high), (x + wide, y + high))],
        4: [((x + wide, y - high), (x - wide, y + high))],
        5: [((x - wide, y - high), (x + wide, y - high)), ((x - wide, y - high), (x - wide, y + high))],
        6: [((x - wide, y + high), (x + wide, y + high)), ((x + wide, y - high), (x + wide, y + high))],
        7: [((x - wide, y - high), (x + wide, y - high)), ((x + wide, y - high), (x, y + high))],
        8: [((x - wide, y), (x + wide, y)), ((x, y - high), (x, y + high))],
        9: [((x - wide, y - high), (x + wide, y + high)), ((x + wide, y - high), (x - wide, y + high))],
    }
    if label == 0:
        pen.ellipse((x - wide, y - high, x + wide, y + high), outline=0, width=width)
    for start, end in strokes.get(label, []):
        pen.line((start, end), fill=0, width=width)
    return picture


def make_shapes_mnist(root, train_size=1500, test_size=200):
    """Write shape pictures, prepared as the page prepares drawings, as MNIST's raw IDX files."""
    generator = torch.Generator().manual_seed(0)
    raw_dir = os.path.join(root, "MNIST", "raw")
    os.makedirs(raw_dir, exist_ok=True)
    for prefix, size in (("train", train_size), ("t10k", test_size)):
        labels = torch.arange(size) % 10
        digits = torch.stack([data.prepare_digit(draw_shape(label, generator))
                              for label in labels.tolist()])  # (N, 1, 28, 28)
        pixels = (data.to_pixels(digits[:, 0]) * 255).round().to(torch.uint8)
        write_idx(os.path.join(raw_dir, f"{prefix}-images-idx3-ubyte"), pixels)
        write_idx(os.path.join(raw_dir, f"{prefix}-labels-idx1-ubyte"), labels.to(torch.uint8))
    return root


def stroke_pixels(label):
    """A 280 x 280 drawing of label's shape as rows of grey levels, as the page sends it."""
    picture = draw_shape(label, torch.Generator().manual_seed(label)).resize((280, 280))
    return [[picture.getpixel((x, y)) for x in range(280)] for y in range(280)]


def png_base64(picture):
    """The picture as a PNG file, base64-encoded, as the page uploads it."""
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def png_header_only(path, width, height, bit_depth=8, colour_type=0):
    """A PNG whose header claims width x height pixels (grey unless colour_type says otherwise: 6
    is RGBA), with a few bytes of pixel data."""
    def chunk(kind, content):
        return (struct.pack(">I", len(content)) + kind + content
                + struct.pack(">I", zlib.crc32(kind + content)))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    with open(path, "wb") as file:
        file.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                   + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b""))


# An EPS picture of a 7. Pillow would read it by running its PostScript in Ghostscript.
EPS_SEVEN = b"""%!PS-Adobe-3.0 EPSF-3.0
%%BoundingBox: 0 0 28 28
1 setgray 0 0 28 28 rectfill 0 setgray 3 setlinewidth
5 24 moveto 22 24 lineto 12 3 lineto stroke
showpage
"""


def fake_ghostscript(folder):
    """Make folder/gs, a program that leaves the file folder/gs_started when anything starts it;
    return (folder, that file's path). With folder first on PATH it is the gs that Pillow would
    start, even where a real Ghostscript is installed."""
    os.makedirs(folder, exist_ok=True)
    marker = os.path.join(folder, "gs_started")
    program = os.path.join(folder, "gs")
    with open(program, "w") as file:
        file.write(f"#!/bin/sh\ntouch '{marker}'\n")
    os.chmod(program, 0o755)
    return folder, marker
