"""Load a trained checkpoint and evaluate it: shared by train.py, test.py and draw.py.

Usage: from evaluation import load_model, predict, evaluate
"""
import pickle
import pickletools
import zipfile

import torch

from cli import UserError
from model import Net

# Evaluation keeps no gradients, so large batches are cheap and much faster than the tutorial's 64.
EVAL_BATCH_SIZE = 1000


def read_checkpoint(path):
    """Return what path holds: a checkpoint dict of train.py's (with its weights under 'model') or
    a bare state_dict, as {'model': state_dict}.

    weights_only=True lets torch.load rebuild tensors and plain types only, so a file that asks
    for anything else is refused before any of its code can run.
    """
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001  (each kind is named by load_problem)
        raise UserError(f"{path}: {load_problem(error, path)}") from None
    checkpoint = saved if isinstance(saved, dict) and "model" in saved else {"model": saved}
    if not is_state_dict(checkpoint["model"]):
        raise UserError(f"{path}: holds a {type(saved).__name__}, "
                        "not a checkpoint or a model state_dict")
    return checkpoint


def is_state_dict(value):
    return (isinstance(value, dict) and bool(value)
            and all(isinstance(tensor, torch.Tensor) for tensor in value.values()))


def load_problem(error, path):
    """Say in a few words why torch.load failed on path, from the kind of error alone."""
    if isinstance(error, FileNotFoundError):
        return f"no such file; train one with: python train.py --out {path}"
    if isinstance(error, IsADirectoryError):
        return "is a folder, not a checkpoint file"
    if isinstance(error, PermissionError):
        return "cannot be read (permission denied)"
    if isinstance(error, EOFError):
        return "empty or truncated, not a PyTorch checkpoint"
    # torch.save writes a zip archive; inside a whole one, a pickle that weights_only refuses
    # asks for Python objects besides tensors and plain types.
    if isinstance(error, pickle.UnpicklingError) and zipfile.is_zipfile(path):
        if holds_whole_model(path):
            return ("holds a whole model, saved with torch.save(model), and loading one runs its "
                    "code; save its weights instead: torch.save(model.state_dict(), path)")
        return ("refused: it holds Python objects besides tensors and plain types, and loading "
                "those could run code; only tensors and plain types are loaded")
    # A damaged archive (RuntimeError), text or foreign pickle data (UnpicklingError), ...
    return "not a PyTorch checkpoint (damaged, truncated, or saved in another format)"


def holds_whole_model(path):
    """Whether the checkpoint at path pickles a torch.nn module (torch.save(model), as many
    tutorials do), read from the pickle's instructions without running any of them."""
    with zipfile.ZipFile(path) as archive:
        names = [name for name in archive.namelist() if name.endswith("/data.pkl")]
        instructions = pickletools.genops(archive.read(names[0])) if names else []
        try:
            # GLOBAL names "module class"; every nn.Module pickles its layers' classes by name.
            return any(opcode.name == "GLOBAL" and str(argument).startswith("torch.nn.modules")
                       for opcode, argument, _ in instructions)
        except ValueError:  # a damaged pickle
            return False


def load_model(path, device):
    """Return the network with the weights in path, on device, in eval mode."""
    return build_model(read_checkpoint(path)["model"], path, device)


def build_model(state_dict, path, device):
    """Return model.py's network with these weights (read from path), on device, in eval mode."""
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
def predict(model, images, batch_size=EVAL_BATCH_SIZE):
    """Return the predicted digit (N,) for images (N, 1, 28, 28), with dropout off.

    The model is left in the mode it came in, so predicting in the middle of training is safe.
    """
    was_training = model.training
    model.eval()  # dropout off: every unit counts at test time
    predictions = torch.cat([model(batch).argmax(dim=1) for batch in images.split(batch_size)])
    model.train(was_training)
    return predictions


def accuracy(predictions, labels):
    """Return the fraction of predictions equal to their labels, counted exactly."""
    return (predictions == labels).sum().item() / len(labels)


def evaluate(model, images, labels, batch_size=EVAL_BATCH_SIZE):
    """Return the fraction of images whose predicted digit equals the label."""
    return accuracy(predict(model, images, batch_size), labels)


def confusion_matrix(labels, predictions):
    """Return the (10, 10) counts of each true digit (row) predicted as each digit (column)."""
    return torch.bincount(labels * 10 + predictions, minlength=100).view(10, 10).cpu()


@torch.no_grad()
def probabilities(model, images, batch_size=EVAL_BATCH_SIZE):
    """Return the network's probabilities (N, 10) for images (N, 1, 28, 28), on the CPU."""
    return torch.cat([model(batch).softmax(dim=1).cpu() for batch in images.split(batch_size)])
