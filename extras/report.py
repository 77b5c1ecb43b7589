"""test.py's reports beyond the accuracy: each digit's accuracy with the confusion matrix, and a
picture of the misread test digits.

Usage: python test.py model.pt --per-class --save-errors errors.png
"""
import torch
from PIL import Image, ImageDraw

from common import save_atomically
from data import to_pixels


def check_flags(parser, args):
    """Refuse --save-errors with --images-dir at once (exit 2): the grid draws MNIST's digits."""
    if args.images_dir and args.save_errors:
        parser.error("--save-errors draws MNIST test digits; leave out --images-dir")


def report(args, images, labels, predictions):
    """What --per-class and --save-errors ask for, of these images, labels and predictions."""
    if args.per_class:
        print_per_class(labels, predictions)
    if args.save_errors:
        save_error_grid(args.save_errors, images, labels, predictions)


def confusion_matrix(labels, predictions):
    """Return the (10, 10) counts of each true digit (row) predicted as each digit (column)."""
    return torch.bincount(labels * 10 + predictions, minlength=100).view(10, 10).cpu()


def print_per_class(labels, predictions):
    """Print each digit's accuracy and the confusion matrix (row: true digit, column: predicted)."""
    confusion = confusion_matrix(labels, predictions)
    print("Accuracy per digit (correct/images):")
    for digit in range(10):
        correct, total = confusion[digit, digit].item(), confusion[digit].sum().item()
        print(f"{digit}  {correct / max(total, 1) * 100:.2f}%  ({correct}/{total})")
    print("Confusion matrix: row = true digit, column = predicted digit")
    print("    " + "".join(f"{digit:>6}" for digit in range(10)))
    for digit in range(10):
        print(f"{digit:>4}" + "".join(f"{count:>6}" for count in confusion[digit].tolist()))


def save_error_grid(path, images, labels, predictions, limit=100, columns=10):
    """Save the first misclassified test images as a PNG grid, each under 'true->predicted'."""
    images, labels, predictions = images.cpu(), labels.cpu(), predictions.cpu()  # for Pillow, print
    wrong = (predictions != labels).nonzero().view(-1)[:limit]
    scale, band = 3, 14  # pixels per MNIST pixel; height of the label strip above each digit
    tile = 28 * scale
    rows = max(1, -(-len(wrong) // columns))
    sheet = Image.new("L", (columns * tile, rows * (tile + band)))
    draw = ImageDraw.Draw(sheet)
    for position, index in enumerate(wrong.tolist()):
        pixels = (to_pixels(images[index, 0]).clamp(0, 1) * 255).round().byte()  # 0..255
        x, y = position % columns * tile, position // columns * (tile + band)
        digit = Image.fromarray(pixels.numpy()).resize((tile, tile), Image.NEAREST)
        sheet.paste(digit, (x, y + band))
        draw.text((x + 2, y + 1), f"{labels[index]}->{predictions[index]}", fill=255)
    save_atomically(path, lambda file: sheet.save(file, format="PNG"))
    print(f"Saved {path}: {len(wrong)} of {int((predictions != labels).sum())} misclassified test "
          f"images, {columns} per row, labelled true->predicted:")
    for start in range(0, len(wrong), columns):
        print("  " + "  ".join(f"#{index}:{labels[index]}->{predictions[index]}"
                               for index in wrong[start:start + columns].tolist()))
