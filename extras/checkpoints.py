"""Checkpoints read whole and checked without running any of their code: the archive before
torch.load (no record compressed, damaged, doubled or misplaced), then every field that a reader
uses, and the weights by one forward pass; each problem said in one line naming the file.

Usage: from extras.checkpoints import read_checkpoint, load_model  (common.load_model uses these)
"""
import io
import math
import os
import pickle
import pickletools
import reprlib
import struct
import warnings
import zipfile
import zlib

import torch

from common import UserError
from model import Net

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
