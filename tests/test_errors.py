"""Tests that every user mistake ends in one clear line, a non-zero exit and no half-written file.

Usage: python -m unittest -v tests.test_errors
"""
import contextlib
import io
import os
import pickle
import shutil
import signal
import struct
import subprocess
import sys
import unittest
import warnings
import zipfile
from unittest import mock

import torch
import torch.nn as nn
import torchvision
from PIL import Image, ImageDraw

import common
import data
import draw
import test
import train
from extras import pictures
from page.collect import give_new_name
from tests.fixtures import (EPS_SEVEN, ROOT, Payload, TutorialModel, fake_ghostscript, make_fake_mnist,
                            run_script, run_subprocess, start_script, temporary_folder, write_idx)
from tools import benchmark, benchmark_export, benchmark_page


def setUpModule():
    global TEMP, DATA_DIR
    TEMP = temporary_folder()
    DATA_DIR = make_fake_mnist(os.path.join(TEMP, "data"), train_size=300, test_size=50)


def temp_path(name):
    return os.path.join(TEMP, name)


class ErrorTestCase(unittest.TestCase):
    def assertOneLineError(self, code, err, expected_code, *fragments):
        """The run failed with expected_code and said so in one line holding every fragment."""
        self.assertEqual(code, expected_code, err)
        self.assertNotIn("Traceback", err)
        last_line = err.strip().splitlines()[-1]
        for fragment in fragments:
            self.assertIn(fragment, last_line)


