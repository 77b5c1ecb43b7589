"""What train.py and test.py have in common: one-line errors and Ctrl-C, flags, the device and
threads, atomic writes, reading a checkpoint and evaluating it.
Usage: from common import UserError, run_main, add_data_and_device_arguments, load_model, predict
"""
import argparse
import contextlib
import importlib
import os
import secrets
import signal
import sys
import threading

import torch

from data import DataError
from model import Net


class UserError(Exception):
    """A mistake the user can fix; the scripts print it as one line, without a traceback."""


def run_main(main):
    """Run a script's main(): a UserError or DataError (data.py, copied alone, has its own)
    becomes one line on stderr and exit 1, Ctrl-C exit 130."""
    try:
        main()
    except (UserError, DataError) as error:
        sys.exit(f"error: {error}")
    except BrokenPipeError:  # output piped into a program that stopped reading, such as head
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        sys.exit(1)
    except KeyboardInterrupt:
        print("Interrupted (Ctrl-C); files are only written when complete, so none is "
              "half-written.", file=sys.stderr)
        sys.exit(130)


@contextlib.contextmanager
def ctrl_c_held():
    """Hold Ctrl-C back while the body runs; the list it gives is not empty if one came."""
    held = []
    if threading.current_thread() is not threading.main_thread():  # signals reach it only
        yield held
        return

    def hold(signal_number, frame):
        held.append(signal_number)
        print("Ctrl-C: the finished run is being tested and saved first", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, hold)
    try:
        yield held
    finally:
        signal.signal(signal.SIGINT, previous)


def checked(convert, is_valid, requirement):
    """Return an argparse type that converts the text and refuses values that fail is_valid."""
    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not is_valid(value):  # nan fails every comparison, so it is refused
            raise argparse.ArgumentTypeError(f"must be {requirement}, not {text!r}")
        return value
    return parse


positive_int = checked(int, lambda value: value >= 1, "a whole number of at least 1")
non_negative_int = checked(int, lambda value: value >= 0, "a whole number of at least 0")
MAX_LR, MAX_SEED = 10**6, 2**32 - 1  # larger rates overflow float32; the page's seeds are 32-bit
learning_rate = checked(float, lambda value: 0 < value <= MAX_LR, "above 0 and at most 1e6")
seed_value = checked(int, lambda value: 0 <= value <= MAX_SEED, "a whole number from 0 to 2**32 - 1")


