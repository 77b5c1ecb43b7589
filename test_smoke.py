"""Tests of the network against the tutorial's, and of a whole train -> checkpoint -> test run,
offline, on a small fake MNIST of its own: no other test file is needed.
Usage: python -m unittest -v test_smoke
"""
import contextlib
import io
import os
import re
import struct
import subprocess
import sys
import tempfile
import unittest

import torch
import torch.nn as nn
import torch.nn.functional as F

import train
from model import Net, tutorial_model


class TutorialModel(nn.Module):
    """The tutorial's class, copied as written: the reference our model must match."""

    def __init__(self):
        super(TutorialModel, self).__init__()
        self.convolution1 = nn.Conv2d(in_channels=1, out_channels=6, kernel_size=5)
        self.convolution2 = nn.Conv2d(in_channels=6, out_channels=16, kernel_size=5)
        self.conv_dropout = nn.Dropout()
        self.fc1 = nn.Linear(in_features=16*4*4, out_features=30)
        self.fc2 = nn.Linear(in_features=30, out_features=10)
        self.pool = nn.MaxPool2d(2, 2)

    def forward(self, x):
        x = self.pool(F.relu(self.convolution1(x)))
        x = self.conv_dropout(x)
        x = self.pool(F.relu(self.convolution2(x)))
        x = x.view(-1, 16*4*4)
        x = self.fc1(x)
        y = self.fc2(x)
        return y


def write_idx(path, array):
    """Write a uint8 tensor in MNIST's raw IDX format: magic, big-endian sizes, bytes."""
    with open(path, "wb") as file:
        file.write(bytes([0, 0, 8, array.dim()]) + struct.pack(f">{array.dim()}I", *array.shape))
        file.write(array.numpy().tobytes())


def make_fake_mnist(root, train_size=1000, test_size=200, seed=0):
    """Write a small MNIST look-alike under root/MNIST/raw: digit d is a bright bar at row 2 + 2d,
    which makes it learnable in a few steps; noise makes every image different."""
    generator = torch.Generator().manual_seed(seed)
    os.makedirs(os.path.join(root, "MNIST", "raw"), exist_ok=True)
    for prefix, size in (("train", train_size), ("t10k", test_size)):
        labels = torch.randint(0, 10, (size,), generator=generator)
        images = torch.randint(0, 60, (size, 28, 28), generator=generator)
        images[torch.arange(size), 2 + 2 * labels, 4:24] = 255
        path = os.path.join(root, "MNIST", "raw", prefix)
        write_idx(f"{path}-images-idx3-ubyte", images.to(torch.uint8))
        write_idx(f"{path}-labels-idx1-ubyte", labels.to(torch.uint8))
    return root


def run_subprocess(script, *argv, **kwargs):
    """Run one of our scripts as a user would, in its folder; return the CompletedProcess."""
    here = os.path.dirname(os.path.abspath(__file__))
    return subprocess.run([sys.executable, os.path.join(here, script), *argv], cwd=here,
                          capture_output=True, text=True, timeout=120, **kwargs)


def setUpModule():
    global TEMP, DATA_DIR
    folder = tempfile.TemporaryDirectory()
    unittest.addModuleCleanup(folder.cleanup)
    TEMP, DATA_DIR = folder.name, make_fake_mnist(os.path.join(folder.name, "data"))


class ModelTest(unittest.TestCase):
    def test_output_shape_and_parameter_count(self):
        self.assertEqual(Net()(torch.zeros(5, 1, 28, 28)).shape, (5, 10))
        self.assertEqual(sum(p.numel() for p in Net().parameters()), 10_592)

    def test_state_dict_matches_the_tutorial_both_ways(self):
        ours, theirs = Net(), TutorialModel()
        theirs.load_state_dict(ours.state_dict(), strict=True)
        ours.load_state_dict(theirs.state_dict(), strict=True)
        images = torch.randn(4, 1, 28, 28)
        torch.testing.assert_close(ours.eval()(images), theirs.eval()(images))

    def test_same_seed_gives_the_tutorials_initial_weights(self):
        torch.manual_seed(3)
        ours = tutorial_model()
        torch.manual_seed(3)
        for key, value in TutorialModel().state_dict().items():
            self.assertTrue(torch.equal(ours.state_dict()[key], value), key)


class TrainAndTestScriptTest(unittest.TestCase):
    def test_train_writes_a_checkpoint_that_test_reads_back(self):
        out = os.path.join(TEMP, "smoke.pt")
        result = run_subprocess("train.py", "--data-dir", DATA_DIR, "--device", "cpu",
                                "--epochs", "2", "--log-interval", "5", "--out", out)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertRegex(result.stdout.splitlines()[0], r"^Device: cpu \(\d+ threads?\)$")
        # 1000 images in batches of 64: 15 full steps; the tutorial shows 16, counting the last.
        self.assertRegex(result.stdout, r"Epoch: 2/2, Step: 11/16, Loss: \d+\.\d{4}, "
                                        r"Accuracy: \d+\.\d{2}%")
        self.assertRegex(result.stdout, r"Run Time: \d+\.\d{2} s")
        printed = re.search(r"Test Accuracy: (\d+\.\d{2})%", result.stdout).group(1)
        checkpoint = torch.load(out, weights_only=True)
        self.assertEqual(set(checkpoint), {"model", "optimizer", "scheduler", "epoch", "args",
                                           "history", "snapshots", "rng", "data", "test_accuracy"})
        self.assertEqual(checkpoint["data"], {"train_images": 1000, "extra_pictures": None})
        self.assertEqual((checkpoint["epoch"], checkpoint["args"]["batch_size"]), (2, 64))
        self.assertEqual([len(values) for values in checkpoint["history"].values()], [30, 30])
        self.assertEqual(f"{checkpoint['test_accuracy'] * 100:.2f}", printed)
        self.assertGreater(checkpoint["test_accuracy"], 0.9)  # the bars are learnt
        TutorialModel().load_state_dict(checkpoint["model"], strict=True)
        result = run_subprocess("test.py", out, "--data-dir", DATA_DIR, "--device", "cpu")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout.strip().splitlines()[1:], [f"Test Accuracy: {printed}%"])

    def test_same_seed_same_weights_other_seed_other_weights(self):
        weights = []
        for seed in (5, 5, 6):  # in this process, as a notebook would run train.py's main()
            out = os.path.join(TEMP, f"seed{len(weights)}.pt")
            with contextlib.redirect_stdout(io.StringIO()):
                train.main(["--data-dir", DATA_DIR, "--device", "cpu", "--epochs", "1",
                            "--seed", str(seed), "--out", out])
            weights.append(torch.load(out, weights_only=True)["model"])
        for key in weights[0]:
            self.assertTrue(torch.equal(weights[0][key], weights[1][key]), key)
        self.assertFalse(torch.equal(weights[0]["fc2.weight"], weights[2]["fc2.weight"]))


if __name__ == "__main__":
    unittest.main()
