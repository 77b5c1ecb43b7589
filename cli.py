"""What the scripts share, in sections: errors and Ctrl-C; flags (and the extras/ modules they
ask for); device and threads; files; checkpoints (read and checked without running their code);
evaluation; the training run (its log, snapshots, checkpoint and Ctrl-C).

Usage: from cli import UserError, run_main, add_data_and_device_arguments, load_model, evaluate
"""
import argparse
import contextlib
import importlib
import io
import math
import os
import pickle
import pickletools
import reprlib
import secrets
import signal
import struct
import sys
import threading
import warnings
import zipfile
import zlib

import torch

from data import DataError
from model import Net


# Errors and Ctrl-C

class UserError(Exception):
    """A mistake the user can fix; the scripts print it as one line, without a traceback."""


# data.py imports nothing of the project, so that it can be copied alone: it has its own class.
USER_ERRORS = (UserError, DataError)


def run_main(main):
    """Run a script's main(): a UserError or DataError becomes one line on stderr and exit 1,
    Ctrl-C exit 130."""
    try:
        main()
    except USER_ERRORS as error:
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


# Flags

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
learning_rate = checked(float, lambda value: 0 < value <= 1e6,  # larger rates overflow float32
                        "above 0 and at most 1e6")
weight_decay = checked(float, lambda value: 0 <= value <= 1, "from 0 to 1")
seed_value = checked(int, lambda value: 0 <= value < 2**63, "a whole number from 0 to 2**63 - 1")


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


def flag_of(name):
    """The flag that sets the argument name: no_dropout_epochs is --no-dropout-epochs."""
    return "--no-snapshots" if name == "snapshots" else "--" + name.replace("_", "-")


def extra(name, flag):
    """extras/NAME.py, which flag needs, imported now; UserError in one line if it is not here
    (the tutorial's files may be copied without the extras folder)."""
    try:
        return importlib.import_module(f"extras.{name}")
    except ModuleNotFoundError as error:
        if error.name not in ("extras", f"extras.{name}"):
            raise  # a package the module needs: its own check_flags names it
        raise UserError(f"{flag} needs extras/{name}.py, which is not here: copy the extras "
                        "folder beside train.py and test.py") from None


def check_extras(parser, args, **modules):
    """Before any work: import extras/MODULE.py for each argument (name=MODULE) that is not at
    its default, one line if it is not here, and let the module check its flags (check_flags)."""
    asked = {name: extra(name, flag_of(dest)) for dest, name in modules.items()
             if getattr(args, dest) != parser.get_default(dest)}
    for module in asked.values():
        if hasattr(module, "check_flags"):
            module.check_flags(parser, args)


# Device and threads


def accelerator_type():
    """Return the type of this machine's accelerator ('cuda', 'mps', ...), or None."""
    if hasattr(torch, "accelerator"):  # PyTorch 2.6+: any backend it was built with
        if not torch.accelerator.is_available():  # a CUDA build names CUDA even without a GPU
            return None
        return torch.accelerator.current_accelerator().type
    if torch.cuda.is_available():
        return "cuda"
    return "mps" if torch.backends.mps.is_available() else None


def available_devices():
    """Return the device names this machine accepts: 'cpu', then the accelerator and its indices."""
    kind = accelerator_type()
    if kind is None:
        return ["cpu"]
    if hasattr(torch, "accelerator"):
        count = torch.accelerator.device_count()
    else:
        count = torch.cuda.device_count() if kind == "cuda" else 1
    return ["cpu", kind] + [f"{kind}:{index}" for index in range(count)]


def device_name(name):
    """argparse type for --device: 'auto' (the accelerator, if any) or a device this machine has."""
    if name == "auto":
        return accelerator_type() or "cpu"
    available = available_devices()
    if name not in available:
        raise argparse.ArgumentTypeError(
            f"{name!r} is not available on this machine; choose auto, {', '.join(available)}")
    return name


def add_data_and_device_arguments(parser, downloads=True):
    """Add the --data-dir and --device flags that the training and testing scripts take;
    downloads: whether the script downloads MNIST into --data-dir when it is not there."""
    parser.add_argument("--data-dir", default="./files",
                        help="MNIST folder; downloaded into when empty (default: ./files)"
                        if downloads else "MNIST folder; never downloaded into (default: ./files)")
    add_device_argument(parser)