def output_path(path):
    """argparse type for a file to write: refuse at once if it could not be written later."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise argparse.ArgumentTypeError(f"folder {folder} does not exist; create it first")
    if os.path.isdir(path):
        raise argparse.ArgumentTypeError(f"{path} is a folder; give a file name")
    if not os.access(folder, os.W_OK):
        raise argparse.ArgumentTypeError(f"folder {folder} is not writable")
    return path


def extra(name, flag=None):
    """extras/NAME.py, which flag needs: if it is not here, UserError in one line, or None without
    a flag (the tutorial's files, copied alone into a course, do without what goes beyond it)."""
    try:
        return importlib.import_module(f"extras.{name}")
    except ModuleNotFoundError as error:
        if error.name not in ("extras", f"extras.{name}"):
            raise  # a package the module needs: its own check_flags names it
    if flag is None:
        return None
    raise UserError(f"{flag} needs extras/{name}.py, which is not here: copy the extras folder "
                    "beside train.py and test.py")


def add_extra_arguments(parser, tutorial_values):
    """The flags beyond the tutorial from extras/flags.py if here, else only their tutorial_values."""
    if extra("flags"):
        return extra("flags").add_arguments(parser, tutorial_values)
    parser.set_defaults(**tutorial_values)


def check_extras(parser, args, tutorial_values):
    """Before any work: extras/flags.py checks the flags beyond the tutorial that args gives."""
    if extra("flags"):
        extra("flags").check(parser, args, tutorial_values)


def available_devices():
    """The device names this machine accepts: 'cpu', then its accelerator and their indices."""
    if hasattr(torch, "accelerator"):  # PyTorch 2.6+: any backend it was built with
        # A CUDA build names CUDA even without a GPU: is_available() says whether there is one.
        kind = torch.accelerator.is_available() and torch.accelerator.current_accelerator().type
        count = kind and torch.accelerator.device_count()
    else:
        kind = torch.cuda.is_available() and "cuda" or torch.backends.mps.is_available() and "mps"
        count = torch.cuda.device_count() if kind == "cuda" else 1
    return ["cpu"] + ([kind] + [f"{kind}:{index}" for index in range(count)] if kind else [])


def device_name(name):
    """argparse type for --device: 'auto' (the accelerator, if any) or a device this machine has."""
    available = available_devices()
    if name == "auto":
        return available[1] if len(available) > 1 else "cpu"
    if name not in available:
        raise argparse.ArgumentTypeError(
            f"{name!r} is not available on this machine; choose auto, {', '.join(available)}")
    return name


def add_data_and_device_arguments(parser, downloads=True):
    """Add --data-dir (downloads: if the script downloads MNIST there), --device and --threads."""
    parser.add_argument("--data-dir", default="./files", help="MNIST folder; " + (
        "downloaded into when empty" if downloads else "never downloaded into")
        + " (default: ./files)")
    parser.add_argument("--device", type=device_name, default="auto",
                        help="auto, cpu, or this machine's accelerator (cuda, cuda:N, mps, ...); "
                             "auto picks the accelerator when there is one (default: auto)")
    parser.add_argument("--threads", type=positive_int, metavar="N",
                        help="CPU threads PyTorch uses (default: OMP_NUM_THREADS when set, else a "
                             "quarter of the CPUs this process may use, at least 1)")


def set_threads(requested=None):
    """Set PyTorch's CPU threads and return how many: requested, else OMP_NUM_THREADS, else a
    quarter of the usable CPUs, so that runs can share a machine (docs/classroom.md)."""
    setting = os.environ.get("OMP_NUM_THREADS", "").strip()
    default = int(setting) if setting.isascii() and setting.isdigit() and int(setting) > 0 else \
        max(1, usable_cpus() // 4)
    torch.set_num_threads(requested or default)
    return requested or default


def usable_cpus():
    """The CPUs this process may use: its CPU affinity, or a CPU quota (extras/cpu_quota.py)."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return extra("cpu_quota").within_quota(count) if extra("cpu_quota") else count


def device_line(device, threads):
    """The first line a script prints: the device and the CPU threads chosen."""
    return f"Device: {device} ({threads} thread{'' if threads == 1 else 's'})"


def save_atomically(path, write, name_it=os.replace):
    """Call write(file) on a new file beside path, then name_it(that file, path): atomic, so path
    is never half-written; its name unguessable, so no link planted there is written through."""
    folder, name = os.path.split(os.path.abspath(path))
    temporary = os.path.join(folder, f".{name}.{secrets.token_hex(8)}.tmp")
    created = False
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                             | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0), 0o666)
        created = True
        with open(descriptor, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())  # the bytes reach the disk before the name points at them
        name_it(temporary, path)
    except FileExistsError:
        if created:
            raise  # name_it would not replace path (page/collect.py)
        raise UserError(f"{path}: could not be written (its temporary name is taken)") from None
    except OSError as error:  # disk full, folder removed meanwhile, ...
        raise UserError(f"{path}: could not be written ({error.strerror or error})") from None
    finally:
        if created and os.path.lexists(temporary):
            os.remove(temporary)


def load_model(path, device):
    """Return model.py's network with the weights in path, on device, in eval mode; no code of the
    file's runs. extras/checkpoints.py, when here, says what is wrong with a file in detail."""
    if extra("checkpoints"):
        return extra("checkpoints").load_model(path, device)
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        checkpoint = saved if isinstance(saved, dict) and "model" in saved else {"model": saved}
        model, history = Net(), checkpoint.get("history", {})
        model.load_state_dict(checkpoint["model"])  # strict: every name and shape must fit
        if not (isinstance(history, dict)
                and all(weight.isfinite().all() for weight in model.state_dict().values())):
            raise ValueError("not what train.py writes")  # said in the one line below
    except Exception:  # noqa: BLE001  (missing, damaged, refused or not numbers: one line)
        raise UserError(f"{path}: not a checkpoint of model.py's network (missing, damaged, "
                        "weights that are not numbers, or more than tensors and plain types); "
                        "none of its code was run") from None
    return model.to(device).eval()


# Evaluation keeps no gradients, so large batches are cheap and much faster than the tutorial's 64.
EVAL_BATCH_SIZE = 1000


@torch.no_grad()
def predict(model, images, batch_size=EVAL_BATCH_SIZE):
    """Return the predicted digit (N,) for images (N, 1, 28, 28), with dropout off; the model is
    left in the mode it came in, so predicting in the middle of training is safe."""
    was_training = model.training
    model.eval()  # dropout off: every unit counts at test time
    predictions = torch.cat([model(batch).argmax(dim=1) for batch in images.split(batch_size)])
    model.train(was_training)
    return predictions


def accuracy(predictions, labels):
    """Return the fraction of predictions equal to their labels, counted exactly."""
    return (predictions == labels).sum().item() / len(labels)
