"""Evaluate a trained checkpoint on the 10,000 MNIST test images, or on your own digit pictures.

Usage: python test.py model.pt [--device cuda] [--per-class] [--image 7.png] [--images-dir DIR]
"""
import argparse
import sys

from common import (accuracy, add_data_and_device_arguments, add_extra_arguments, check_extras,
                    device_line, extra, load_model, predict, run_main, set_threads)
from data import load_mnist

# The tutorial's test in the terms of the flags beyond it, which extras/flags.py adds.
TUTORIAL_VALUES = {"per_class": False, "save_errors": None, "image": None, "images_dir": None}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Evaluate a checkpoint on the MNIST test set.")
    parser.add_argument("checkpoint", help="checkpoint written by train.py, or a saved state_dict")
    add_data_and_device_arguments(parser)
    add_extra_arguments(parser, TUTORIAL_VALUES)
    args = parser.parse_args(argv)
    check_extras(parser, args, TUTORIAL_VALUES)
    return args


def main(argv=None):
    args = parse_args(argv)
    threads = set_threads(args.threads)
    model = load_model(args.checkpoint, args.device)  # a bad checkpoint: one line, nothing else
    print(device_line(args.device, threads))
    if args.images_dir:  # your own labelled pictures instead of the test set
        images, labels = extra("pictures", "--images-dir").read_labelled_folder(args.images_dir)
        images, labels = images.to(args.device), labels.to(args.device)
    elif not args.image or args.per_class or args.save_errors:
        images, labels = load_mnist(args.data_dir, train=False, device=args.device)
    else:  # only --image: the test set is not needed
        images = None
    if images is not None:
        predictions = predict(model, images)  # (N,) digits
        print(f"Test Accuracy: {accuracy(predictions, labels) * 100:.2f}%")
        if args.per_class or args.save_errors:
            extra("report", "--per-class").report(args, images, labels, predictions)
    if args.image and extra("pictures", "--image").classify_pictures(model, args.image, args.device):
        sys.exit(1)  # a picture that could not be read


if __name__ == "__main__":
    run_main(main)
