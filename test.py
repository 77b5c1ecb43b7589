"""Evaluate a trained checkpoint on the 10,000 MNIST test images.

Usage: python test.py model.pt [--device cuda] [--per-class] [--save-errors errors.png]
       python test.py model.pt --image my_digit.png
"""
import argparse
import pickle
import re
import sys
import warnings

import torch
from PIL import Image, ImageDraw, UnidentifiedImageError

from data import (UserError, add_data_and_device_arguments, load_mnist, output_path, positive_int,
                  prepare_digit, run_main, save_atomically)
from model import Net

# Evaluation keeps no gradients, so large batches are cheap and much faster than the tutorial's 64.
EVAL_BATCH_SIZE = 1000


def read_state_dict(path):
    """Return the model weights in path: our checkpoint dict or a bare state_dict.

    weights_only=True lets torch.load rebuild tensors and plain types only, so a file that asks
    for anything else is refused before any of its code can run.
    """
    try:
        with warnings.catch_warnings():  # an old pickle protocol only warns; errors say more
            warnings.simplefilter("ignore")
            saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise UserError(f"{path}: {load_problem(error, path)}") from None
    state_dict = saved.get("model", saved) if isinstance(saved, dict) else saved
    if not (isinstance(state_dict, dict) and state_dict
            and all(isinstance(value, torch.Tensor) for value in state_dict.values())):
        raise UserError(f"{path}: holds a {type(saved).__name__}, "
                        "not a checkpoint or a model state_dict")
    return state_dict


def load_problem(error, path):
    """Say in a few words why torch.load failed on path."""
    if isinstance(error, FileNotFoundError):
        return f"no such file; train one with: python train.py --out {path}"
    if isinstance(error, IsADirectoryError):
        return "is a folder, not a checkpoint file"
    if isinstance(error, PermissionError):
        return "cannot be read (permission denied)"
    wanted = re.search(r"GLOBAL (\S+)", str(error))
    if isinstance(error, pickle.UnpicklingError) and wanted:
        return (f"refused: it asks to load {wanted.group(1)}, which could run code; "
                "only tensors and plain types are loaded")
    if isinstance(error, EOFError):
        return "empty or truncated, not a PyTorch checkpoint"
    if isinstance(error, RuntimeError):  # torch's words for a damaged archive
        return f"not a PyTorch checkpoint ({str(error).split('. ')[0]})"
    # Anything else: a damaged zip archive (OSError), text or foreign pickle data, ...
    return "not a PyTorch checkpoint (damaged, or saved in another format)"


def load_model(path, device):
    """Return the network with the weights in path, on device, in eval mode."""
    state_dict = read_state_dict(path)
    model = Net()
    expected = model.state_dict()
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    reshaped = [f"{key} {tuple(state_dict[key].shape)} instead of {tuple(value.shape)}"
                for key, value in expected.items()
                if key in state_dict and state_dict[key].shape != value.shape]
    if missing or unexpected or reshaped:
        problems = [f"{what}: {', '.join(keys)}" for what, keys in
                    (("missing", missing), ("unexpected", unexpected), ("shape", reshaped)) if keys]
        raise UserError(f"{path}: weights of another architecture ({'; '.join(problems)})")
    model.load_state_dict(state_dict)  # strict: every key and shape was checked above
    return model.to(device).eval()


@torch.no_grad()
def predict(model, images, batch_size):
    """Return the predicted digit (N,) for images (N, 1, 28, 28)."""
    model.eval()  # dropout off: every unit counts at test time
    return torch.cat([model(batch).argmax(dim=1) for batch in images.split(batch_size)])


def accuracy(predictions, labels):
    """Return the fraction of predictions equal to their labels, counted exactly."""
    return (predictions == labels).sum().item() / len(labels)


def evaluate(model, images, labels, batch_size):
    """Return the fraction of images whose predicted digit equals the label."""
    return accuracy(predict(model, images, batch_size), labels)


