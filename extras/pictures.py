"""Pictures of your own digits, prepared as MNIST's were and read within limits (formats, pixels).

Usage: python test.py model.pt --image 7.png  (--images-dir DIR; train.py --extra-images-dir DIR)
"""
import hashlib
import math
import os
import stat
import struct
import sys
import warnings

import numpy as np
import torch
import torchvision.transforms as transforms
from PIL import Image, ImageOps, UnidentifiedImageError

from data import DataError, to_pixels, transform

DIGITS = [str(digit) for digit in range(10)]  # the names of a labelled folder's subfolders
# A picture of more pixels than this is refused before it is decoded: a 9000 x 9000 PNG of a white
# page is 133 KB but takes 1.7 GB of memory to prepare. A JPEG is decoded at 1/2, 1/4 or 1/8 of
# its size instead, so a phone's photo still works. 4096 x 4096 is far more than a digit needs.
MAX_PIXELS = 4096 * 4096
# The formats a picture of a digit comes in: photos (JPEG, and phones' MPO, which Pillow opens as
# JPEG), screenshots and drawings (PNG), pictures saved from the web (WebP, GIF), Paint's BMP and
# scanners' TIFF. No other is opened: Pillow reads EPS by running its PostScript in Ghostscript,
# another program, and the rarer formats' readers are code no digit needs.
PICTURE_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP")
# What a refusal says, in words the exported page says too (page/export.py sends these
# str.format templates there).
NO_DIGIT = "no digit found: the picture has (almost) one colour"
UNREAD_FORMAT = "not an image file of a format this reads ({formats})"
TOO_MANY_PIXELS = "{name}: too many pixels for a picture of one digit ({why}); scale it down"
DAMAGED = "damaged picture: its bytes could not be decoded"
# By default the --extra-images-dir pictures are repeated until an epoch sees about this many of
# them beside MNIST's 60,000, each at most EXTRA_MOST times: a few hundred pictures then count,
# and a few dozen are not learned by heart (measured: docs/handwriting.md).
EXTRA_PER_EPOCH, EXTRA_MOST = 8000, 30
# A labelled folder is looked at up to this many files and folders: far more than a class's
# pictures (USPS, the largest set measured, has 9,298), while a folder of millions, or one
# that never ends, is refused in one line.
MAX_FOLDER_ENTRIES = 100_000


def prepare_digit(picture):
    """Return a PIL picture of one handwritten digit as a (1, 28, 28) tensor, prepared as MNIST was.

    MNIST's digits are bright ink on black, cropped to the ink, scaled to fit 20x20 keeping their
    aspect ratio, and centred by their centre of mass in a 28x28 field; any size and colours work.
    """
    transparent = "transparency" in picture.info or (
        "A" in picture.getbands() and picture.getchannel("A").getextrema()[0] < 255)
    if transparent:  # lay it on white (a page's canvas is opaque: nothing to do)
        white = Image.new("RGBA", picture.size, "white")
        picture = Image.alpha_composite(white, picture.convert("RGBA"))
    gray = grey_levels(picture)  # (H, W), 0 black to 1 white
    background = gray.median()
    if background > 0.5:  # mostly light: dark ink on a light page, so turn it into light on dark
        gray, background = 1 - gray, 1 - background
    ink = (gray - background).clamp(min=0)  # paper is rarely pure white: its level becomes 0
    if ink.max() < 0.1:
        raise DataError(NO_DIGIT)
    ink = ink / ink.max()
    rows = (ink.amax(dim=1) > 0.2).nonzero()[:, 0].tolist()  # those with ink
    columns = (ink.amax(dim=0) > 0.2).nonzero()[:, 0].tolist()
    ink = ink[rows[0]:rows[-1] + 1, columns[0]:columns[-1] + 1]  # cropped to the ink
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


def grey_levels(picture):
    """The picture's brightness as (H, W) floats from 0 to 1; 16-bit greys (scanners) keep their
    full range, which Pillow's convert("L") would clip at 255 of 65535."""
    if picture.mode == "I" or picture.mode.startswith("I;16"):
        levels = torch.from_numpy(np.asarray(picture).astype(np.float32))
        return (levels / 65535).clamp(0, 1)
    return transforms.functional.pil_to_tensor(picture.convert("L"))[0].float() / 255


