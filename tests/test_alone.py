"""Tests that the tutorial's files work copied alone into a course's folder, without the rest of
the project: one file at a time, and the six of the copy set together.

Usage: python -m unittest -v tests.test_alone
"""
import json
import os
import re
import shutil
import unittest

import torch

from tests.fixtures import (COPY_SET, DRIVER, ROOT, Payload, TutorialModel, make_fake_mnist, run_in,
                            temporary_folder)


def setUpModule():
    global TEMP
    TEMP = temporary_folder()


# What a teacher who copies one file alone into a course runs with it: (the files copied, from
# the top folder, into one folder that holds a small fake MNIST in ./files; the code run there).
# Your own pictures need data.py beside them.
ALONE = {
    "model.py": (["model.py"],
                 "import torch, model\n"
                 "print(tuple(model.tutorial_model()(torch.zeros(2, 1, 28, 28)).shape))"),
    "data.py": (["data.py"],
                "import os, torch, data\n"
                "images, labels = data.load_mnist('files', train=True)\n"
                "print(tuple(images.shape), tuple(labels.shape))\n"
                "batches = list(data.train_batches(images, labels, 16, torch.Generator()))\n"
                "print(len(batches), tuple(batches[0][0].shape))\n"
                "path = os.path.join('files', 'MNIST', 'raw', 't10k-labels-idx1-ubyte')\n"
                "os.truncate(path, 20)\n"
                "try:\n    data.load_mnist('files', train=False)\n"
                "except data.DataError as error:\n    print(str(error).replace(path, 'PATH'))"),
    "pictures.py": (["data.py", "extras/pictures.py"],
                    "import data, pictures\nfrom PIL import Image, ImageDraw\n"
                    "picture = Image.new('L', (40, 40), 255)\n"
                    "ImageDraw.Draw(picture).line((20, 5, 20, 35), fill=0, width=4)  # a 1\n"
                    "print(tuple(pictures.prepare_digit(picture).shape))\n"
                    "try:\n    pictures.read_picture('missing.png', 'missing.png')\n"
                    "except data.DataError as error:\n    print(error)"),
    "augment.py": (["extras/augment.py"],
                   "import torch, augment\n"
                   "changes = augment.draw_changes(4, torch.Generator(), **augment.AUGMENTATIONS"
                   "['handwriting'])\n"
                   "print(tuple(augment.augment(torch.full((4, 1, 28, 28), -1.0), *changes, "
                   "background=-1.0).shape))"),
}
# Each flag beyond the tutorial, given to the copy set without extras/ (script, its arguments):
# the tutorial's files alone do not take it.
EXTRAS_FLAGS = [
    ("train", ["--augment"]), ("train", ["--resume", "model.pt"]), ("train", ["--plot", "c.png"]),
    ("train", ["--schedule", "onecycle"]), ("train", ["--weight-decay", "0.1"]),
    ("train", ["--no-dropout-epochs", "1"]), ("train", ["--no-augment-epochs", "1"]),
    ("train", ["--extra-images-dir", "d"]), ("train", ["--init-from", "model.pt"]),
    ("train", ["--no-snapshots"]), ("test", ["model.pt", "--image", "x.png"]),
    ("test", ["model.pt", "--images-dir", "d"]), ("test", ["model.pt", "--per-class"]),
    ("test", ["model.pt", "--save-errors", "e.png"]),
]
class AloneTest(unittest.TestCase):
    def test_model_data_pictures_and_augment_each_work_copied_alone(self):
        printed = {}
        for name, (files, code) in ALONE.items():
            folder = os.path.join(TEMP, "alone_" + name[:-3])
            make_fake_mnist(os.path.join(folder, "files"), train_size=64, test_size=32)
            for file in files:
                shutil.copy(os.path.join(ROOT, file), folder)
            result = run_in(folder, "-c", code)
            self.assertEqual(result.returncode, 0, f"{name}: {result.stderr}")
            printed[name] = result.stdout.splitlines()
        self.assertEqual(printed["model.py"], ["(2, 10)"])
        self.assertEqual(printed["data.py"], [
            "(64, 1, 28, 28) (64,)", "4 (16, 1, 28, 28)",
            "PATH: truncated or corrupt (20 bytes, its header promises 40); delete it and "
            "download again"])
        self.assertEqual(printed["pictures.py"], ["(1, 28, 28)",
                                                  "missing.png: No such file or directory"])
        self.assertEqual(printed["augment.py"], ["(4, 1, 28, 28)"])


