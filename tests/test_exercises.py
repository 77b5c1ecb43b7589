"""Tests that docs/exercises.md stays true: each exercise's model.py edit applies to the project's
model.py, and train.py and test.py run the network it gives on the fake MNIST; designed in the
exported file (headless Chromium) as its "In the file" line says, it has the same parameters.

Usage: python -m unittest -v tests.test_exercises
"""
import os
import types
import unittest
from unittest import mock

import torch

import test
import train
from extras import checkpoints
from tests.fixtures import browser, browser_missing, make_fake_mnist, run_script, temporary_folder
from tools.benchmark_export import open_file
from tools.exercises import apply_edit, designed, edited_net, exercises, exported_file, file_layers


def setUpModule():
    global TEMP, DATA_DIR
    TEMP = temporary_folder()
    DATA_DIR = make_fake_mnist(os.path.join(TEMP, "data"), train_size=256, test_size=64)


class ExercisesTest(unittest.TestCase):
    def test_there_are_at_least_eight_each_an_edit_or_a_flag(self):
        found = exercises()
        self.assertGreaterEqual(len(found), 8)
        self.assertEqual([number for number, *_ in found], list(range(1, len(found) + 1)))
        for _, title, diff, flags in found:
            with self.subTest(exercise=title):
                self.assertTrue(diff or flags)

    def test_each_edit_trains_and_tests_in_the_scripts(self):
        for number, title, diff, flags in exercises():
            net = edited_net(diff)
            out = os.path.join(TEMP, f"exercise{number}.pt")
            with self.subTest(exercise=title), mock.patch.object(train, "Net", net), \
                    mock.patch.object(checkpoints, "Net", net):
                code, printed, err = run_script(train, ["--data-dir", DATA_DIR, "--device", "cpu",
                                                        "--epochs", "1", "--out", out, *flags])
                self.assertEqual(code, 0, err)
                net().load_state_dict(torch.load(out, weights_only=True)["model"], strict=True)
                code, tested, err = run_script(test, [out, "--data-dir", DATA_DIR, "--device", "cpu"])
                self.assertEqual(code, 0, err)
                self.assertIn("Test Accuracy: ", tested)

    def test_an_edit_that_no_longer_fits_model_py_is_refused(self):
        source = "class Net:\n    pool = 1\n"
        self.assertEqual(apply_edit(source, "-    pool = 1\n+    pool = 2\n"),
                         "class Net:\n    pool = 2\n")
        with self.assertRaisesRegex(ValueError, "not once in model.py: pool = 3"):
            apply_edit(source, "-    pool = 3\n+    pool = 2\n")


@unittest.skipIf(browser_missing(), browser_missing())
class InTheFileTest(unittest.TestCase):
    def test_each_exercise_designed_in_the_file_has_its_edits_parameters(self):
        driver = browser()
        open_file(driver, exported_file(types.SimpleNamespace(data_dir=DATA_DIR), TEMP))
        for number, title, diff, _ in [(0, "the tutorial's network", None, []), *exercises()]:
            with self.subTest(exercise=title):
                # designed() checks the names and shapes of the parameters against model.py's edit.
                self.assertEqual(designed(driver, number, edited_net(diff)), 2 + number)
        self.assertEqual(len(file_layers(7)), len(file_layers(0)) + 2)  # a batch norm after each convolution
        self.assertEqual(driver.get_log("browser"), [])


if __name__ == "__main__":
    unittest.main()