def open_within_limit(file, max_pixels=None):
    """Open a picture in one of PICTURE_FORMATS and decode it, within max_pixels (MAX_PIXELS if
    None): a JPEG decoded smaller, others refused from their header, before any pixel is in
    memory."""
    max_pixels = max_pixels or MAX_PIXELS
    with warnings.catch_warnings():
        # Too many pixels are refused below with a message of ours; Pillow's warning while
        # opening such a file would only repeat it.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            picture = Image.open(file, formats=PICTURE_FORMATS)  # reads the header only
        except Image.DecompressionBombError:  # Pillow's own limit, in words of ours
            raise Image.DecompressionBombError(f"more than {2 * Image.MAX_IMAGE_PIXELS:,} pixels, at "
                                               f"most {max_pixels:,} are read") from None
    try:
        width, height = picture.size
        if picture.format in ("JPEG", "MPO") and width * height > max_pixels:
            # The decoder can skip to 1/2, 1/4 or 1/8 of the size: the least reduction that fits.
            factor = next((f for f in (2, 4, 8) if (width / f) * (height / f) <= max_pixels), 8)
            picture.draft(picture.mode, (math.ceil(width / factor), math.ceil(height / factor)))
        if picture.width * picture.height > max_pixels:
            raise Image.DecompressionBombError(f"{width} x {height} pixels, at most "
                                               f"{max_pixels:,} are read")
        picture.load()  # decode every pixel now, so that damage shows here
    except BaseException:
        picture.close()
        raise
    return picture


def refused_format(file):
    """Why a file that is none of PICTURE_FORMATS is not read, naming its format where Pillow's
    checks of its first bytes know it (those checks only compare bytes: no reader runs)."""
    Image.init()
    if hasattr(file, "read"):
        file.seek(0)
        prefix = file.read(16)
    else:
        try:
            with open(file, "rb") as opened:
                prefix = opened.read(16)
        except OSError:  # gone since Pillow read it: its format is unknown
            prefix = b""
    for name in Image.ID:
        accept = Image.OPEN[name][1]
        try:
            answer = accept(prefix) if accept else None
        except (IndexError, TypeError, struct.error):  # too few bytes for that format's check
            answer = None
        if answer and not isinstance(answer, str):  # a string: Pillow's warning, not a match
            return f"{name} files are not read, only {', '.join(PICTURE_FORMATS)}"
    return UNREAD_FORMAT.format(formats=", ".join(PICTURE_FORMATS))


class DamagedPicture(DataError):
    """A picture Pillow could not decode. Its message adds the decoder's own words, for the one
    who owns the file; short leaves them out, for an answer sent to someone else."""

    def __init__(self, name, error):
        words = one_line(error)
        if not isinstance(error, OSError):  # Pillow's OSError says enough; SyntaxError alone does not
            words = f"{type(error).__name__}: {words}"
        super().__init__(f"{name}: {DAMAGED} ({words})")
        self.short = f"{name}: {DAMAGED}"


def read_picture(file, name, max_pixels=None):
    """Return the digit pictured in file (a path or a binary file) as a (1, 28, 28) tensor.

    Any problem is a DataError that starts with name: a missing file, not a picture (or one of a
    format not read), a damaged one (a DamagedPicture: Pillow's decoders raise many kinds of
    exception on damaged bytes), more than max_pixels (MAX_PIXELS if None), or no digit in it.
    """
    try:
        with open_within_limit(file, max_pixels) as picture:
            # Phones store photos sideways plus an Orientation tag; turn them upright.
            picture = ImageOps.exif_transpose(picture)
    except Image.DecompressionBombError as error:
        raise DataError(TOO_MANY_PIXELS.format(name=name, why=error)) from None
    except UnidentifiedImageError:
        raise DataError(f"{name}: {refused_format(file)}") from None
    except OSError as error:
        if error.strerror:  # missing, a folder, no permission to read
            raise DataError(f"{name}: {error.strerror}") from None
        raise DamagedPicture(name, error) from None
    except Exception as error:  # noqa: BLE001  (damaged bytes: SyntaxError, ValueError, ...)
        raise DamagedPicture(name, error) from None
    try:
        return prepare_digit(picture)
    except DataError as error:
        raise DataError(f"{name}: {error}") from None


def read_labelled_folder(folder):
    """Return the pictures in folder/0 ... folder/9 as images (N, 1, 28, 28) and labels (N,).

    A picture that cannot be read is named on stderr and skipped; the count is printed. A digit's
    folder may be empty or missing: a class collects some digits before others.
    """
    if not os.path.isdir(folder):
        raise DataError(f"{folder}: no such folder")
    found, subfolders, skipped = labelled_files(folder)
    others = [name for name in subfolders if name not in DIGITS]
    if others or not subfolders:
        raise DataError(f"{folder}: needs subfolders named 0 to 9 holding the pictures of each "
                        f"digit, found {', '.join(others) or 'none'}")
    if skipped:
        print(f"Not read: {skipped} links, fifos, devices or unreadable folders in {folder} (only "
              "plain files are read; no link is followed)", file=sys.stderr)
    if not found:
        raise DataError(f"{folder}: its subfolders 0 to 9 hold no pictures")
    images, labels = [], []
    for path, digit in found:
        try:
            images.append(read_plain_picture(path))  # (1, 28, 28), prepared as --image does
        except DataError as error:
            print(f"error: {error}", file=sys.stderr)
            continue
        labels.append(digit)
    print(f"Pictures: {len(images)} read, {len(found) - len(images)} skipped")
    if not images:
        raise DataError(f"{folder}: none of its {len(found)} files is a readable picture")
    return torch.stack(images), torch.tensor(labels)


