"""Tests of the network and of a whole run beyond test_smoke's: a wrong input size, predicting in
the middle of training, the scripts imported from a notebook, a bare state_dict, real MNIST.

Usage: python -m unittest -v tests.test_run   (MNIST_ROOT=folder holding MNIST/raw/ adds one)
"""
import os
import subprocess
import sys
import tempfile
import unittest

import torch
import torchvision

import common
import test
import train
from model import Net
from tests.fixtures import (MNIST_ROOT, NO_REAL_MNIST, ROOT, TUTORIAL_TRANSFORM, TutorialModel,
                            make_fake_mnist, run_script, temporary_folder)


def setUpModule():
    global TEMP, DATA_DIR
    TEMP = temporary_folder()
    DATA_DIR = make_fake_mnist(os.path.join(TEMP, "data"))


class NetworkTest(unittest.TestCase):
    def test_state_dict_has_the_tutorials_names_and_shapes(self):
        self.assertEqual({key: value.shape for key, value in Net().state_dict().items()},
                         {key: value.shape for key, value in TutorialModel().state_dict().items()})

    def test_a_wrong_input_size_is_refused(self):
        with self.assertRaisesRegex(RuntimeError, "256"):  # fc1 expects 16 x 4 x 4 = 256 values
            Net()(torch.zeros(16, 1, 32, 32))  # the tutorial's view() made 25 rows of these

    def test_predict_leaves_the_model_in_the_mode_it_found(self):
        model = Net().train()
        images = torch.randn(8, 1, 28, 28)
        first, again = common.predict(model, images), common.predict(model, images)
        self.assertTrue(torch.equal(first, again))  # dropout was off while predicting
        self.assertTrue(model.training and model.conv_dropout.training)
        common.predict(model.eval(), images)
        self.assertFalse(model.training)


class ScriptsTest(unittest.TestCase):
    def test_scripts_import_from_a_notebook_in_another_folder(self):
        # A notebook appends the project folder to sys.path, after the standard library, whose
        # own 'test' package then shadows test.py: nothing may import from test.py. Importing the
        # scripts loads nothing of extras/: they use it only when they run.
        code = (f"import sys; sys.path.append({ROOT!r}); "
                "import train, data, model, common; "
                "print(common.EVAL_BATCH_SIZE, 'extras' in sys.modules)")
        with tempfile.TemporaryDirectory() as elsewhere:
            result = subprocess.run([sys.executable, "-c", code], cwd=elsewhere,
                                    capture_output=True, text=True, timeout=120)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout.strip(), "1000 False")

    def test_test_reads_a_bare_tutorial_state_dict(self):
        path = os.path.join(TEMP, "tutorial_state.pt")
        torch.save(TutorialModel().state_dict(), path)
        code, out, err = run_script(test, [path, "--data-dir", DATA_DIR, "--device", "cpu"])
        self.assertEqual(code, 0, err)
        self.assertRegex(out, r"^Device: cpu \(\d+ threads?\)\nTest Accuracy: \d+\.\d{2}%\n$")

    def test_three_epochs_learn_the_synthetic_digits(self):
        out = os.path.join(TEMP, "learn.pt")
        code, _, err = run_script(train, ["--data-dir", DATA_DIR, "--device", "cpu", "--out", out])
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
        model = common.load_model(out, "cpu")
        reference = torchvision.datasets.MNIST(MNIST_ROOT, train=False, transform=TUTORIAL_TRANSFORM)
        loader = torch.utils.data.DataLoader(reference, batch_size=64)
        with torch.no_grad():
            correct = sum((model(x).argmax(1) == y).sum().item() for x, y in loader)
        self.assertEqual(f"{correct / len(reference) * 100:.2f}", f"{accuracy * 100:.2f}")


if __name__ == "__main__":
    unittest.main()