def print_per_class(labels, predictions):
    """Print each digit's accuracy and the confusion matrix (row: true digit, column: predicted)."""
    confusion = torch.bincount(labels * 10 + predictions, minlength=100).view(10, 10).cpu()
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
    wrong = (predictions != labels).nonzero().view(-1)[:limit].cpu()
    scale, band = 3, 14  # pixels per MNIST pixel; height of the label strip above each digit
    tile = 28 * scale
    rows = max(1, -(-len(wrong) // columns))
    sheet = Image.new("L", (columns * tile, rows * (tile + band)))
    draw = ImageDraw.Draw(sheet)
    for position, index in enumerate(wrong.tolist()):
        pixels = ((images[index, 0] * 0.5 + 0.5) * 255).round().byte()  # undo Normalize: 0..255
        x, y = position % columns * tile, position // columns * (tile + band)
        digit = Image.fromarray(pixels.cpu().numpy()).resize((tile, tile), Image.NEAREST)
        sheet.paste(digit, (x, y + band))
        draw.text((x + 2, y + 1), f"{labels[index]}->{predictions[index]}", fill=255)
    save_atomically(path, lambda file: sheet.save(file, format="PNG"))
    print(f"Saved {path}: {len(wrong)} of {int((predictions != labels).sum())} misclassified test "
          f"images, {columns} per row, labelled true->predicted:")
    for start in range(0, len(wrong), columns):
        print("  " + "  ".join(f"#{index}:{labels[index]}->{predictions[index]}"
                               for index in wrong[start:start + columns].tolist()))


def read_picture(path):
    """Return the digit pictured in the file at path as a (1, 28, 28) tensor, or raise UserError."""
    try:
        with Image.open(path) as picture:
            return prepare_digit(picture)
    except UnidentifiedImageError:
        raise UserError(f"{path}: not an image file that Pillow can read") from None
    except Image.DecompressionBombError:
        raise UserError(f"{path}: too many pixels to be a picture of one digit") from None
    except OSError as error:  # missing, a folder, unreadable, a truncated image
        raise UserError(f"{path}: {error.strerror or error}") from None
    except UserError as error:
        raise UserError(f"{path}: {error}") from None


def classify_pictures(model, paths, device):
    """Print 'PATH: digit (confidence)' for each picture; return how many could not be read."""
    failures = 0
    for path in paths:
        try:
            digit = read_picture(path)  # (1, 28, 28)
        except UserError as error:  # one bad file should not hide the answers for the others
            print(f"error: {error}", file=sys.stderr)
            failures += 1
            continue
        with torch.no_grad():
            probabilities = model(digit[None].to(device)).softmax(dim=1)[0]  # (10,)
        confidence, predicted = probabilities.max(dim=0)
        print(f"{path}: {predicted.item()} ({confidence.item() * 100:.1f}%)")
    return failures


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Evaluate a checkpoint on the MNIST test set.")
    parser.add_argument("checkpoint", help="checkpoint written by train.py, or a saved state_dict")
    add_data_and_device_arguments(parser)
    parser.add_argument("--batch-size", type=positive_int, default=EVAL_BATCH_SIZE,
                        help=f"images per forward pass (default: {EVAL_BATCH_SIZE})")
    parser.add_argument("--per-class", action="store_true",
                        help="also print accuracy per digit and the confusion matrix "
                             "(default: off)")
    parser.add_argument("--save-errors", type=output_path, metavar="PNG",
                        help="save a grid of misclassified test digits to this PNG (default: none)")
    parser.add_argument("--image", nargs="+", metavar="PATH",
                        help="classify your own pictures of digits (any size, dark ink on light or "
                             "the reverse); the test set is then skipped unless --per-class or "
                             "--save-errors asks for it (default: none)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    model = load_model(args.checkpoint, args.device)
    if not args.image or args.per_class or args.save_errors:
        test_images, test_labels = load_mnist(args.data_dir, train=False, device=args.device)
        predictions = predict(model, test_images, args.batch_size)
        print(f"Test Accuracy: {accuracy(predictions, test_labels) * 100:.2f}%")
        if args.per_class:
            print_per_class(test_labels, predictions)
        if args.save_errors:
            save_error_grid(args.save_errors, test_images, test_labels, predictions)
    if args.image and classify_pictures(model, args.image, args.device):
        sys.exit(1)


if __name__ == "__main__":
    run_main(main)
