"""MNIST's training images (the first N, in the files' order) and its whole test set, packed for the
exported file, in which the page trains a network and measures it on all 10,000 test images.

Usage: python draw.py model.pt --export page.html --data-dir mnist [--train-images N]

What the file carries (page/offline/images.js's mnistImages() decodes it):

    EXPORT.mnist = {"alphabet": the 85 digits of the text below,
                    "train": {"count": N, "labels": "5041...", "runs": R, "element": "mnist-train"},
                    "test":  {"count": 10000, ..., "element": "mnist-test"}}

labels holds one character, the digit, per image. Each set's images are the text of its own
<script type="text/plain" id=element>, outside the JSON: base85 (every 4 bytes, big-endian, as 5
digits of alphabet, most significant first; a last group of n bytes as its first n + 1 digits, as
Ascii85 ends) of deflate-raw (DecompressionStream("deflate-raw") in the browser) of R run lengths,
then the non-zero grey levels in order. The runs go over all count x 784 pixels in order, images
and rows one after another: alternately the length of a run of zeros and of a run of ink (non-zero
pixels), each 0..255, a longer run split by a run of length 0 of the other kind: smaller than
deflate of the pixels themselves or a PNG, and base85 smaller than base64 (measured in docs/page.md,
MNIST's images in the file). Without the key (N = 0), the file is exactly as it was before the page
could carry them.
"""
import argparse
import os
import zlib

import numpy as np

from data import check_idx_file, open_mnist, raw_folder
from page.collect import folder_name

# Printable ASCII without the characters that mean something in HTML or JSON (" & ' < > \ `),
# the first 85 of them: no "</script" can ever occur in the text.
ALPHABET = "".join(c for c in map(chr, range(0x21, 0x7F)) if c not in "\"&'<>\\`")[:85]
DEFLATE_LEVEL = 9  # a little smaller than zlib's default, 6, for a little more time (docs/page.md)
ELEMENTS = {"train": "mnist-train", "test": "mnist-test"}


def train_images_to_carry(data_dir, requested):
    """How many training images the file carries for --train-images requested (None: all when
    data_dir has MNIST, else none); argparse.ArgumentTypeError for more than there are, or for
    some without MNIST."""
    raw_dir, present = raw_folder(data_dir)
    if not present:
        if requested:
            raise argparse.ArgumentTypeError(
                f"needs MNIST's four raw files in {folder_name(data_dir)}/MNIST/raw, which are "
                "not all there (python train.py with the same --data-dir downloads them)")
        return 0
    available = check_idx_file(os.path.join(raw_dir, "train-images-idx3-ubyte"), ndim=3)
    if requested is None:
        return available
    if requested > available:
        raise argparse.ArgumentTypeError(f"must be at most {available:,}, the training images in "
                                         f"{folder_name(data_dir)}, not {requested}")
    return requested


def mnist_sets(data_dir, train_count):
    """EXPORT.mnist for the first train_count training images and the whole test set, and
    {element id: its text}; None for train_count 0."""
    if not train_count:
        return None
    data, elements = {"alphabet": ALPHABET}, {}
    for name, train, count in (("train", True, train_count), ("test", False, None)):
        dataset = open_mnist(data_dir, train)  # its raw files checked first
        data[name], elements[ELEMENTS[name]] = packed_set(
            dataset.data[:count], dataset.targets[:count], ELEMENTS[name])
    return data, elements


def packed_set(images, labels, element):
    """One set's entry of EXPORT.mnist and its images as text: images (N, 28, 28) uint8, exactly
    the IDX file's bytes, and labels (N,)."""
    pixels = images.reshape(-1).numpy()
    runs = runs_of(pixels)
    packer = zlib.compressobj(DEFLATE_LEVEL, zlib.DEFLATED, -15)  # raw deflate: no zlib header
    packed = packer.compress(runs.tobytes() + pixels[pixels != 0].tobytes()) + packer.flush()
    entry = {"count": len(labels), "labels": "".join(map(str, labels.tolist())),
             "runs": len(runs), "element": element}
    return entry, base85(packed)


def runs_of(pixels):
    """The run lengths of pixels (uint8, flat): zeros, ink, zeros, ..., each at most 255."""
    ink = pixels != 0
    bounds = np.concatenate([[0], np.flatnonzero(ink[1:] != ink[:-1]) + 1, [len(pixels)]])
    lengths = np.diff(bounds)
    if ink[0]:
        lengths = np.concatenate([[0], lengths])  # the runs start with zeros, here none
    # A run of L > 255 becomes 255, 0, 255, 0, ..., the rest: pieces of 255 joined by empty runs.
    pieces = np.maximum(1, -(-lengths // 255))
    widths = 2 * pieces - 1
    starts = np.cumsum(widths) - widths
    runs = np.zeros(widths.sum(), dtype=np.uint8)
    runs[(np.arange(len(runs)) - np.repeat(starts, widths)) % 2 == 0] = 255
    runs[starts + widths - 1] = lengths - 255 * (pieces - 1)
    return runs


def base85(data):
    """data (bytes) as text of ALPHABET's digits, as the module's docstring says."""
    missing = -len(data) % 4
    words = np.frombuffer(data + bytes(missing), dtype=">u4").astype(np.int64)
    digits = np.empty((len(words), 5), dtype=np.uint8)
    for place in range(4, -1, -1):  # the least significant digit last
        digits[:, place] = words % 85
        words //= 85
    text = np.frombuffer(ALPHABET.encode("ascii"), dtype=np.uint8)[digits.reshape(-1)]
    return text[:len(text) - missing].tobytes().decode("ascii")