def add_device_argument(parser):
    """Add the --device and --threads flags that every script takes."""
    parser.add_argument("--device", type=device_name, default="auto",
                        help="auto, cpu, or this machine's accelerator (cuda, cuda:N, mps, ...); "
                             "auto picks the accelerator when there is one (default: auto)")
    parser.add_argument("--threads", type=positive_int, metavar="N",
                        help="CPU threads PyTorch uses (default: OMP_NUM_THREADS when set, else a "
                             "quarter of the CPUs this process may use, at least 1)")


def usable_cpus(cgroup_root="/sys/fs/cgroup"):
    """How many CPUs this process may really use: its CPU affinity, or fewer if its cgroup has a
    CPU quota (containers, JupyterHub), which os.cpu_count() and PyTorch's default do not see."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = cgroup_cpu_quota(cgroup_root)
    return max(1, min(count, math.ceil(quota))) if quota else count


def cgroup_cpu_quota(root):
    """The CPUs the cgroup quota allows this process (2.5 for 250 ms of each 100 ms), the least
    of its cgroup and the cgroups above it; None without a quota. cgroup v2 and v1."""
    quotas = []
    for line in read_text("/proc/self/cgroup").splitlines():  # "0::/path" (v2), "4:cpu:/path" (v1)
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            folders, name = [root, os.path.join(root, "unified")], "cpu.max"
        elif "cpu" in controllers.split(","):
            folders, name = [os.path.join(root, controllers), os.path.join(root, "cpu")], None
        else:
            continue
        for folder in folders:
            here = os.path.join(folder, path.lstrip("/"))
            while here.startswith(folder):  # this cgroup, then each one above it
                quotas.append(quota_in(here, name))
                here = os.path.dirname(here)
    quotas = [quota for quota in quotas if quota]
    return min(quotas) if quotas else None


def quota_in(folder, v2_name):
    """The CPU quota a cgroup folder sets, in CPUs, or None."""
    if v2_name:  # cpu.max: "max 100000" or "250000 100000"
        fields = read_text(os.path.join(folder, v2_name)).split()
        allowed, period = fields if len(fields) == 2 else ("max", "1")
    else:  # cpu.cfs_quota_us is -1 without a quota
        allowed = read_text(os.path.join(folder, "cpu.cfs_quota_us")).strip() or "-1"
        period = read_text(os.path.join(folder, "cpu.cfs_period_us")).strip() or "1"
    if allowed in ("max", "-1") or not (allowed.isdigit() and period.isdigit()) or int(period) == 0:
        return None
    return int(allowed) / int(period)


def read_text(path):
    """The file's text, or "" if it cannot be read (no such cgroup file on this system)."""
    try:
        with open(path) as file:
            return file.read()
    except OSError:
        return ""


def set_threads(requested=None):
    """Set PyTorch's CPU threads and return how many: requested (--threads), else OMP_NUM_THREADS
    when set, else a quarter of the usable CPUs, at least 1.

    PyTorch's default, one thread per core in every process, collapses when several runs share
    a machine (their threads wait for each other while spinning): measured in docs/classroom.md,
    4 runs at once on 2 cores took about 5 times as long as one after another. A quarter lets 4
    runs share the machine without more threads than CPUs; since the network is tiny, it costs one
    run alone at most about 1.2 times its time with 2 threads. The count never follows the load:
    another count adds some gradients in another order, and the same seed must give the same
    weights.
    """
    threads = requested or default_threads()
    torch.set_num_threads(threads)
    return threads