class CopySetTest(unittest.TestCase):
    """The six files of the copy set, alone in a course's folder with MNIST in ./files, run the
    README's defaults; they take no flag beyond the tutorial, and read a checkpoint safely."""

    @classmethod
    def setUpClass(cls):
        cls.folder = os.path.join(TEMP, "course")
        make_fake_mnist(os.path.join(cls.folder, "files"), train_size=192, test_size=64)
        for file in COPY_SET:
            shutil.copy(os.path.join(ROOT, file), cls.folder)

    def test_the_defaults_run_and_each_extra_flag_says_what_is_missing(self):
        trained = run_in(self.folder, "train.py")
        self.assertEqual(trained.returncode, 0, trained.stderr)
        lines = trained.stdout.splitlines()
        self.assertRegex(lines[0], r"^Device: \S+ \(\d+ threads?\)$")
        self.assertRegex(lines[1], r"^Epoch: 1/3, Step: 1/3, Loss: \d+\.\d{4}, Accuracy: ")
        self.assertRegex(lines[-3], r"^Run Time: \d+\.\d{2} s$")
        accuracy = re.fullmatch(r"Test Accuracy: (\d+\.\d{2})%", lines[-2]).group(1)
        self.assertEqual(lines[-1], "Saved model.pt")
        saved = torch.load(os.path.join(self.folder, "model.pt"), weights_only=True)
        self.assertEqual([snapshot["step"] for snapshot in saved["snapshots"]], [0, 1, 2, 5, 9])

        tested = run_in(self.folder, "test.py", "model.pt")
        self.assertEqual(tested.returncode, 0, tested.stderr)
        self.assertEqual(tested.stdout.splitlines()[1:], [f"Test Accuracy: {accuracy}%"])

        smoke = run_in(self.folder, "-m", "unittest", "test_smoke")
        self.assertEqual(smoke.returncode, 0, smoke.stderr)
        self.assertIn("OK", smoke.stderr.splitlines()[-1])

        cases = [("train", ["--epochs", "0"])] + EXTRAS_FLAGS
        driven = run_in(self.folder, "-c", DRIVER, json.dumps(cases))
        self.assertEqual(driven.returncode, 0, driven.stderr)
        results = json.loads(driven.stdout)
        code, out, err, unchanged = results[0]  # a bad flag: argparse's one line, exit 2
        self.assertEqual((code, out, unchanged), (2, "", True))
        self.assertIn("argument --epochs", err.splitlines()[-1])
        for (script, argv), (code, out, err, unchanged) in zip(EXTRAS_FLAGS, results[1:]):
            with self.subTest(script=script, argv=argv):
                self.assertEqual((code, out, unchanged), (2, "", True), err)
                given = " ".join(argv[1:] if script == "test" else argv)
                self.assertTrue(err.splitlines()[-1].endswith(f"unrecognized arguments: {given}"),
                                err)

    def test_a_damaged_or_hostile_checkpoint_is_one_line_and_runs_nothing(self):
        # Alone, the copy set reads with weights_only=True and says so in one generic line.
        marker = os.path.join(self.folder, "pwned")
        weights = TutorialModel().state_dict()
        weights["fc1.bias"][0] = float("nan")
        torch.save({"model": weights}, os.path.join(self.folder, "nan.pt"))
        torch.save({"model": TutorialModel().state_dict(), "history": "x"},
                   os.path.join(self.folder, "history.pt"))
        torch.save({"model": Payload(marker)}, os.path.join(self.folder, "evil.pt"))
        torch.save({"model": TutorialModel().state_dict()}, os.path.join(self.folder, "whole.pt"))
        with open(os.path.join(self.folder, "whole.pt"), "rb") as file:
            content = file.read()
        with open(os.path.join(self.folder, "truncated.pt"), "wb") as file:
            file.write(content[:len(content) // 2])
        names = ("truncated.pt", "nan.pt", "history.pt", "evil.pt", "missing.pt")
        driven = run_in(self.folder, "-c", DRIVER, json.dumps([("test", [name]) for name in names]))
        self.assertEqual(driven.returncode, 0, driven.stderr)
        for name, (code, out, err, unchanged) in zip(names, json.loads(driven.stdout)):
            with self.subTest(checkpoint=name):
                self.assertEqual((code, out, unchanged), (1, "", True))
                self.assertEqual(err, f"error: {name}: not a checkpoint of model.py's network "
                                      "(missing, damaged, weights that are not numbers, or more "
                                      "than tensors and plain types); none of its code was run\n")
        self.assertFalse(os.path.exists(marker), "code from the checkpoint ran")
