"""Collecting a class's drawings for the drawing page: each saved, as drawn, under its label, into
a folder that train.py --extra-images-dir reads; never overwriting, and at most a set number a digit.

Usage: python draw.py model.pt --collect class_digits [--collect-limit 500]
"""
import argparse
import io
import os
import threading

from common import save_atomically

# Pictures of one digit a folder takes at most, by default. 80 a digit gave the best measured
# result (docs/handwriting.md); 500 leaves a class of 30 room for many more, and with each
# picture bounded below a prank or a stuck client cannot fill the disk.
COLLECT_LIMIT = 500
# A saved drawing is at most the page's canvas, 280 x 280 greys, and its PNG at most this many
# bytes: pen strokes on white compress to far less, while noise (no drawing) would not, so a
# digit's folder holds at most COLLECT_LIMIT x MAX_PICTURE_BYTES (docs/page.md).
COLLECT_SIDE = 280
MAX_PICTURE_BYTES = 16 * 1024
# What a full folder's refusal says, in words the exported page says too (page/export.py).
FOLDER_FULL = ("{folder}/{label} holds {pictures} already, the most this page saves of one digit "
               "(draw.py --collect-limit)")


class FolderFull(Exception):
    """The digit's folder already holds the most pictures it may take."""


class PictureTooLarge(Exception):
    """The drawing's PNG is over MAX_PICTURE_BYTES: not a drawing made with a pen."""


class Collector:
    """Saves drawings into folder/0 ... folder/9, one at a time, each under a new name; the page
    names the folder by its own name only (the root folder, which has none, as itself)."""

    def __init__(self, folder, limit=COLLECT_LIMIT):
        # Absolute now: a name worked out later must not depend on the folder work goes on in.
        self.folder, self.limit = os.path.abspath(folder), limit
        self.name = folder_name(folder) or self.folder
        self.lock = threading.Lock()  # saves take turns: each picks the next free name

    def save(self, picture, label):
        """Save picture (PIL) as the next free label/NNNN.png; return that name and the counts.

        PictureTooLarge over MAX_PICTURE_BYTES; FolderFull past the limit; OSError (or
        common.UserError) if it cannot be written.
        """
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG")
        png = buffer.getvalue()
        if len(png) > MAX_PICTURE_BYTES:
            raise PictureTooLarge(f"the drawing is {len(png):,} bytes as a PNG, at most "
                                  f"{MAX_PICTURE_BYTES:,} are saved (drawn with a pen, far less)")
        folder = os.path.join(self.folder, str(label))
        with self.lock:
            count = picture_count(folder)
            if count >= self.limit:
                raise FolderFull(FOLDER_FULL.format(
                    folder=self.name.rstrip("/"), label=label,  # the root: "/5", not "//5"
                    pictures="1 picture" if self.limit == 1 else f"{self.limit} pictures"))
            name = save_new_picture(png, folder, count)
            return os.path.join(str(label), name), self.counts()

    def counts(self):
        """How many pictures folder/0 ... folder/9 hold."""
        return [picture_count(os.path.join(self.folder, str(digit))) for digit in range(10)]


def picture_count(folder):
    """How many .png pictures folder holds: 0 when it does not exist (yet, or any more: another
    program may make or remove it at any moment), cannot be read, or is not a folder."""
    try:
        names = os.listdir(folder)
    except OSError:
        return 0
    return sum(name.endswith(".png") for name in names)


def folder_name(path):
    """A folder as a page names it: its own name, as in /home/a/digits or .. -> digits (or '' for
    the root). A page may be seen by a class or sent as a file: it never shows where this machine
    keeps things, and a name from it never climbs out of a folder ("../3/0000.png")."""
    return os.path.basename(os.path.abspath(path))


def give_new_name(temporary, path):
    """Give the complete file temporary the name path, which must be free: FileExistsError if not.

    A hard link takes a name only if it is free, in one step. FAT32 and exFAT (USB sticks) and
    many network folders have no hard links; there the name is first taken by an exclusive
    create, which also fails if it exists, and the complete file then replaces that empty one.
    """
    try:
        os.link(temporary, path)
        return
    except FileExistsError:
        raise
    except OSError:  # no hard links here (EPERM, EOPNOTSUPP, ...)
        pass
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    try:
        os.replace(temporary, path)
    except OSError:
        os.remove(path)  # give the name back rather than leave an empty file under it
        raise


def save_new_picture(png, folder, number):
    """Save png (a PNG file's bytes), whole, as the next free NNNN.png in folder from NNNN = number
    (the pictures it holds); return its name. A name that is taken (a file put there by hand,
    another page) is skipped, never replaced."""
    os.makedirs(folder, exist_ok=True)
    while True:
        name = f"{number:04d}.png"
        try:
            save_atomically(os.path.join(folder, name), lambda file: file.write(png),
                            name_it=give_new_name)
            return name
        except FileExistsError:
            number += 1


def collect_folder(path):
    """Check --collect (draw.py, after parsing): a folder that exists or can be made, and can be
    written; argparse.ArgumentTypeError if not."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as error:
        raise argparse.ArgumentTypeError(f"cannot make folder {path} ({error.strerror})") from None
    if not os.access(path, os.W_OK):
        raise argparse.ArgumentTypeError(f"folder {path} is not writable")
    return path