def default_threads():
    """OMP_NUM_THREADS when it is set to a whole number, else a quarter of the usable CPUs."""
    setting = os.environ.get("OMP_NUM_THREADS", "").strip()
    if setting.isascii() and setting.isdigit() and int(setting) > 0:
        return int(setting)
    return max(1, usable_cpus() // 4)


def device_line(device, threads):
    """The first line a script prints: the device and the CPU threads chosen."""
    return f"Device: {device} ({counted(threads, 'thread')})"


def counted(count, noun):
    """'1 thread', '2 threads': a count and its noun, singular for one."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


# Files

def folder_name(path):
    """A folder as a page names it: its own name, as in /home/a/digits or .. -> digits (or '' for
    the root). A page may be seen by a class or sent as a file: it never shows where this machine
    keeps things, and a name from it never climbs out of a folder ("../3/0000.png")."""
    return os.path.basename(os.path.abspath(path))


def save_atomically(path, write, overwrite=True):
    """Call write(file) on a temporary file beside path, then give it path's name.

    The rename is atomic, so a crash or a kill at any moment leaves path either as it was or
    complete: never half-written. With overwrite=False path is never replaced: FileExistsError if
    it is taken (see give_new_name).
    """
    temporary = os.path.join(os.path.dirname(os.path.abspath(path)),
                             f".{os.path.basename(path)}.{secrets.token_hex(8)}.tmp")
    created = False
    try:
        # A new file only, under a name nobody could guess: in a folder that others may write
        # (under /tmp, say), a link planted at the name would have its target overwritten.
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                             | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0), 0o666)
        created = True
        with open(descriptor, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())  # the bytes reach the disk before the name points at them
        if overwrite:
            os.replace(temporary, path)
        else:
            give_new_name(temporary, path)
    except FileExistsError:
        if not created:
            raise UserError(f"{path}: could not be written (its temporary name is taken)") from None
        raise
    except OSError as error:  # disk full, folder removed meanwhile, ...
        raise UserError(f"{path}: could not be written ({error.strerror or error})") from None
    finally:
        if created and os.path.lexists(temporary):
            os.remove(temporary)


def give_new_name(temporary, path):
    """Give the complete file temporary the name path, which must be free: FileExistsError if not.

    A hard link takes a name only if it is free, in one step. FAT32 and exFAT (USB sticks) and
    many network folders have no hard links; there the name is first taken by an exclusive
    create, which also fails if it exists, and the complete file then replaces that empty one.
    """
    try:
        os.link(temporary, path)
        return
    except FileExistsError:
        raise
    except OSError:  # no hard links here (EPERM, EOPNOTSUPP, ...)
        pass
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    try:
        os.replace(temporary, path)
    except OSError:
        os.remove(path)  # give the name back rather than leave an empty file under it
        raise


# Checkpoints: read whole and checked, without running any of their code

# The globals besides torch's own that weights_only loads: plain types, which run no code of
# the file's choosing.
PLAIN_GLOBALS = {"builtins.set", "builtins.bytearray", "builtins.complex", "_codecs.encode",
                 "collections.OrderedDict", "collections.Counter"}


def read_checkpoint(path):
    """Return what path holds: a checkpoint dict of train.py's (with its weights under 'model') or
    a bare state_dict, as {'model': state_dict}.

    weights_only=True lets torch.load rebuild tensors and plain types only, so a file that asks
    for anything else is refused before any of its code can run.
    """
    problem = archive_problem(path)
    if problem:
        raise UserError(f"{path}: {problem}")
    try:
        with warnings.catch_warnings():
            # torch warns of a pickle protocol it does not write, before reading or refusing
            # the file: what came of it is said in one line, here or below.
            warnings.simplefilter("ignore")
            saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001  (each kind is named by load_problem)
        raise UserError(f"{path}: {load_problem(error, path)}") from None
    checkpoint = saved if isinstance(saved, dict) and "model" in saved else {"model": saved}
    if not is_state_dict(checkpoint["model"]):
        raise UserError(f"{path}: holds a {type(saved).__name__}, "
                        "not a checkpoint or a model state_dict")
    problem = checkpoint_problem(checkpoint)
    if problem:
        raise UserError(f"{path}: {problem}; the checkpoint is damaged or was not written by "
                        "train.py")
    return checkpoint


def archive_problem(path):
    """Why torch.save's zip archive at path cannot be trusted, in a few words (None when it can,
    or when path is no archive: torch.load then says what it is). torch.load checks none of this:
    it inflates a compressed record, however large, and reads a damaged, doubled or misplaced
    record's bytes as weights without a word."""
    try:
        if not zipfile.is_zipfile(path):
            return None
        with zipfile.ZipFile(path) as archive:
            records = archive.infolist()
            problem = (size_problem(records, os.path.getsize(path))
                       or placement_problem(path, records, archive.start_dir))
            if problem:
                return problem
            damaged = archive.testzip()  # every record's checksum; stored, so at most the file
    except (OSError, EOFError, zipfile.BadZipFile, NotImplementedError, ValueError) as error:
        return f"not a PyTorch checkpoint (damaged: its archive cannot be read ({type(error).__name__}))"
    return damaged and f"not a PyTorch checkpoint (damaged: {shown(damaged)} does not match its checksum)"


