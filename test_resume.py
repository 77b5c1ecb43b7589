"""Tests of the training run's snapshots and of runs that resume: the same weights as one run,
flags that would change the run refused, a run interrupted by Ctrl-C continued.

Usage: python -m unittest -v test_resume
"""
import contextlib
import io
import itertools
import os
import signal
import unittest

import torch

import data
import train
from fixtures import make_fake_mnist, run_script, start_script, temporary_folder
from model import Net


def setUpModule():
    global TEMP, DATA_DIR
    TEMP = temporary_folder()
    DATA_DIR = make_fake_mnist(os.path.join(TEMP, "data"), train_size=400, test_size=100)


def temp_path(name):
    return os.path.join(TEMP, name)


def train_run(out, *flags):
    """Run train.py in this process on the synthetic set; return the checkpoint it wrote."""
    code, _, err = run_script(train, ["--data-dir", DATA_DIR, "--device", "cpu", "--out", out,
                                      *flags])
    assert code == 0, err
    return torch.load(out, weights_only=True)


def assert_same_weights(test, first, second):
    test.assertEqual(first.keys(), second.keys())
    for key in first:
        test.assertTrue(torch.equal(first[key], second[key]), key)


class SnapshotTest(unittest.TestCase):
    def test_more_snapshots_early_and_the_last_equals_the_final_weights(self):
        checkpoint = train_run(temp_path("snapshots.pt"), "--epochs", "4", "--batch-size", "16")
        steps = [snapshot["step"] for snapshot in checkpoint["snapshots"]]
        self.assertEqual(steps, [0, 1, 2, 5, 10, 20, 50, 100])  # 4 epochs of 25 steps
        self.assertEqual(steps, train.snapshot_steps(100))
        assert_same_weights(self, checkpoint["snapshots"][-1]["model"], checkpoint["model"])
        torch.manual_seed(0)  # step 0 is the untrained network of the run's seed
        assert_same_weights(self, checkpoint["snapshots"][0]["model"], Net().state_dict())
        self.assertFalse(torch.equal(checkpoint["snapshots"][1]["model"]["fc2.weight"],
                                     checkpoint["snapshots"][0]["model"]["fc2.weight"]))
        self.assertEqual(train.snapshot_steps(2811), [0, 1, 2, 5, 10, 20, 50, 100, 200, 500,
                                                       1000, 2000, 2811])

    def test_no_snapshots_flag(self):
        checkpoint = train_run(temp_path("none.pt"), "--epochs", "1", "--no-snapshots")
        self.assertEqual(checkpoint["snapshots"], [])


