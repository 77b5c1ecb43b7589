"""Write the sets of handwritten digits that are not MNIST, as folders for test.py --images-dir.

Usage: python -m tools.make_digit_sets digit_sets [--semeion handwriting/semeion]
       then: python test.py model.pt --images-dir digit_sets/uci --per-class
       uci/: the 1,797 digits of 43 writers that scikit-learn ships (pip install scikit-learn)
       drawn/: 500 digits drawn with pen strokes as the drawing page draws them, seeded
       semeion_train/, semeion_test/: Semeion's digits split by writer (rows 1-800, 801-1593),
       semeion_train_5/, semeion_train_20/: the first 5 or 20 of each digit of semeion_train/
"""
import argparse
import math
import os

import torch
from PIL import Image, ImageDraw

from common import UserError, run_main, save_atomically

# Each digit as pen strokes in a unit box (x right, y down), roughly as people write it.
STROKES = {
    0: [[(0.5 + 0.5 * math.sin(t / 16 * 2 * math.pi), 0.5 - 0.5 * math.cos(t / 16 * 2 * math.pi))
         for t in range(17)]],
    1: [[(0.6, 0.0), (0.45, 1.0)]],
    2: [[(0.1, 0.3), (0.3, 0.03), (0.6, 0.0), (0.85, 0.15), (0.8, 0.45), (0.05, 1.0), (0.95, 1.0)]],
    3: [[(0.1, 0.12), (0.45, 0.0), (0.85, 0.15), (0.75, 0.4), (0.4, 0.5), (0.85, 0.6), (0.9, 0.85),
         (0.5, 1.0), (0.1, 0.88)]],
    4: [[(0.6, 0.0), (0.05, 0.68), (0.95, 0.68)], [(0.7, 0.3), (0.7, 1.0)]],
    5: [[(0.9, 0.0), (0.2, 0.0), (0.15, 0.45), (0.5, 0.38), (0.85, 0.55), (0.85, 0.82), (0.5, 1.0),
         (0.1, 0.9)]],
    6: [[(0.8, 0.03), (0.45, 0.1), (0.15, 0.5), (0.15, 0.85), (0.45, 1.0), (0.8, 0.85), (0.8, 0.6),
         (0.5, 0.48), (0.15, 0.65)]],
    7: [[(0.05, 0.0), (0.95, 0.0), (0.4, 1.0)]],
    8: [[(0.5, 0.48), (0.15, 0.28), (0.5, 0.0), (0.85, 0.25), (0.5, 0.48), (0.12, 0.75), (0.5, 1.0),
         (0.88, 0.75), (0.5, 0.48)]],
    9: [[(0.85, 0.25), (0.5, 0.48), (0.15, 0.28), (0.5, 0.0), (0.85, 0.2), (0.85, 0.5),
         (0.75, 1.0)]],
}
STRAIGHT = {1, 4, 7}  # drawn with straight lines; the others are smoothed into curves


def smooth(points, rounds=3):
    """Chaikin's corner cutting: each round replaces every corner by two points near it."""
    for _ in range(rounds):
        smoothed = [points[0]]
        for (x0, y0), (x1, y1) in zip(points, points[1:]):
            smoothed += [(0.75 * x0 + 0.25 * x1, 0.75 * y0 + 0.25 * y1),
                         (0.25 * x0 + 0.75 * x1, 0.25 * y0 + 0.75 * y1)]
        points = smoothed + [points[-1]]
    return points


def draw_digit(digit, generator, size=280):
    """One digit on a white size x size canvas, as a user draws it on the page: random stroke
    width, height, width-to-height ratio, slant, position and a little wobble."""
    def uniform(low, high):
        return low + (high - low) * torch.rand(1, generator=generator).item()

    height = uniform(0.4, 0.9) * size
    width = height * uniform(0.45, 0.85)
    slant = uniform(-0.25, 0.25)  # x moves by slant times the distance from the middle row
    left = uniform(0.05 * size, size - width - 0.05 * size)
    top = uniform(0.05 * size, size - height - 0.05 * size)
    pen = round(uniform(8, 30))
    picture = Image.new("L", (size, size), 255)
    canvas = ImageDraw.Draw(picture)
    for stroke in STROKES[digit]:
        points = stroke if digit in STRAIGHT else smooth(stroke)
        placed = [(left + (x + slant * (0.5 - y)) * width + uniform(-0.01, 0.01) * size,
                   top + y * height + uniform(-0.01, 0.01) * size) for x, y in points]
        canvas.line(placed, fill=0, width=pen, joint="curve")
        for x, y in (placed[0], placed[-1]):  # round ends, as the page's pen has
            canvas.ellipse((x - pen / 2, y - pen / 2, x + pen / 2, y + pen / 2), fill=0)
    return picture