def size_problem(records, size):
    """Why the records would unpack to more than the file holds: torch.save stores them as they
    are, while torch.load inflates a compressed one, so a small file could ask for gigabytes."""
    compressed = next((record for record in records if record.compress_type != zipfile.ZIP_STORED),
                      None)
    if compressed is not None:
        return (f"refused: {shown(compressed.filename)} is compressed, which torch.save never does, "
                "and could unpack to gigabytes; none of it was loaded")
    claimed = sum(record.file_size for record in records)
    if claimed > size:
        return (f"refused: its records claim {claimed:,} bytes, more than the file's {size:,}; "
                "none of it was loaded")
    return None


def placement_problem(path, records, index_start):
    """Why the records are not each their own bytes, one after another before the archive's
    index: a doubled name, or a record placed over another (its weights read from the pickle's
    bytes, say)."""
    names = [record.filename for record in records]
    doubled = next((name for name in names if names.count(name) > 1), None)
    if doubled is not None:
        return f"not a PyTorch checkpoint (damaged: two records are named {shown(doubled)})"
    end = 0
    with open(path, "rb") as file:
        for record in sorted(records, key=lambda record: record.header_offset):
            file.seek(record.header_offset)
            header = file.read(30)  # a record's local header: signature ... name and extra sizes
            if len(header) < 30 or header[:4] != b"PK\x03\x04" or record.header_offset < end:
                return (f"not a PyTorch checkpoint (damaged: {shown(record.filename)} lies over "
                        "another record's bytes)")
            name_size, extra_size = struct.unpack("<HH", header[26:30])
            end = record.header_offset + 30 + name_size + extra_size + record.compress_size
    if end > index_start:
        return "not a PyTorch checkpoint (damaged: its records lie over the archive's index)"
    return None


def is_state_dict(value):
    return (isinstance(value, dict) and bool(value)
            and all(isinstance(tensor, torch.Tensor) for tensor in value.values()))


def checkpoint_problem(checkpoint):
    """Why a field of checkpoint is not as train.py writes it, in a few words (None when every
    field is): every reader takes the fields from here, so none meets a wrong type, a missing
    part or a weight that is not a number. A field that is absent (a bare state_dict, a
    checkpoint older than the field) is left to the reader that needs it."""
    for key, problem_of in FIELD_PROBLEMS.items():
        problem = problem_of(checkpoint[key]) if key in checkpoint else None
        if problem:
            return f"{key} {problem}"
    return None


def weights_problem(state_dict):
    """Why state_dict is not weights a network can use (None when it is), naming the first
    tensor that holds NaN or an infinity."""
    if not is_state_dict(state_dict):
        return f"is {shown(state_dict)}, not a state_dict of tensors"
    for key, tensor in state_dict.items():
        if not isinstance(key, str):
            return f"has a key that is not a name: {shown(key)}"
        if tensor.layout != torch.strided:
            return f"{key} is a {tensor.layout} tensor, not a plain one"
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            return f"{key} holds weights that are not numbers (NaN or infinite)"
    return None


def snapshots_problem(snapshots):
    if not isinstance(snapshots, list):
        return f"is {shown(snapshots)}, not a list"
    for number, snapshot in enumerate(snapshots):
        if not (isinstance(snapshot, dict) and is_count(snapshot.get("step"))
                and "model" in snapshot):
            return f"{number} is {shown(snapshot)}, not {{'step': N, 'model': state_dict}}"
        problem = weights_problem(snapshot["model"])
        if problem:
            return f"{number} (step {snapshot['step']}): model {problem}"
    return None


def history_problem(history):
    """Why history is not the run's per-step lists of numbers (None when it is)."""
    if not isinstance(history, dict) or not {"loss", "accuracy"} <= history.keys():
        return f"is {shown(history)}, not a dict with the lists 'loss' and 'accuracy'"
    for key, values in history.items():
        if not isinstance(values, list):
            return f"{shown(key)} is {shown(values)}, not a list of numbers"
        bad = next((step for step, value in enumerate(values) if not is_number(value)), None)
        if bad is not None:
            return f"{shown(key)} at step {bad + 1} is {shown(values[bad])}, not a number"
    return None


def data_problem(record):
    """Why record is not what train.py keeps of the pictures a run trained on (None when it is)."""
    if record is None:
        return None
    added = record.get("extra_pictures", False) if isinstance(record, dict) else False
    if isinstance(record, dict) and is_count(record.get("train_images")) and (
            added is None or isinstance(added, dict) and is_count(added.get("count"))
            and isinstance(added.get("digest"), str)):
        return None
    return (f"is {shown(record)}, not {{'train_images': N, 'extra_pictures': None or "
            "{'count': N, 'digest': text}}")


