"""Evaluate a trained checkpoint on the 10,000 MNIST test images, or on your own digit pictures.

Usage: python test.py model.pt [--device cuda] [--per-class] [--save-errors errors.png]
       python test.py model.pt --image my_digit.png  |  python test.py model.pt --images-dir DIR
"""
import argparse
import sys

import torch
from PIL import Image, ImageDraw

from cli import (accuracy, add_data_and_device_arguments, check_extras, confusion_matrix,
                 device_line, extra, load_model, output_path, predict, run_main, save_atomically,
                 set_threads)
from data import DataError, load_mnist, to_pixels


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


def classify_pictures(model, paths, device):
    """Print 'PATH: digit (confidence)' for each picture; return how many could not be read."""
    read_picture = extra("pictures", "--image").read_picture  # your own pictures: extras/
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


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Evaluate a checkpoint on the MNIST test set.")
    parser.add_argument("checkpoint", help="checkpoint written by train.py, or a saved state_dict")
    add_data_and_device_arguments(parser)
    parser.add_argument("--per-class", action="store_true",
                        help="also print accuracy per digit and the confusion matrix "
                             "(default: off)")
    parser.add_argument("--save-errors", type=output_path, metavar="PNG",
                        help="save a grid of misclassified test digits to this PNG (default: none)")
    parser.add_argument("--image", nargs="+", metavar="PATH",
                        help="classify your own pictures of digits (any size, dark ink on light or "
                             "the reverse); the test set is then skipped unless --per-class or "
                             "--save-errors asks for it (default: none)")
    parser.add_argument("--images-dir", metavar="DIR",
                        help="evaluate on your own labelled pictures instead of the test set: "
                             "DIR/0/*.png ... DIR/9/*.png, each prepared as --image prepares it "
                             "(default: none)")
    args = parser.parse_args(argv)
    check_extras(parser, args, image="pictures", images_dir="pictures")  # your own pictures
    if args.images_dir and args.save_errors:
        parser.error("--save-errors draws MNIST test digits; leave out --images-dir")
    return args


def main(argv=None):
    args = parse_args(argv)
    threads = set_threads(args.threads)
    model = load_model(args.checkpoint, args.device)  # a bad checkpoint: one line, nothing else
    print(device_line(args.device, threads))
    if args.images_dir:
        images, labels = extra("pictures", "--images-dir").read_labelled_folder(args.images_dir)
        images, labels = images.to(args.device), labels.to(args.device)
    elif not args.image or args.per_class or args.save_errors:
        images, labels = load_mnist(args.data_dir, train=False, device=args.device)
    else:  # only --image: the test set is not needed
        images = None
    if images is not None:
        predictions = predict(model, images)
        print(f"Test Accuracy: {accuracy(predictions, labels) * 100:.2f}%")
        if args.per_class:
            print_per_class(labels, predictions)
        if args.save_errors:
            save_error_grid(args.save_errors, images, labels, predictions)
    if args.image and classify_pictures(model, args.image, args.device):
        sys.exit(1)


if __name__ == "__main__":
    run_main(main)