class ResumeTest(unittest.TestCase):
    def test_three_epochs_then_three_more_equal_six_at_once(self):
        six = train_run(temp_path("six.pt"), "--epochs", "6")
        train_run(temp_path("three.pt"), "--epochs", "3")
        resumed = train_run(temp_path("resumed.pt"), "--resume", temp_path("three.pt"),
                            "--epochs", "6")
        assert_same_weights(self, resumed["model"], six["model"])
        self.assertEqual(resumed["history"], six["history"])
        self.assertEqual(resumed["epoch"], 6)
        steps = [snapshot["step"] for snapshot in resumed["snapshots"]]
        self.assertEqual(steps, sorted(set(steps)))  # in order of step, none twice

    def test_an_unfinished_one_cycle_run_with_every_recipe_flag_continues_exactly(self):
        flags = ["--data-dir", DATA_DIR, "--device", "cpu", "--epochs", "4", "--batch-size", "50",
                 "--schedule", "onecycle", "--augment", "handwriting", "--no-dropout-epochs", "1",
                 "--no-augment-epochs", "1", "--weight-decay", "0.1", "--out", temp_path("cycle.pt")]
        images, labels = data.load_mnist(DATA_DIR, train=True)

        def epochs(argv, resumed=None):
            args = train.parse_args(argv)
            if resumed is not None:
                train.continue_run(args, resumed, train.given_flags(argv))
            torch.manual_seed(args.seed)
            return train.train(Net(), images, labels, args, resumed)

        with contextlib.redirect_stdout(io.StringIO()):
            whole = list(epochs(flags))[-1]
            half = next(itertools.islice(epochs(flags), 1, None))  # stopped after epoch 2
            torch.save(half, temp_path("half.pt"))
            half = torch.load(temp_path("half.pt"), weights_only=True)
            rest = list(epochs(flags + ["--resume", temp_path("half.pt")], half))
        self.assertEqual((half["epoch"], len(rest)), (2, 2))
        assert_same_weights(self, rest[-1]["model"], whole["model"])

    def test_flags_that_would_change_the_run_are_refused_by_name(self):
        train_run(temp_path("base.pt"), "--epochs", "2")
        base = ["--data-dir", DATA_DIR, "--resume", temp_path("base.pt")]
        for flags, words in [(["--lr", "0.02", "--epochs", "3"], "--lr would change the run"),
                             (["--batch-size", "32", "--epochs", "3"], "--batch-size would change"),
                             (["--weight-decay", "0.1", "--epochs", "3"],
                              "--weight-decay would change"),
                             (["--seed", "1", "--epochs", "3"], "--seed would change"),
                             (["--augment", "--epochs", "3"], "--augment would change"),
                             (["--no-snapshots", "--epochs", "3"], "--no-snapshots would change"),
                             ([], "has trained 2 epochs; give --epochs more than 2"),
                             (["--epochs", "2"], "has trained 2 epochs")]:
            with self.subTest(flags=flags):
                code, out, err = run_script(train, base + flags)
                self.assertEqual(code, 1, err)
                self.assertEqual(len(err.strip().splitlines()), 1, err)
                self.assertIn(words, err)
                self.assertEqual(out, "")
        # The same values as the run's are no change: accepted.
        code, _, err = run_script(train, base + ["--lr", "0.01", "--epochs", "3", "--out",
                                                 temp_path("same.pt")])
        self.assertEqual(code, 0, err)

    def test_a_one_cycle_run_cannot_be_stretched_and_weights_alone_cannot_resume(self):
        train_run(temp_path("cycle2.pt"), "--epochs", "2", "--schedule", "onecycle")
        code, _, err = run_script(train, ["--data-dir", DATA_DIR, "--resume", temp_path("cycle2.pt"),
                                          "--epochs", "3"])
        self.assertEqual(code, 1)
        self.assertIn("one-cycle run planned for 2 epochs", err)
        self.assertIn("cannot be stretched to 3", err)
        torch.save(Net().state_dict(), temp_path("bare.pt"))
        code, _, err = run_script(train, ["--data-dir", DATA_DIR, "--resume", temp_path("bare.pt")])
        self.assertEqual((code, err.strip()),
                         (1, f"error: {temp_path('bare.pt')}: holds weights only, not a run "
                             "train.py can resume"))
        code, _, err = run_script(train, ["--resume", temp_path("missing.pt")])
        self.assertEqual(code, 1)
        self.assertIn("no such file", err)

    def test_ctrl_c_keeps_the_last_whole_epoch_and_resume_continues_it(self):
        out = temp_path("interrupted.pt")
        process = start_script("train.py", "--data-dir", DATA_DIR, "--device", "cpu", "--epochs",
                               "100000", "--log-interval", "1", "--out", out)
        for line in process.stdout:  # wait until epoch 1 is complete
            if line.startswith("Epoch: 2/"):
                break
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
        self.assertEqual(process.returncode, 130, err)
        saved = torch.load(out, weights_only=True)
        done = saved["epoch"]  # however many epochs finished before Ctrl-C arrived
        self.assertGreaterEqual(done, 1)
        self.assertEqual(err.strip(), f"Interrupted (Ctrl-C) in epoch {done + 1}; epochs 1 to {done} "
                                      f"are saved in {out}; continue with: python train.py --resume "
                                      f"{out} --epochs 100000")
        self.assertEqual(len(saved["history"]["loss"]), done * (400 // 64))
        # Continued to one more epoch, it is the run that trains done + 1 epochs at once.
        resumed = train_run(temp_path("continued.pt"), "--resume", out, "--epochs", str(done + 1))
        at_once = train_run(temp_path("at_once.pt"), "--epochs", str(done + 1))
        assert_same_weights(self, resumed["model"], at_once["model"])


if __name__ == "__main__":
    unittest.main()