def rng_problem(states):
    if (isinstance(states, dict) and all(is_byte_tensor(states.get(key)) for key in ("shuffle", "cpu"))
            and "cuda" in states and (states["cuda"] is None or is_byte_tensor(states["cuda"]))):
        return None
    return f"is {shown(states)}, not the states 'shuffle', 'cpu' and 'cuda' of random numbers"


def kind_problem(is_right, kind):
    """A check that a field is of kind, as is_right tells."""
    return lambda value: None if is_right(value) else f"is {shown(value)}, not {kind}"


def is_count(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def is_number(value):
    """Whether value is a finite int or float (a bool is neither, for this)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return isinstance(value, int) or math.isfinite(value)


def is_byte_tensor(value):
    return isinstance(value, torch.Tensor) and value.dtype == torch.uint8 and value.dim() == 1


def is_named_dict(value):
    return isinstance(value, dict) and all(isinstance(key, str) for key in value)


def shown(value):
    """value in a few characters on one line: a field of a hostile file may hold anything, of
    any size."""
    return SHORT.repr(value)


class ShortRepr(reprlib.Repr):
    """One level of a container and its first few items; a tensor by its shape alone (its own
    repr takes many lines)."""

    def repr_Tensor(self, tensor, level):
        return f"a tensor of shape {tuple(tensor.shape)}"


SHORT = ShortRepr()
SHORT.maxlevel, SHORT.maxdict, SHORT.maxlist, SHORT.maxtuple = 1, 3, 3, 3
SHORT.maxstring = SHORT.maxother = 40

FIELD_PROBLEMS = {
    "model": weights_problem,
    "snapshots": snapshots_problem,
    "history": history_problem,
    "epoch": kind_problem(is_count, "a number of epochs"),
    "args": kind_problem(is_named_dict, "a dict of flags"),
    "data": data_problem,
    "optimizer": kind_problem(lambda value: is_named_dict(value)
                              and isinstance(value.get("state"), dict)
                              and isinstance(value.get("param_groups"), list), "Adam's state"),
    "scheduler": kind_problem(lambda value: value is None or is_named_dict(value),
                              "a schedule's state or None"),
    "rng": rng_problem,
    "test_accuracy": kind_problem(lambda value: value is None or is_number(value) and 0 <= value <= 1,
                                  "a fraction or None"),
}


def load_problem(error, path):
    """Say in a few words why torch.load failed on path, from the kind of error and, for a
    pickle it refused, the globals the pickle asks for."""
    if isinstance(error, FileNotFoundError):
        return f"no such file; train one with: python train.py --out {path}"
    if isinstance(error, IsADirectoryError):
        return "is a folder, not a checkpoint file"
    if isinstance(error, PermissionError):
        return "cannot be read (permission denied)"
    if isinstance(error, EOFError):
        return "empty or truncated, not a PyTorch checkpoint"
    # A pickle that weights_only refuses asks for Python objects besides tensors and plain
    # types; read whole, its instructions say which (a damaged one cannot be read whole).
    asked = pickle_globals(path) if isinstance(error, pickle.UnpicklingError) else None
    if asked is not None:
        # Every nn.Module pickles its layers' classes by name.
        if any(name.startswith("torch.nn.modules.") for name in asked):
            return ("holds a whole model, saved with torch.save(model), and loading one runs its "
                    "code; save its weights instead: torch.save(model.state_dict(), path)")
        foreign = [name for name in asked
                   if name.split(".")[0] != "torch" and plain_name(name) not in PLAIN_GLOBALS]
        if foreign:
            return (f"refused: loading it would run code (it asks for {foreign[0]}), so none of "
                    "it was loaded; only tensors and plain types are")
        if zipfile.is_zipfile(path):
            return ("refused: it holds Python objects besides tensors and plain types, and "
                    "loading those could run code; only tensors and plain types are loaded")
    # A damaged archive or pickle (RuntimeError, UnpicklingError), text, ...
    return "not a PyTorch checkpoint (damaged, truncated, or saved in another format)"


def plain_name(name):
    """name as Python 3 spells it: protocol 2 pickles (torch.save's) name builtins __builtin__."""
    return "builtins." + name.split(".", 1)[1] if name.startswith("__builtin__.") else name


def pickle_globals(path):
    """The globals ('module.name') that the pickle in path asks for, from torch.save's zip
    archive or a plain file, read from its instructions without running any; None when no
    whole pickle is there (a damaged archive or pickle, text, ...)."""
    try:
        if not zipfile.is_zipfile(path):
            with open(path, "rb") as file:
                return globals_of_pickles(file)
        with zipfile.ZipFile(path) as archive:
            names = [name for name in archive.namelist() if name.endswith("/data.pkl")]
            # read() checks the CRC: a damaged pickle is not read at all
            return globals_of_pickles(io.BytesIO(archive.read(names[0]))) if names else None
    except (OSError, EOFError, zipfile.BadZipFile, NotImplementedError, zlib.error):
        return None


def globals_of_pickles(file):
    """The globals asked for by the whole pickles at the start of file (torch's older format
    writes several in a row, then raw bytes); None when the first is not whole."""
    asked = None
    while file.read(1):
        file.seek(-1, io.SEEK_CUR)
        try:
            names = globals_of_pickle(file)
        except ValueError:  # not a pickle (any more): damaged, or the raw bytes after them
            return asked
        asked = (asked or []) + names
    return asked


def globals_of_pickle(file):
    """The globals one pickle asks for: GLOBAL and INST name them ('module name'), STACK_GLOBAL
    takes the last two strings pushed (directly or from the memo). ValueError: not a pickle."""
    names, pushed, memo = [], [], {}
    for opcode, argument, _ in pickletools.genops(file):
        if opcode.name in ("GLOBAL", "INST", "STACK_GLOBAL"):
            names.append(argument.replace(" ", ".", 1) if argument
                         else ".".join(str(part) for part in pushed[-2:]))
            value = None
        elif opcode.name in ("MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT"):
            memo[len(memo) if opcode.name == "MEMOIZE" else argument] = pushed[-1] if pushed else None
            continue
        elif opcode.name.endswith("GET"):
            value = memo.get(argument)
        else:
            value = argument if isinstance(argument, str) else None
        pushed.append(value)
    return names


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
    if overflows(model.eval()):
        raise UserError(f"{path}: its weights are numbers, but so large that the network computes "
                        "values that are not numbers (NaN or infinite) from an image")
    return model.to(device)


@torch.no_grad()
def overflows(model):
    """Whether the network computes NaN or infinities from a few seeded random images; weights
    that are all numbers can still overflow float32 on the way. A network that cannot take
    MNIST's shape at all is left to say so where it is used."""
    images = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    try:
        output = model(images)
    except Exception:  # noqa: BLE001  (any forward() error shows again, in place, when it is used)
        return False
    return not torch.isfinite(output).all().item()


# Evaluation

# Evaluation keeps no gradients, so large batches are cheap and much faster than the tutorial's 64.
EVAL_BATCH_SIZE = 1000


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


# The training run: what train.py's default run needs besides the tutorial's step

# Training counts as diverged when a step's loss is NaN, infinite or above this. Guessing
# uniformly costs ln(10) = 2.30; a loss 40 times that means the weights have blown up (a huge
# --lr such as 1e6 gives losses of 1e9 and more that may never become NaN).
DIVERGED_LOSS = 100.0


class StepLog:
    """Each step's loss and accuracy, kept on the device; prints the tutorial's progress lines.

    Reading loss.item() at every step would make the CPU wait for the GPU each time, so the
    values are read, and checked for divergence, only at log lines and at the end of the epoch.
    """

    def __init__(self, steps, shown_steps, epoch, epochs, log_interval, device):
        self.losses = torch.zeros(steps, device=device)
        self.accuracies = torch.zeros(steps, device=device)
        self.shown_steps, self.epoch, self.epochs = shown_steps, epoch, epochs
        self.log_interval = log_interval
        self.checked = 0  # steps before this one have passed check_diverged

    def record(self, step, loss, output, labels):
        self.losses[step] = loss.detach()
        self.accuracies[step] = (output.argmax(dim=1) == labels).float().mean()
        if step % self.log_interval == 0:
            self.check(step + 1)
            print(f"Epoch: {self.epoch}/{self.epochs}, Step: {step + 1}/{self.shown_steps}, "
                  f"Loss: {self.losses[step].item():.4f}, "
                  f"Accuracy: {self.accuracies[step].item() * 100:.2f}%")

    def check(self, end):
        check_diverged(self.losses[self.checked:end], self.epoch, first_step=self.checked + 1)
        self.checked = end

    def finish(self):
        """Check the steps since the last log line; return the losses and accuracies (steps,)."""
        self.check(len(self.losses))
        return self.losses, self.accuracies


def check_diverged(losses, epoch, first_step):
    """Raise UserError if any of these step losses (steps first_step, ...) shows a blow-up."""
    bad = (~torch.isfinite(losses) | (losses > DIVERGED_LOSS)).nonzero()
    if len(bad):
        index = bad[0].item()
        raise UserError(f"training diverged (loss {losses[index].item():.4g} at epoch {epoch}, "
                        f"step {first_step + index}); try a smaller --lr; nothing was saved")


def snapshot_steps(total_steps):
    """The steps after which the weights are kept: 0 (the initial weights), 1, 2, 5, 10, 20, 50,
    ... (the network changes fastest in its first steps), and the last step."""
    steps, scale = [0], 1
    while scale < total_steps:
        steps += [factor * scale for factor in (1, 2, 5) if factor * scale < total_steps]
        scale *= 10
    return steps + [total_steps]


def on_cpu(value):
    """A copy of value (tensors, in dicts and lists) on the CPU, that later steps cannot change."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {key: on_cpu(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(on_cpu(item) for item in value)
    return value


class Snapshots:
    """The weights kept in run["snapshots"] for the drawing page's training slider, at the
    snapshot_steps of a run of total_steps (none if total_steps is None: --no-snapshots)."""

    def __init__(self, model, run, total_steps):
        self.model, self.run = model, run
        self.keep = set() if total_steps is None else set(snapshot_steps(total_steps))
        # A run resumed to more epochs keeps the snapshots of the longer run only: the last step
        # of the shorter one is not among them.
        run["snapshots"] = [snapshot for snapshot in run["snapshots"]
                            if snapshot["step"] in self.keep]
        if 0 in self.keep and not run["snapshots"]:
            self.add(0)

    def add(self, step):
        self.run["snapshots"].append({"step": step, "model": on_cpu(self.model.state_dict())})

    def after_step(self, done):
        """train_epoch's after_step for an epoch that starts after done steps of the run."""
        def keep(step):
            if done + step + 1 in self.keep:
                self.add(done + step + 1)
        return keep


def checkpoint_of(model, optimizer, scheduler, generator, args, run, record):
    """The run after its last completed epoch, as train.py saves it (without the test accuracy).
    record: what it trained on (the number of images, the extra pictures' digest)."""
    return {"model": on_cpu(model.state_dict()), "optimizer": on_cpu(optimizer.state_dict()),
            "scheduler": scheduler and plain_state(scheduler), "epoch": run["epoch"],
            "args": vars(args), "snapshots": list(run["snapshots"]),
            "history": {key: list(values) for key, values in run["history"].items()},
            "rng": random_state(generator, next(model.parameters()).device), "data": record,
            "test_accuracy": None}


def plain_state(scheduler):
    """The scheduler's state without its functions (PyTorch 2.3 keeps one there), which
    weights_only cannot load; the scheduler made anew for --resume has its own."""
    return {key: value for key, value in scheduler.state_dict().items() if not callable(value)}


def random_state(generator, device):
    """Every random number generator the run draws from, so a resumed run draws the same."""
    return {"shuffle": generator.get_state(), "cpu": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def save_interrupted(args, run):
    """After Ctrl-C: keep the last completed epoch, if any, and say how to continue; exit 130.

    A complete checkpoint already at --out (not the run being resumed) is not replaced by a
    partial run: the partial one goes beside it, as NAME.partial.pt.
    """
    if run is None:
        raise KeyboardInterrupt  # not one epoch done: run_main says so; the old file stays
    path = args.out
    resuming_it = args.resume and os.path.exists(path) and os.path.samefile(path, args.resume)
    if os.path.exists(path) and not resuming_it:
        path = os.path.splitext(args.out)[0] + ".partial.pt"
    save_atomically(path, lambda file: torch.save(run, file))
    out = "" if path == args.out else f" --out {args.out}"
    saved = "epoch 1 is" if run["epoch"] == 1 else f"epochs 1 to {run['epoch']} are"
    print(f"Interrupted (Ctrl-C) in epoch {run['epoch'] + 1}; {saved} saved in {path}; continue "
          f"with: python train.py --resume {path} --epochs {args.epochs}{out}", file=sys.stderr)
    sys.exit(130)
