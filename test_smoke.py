"""Tests of the network and of a whole train -> checkpoint -> test run, offline, on a small fake
MNIST of its own: no other test file is needed.

Usage: python -m unittest -v test_smoke   (MNIST_ROOT=folder holding MNIST/raw/ adds real-data tests)
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
import torchvision
import torchvision.transforms as transforms

import cli
import test
import train
from model import Net, tutorial_model

HERE = os.path.dirname(os.path.abspath(__file__))
# Real MNIST, for the few tests that need it; they skip with this reason without it.
MNIST_ROOT = os.environ.get("MNIST_ROOT", "")
NO_REAL_MNIST = (not os.path.isfile(os.path.join(MNIST_ROOT, "MNIST", "raw", "t10k-images-idx3-ubyte")),
                 "set MNIST_ROOT to a folder holding MNIST/raw/ (real MNIST) to run this test")


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


# The tutorial's transform, as written.
TUTORIAL_TRANSFORM = transforms.Compose([
    transforms.ToTensor(),
    transforms.Normalize((0.5,), (0.5,)),
])


def temporary_folder():
    """Return a new temporary folder, removed when the test module ends (call in setUpModule)."""
    folder = tempfile.TemporaryDirectory()
    unittest.addModuleCleanup(folder.cleanup)
    return folder.name


def write_idx(path, array):
    """Write a uint8 tensor in MNIST's raw IDX format: magic, big-endian sizes, bytes."""
    with open(path, "wb") as file:
        file.write(bytes([0, 0, 8, array.dim()]))
        file.write(struct.pack(f">{array.dim()}I", *array.shape))
        file.write(array.numpy().tobytes())


def make_fake_mnist(root, train_size=1000, test_size=200, seed=0):
    """Write a small MNIST look-alike under root/MNIST/raw: digit d is a bright bar at row 2 + 2d.

    The bars make the task learnable in a few steps; noise makes every image different.
    """
    generator = torch.Generator().manual_seed(seed)
    raw_dir = os.path.join(root, "MNIST", "raw")
    os.makedirs(raw_dir, exist_ok=True)
    for prefix, size in (("train", train_size), ("t10k", test_size)):
        labels = torch.randint(0, 10, (size,), generator=generator)
        images = torch.randint(0, 60, (size, 28, 28), generator=generator)
        rows = 2 + 2 * labels
        images[torch.arange(size), rows, 4:24] = 255
        write_idx(os.path.join(raw_dir, f"{prefix}-images-idx3-ubyte"), images.to(torch.uint8))
        write_idx(os.path.join(raw_dir, f"{prefix}-labels-idx1-ubyte"), labels.to(torch.uint8))
    return root


