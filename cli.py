"""Command-line plumbing the scripts share: one-line errors, flags, device choice, atomic writes.

Usage: from cli import UserError, run_main, add_data_and_device_arguments
"""
import argparse
import math
import os
import sys
import threading

import torch

from data import DataError


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


def add_data_and_device_arguments(parser):
    """Add the --data-dir and --device flags that the training and testing scripts take."""
    parser.add_argument("--data-dir", default="./files",
                        help="MNIST folder; downloaded into when empty (default: ./files)")
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
    return f"Device: {device} ({threads} thread{'s' if threads != 1 else ''})"


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
                             f".{os.path.basename(path)}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(temporary, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())  # the bytes reach the disk before the name points at them
        if overwrite:
            os.replace(temporary, path)
        else:
            give_new_name(temporary, path)
    except FileExistsError:
        raise
    except OSError as error:  # disk full, folder removed meanwhile, ...
        raise UserError(f"{path}: could not be written ({error.strerror or error})") from None
    finally:
        if os.path.exists(temporary):
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
