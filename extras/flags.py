"""The flags beyond the tutorial for train.py and test.py, each checked by the module of extras/
that runs it. Copied alone, the tutorial's files do without them; with extras/ they add these.

Usage: python train.py --help   (common.add_extra_arguments adds the script's flags from here)
"""
from common import checked, extra, non_negative_int, output_path, positive_int

MAX_WEIGHT_DECAY = 1  # the exported page's training takes the same bound (page/export.py)
weight_decay = checked(float, lambda value: 0 <= value <= MAX_WEIGHT_DECAY, f"from 0 to {MAX_WEIGHT_DECAY}")

# Each flag beyond the tutorial: the module of extras/ that runs it, and add_argument's settings
# but its default (the script's value for the tutorial's own run, as train.py and test.py say).
FLAGS = {
    "weight_decay": ("recipe", dict(
        type=weight_decay, metavar="W",
        help="shrink every weight by lr * W each step (AdamW), which keeps the weights small "
             "(default: 0, plain Adam as in the tutorial)")),
    "schedule": ("recipe", dict(
        choices=["constant", "onecycle"],
        help="learning rate over the run: constant as in the tutorial, or onecycle (warm up to "
             "--lr, then anneal to almost 0, while adam's first beta moves from 0.95 to 0.85 and "
             "back) (default: constant)")),
    "augment": ("augment", dict(
        nargs="?", choices=["none", "light", "handwriting"], const="light",
        help="change each training image at random: light (turned up to 5 degrees, resized up to "
             "5%%, moved up to 1 pixel; the value when the flag is given alone) or handwriting "
             "(also slant, width, stroke thickness and blur) (default: none)")),
    "no_dropout_epochs": ("recipe", dict(
        type=non_negative_int, metavar="N",
        help="train the last N epochs with dropout off, so the network fine-tunes with all its "
             "units (default: 0)")),
    "no_augment_epochs": ("recipe", dict(
        type=non_negative_int, metavar="N",
        help="train the last N epochs on the images as they are, without --augment's changes "
             "(default: 0)")),
    "extra_images_dir": ("pictures", dict(
        action="append", metavar="DIR",
        help="add your labelled pictures, DIR/0/*.png ... DIR/9/*.png, to MNIST's training "
             "images, each prepared as test.py --image prepares it; may be given several times "
             "(default: none)")),
    "extra_repeats": ("pictures", dict(
        type=positive_int, metavar="N",
        help="how many times each extra picture is seen per epoch (default: enough for about "
             "8,000 an epoch, at most 30 each)")),
    "init_from": ("runs", dict(
        metavar="CHECKPOINT",
        help="start from the weights in CHECKPOINT (any checkpoint test.py reads) instead of "
             "random ones: a short run then fine-tunes them (default: none)")),
    "resume": ("runs", dict(
        metavar="CHECKPOINT",
        help="continue the run saved in CHECKPOINT (its weights, optimizer, schedule, random "
             "numbers, history) up to --epochs; flags that would change the run are refused "
             "(default: none)")),
    "plot": ("curves", dict(
        type=output_path, metavar="PNG",
        help="also save the loss and accuracy curves to this PNG; needs matplotlib "
             "(default: none)")),
    "snapshots": ("runs", dict(
        action="store_false",
        help="do not keep snapshots of the weights during training for the drawing page's "
             "training slider (default: keep them)")),
    "per_class": ("report", dict(
        action="store_true",
        help="also print accuracy per digit and the confusion matrix (default: off)")),
    "save_errors": ("report", dict(
        type=output_path, metavar="PNG",
        help="save a grid of misclassified test digits to this PNG (default: none)")),
    "image": ("pictures", dict(
        nargs="+", metavar="PATH",
        help="classify your own pictures of digits (any size, dark ink on light or the reverse); "
             "the test set is then skipped unless --per-class or --save-errors asks for it "
             "(default: none)")),
    "images_dir": ("pictures", dict(
        metavar="DIR",
        help="evaluate on your own labelled pictures instead of the test set: DIR/0/*.png ... "
             "DIR/9/*.png, each prepared as --image prepares it (default: none)")),
}


def flag_of(name):
    """The flag that sets the argument name: no_dropout_epochs is --no-dropout-epochs."""
    return "--no-snapshots" if name == "snapshots" else "--" + name.replace("_", "-")


def add_arguments(parser, tutorial_values):
    """Add the flags of tutorial_values (the script's), each with its value in the tutorial's run."""
    for name, value in tutorial_values.items():
        parser.add_argument(flag_of(name), dest=name, default=value, **FLAGS[name][1])


def check(parser, args, names):
    """Before any work: each flag of names that args gives is checked by the module that runs it
    (its check_flags), as argparse checks a flag; one line if that module is not here."""
    for name in names:
        if getattr(args, name) != parser.get_default(name):
            module = extra(FLAGS[name][0], flag_of(name))
            if hasattr(module, "check_flags"):
                module.check_flags(parser, args)