def labelled_files(folder):
    """The plain files under folder/0 ... folder/9 (their subfolders too) as (path, digit), in
    torchvision's ImageFolder order; the names of its subfolders; and how many links, fifos,
    devices and unreadable folders were passed over. No link is followed, so a folder that links
    to itself ends, and a link to a picture elsewhere is not taken for the class's own; at most
    MAX_FOLDER_ENTRIES are looked at."""
    found, seen = [], 0
    with os.scandir(folder) as entries:
        visible = [entry for entry in entries if not entry.name.startswith(".")]  # .DS_Store, ...
    subfolders = sorted(entry.name for entry in visible if entry.is_dir(follow_symlinks=False))
    skipped = sum(entry.is_symlink() for entry in visible)
    for name in subfolders:
        if name not in DIGITS:
            continue
        files, passed, seen = plain_files(os.path.join(folder, name), seen)
        found += [(path, int(name)) for path in files]
        skipped += passed
    return found, subfolders, skipped


def plain_files(folder, seen):
    """The plain files under folder, sorted as os.walk's folders and their names (hidden files
    left out: every other file counts, so a damaged picture is named); how many other entries
    were passed over; and the running count of entries looked at."""
    files, skipped, waiting = [], 0, [folder]
    while waiting:
        try:
            entries = os.scandir(waiting.pop())
        except OSError:  # no permission to read it, or gone meanwhile
            skipped += 1
            continue
        with entries:
            for entry in entries:
                seen += 1
                if seen > MAX_FOLDER_ENTRIES:
                    raise DataError(f"{folder}: more than {MAX_FOLDER_ENTRIES:,} files and folders "
                                    "to look at; a class's pictures are far fewer")
                if entry.is_dir(follow_symlinks=False):
                    waiting.append(entry.path)
                elif not entry.is_file(follow_symlinks=False):
                    skipped += 1
                elif not entry.name.startswith("."):
                    files.append(entry.path)
    return sorted(files, key=os.path.split), skipped, seen


def read_plain_picture(path):
    """read_picture for a file found in a folder: opened without following a link and without
    waiting, and read only if it is still a plain file (one swapped for a fifo since is not)."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0)
                             | getattr(os, "O_BINARY", 0))
    except OSError as error:
        raise DataError(f"{path}: {error.strerror}") from None
    with open(descriptor, "rb") as file:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise DataError(f"{path}: not a plain file")
        return read_picture(file, path)


def classify_pictures(model, paths, device):
    """Print 'PATH: digit (confidence)' for each picture; return how many could not be read."""
    failures = 0
    for path in paths:
        try:
            digit = read_picture(path, path)  # (1, 28, 28)
        except DataError as error:  # one bad file should not hide the answers for the others
            print(f"error: {error}", file=sys.stderr)
            failures += 1
            continue
        with torch.no_grad():
            probabilities = model(digit[None].to(device)).softmax(dim=1)[0].cpu()  # (10,)
        confidence, predicted = probabilities.max(dim=0)
        print(f"{path}: {predicted.item()} ({confidence.item() * 100:.1f}%)")
    return failures


def one_line(error):
    """The error's message with its whitespace, line breaks included, collapsed to single spaces."""
    return " ".join(str(error).split())


def with_extra_pictures(train_images, train_labels, args):
    """MNIST's training images and labels with the --extra-images-dir pictures added, each
    --extra-repeats times (the pictures are read and prepared once, here), and the record of
    what the run trains on."""
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


def pictures_record(count, extra_images, extra_labels):
    """What a run trains on, to tell a changed training set when it resumes: the number of
    training images and the extra pictures' count and digest."""
    # The digest of the prepared pictures' 8-bit levels and labels, as training sees them.
    levels = (to_pixels(extra_images.cpu()) * 255).round().to(torch.uint8)
    digest = hashlib.sha256(levels.numpy().tobytes() + extra_labels.cpu().numpy().tobytes())
    return {"train_images": count,
            "extra_pictures": {"count": len(extra_labels), "digest": digest.hexdigest()}}
