"""The training recipe beyond the tutorial's plain Adam: AdamW's weight decay, the one-cycle
schedule, and the last epochs without dropout (or without --augment's changes).

Usage: python train.py --schedule onecycle --weight-decay 0.1 --no-dropout-epochs 1
"""
import torch
import torch.nn as nn

from extras.flags import flag_of


def check_flags(parser, args):
    """Refuse epoch counts beyond the run (exit 2, as argparse refuses a flag)."""
    for name in ("no_dropout_epochs", "no_augment_epochs"):
        epochs = getattr(args, name)
        if epochs > args.epochs:
            parser.error(f"{flag_of(name)} {epochs} is more than --epochs {args.epochs}")


def make_optimizer(model, lr, weight_decay, schedule, epochs, steps_per_epoch):
    """Return Adam, as the tutorial trains (AdamW with a weight decay), and a per-step learning
    rate scheduler (None for a constant rate)."""
    if weight_decay:
        # AdamW shrinks every weight by the fraction lr * weight_decay each step, outside Adam's
        # per-weight scaling; Adam's own weight_decay joins the gradient and is rescaled with it.
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    if schedule == "constant":
        return optimizer, None
    # The one-cycle policy lowers the momentum (Adam's first beta) from 0.95 to 0.85 while the
    # rate rises, and raises it back as the rate falls: PyTorch's defaults, on purpose.
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, epochs=epochs, steps_per_epoch=steps_per_epoch)
    return optimizer, scheduler


def plain_state(scheduler):
    """The scheduler's state without its functions (PyTorch 2.3 keeps one there), which
    weights_only cannot load; the scheduler made anew for --resume has its own."""
    return {key: value for key, value in scheduler.state_dict().items() if not callable(value)}


def set_dropout(model, active):
    """Switch every dropout layer on or off, leaving the rest of the model in training mode."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.train(active)