def run_script(module, argv):
    """Run module.main(argv) as its script does, in this process: return (exit code, out, err)."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            cli.run_main(lambda: module.main(argv))
        except SystemExit as exit:
            code = exit.code
            if isinstance(code, str):  # sys.exit("message") prints it and exits 1
                err.write(code + "\n")
                code = 1
    return code, out.getvalue(), err.getvalue()


def run_subprocess(script, *argv, **kwargs):
    """Run one of our scripts as a user would; return the CompletedProcess."""
    return subprocess.run([sys.executable, os.path.join(HERE, script), *argv], cwd=HERE,
                          capture_output=True, text=True, timeout=120, **kwargs)


def setUpModule():
    global TEMP, DATA_DIR
    TEMP = temporary_folder()
    DATA_DIR = make_fake_mnist(os.path.join(TEMP, "data"))


class ModelTest(unittest.TestCase):
    def test_output_shape_and_parameter_count(self):
        model = Net()
        self.assertEqual(model(torch.zeros(5, 1, 28, 28)).shape, (5, 10))
        self.assertEqual(sum(p.numel() for p in model.parameters()), 10_592)

    def test_state_dict_matches_the_tutorial_both_ways(self):
        ours, theirs = Net(), TutorialModel()
        self.assertEqual({k: v.shape for k, v in ours.state_dict().items()},
                         {k: v.shape for k, v in theirs.state_dict().items()})
        theirs.load_state_dict(ours.state_dict(), strict=True)
        ours.load_state_dict(theirs.state_dict(), strict=True)
        images = torch.randn(4, 1, 28, 28)
        torch.testing.assert_close(ours.eval()(images), theirs.eval()(images))

    def test_same_seed_gives_the_tutorials_initial_weights(self):
        torch.manual_seed(3)
        ours = tutorial_model()
        torch.manual_seed(3)
        theirs = TutorialModel()
        for key, value in theirs.state_dict().items():
            self.assertTrue(torch.equal(ours.state_dict()[key], value), key)

    def test_a_wrong_input_size_is_refused(self):
        with self.assertRaisesRegex(RuntimeError, "256"):  # fc1 expects 16 x 4 x 4 = 256 values
            Net()(torch.zeros(16, 1, 32, 32))  # the tutorial's view() made 25 rows of these

    def test_predict_leaves_the_model_in_the_mode_it_found(self):
        model = Net().train()
        images = torch.randn(8, 1, 28, 28)
        first, again = cli.predict(model, images), cli.predict(model, images)
        self.assertTrue(torch.equal(first, again))  # dropout was off while predicting
        self.assertTrue(model.training and model.conv_dropout.training)
        cli.predict(model.eval(), images)
        self.assertFalse(model.training)

    def test_scripts_import_from_a_notebook_in_another_folder(self):
        # A notebook appends the project folder to sys.path, after the standard library, whose
        # own 'test' package then shadows test.py: nothing may import from test.py. The default
        # run needs nothing of extras/: train.py imports it only when a flag asks.
        code = (f"import sys; sys.path.append({HERE!r}); "
                "import train, data, model, cli; print(cli.EVAL_BATCH_SIZE, 'extras' in sys.modules)")
        with tempfile.TemporaryDirectory() as elsewhere:
            result = subprocess.run([sys.executable, "-c", code], cwd=elsewhere,
                                    capture_output=True, text=True, timeout=120)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout.strip(), "1000 False")


class TrainAndTestScriptTest(unittest.TestCase):
    def test_train_writes_a_checkpoint_that_test_reads_back(self):
        out = os.path.join(TEMP, "smoke.pt")
        result = run_subprocess("train.py", "--data-dir", DATA_DIR, "--device", "cpu",
                                "--epochs", "2", "--log-interval", "5", "--out", out)
        self.assertEqual(result.returncode, 0, result.stderr)
        lines = result.stdout.splitlines()
        self.assertRegex(lines[0], r"^Device: cpu \(\d+ threads?\)$")
        # 1000 images in batches of 64: 15 full steps; the tutorial shows 16, counting the last.
        self.assertRegex(result.stdout, r"Epoch: 2/2, Step: 11/16, Loss: \d+\.\d{4}, "
                                        r"Accuracy: \d+\.\d{2}%")
        self.assertRegex(result.stdout, r"Run Time: \d+\.\d{2} s")
        printed = re.search(r"Test Accuracy: (\d+\.\d{2})%", result.stdout).group(1)

        checkpoint = torch.load(out, weights_only=True)
        self.assertEqual(set(checkpoint), {"model", "optimizer", "scheduler", "epoch", "args",
                                           "history", "snapshots", "rng", "data", "test_accuracy"})
        self.assertEqual(checkpoint["data"], {"train_images": 1000, "extra_pictures": None})
        self.assertEqual(checkpoint["epoch"], 2)
        self.assertEqual(checkpoint["args"]["batch_size"], 64)
        self.assertEqual(len(checkpoint["history"]["loss"]), 2 * 15)
        self.assertEqual(len(checkpoint["history"]["accuracy"]), 2 * 15)
        self.assertEqual(f"{checkpoint['test_accuracy'] * 100:.2f}", printed)
        TutorialModel().load_state_dict(checkpoint["model"], strict=True)

        result = run_subprocess("test.py", out, "--data-dir", DATA_DIR, "--device", "cpu")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout.strip().splitlines()[1:], [f"Test Accuracy: {printed}%"])

    def test_test_reads_a_bare_tutorial_state_dict(self):
        path = os.path.join(TEMP, "tutorial_state.pt")
        torch.save(TutorialModel().state_dict(), path)
        code, out, err = run_script(test, [path, "--data-dir", DATA_DIR, "--device", "cpu"])
        self.assertEqual(code, 0, err)
        self.assertRegex(out, r"^Device: cpu \(\d+ threads?\)\nTest Accuracy: \d+\.\d{2}%\n$")

    def test_same_seed_same_weights_other_seed_other_weights(self):
        weights = []
        for seed in (5, 5, 6):
            out = os.path.join(TEMP, f"seed{len(weights)}.pt")
            code, _, err = run_script(train, ["--data-dir", DATA_DIR, "--device", "cpu",
                                              "--seed", str(seed), "--out", out])
            self.assertEqual(code, 0, err)
            weights.append(torch.load(out, weights_only=True)["model"])
        for key in weights[0]:
            self.assertTrue(torch.equal(weights[0][key], weights[1][key]), key)
        self.assertFalse(torch.equal(weights[0]["fc2.weight"], weights[2]["fc2.weight"]))

    def test_training_learns_the_synthetic_digits(self):
        out = os.path.join(TEMP, "learn.pt")
        code, _, err = run_script(train, ["--data-dir", DATA_DIR, "--device", "cpu",
                                          "--epochs", "3", "--out", out])
        self.assertEqual(code, 0, err)
        self.assertGreater(torch.load(out, weights_only=True)["test_accuracy"], 0.9)


@unittest.skipIf(*NO_REAL_MNIST)
class RealMnistTest(unittest.TestCase):
    def test_one_epoch_reaches_96_percent(self):
        out = os.path.join(TEMP, "real.pt")
        code, stdout, err = run_script(train, ["--data-dir", MNIST_ROOT, "--device", "cpu",
                                               "--epochs", "1", "--out", out])
        self.assertEqual(code, 0, err)
        accuracy = torch.load(out, weights_only=True)["test_accuracy"]
        self.assertGreaterEqual(accuracy, 0.96, stdout)
        # An independent count on the same weights, one image at a time through torchvision.
        model = cli.load_model(out, "cpu")
        reference = torchvision.datasets.MNIST(MNIST_ROOT, train=False, transform=TUTORIAL_TRANSFORM)
        loader = torch.utils.data.DataLoader(reference, batch_size=64)
        with torch.no_grad():
            correct = sum((model(x).argmax(1) == y).sum().item() for x, y in loader)
        self.assertEqual(f"{correct / len(reference) * 100:.2f}", f"{accuracy * 100:.2f}")


if __name__ == "__main__":
    unittest.main()
