"""Evaluate a trained checkpoint on the 10,000 MNIST test images.

Usage: python test.py model.pt [--device cuda] [--per-class] [--save-errors errors.png]
"""
import argparse
import pickle
import re
import warnings

import torch

from data import UserError, device_name, load_mnist, positive_int, run_main
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


def evaluate(model, images, labels, batch_size):
    """Return the fraction of images whose predicted digit equals the label."""
    predictions = predict(model, images, batch_size)
    return (predictions == labels).float().mean().item()


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Evaluate a checkpoint on the MNIST test set.")
    parser.add_argument("checkpoint", help="checkpoint written by train.py, or a saved state_dict")
    parser.add_argument("--data-dir", default="./files",
                        help="MNIST folder; downloaded into when empty (default: ./files)")
    parser.add_argument("--device", type=device_name, default="auto",
                        help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    parser.add_argument("--batch-size", type=positive_int, default=EVAL_BATCH_SIZE,
                        help=f"images per forward pass (default: {EVAL_BATCH_SIZE})")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    model = load_model(args.checkpoint, args.device)
    test_images, test_labels = load_mnist(args.data_dir, train=False, device=args.device)
    accuracy = evaluate(model, test_images, test_labels, args.batch_size)
    print(f"Test Accuracy: {accuracy * 100:.2f}%")


if __name__ == "__main__":
    run_main(main)