def save_picture(picture, folder, digit, index):
    path = os.path.join(folder, str(digit), f"{index:04d}.png")
    save_atomically(path, lambda file: picture.save(file, format="PNG"))


def write_drawn(folder, per_digit=50, seed=0):
    generator = torch.Generator().manual_seed(seed)
    for digit in range(10):
        os.makedirs(os.path.join(folder, str(digit)), exist_ok=True)
        for index in range(per_digit):
            save_picture(draw_digit(digit, generator), folder, digit, index)
    print(f"Wrote {10 * per_digit} drawn digits into {folder}")


def write_uci(folder):
    try:
        from sklearn.datasets import load_digits  # optional: only this set needs it
    except ImportError:
        raise UserError("the uci set needs scikit-learn: pip install scikit-learn") from None
    digits = load_digits()  # 1,797 digits of 8 x 8 pixels, ink 0..16, from 43 writers
    for digit in range(10):
        os.makedirs(os.path.join(folder, str(digit)), exist_ok=True)
    for index, (pixels, digit) in enumerate(zip(digits.images, digits.target)):
        ink = torch.tensor(pixels, dtype=torch.float32) / 16  # (8, 8), 0..1
        page = ((1 - ink) * 255).round().to(torch.uint8).numpy()  # dark ink on a light page
        picture = Image.fromarray(page, mode="L").resize((64, 64), Image.BILINEAR)
        save_picture(picture, folder, int(digit), index)
    print(f"Wrote {len(digits.target)} UCI digits into {folder}")


SEMEION_SPLIT = 800  # rows 1-800 and 801-1593 of semeion.data: the writers do not overlap


def write_semeion(folder, semeion):
    """Split Semeion's labelled folder (files row<N>.png) by writer, and take 5 or 20 per digit."""
    rows = {}
    for digit in range(10):
        try:
            names = sorted(name for name in os.listdir(os.path.join(semeion, str(digit)))
                           if name.startswith("row") and name.endswith(".png"))
        except OSError as error:
            raise UserError(f"{semeion}: needs Semeion's folders 0 to 9 of row<N>.png files "
                            f"({error.strerror})") from None
        rows[digit] = [(int(name[3:-4]), name) for name in names]
    parts = {"semeion_train": lambda row, rank: row <= SEMEION_SPLIT,
             "semeion_test": lambda row, rank: row > SEMEION_SPLIT,
             "semeion_train_5": lambda row, rank: row <= SEMEION_SPLIT and rank < 5,
             "semeion_train_20": lambda row, rank: row <= SEMEION_SPLIT and rank < 20}
    for part, chosen in parts.items():
        count = 0
        for digit, files in rows.items():
            os.makedirs(os.path.join(folder, part, str(digit)), exist_ok=True)
            for rank, (row, name) in enumerate(files):  # in row order: the first writers first
                if chosen(row, rank):
                    with open(os.path.join(semeion, str(digit), name), "rb") as file:
                        content = file.read()
                    save_atomically(os.path.join(folder, part, str(digit), name),
                                    lambda output, content=content: output.write(content))
                    count += 1
        print(f"Wrote {count} Semeion digits into {os.path.join(folder, part)}")


def main(argv=None):
    parser = argparse.ArgumentParser(description="Write handwritten digits that are not MNIST.")
    parser.add_argument("folder", help="where to write uci/ and drawn/")
    parser.add_argument("--sets", nargs="+", choices=["uci", "drawn"], default=["uci", "drawn"],
                        help="which sets to write (default: uci drawn)")
    parser.add_argument("--semeion", metavar="DIR",
                        help="also split the Semeion set in DIR (DIR/0/row0001.png ...) by writer "
                             "(default: none)")
    args = parser.parse_args(argv)
    if args.semeion:
        write_semeion(args.folder, args.semeion)
    if "drawn" in args.sets:
        write_drawn(os.path.join(args.folder, "drawn"))
    if "uci" in args.sets:
        write_uci(os.path.join(args.folder, "uci"))


if __name__ == "__main__":
    run_main(main)