class HostileCheckpointTest(ErrorTestCase):
    def check(self, path, *fragments):
        code, out, err = run_script(test, [path, "--data-dir", DATA_DIR, "--device", "cpu"])
        self.assertOneLineError(code, err, 1, "error: " + path, *fragments)
        self.assertEqual(len(err.strip().splitlines()), 1, err)
        self.assertEqual(out, "")

    def write_bytes(self, name, content):
        path = temp_path(name)
        with open(path, "wb") as file:
            file.write(content)
        return path

    def test_missing_file_and_folder(self):
        self.check(temp_path("nothing.pt"), "no such file")
        self.check(TEMP, "is a folder")

    def test_empty_random_text_and_truncated_files(self):
        self.check(self.write_bytes("empty.pt", b""), "empty or truncated")
        self.check(self.write_bytes("random.pt", bytes(range(256)) * 40), "not a PyTorch checkpoint")
        self.check(self.write_bytes("text.pt", b"weights = [1, 2, 3]\n"), "not a PyTorch checkpoint")
        whole = temp_path("whole.pt")
        torch.save({"model": TutorialModel().state_dict()}, whole)
        with open(whole, "rb") as file:
            content = file.read()
        self.check(self.write_bytes("truncated.pt", content[:len(content) // 2]),
                   "not a PyTorch checkpoint")

    def test_tensor_or_list_instead_of_a_dict(self):
        torch.save(torch.zeros(3), temp_path("tensor.pt"))
        self.check(temp_path("tensor.pt"), "holds a Tensor")
        torch.save([1, 2], temp_path("list.pt"))
        self.check(temp_path("list.pt"), "holds a list")

    def test_other_architecture_names_keys_and_shapes(self):
        torch.save(nn.Linear(784, 10).state_dict(), temp_path("linear.pt"))
        self.check(temp_path("linear.pt"), "another architecture",
                   "missing: convolution1.weight", "unexpected: weight, bias")
        state_dict = TutorialModel().state_dict()
        state_dict["fc1.weight"] = torch.zeros(30, 320)  # the tutorial text's 4x4x20 = 320
        torch.save({"model": state_dict}, temp_path("wide.pt"))
        self.check(temp_path("wide.pt"), "fc1.weight (30, 320) instead of (30, 256)")

    def test_a_whole_model_saved_as_tutorials_do_says_to_save_its_state_dict(self):
        torch.save(TutorialModel(), temp_path("whole_model.pt"))  # torch.save(model)
        self.check(temp_path("whole_model.pt"), "holds a whole model, saved with torch.save(model)",
                   "torch.save(model.state_dict(), path)")

    def test_pickle_that_would_run_code_is_refused_unrun(self):
        marker = temp_path("pwned")
        path = temp_path("evil.pt")
        torch.save({"model": Payload(marker)}, path)
        self.check(path, "refused", "would run code", "posix.system")
        result = run_subprocess("test.py", path, "--data-dir", DATA_DIR, "--device", "cpu")
        self.assertOneLineError(result.returncode, result.stderr, 1, "refused")
        self.assertFalse(os.path.exists(marker), "code from the checkpoint ran")

    def test_plain_and_old_format_pickles_that_would_run_code_are_refused_by_name(self):
        marker = temp_path("pwned_plain")
        plain = self.write_bytes("evil.pkl", pickle.dumps({"model": Payload(marker)}))
        torch.save({"model": Payload(marker)}, temp_path("evil_old.pt"),
                   _use_new_zipfile_serialization=False)  # torch's format before 1.6
        for path in (plain, temp_path("evil_old.pt")):
            self.check(path, "refused: loading it would run code (it asks for posix.system)")
            code, _, err = run_script(draw, [path, "--export", temp_path("evil.html"),
                                             "--data-dir", DATA_DIR, "--device", "cpu"])
            self.assertOneLineError(code, err, 1, "posix.system")
        self.assertFalse(os.path.exists(marker), "code from the checkpoint ran")

    def test_damaged_pickle_naming_an_unknown_global_is_damaged(self):
        path = temp_path("flipped.pt")
        torch.save({"model": TutorialModel().state_dict()}, path)
        with open(path, "rb") as file:
            content = file.read()
        # One byte of a global's name changed: torch.load names an unknown global, and the
        # archive's checksum of the pickle no longer matches.
        at = content.index(b"_rebuild_tensor_v2")
        self.check(self.write_bytes("flipped.pt", content[:at] + b"X" + content[at + 1:]),
                   "not a PyTorch checkpoint (damaged")


class CheckpointFieldTest(ErrorTestCase):
    """A checkpoint whose weights are not numbers, or whose fields have the wrong type, is
    refused in one line by test.py, draw.py (the page and --export) and train.py --init-from."""

    def check_every_reader(self, name, checkpoint, *fragments):
        path = temp_path(name)
        torch.save(checkpoint, path)
        common = ["--data-dir", DATA_DIR, "--device", "cpu"]
        for module, argv in ((test, [path]), (draw, [path, "--export", temp_path("page.html")]),
                             (train, ["--init-from", path, "--out", temp_path("tuned.pt")])):
            code, _, err = run_script(module, argv + common)
            self.assertOneLineError(code, err, 1, "error: " + path, *fragments)
            self.assertEqual(len(err.strip().splitlines()), 1, err)
        self.assertFalse(os.path.exists(temp_path("page.html")))
        self.assertFalse(os.path.exists(temp_path("tuned.pt")))

    def test_weights_that_are_not_numbers_are_refused_naming_the_first(self):
        for bad in (float("nan"), float("inf")):
            weights = TutorialModel().state_dict()
            weights["fc1.bias"][3] = bad
            self.check_every_reader("nan.pt", {"model": weights}, "model fc1.bias holds weights "
                                    "that are not numbers")
            snapshot = TutorialModel().state_dict()
            snapshot["convolution2.weight"][0, 0, 0, 0] = bad
            self.check_every_reader("nan_snapshot.pt", {
                "model": TutorialModel().state_dict(),
                "snapshots": [{"step": 0, "model": TutorialModel().state_dict()},
                              {"step": 5, "model": snapshot}]},
                "snapshots 1 (step 5): model convolution2.weight holds weights that are not")
        self.check_every_reader("nan_history.pt", {
            "model": TutorialModel().state_dict(),
            "history": {"loss": [2.3, float("nan")], "accuracy": [0.1, 0.2]}},
            "history 'loss' at step 2 is nan, not a number")

    def test_weights_so_large_that_the_network_overflows_are_refused(self):
        weights = {key: value * 1e30 for key, value in TutorialModel().state_dict().items()}
        self.check_every_reader("huge.pt", {"model": weights}, "its weights are numbers, but so "
                                "large that the network computes values that are not numbers")

    def test_fields_of_the_wrong_type_are_one_line(self):
        weights = TutorialModel().state_dict()
        cases = [({"model": {0: torch.zeros(3), **weights}}, "model has a key that is not a name: 0"),
                 ({"model": weights, "history": {"loss": ["a"], "accuracy": []}},
                  "history 'loss' at step 1 is 'a', not a number"),
                 ({"model": weights, "history": "x"}, "history is 'x', not a dict"),
                 ({"model": weights, "snapshots": [{"step": 0}]}, "snapshots 0 is {'step': 0}, not"),
                 ({"model": weights, "snapshots": "abc"}, "snapshots is 'abc', not a list"),
                 ({"model": weights, "rng": {"shuffle": torch.zeros(2, 2)}},
                  "rng is {'shuffle': a tensor of shape (2, 2)}, not")]
        for checkpoint, fragment in cases:
            self.check_every_reader("fields.pt", checkpoint, fragment, "damaged or was not")


class TamperedArchiveTest(ErrorTestCase):
    """A checkpoint's zip archive that torch.load would read without a word (a record compressed
    from a gigabyte, a flipped byte, a doubled record, a record placed over the pickle) is
    refused in one line by every reader, before any record is unpacked."""

    @classmethod
    def setUpClass(cls):
        cls.good = temp_path("archive_good.pt")
        torch.save({"model": TutorialModel().state_dict()}, cls.good)
        with zipfile.ZipFile(cls.good) as archive:
            cls.records = {record.filename: record for record in archive.infolist()}
        cls.prefix = next(iter(cls.records)).split("/")[0]

    def tampered(self, name, change):
        """A copy of the good checkpoint with its bytes changed by change(bytearray)."""
        with open(self.good, "rb") as file:
            content = bytearray(file.read())
        change(content)
        path = temp_path(name)
        with open(path, "wb") as file:
            file.write(content)
        return path

    def with_record(self, name, record, chunks, compression=zipfile.ZIP_STORED):
        """A copy of the good checkpoint with one record added (chunks of bytes, streamed)."""
        path = self.tampered(name, lambda content: None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zipfile warns of a duplicate name
            with zipfile.ZipFile(path, "a", compression=compression) as archive, \
                    archive.open(record, "w", force_zip64=True) as file:
                for chunk in chunks:
                    file.write(chunk)
        return path

    def check_every_reader(self, path, *fragments):
        common = ["--data-dir", DATA_DIR, "--device", "cpu"]
        for module, argv in ((test, [path]), (draw, [path, "--export", temp_path("page.html")]),
                             (train, ["--init-from", path, "--out", temp_path("tuned.pt")]),
                             (train, ["--resume", path, "--out", temp_path("resumed.pt")])):
            code, _, err = run_script(module, argv + common)
            self.assertOneLineError(code, err, 1, "error: " + path, *fragments)
            self.assertEqual(len(err.strip().splitlines()), 1, err)
        for name in ("page.html", "tuned.pt", "resumed.pt"):
            self.assertFalse(os.path.exists(temp_path(name)))

    def test_a_compressed_record_is_refused_unpacked(self):
        zeros = bytes(2**20)
        bomb = self.with_record("bomb.pt", f"{self.prefix}/data/99", (zeros for _ in range(64)),
                                zipfile.ZIP_DEFLATED)
        self.assertLess(os.path.getsize(bomb), 2**20)  # 64 MiB in far less than one
        self.check_every_reader(bomb, "refused", "data/99' is compressed", "none of it was loaded")

    def test_records_that_claim_more_than_the_file_are_refused(self):
        name = f"{self.prefix}/data/0".encode()
        def claim_a_gigabyte(content):  # the index's uncompressed size of data/0
            at = content.index(name, content.index(b"PK\x01\x02")) - 46
            content[at + 24:at + 28] = struct.pack("<I", 2**30)
        self.check_every_reader(self.tampered("claims.pt", claim_a_gigabyte), "refused",
                                "more than the file's")

    def test_a_flipped_byte_in_a_weight_is_damage(self):
        record = self.records[f"{self.prefix}/data/4"]  # fc1's weights
        def flip(content):
            at = content.index(record.filename.encode(), record.header_offset) + 200
            content[at] ^= 0x40
        self.check_every_reader(self.tampered("flipped_weight.pt", flip), "not a PyTorch "
                                "checkpoint (damaged", "data/4' does not match its checksum")

    def test_a_doubled_record_is_damage(self):
        size = self.records[f"{self.prefix}/data/4"].file_size
        doubled = self.with_record("doubled.pt", f"{self.prefix}/data/4", [bytes(size)])
        self.check_every_reader(doubled, "damaged", "two records are named", "data/4")

    def test_a_record_placed_over_the_pickle_is_damage(self):
        pickle_at = self.records[f"{self.prefix}/data.pkl"].header_offset
        name = f"{self.prefix}/data/0".encode()
        def over_the_pickle(content):  # data/0's entry in the index points at data.pkl's bytes
            at = content.index(name, content.index(b"PK\x01\x02")) - 46
            content[at + 42:at + 46] = struct.pack("<I", pickle_at)
        self.check_every_reader(self.tampered("over.pt", over_the_pickle), "damaged",
                                "data/0' lies over another record's bytes")

    def test_the_bomb_takes_no_more_memory_than_a_good_checkpoint(self):
        zeros = bytes(2**20)
        bomb = self.with_record("big_bomb.pt", f"{self.prefix}/data/99",
                                (zeros for _ in range(1024)), zipfile.ZIP_DEFLATED)
        # test.py on the good checkpoint, then on the bomb, in one process: its peak memory after
        # each (kilobytes); the bomb's refusal must not raise the good run's peak by 300 MB.
        result = subprocess.run([sys.executable, "-c", MEASURED_TEST.format(
            paths=[self.good, bomb], data=DATA_DIR)], cwd=ROOT, capture_output=True, text=True,
            timeout=120)
        good_peak, bomb_peak = map(int, result.stdout.split()[-2:])
        self.assertIn("is compressed", result.stderr)
        self.assertLess(bomb_peak - good_peak, 300 * 1024, (good_peak, bomb_peak))


# test.py run as its script on each checkpoint in turn, its peak memory (kilobytes) printed after
# each, exit code and all.
MEASURED_TEST = """import resource, runpy, sys
for path in {paths!r}:
    sys.argv = ["test.py", path, "--data-dir", {data!r}, "--device", "cpu"]
    try:
        runpy.run_path("test.py", run_name="__main__")
    except SystemExit as exit:
        if isinstance(exit.code, str):  # the one line sys.exit prints as the process ends
            print(exit.code, file=sys.stderr)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, flush=True)
"""


class BadArgumentTest(ErrorTestCase):
    def check_train(self, *argv_and_fragment):
        *argv, fragment = argv_and_fragment
        code, out, err = run_script(train, [*argv, "--data-dir", DATA_DIR,
                                            "--out", temp_path("never.pt")])
        self.assertOneLineError(code, err, 2, fragment)
        self.assertEqual(out, "")  # refused before anything started
        self.assertFalse(os.path.exists(temp_path("never.pt")))

    def test_numbers_out_of_range(self):
        for flag, value in [("--epochs", "0"), ("--epochs", "two"), ("--batch-size", "-3"),
                            ("--batch-size", "1.5"), ("--log-interval", "0")]:
            self.check_train(flag, value, f"argument {flag}: must be a whole number of at least 1")
        for value in ["0", "-0.1", "nan", "inf", "1e7", "fast"]:
            self.check_train("--lr", value, "argument --lr: must be above 0 and at most 1e6")
        for value in ["-1", "1.5", str(2**32), str(2**63)]:  # 32 bits, as the exported page's seeds
            self.check_train("--seed", value, "argument --seed: must be a whole number from 0 to 2**32 - 1")

    def test_unknown_or_unavailable_device_lists_the_available_ones(self):
        self.check_train("--device", "tpu9", "'tpu9' is not available on this machine; choose auto, cpu")
        if not torch.cuda.is_available():
            self.check_train("--device", "cuda", "'cuda' is not available")
        if not torch.backends.mps.is_available():
            self.check_train("--device", "mps", "'mps' is not available")
        with mock.patch.object(sys, "argv", ["train.py"]):  # argparse names the script it runs as
            code, _, err = run_script(train, ["--device", "tpu9"])
        self.assertOneLineError(code, err, 2, "train.py: error: argument --device")

    def test_output_folder_must_exist_before_training(self):
        code, out, err = run_script(train, ["--data-dir", DATA_DIR,
                                            "--out", temp_path("no/such/folder/model.pt")])
        self.assertOneLineError(code, err, 2, "argument --out", "does not exist")
        code, out, err = run_script(train, ["--data-dir", DATA_DIR, "--out", TEMP])
        self.assertOneLineError(code, err, 2, "argument --out", "is a folder")

    def test_test_script_arguments(self):
        code, _, err = run_script(test, ["model.pt", "--save-errors", temp_path("no/such/e.png")])
        self.assertOneLineError(code, err, 2, "argument --save-errors", "does not exist")
        code, _, err = run_script(test, ["model.pt", "--images-dir", TEMP, "--save-errors", "e.png"])
        self.assertOneLineError(code, err, 2, "--save-errors draws MNIST test digits")
        code, _, err = run_script(test, ["model.pt", "--device", "tpu9"])
        self.assertOneLineError(code, err, 2, "argument --device")

    def test_an_export_from_a_data_dir_without_mnist_is_refused(self):
        # Given, the folder was meant to hold MNIST (a typo, the docs' name for another's): one
        # line, exit 2, no file, as train.py refuses it. The default folder's absence is no error.
        target = temp_path("no_mnist.html")
        code, out, err = run_script(draw, ["model.pt", "--data-dir", temp_path("mnist"),
                                           "--export", target])
        self.assertOneLineError(code, err, 2, "argument --data-dir: no MNIST in "
                                + temp_path("mnist"), "python train.py --data-dir")
        self.assertFalse(os.path.exists(target))
        for tool in (benchmark_page, benchmark_export):
            code, out, err = run_script(tool, ["model.pt", "--data-dir", temp_path("mnist")])
            self.assertOneLineError(code, err, 1, "No MNIST in mnist/MNIST/raw",
                                    "then run this benchmark again")


class BadDataTest(ErrorTestCase):
    def copy_of_data(self, name):
        root = temp_path(name)
        shutil.copytree(DATA_DIR, root)
        return root, os.path.join(root, "MNIST", "raw")

    def test_failed_download_says_where_to_put_the_files(self):
        empty = temp_path("empty_data")
        # A mirror that fails at once, without touching the network.
        with mock.patch.object(torchvision.datasets.MNIST, "mirrors", ["file:///no/such/mirror/"]):
            code, out, err = run_script(train, ["--data-dir", empty, "--out", temp_path("x.pt")])
        raw_dir = os.path.join(empty, "MNIST", "raw")
        self.assertOneLineError(code, err, 1, "could not download MNIST",
                                *(os.path.join(raw_dir, name) for name in data.RAW_FILES))
        self.assertFalse(os.path.exists(temp_path("x.pt")))
        with mock.patch.object(torchvision.datasets.MNIST, "mirrors", ["file:///no/such/mirror/"]):
            code, out, err = run_script(benchmark, ["--data-dir", empty, "--device", "cpu"])
        self.assertOneLineError(code, err, 1, "could not download MNIST")

    def test_truncated_file_is_named(self):
        root, raw_dir = self.copy_of_data("truncated")
        path = os.path.join(raw_dir, "t10k-images-idx3-ubyte")
        os.truncate(path, os.path.getsize(path) - 100)
        code, _, err = run_script(train, ["--data-dir", root, "--out", temp_path("x.pt")])
        self.assertOneLineError(code, err, 1, path, "truncated or corrupt")

    def test_corrupt_header_and_mismatched_counts_are_named(self):
        root, raw_dir = self.copy_of_data("corrupt")
        path = os.path.join(raw_dir, "train-labels-idx1-ubyte")
        with open(path, "r+b") as file:
            file.write(b"GIF8")
        code, _, err = run_script(train, ["--data-dir", root, "--out", temp_path("x.pt")])
        self.assertOneLineError(code, err, 1, path, "not an MNIST IDX file")
        write_idx(path, torch.zeros(299, dtype=torch.uint8))  # one label short
        code, _, err = run_script(train, ["--data-dir", root, "--out", temp_path("x.pt")])
        self.assertOneLineError(code, err, 1, raw_dir, "300 train images but 299 labels")


class InterruptAndDivergenceTest(ErrorTestCase):
    def test_ctrl_c_in_the_first_epoch_exits_130_and_keeps_the_old_checkpoint(self):
        out = temp_path("interrupted.pt")
        with open(out, "wb") as file:
            file.write(b"old checkpoint")
        # An epoch of 20,000 steps of one image: Ctrl-C comes long before the first one ends.
        long_epoch = make_fake_mnist(temp_path("long_epoch"), train_size=20000, test_size=10)
        process = start_script("train.py", "--data-dir", long_epoch, "--device", "cpu",
                               "--batch-size", "1", "--log-interval", "1", "--out", out)
        for line in process.stdout:  # wait until training has started
            if line.startswith("Epoch:"):
                break
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
        self.assertOneLineError(process.returncode, err, 130, "Interrupted")
        self.assertEqual(len(err.strip().splitlines()), 1, err)
        with open(out, "rb") as file:
            self.assertEqual(file.read(), b"old checkpoint")

    def test_exploding_loss_stops_without_saving(self):
        out = temp_path("diverged.pt")
        code, out_text, err = run_script(train, ["--data-dir", DATA_DIR, "--device", "cpu",
                                                 "--lr", "1e6", "--log-interval", "1", "--out", out])
        self.assertOneLineError(code, err, 1, "training diverged", "smaller --lr")
        self.assertFalse(os.path.exists(out))

    def test_nan_or_huge_loss_counts_as_diverged_at_its_own_step(self):
        for bad in (float("nan"), float("inf"), train.DIVERGED_LOSS + 1):
            losses = [torch.tensor(loss) for loss in (2.3, 1.0, bad, float("nan"), 1.0)]
            # The epoch's steps are checked together; the first bad loss is at step 3.
            with self.assertRaisesRegex(common.UserError, r"at epoch 2, step 3\)"):
                train.check_diverged(losses, epoch=2)
        train.check_diverged([torch.tensor(loss) for loss in (2.3, 40.0, 0.01)], epoch=1)  # sane

    def test_divergence_names_the_step_of_the_first_bad_loss_between_log_lines(self):
        # Eight steps, a line every 5: step 1's line passes, and step 4's NaN input (which makes
        # every later loss NaN too) is named at the epoch's end, where steps 2 to 8 are checked.
        model = nn.Linear(784, 10)
        batches = [(torch.full((4, 784), float("nan") if step == 3 else 0.5), torch.zeros(4).long())
                   for step in range(8)]
        log = {"epoch": 1, "epochs": 1, "interval": 5, "shown_steps": 8, "done": 0}
        with contextlib.redirect_stdout(io.StringIO()) as printed, \
                self.assertRaisesRegex(common.UserError, r"step 4\)"):
            train.train_epoch(model, torch.optim.Adam(model.parameters()), None, batches, log)
        self.assertEqual(printed.getvalue().count("Epoch: 1/1, Step: "), 1)  # step 1's line only


class DamagedPictureTest(ErrorTestCase):
    def damaged_copies(self, count_per_format=100):
        """(name, bytes) of pictures in four formats, each with 1 to 4 random bytes changed."""
        picture = Image.new("RGB", (64, 64), "white")
        ImageDraw.Draw(picture).line((32, 8, 28, 56), fill="black", width=6)
        generator = torch.Generator().manual_seed(0)
        for file_format in ("PNG", "JPEG", "GIF", "BMP"):
            buffer = io.BytesIO()
            picture.save(buffer, format=file_format)
            content = buffer.getvalue()
            for number in range(count_per_format):
                damaged = bytearray(content)
                changes = torch.randint(1, 5, (1,), generator=generator).item()
                for position in torch.randint(0, len(content), (changes,), generator=generator):
                    damaged[position] = torch.randint(0, 256, (1,), generator=generator).item()
                yield f"{file_format}-{number}", bytes(damaged)

    def test_damaged_bytes_give_a_digit_or_one_error_line_never_a_traceback(self):
        refused = 0
        for name, content in self.damaged_copies():
            try:
                digit = pictures.read_picture(io.BytesIO(content), name)
            except data.DataError as error:
                self.assertTrue(str(error).startswith(name + ": "), error)
                self.assertEqual(len(str(error).splitlines()), 1, error)
                refused += 1
            else:
                self.assertEqual(digit.shape, (1, 28, 28), name)
        self.assertGreater(refused, 100)  # most damage is found, not only a few cases

    def test_test_py_names_each_damaged_picture_and_classifies_the_rest(self):
        model = temp_path("pictures_model.pt")
        torch.save(TutorialModel().state_dict(), model)
        paths = []
        for name, content in list(self.damaged_copies(count_per_format=15)):
            paths.append(temp_path(name + "." + name.split("-")[0].lower()))
            with open(paths[-1], "wb") as file:
                file.write(content)
        code, out, err = run_script(test, [model, "--device", "cpu", "--image", *paths])
        self.assertEqual(code, 1, err)
        answered = [line.split(": ")[0] for line in out.splitlines()[1:]]  # after Device:
        failed = [line.split(": ")[1] for line in err.splitlines()]
        self.assertTrue(all(line.startswith("error: ") for line in err.splitlines()))
        self.assertGreater(len(answered), 5)
        self.assertEqual(sorted(answered + failed), sorted(paths))  # each picture once


class PostScriptPictureTest(ErrorTestCase):
    def test_scripts_refuse_an_eps_picture_by_name_and_start_no_program(self):
        folder, marker = fake_ghostscript(temp_path("fake_gs"))
        environment = {**os.environ, "PATH": folder + os.pathsep + os.environ["PATH"]}
        model = temp_path("eps_model.pt")
        torch.save(TutorialModel().state_dict(), model)
        picture = temp_path("seven.eps")
        pictures = temp_path("eps_digits")
        os.makedirs(os.path.join(pictures, "7"))
        for path in (picture, os.path.join(pictures, "7", "seven.eps")):
            with open(path, "wb") as file:
                file.write(EPS_SEVEN)
        # In this process, with the fake gs first on PATH, where Pillow would look for it.
        for script, *argv in [(test, model, "--image", picture),
                              (test, model, "--images-dir", pictures),
                              (train, "--data-dir", DATA_DIR, "--extra-images-dir", pictures,
                               "--out", temp_path("eps_trained.pt"))]:
            with self.subTest(script=script.__name__, flag=[word for word in argv if "image" in word][0]), \
                    mock.patch.dict(os.environ, environment):
                code, _, err = run_script(script, [*argv, "--device", "cpu"])
                self.assertFalse(os.path.exists(marker), "a program was started")
                self.assertNotIn("Traceback", err)
                self.assertEqual(code, 1, err)
                self.assertIn("seven.eps: EPS files are not read, only PNG, JPEG", err)
        self.assertFalse(os.path.exists(temp_path("eps_trained.pt")))


class AtomicSaveTest(unittest.TestCase):
    def test_replaces_whole_file_with_usual_permissions_and_no_leftovers(self):
        path = temp_path("atomic.bin")
        common.save_atomically(path, lambda file: file.write(b"first"))
        common.save_atomically(path, lambda file: file.write(b"second"))
        with open(path, "rb") as file:
            self.assertEqual(file.read(), b"second")
        with open(temp_path("plain.bin"), "wb"):
            pass
        self.assertEqual(os.stat(path).st_mode, os.stat(temp_path("plain.bin")).st_mode)
        self.assertEqual([name for name in os.listdir(TEMP) if name.endswith(".tmp")], [])

    def test_without_overwrite_a_taken_name_is_never_replaced(self):
        path = temp_path("taken.bin")
        common.save_atomically(path, lambda file: file.write(b"first"), name_it=give_new_name)
        with self.assertRaises(FileExistsError):
            common.save_atomically(path, lambda file: file.write(b"second"), name_it=give_new_name)
        with open(path, "rb") as file:
            self.assertEqual(file.read(), b"first")
        self.assertEqual([name for name in os.listdir(TEMP) if name.startswith(".taken.bin")], [])

    def test_without_hard_links_an_exclusive_create_keeps_never_overwriting(self):
        # FAT32 and exFAT (USB sticks) refuse hard links with EPERM.
        no_links = mock.patch("os.link", side_effect=PermissionError(1, "Operation not permitted"))
        path = temp_path("stick.bin")
        with no_links:
            common.save_atomically(path, lambda file: file.write(b"first"), name_it=give_new_name)
            with self.assertRaises(FileExistsError):
                common.save_atomically(path, lambda file: file.write(b"second"),
                                       name_it=give_new_name)
            with mock.patch("os.replace", side_effect=OSError(5, "Input/output error")):
                with self.assertRaisesRegex(common.UserError, "stick2.bin: could not be written"):
                    common.save_atomically(temp_path("stick2.bin"), lambda file: file.write(b"x"),
                                           name_it=give_new_name)
        with open(path, "rb") as file:
            self.assertEqual(file.read(), b"first")
        self.assertFalse(os.path.exists(temp_path("stick2.bin")))  # the name given back
        self.assertEqual([name for name in os.listdir(TEMP) if name.startswith(".stick")], [])

    def test_a_link_planted_at_the_temporary_name_is_never_followed(self):
        # In a folder others can write (a --collect folder under /tmp), a link waiting at the
        # temporary name must not have its target written; the name is also random each time.
        victim, path = temp_path("victim.txt"), temp_path("planted.bin")
        with open(victim, "wb") as file:
            file.write(b"precious")
        for target in (victim, temp_path("not_there_yet")):
            with mock.patch("secrets.token_hex", return_value="0" * 16):
                link = temp_path(".planted.bin." + "0" * 16 + ".tmp")
                os.symlink(target, link)
                with self.assertRaisesRegex(common.UserError, "planted.bin: could not be written"):
                    common.save_atomically(path, lambda file: file.write(b"attack"))
            self.assertTrue(os.path.islink(link))  # left as it was, not removed nor followed
            os.remove(link)
        with open(victim, "rb") as file:
            self.assertEqual(file.read(), b"precious")
        self.assertFalse(os.path.exists(temp_path("not_there_yet")))
        self.assertFalse(os.path.exists(path))

    def test_failed_write_keeps_the_old_file(self):
        path = temp_path("kept.bin")
        common.save_atomically(path, lambda file: file.write(b"old"))

        def fail_halfway(file):
            file.write(b"half of the new")
            raise KeyboardInterrupt

        with self.assertRaises(KeyboardInterrupt):
            common.save_atomically(path, fail_halfway)
        with open(path, "rb") as file:
            self.assertEqual(file.read(), b"old")
        self.assertEqual([name for name in os.listdir(TEMP) if name.endswith(".tmp")], [])

    def test_full_disk_is_one_clear_error_and_keeps_the_old_file(self):
        path = temp_path("full.bin")
        common.save_atomically(path, lambda file: file.write(b"old"))

        def disk_full(file):
            raise OSError(28, "No space left on device")

        with self.assertRaisesRegex(common.UserError, "could not be written .No space left"):
            common.save_atomically(path, disk_full)
        with open(path, "rb") as file:
            self.assertEqual(file.read(), b"old")

    def test_sigkill_mid_write_keeps_the_old_file(self):
        path = temp_path("killed.pt")
        torch.save({"generation": 1}, path)
        # The child writes half a checkpoint, says so, and waits to be killed.
        child_code = (
            "import sys, torch, common\n"
            "def write(file):\n"
            "    file.write(b'PK' * 1000)\n"
            "    file.flush()\n"
            "    print('halfway', flush=True)\n"
            "    sys.stdin.read()\n"
            f"common.save_atomically({path!r}, write)\n")
        process = subprocess.Popen([sys.executable, "-c", child_code], cwd=ROOT, text=True,
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.assertEqual(process.stdout.readline().strip(), "halfway")
        process.kill()
        process.wait(timeout=60)
        process.stdin.close()
        process.stdout.close()
        self.assertEqual(torch.load(path, weights_only=True), {"generation": 1})


if __name__ == "__main__":
    unittest.main()
