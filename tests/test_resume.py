"""Tests of the training run's snapshots and of runs that resume: the same weights as one run,
flags that would change the run refused, a run interrupted by Ctrl-C continued.

Usage: python -m unittest -v tests.test_resume
"""
import contextlib
import functools
import io
import itertools
import os
import shutil
import signal
import unittest
from unittest import mock

import torch
from PIL import Image

import data
import train
from extras import pictures
from model import Net
from tests.fixtures import draw_digit, make_fake_mnist, run_script, start_script, temporary_folder


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


def picture_folder(name, per_digit):
    """A labelled folder of per_digit drawn pictures of each digit."""
    folder = temp_path(name)
    for digit in range(10):
        os.makedirs(os.path.join(folder, str(digit)))
        for copy in range(per_digit):
            draw_digit((60 + 10 * copy, 90), (10, 10, 40 + digit, 70)).save(
                os.path.join(folder, str(digit), f"{copy}.png"))
    return folder


def half_run(path, flags):
    """Save the run that flags would train after its first epoch only, as Ctrl-C leaves it."""
    args, _ = train.parse_args(["--data-dir", DATA_DIR, "--device", "cpu", "--epochs", "2",
                                *flags, "--out", path])
    images, labels = data.load_mnist(DATA_DIR, train=True)
    record = {"train_images": len(labels), "extra_pictures": None}  # as train.main has it
    with contextlib.redirect_stdout(io.StringIO()):
        if args.extra_images_dir:
            images, labels, record = pictures.with_extra_pictures(images, labels, args)
        torch.manual_seed(args.seed)
        run = next(train.train(Net(), images, labels, args, None, record))
    torch.save(run, path)
    return run


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
        self.assertEqual([snapshot["step"] for snapshot in resumed["snapshots"]],
                         [snapshot["step"] for snapshot in six["snapshots"]])  # not 18, 3 x 6
        for kept, expected in zip(resumed["snapshots"], six["snapshots"]):
            assert_same_weights(self, kept["model"], expected["model"])

    def test_runs_with_extra_pictures_or_init_from_resume_exactly(self):
        folder = picture_folder("extra_exact", 3)
        start = train_run(temp_path("start.pt"), "--epochs", "1")
        for flags in (["--extra-images-dir", folder, "--extra-repeats", "2"],
                      ["--init-from", temp_path("start.pt")]):
            with self.subTest(flags=flags[0]):
                whole = train_run(temp_path("whole.pt"), "--epochs", "3", *flags)
                train_run(temp_path("part.pt"), "--epochs", "2", *flags)
                resumed = train_run(temp_path("rest.pt"), "--resume", temp_path("part.pt"),
                                    "--epochs", "3")
                assert_same_weights(self, resumed["model"], whole["model"])
                self.assertFalse(torch.equal(whole["model"]["fc2.bias"], start["model"]["fc2.bias"]))

    def test_a_changed_picture_folder_is_refused_by_name(self):
        folder = picture_folder("extra_changing", 2)
        for schedule in ("constant", "onecycle"):
            with self.subTest(schedule=schedule):
                path = temp_path(f"collected_{schedule}.pt")
                run = half_run(path, ["--schedule", schedule, "--extra-images-dir", folder])
                self.assertEqual(run["data"]["extra_pictures"]["count"], 20)
                shutil.copy(os.path.join(folder, "3", "0.png"), os.path.join(folder, "3", "new.png"))
                code, out, err = run_script(train, ["--data-dir", DATA_DIR, "--resume", path])
                os.remove(os.path.join(folder, "3", "new.png"))
                self.assertEqual(code, 1, err)
                self.assertEqual(err.strip().splitlines()[-1],
                                 f"error: --extra-images-dir {folder} now holds 21 pictures; the run "
                                 f"in {path} trained on 20: train a new run, or fine-tune this one "
                                 f"with --init-from {path}")
                # The same number of other pictures is refused too.
                with Image.open(os.path.join(folder, "5", "0.png")) as picture:
                    picture.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(
                        os.path.join(folder, "5", "0.png"))
                code, _, err = run_script(train, ["--data-dir", DATA_DIR, "--resume", path])
                self.assertIn("now holds 20 pictures (other ones)", err)
                shutil.rmtree(folder)
                folder = picture_folder("extra_changing", 2)

    def test_restating_the_runs_own_values_is_accepted(self):
        path = temp_path("no_dropout.pt")
        half_run(path, ["--epochs", "4", "--no-dropout-epochs", "4"])
        code, _, err = run_script(train, ["--data-dir", DATA_DIR, "--resume", path,
                                          "--no-dropout-epochs", "4", "--out", temp_path("x.pt")])
        self.assertEqual(code, 0, err)  # not "is more than --epochs 3", an --epochs nobody gave

    def test_an_old_checkpoint_takes_each_newer_flag_as_its_default(self):
        train_run(temp_path("new_format.pt"), "--epochs", "1")
        old = torch.load(temp_path("new_format.pt"), weights_only=True)
        for name in ("weight_decay", "extra_images_dir", "extra_repeats", "init_from",
                     "no_dropout_epochs"):
            del old["args"][name]  # flags that train.py did not have when it was written
        del old["data"]
        torch.save(old, temp_path("old_format.pt"))
        base = ["--data-dir", DATA_DIR, "--resume", temp_path("old_format.pt"), "--epochs", "2"]
        code, _, err = run_script(train, base + ["--weight-decay", "0.1"])
        self.assertEqual(code, 1)
        self.assertIn("--weight-decay would change the run", err)  # it trained with Adam
        self.assertIn("(it has 0.0)", err)
        new = train_run(temp_path("from_new.pt"), "--resume", temp_path("new_format.pt"),
                        "--epochs", "2")
        resumed = train_run(temp_path("from_old.pt"), *base[2:], "--no-dropout-epochs", "0")
        assert_same_weights(self, resumed["model"], new["model"])
        self.assertEqual(resumed["args"]["weight_decay"], 0.0)
        old["args"]["extra_images_dir"] = [picture_folder("old_extra", 1)]
        torch.save(old, temp_path("old_with_extra.pt"))
        code, _, err = run_script(train, ["--data-dir", DATA_DIR, "--resume",
                                          temp_path("old_with_extra.pt"), "--epochs", "2"])
        self.assertIn("does not record which --extra-images-dir pictures it trained on", err)

    def test_an_unfinished_one_cycle_run_with_every_recipe_flag_continues_exactly(self):
        flags = ["--data-dir", DATA_DIR, "--device", "cpu", "--epochs", "4", "--batch-size", "50",
                 "--schedule", "onecycle", "--augment", "handwriting", "--no-dropout-epochs", "1",
                 "--no-augment-epochs", "1", "--weight-decay", "0.1", "--out", temp_path("cycle.pt")]
        images, labels = data.load_mnist(DATA_DIR, train=True)

        def epochs(argv):
            args, resumed = train.parse_args(argv)
            torch.manual_seed(args.seed)
            return train.train(Net(), images, labels, args, resumed)

        with contextlib.redirect_stdout(io.StringIO()):
            whole = list(epochs(flags))[-1]
            half = next(itertools.islice(epochs(flags), 1, None))  # stopped after epoch 2
            torch.save(half, temp_path("half.pt"))
            half = torch.load(temp_path("half.pt"), weights_only=True)
            rest = list(epochs(flags + ["--resume", temp_path("half.pt")]))
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

    def test_a_damaged_run_is_refused_in_one_line_before_it_trains(self):
        half_run(temp_path("constant_run.pt"), [])
        half_run(temp_path("cycle_run.pt"), ["--schedule", "onecycle"])
        constant, cycle = "constant_run.pt", "cycle_run.pt"
        changes = [
            (constant, ("model", "fc1.weight"), torch.full((30, 256), float("nan")),
             "model fc1.weight holds weights that are not numbers"),
            (constant, ("model", "fc1.weight"), torch.zeros(30, 320), "another architecture"),
            (constant, ("history", "loss"), [float("inf")], "history 'loss' at step 1 is inf"),
            (constant, ("args", "lr"), "abc", "its args hold --lr 'abc'"),
            (constant, ("args", "batch_size"), 0, "its args hold --batch-size 0"),
            (constant, ("optimizer", "param_groups", 0, "eps"), "x", "optimizer's settings"),
            (constant, ("optimizer", "state", 4, "exp_avg"), torch.zeros(3),
             "optimizer state 4 'exp_avg' is"),
            (constant, ("rng", "shuffle"), torch.full((5056,), 7, dtype=torch.uint8),
             "rng shuffle is not a state of random numbers"),
            (cycle, ("scheduler", "total_steps"), "x", "scheduler"),
        ]
        for name, path, value, fragment in changes:
            changed = torch.load(temp_path(name), weights_only=True)
            parent = functools.reduce(lambda item, key: item[key], path[:-1], changed)
            parent[path[-1]] = value
            torch.save(changed, temp_path("changed.pt"))
            code, _, err = run_script(train, ["--data-dir", DATA_DIR, "--device", "cpu", "--resume",
                                              temp_path("changed.pt"), "--out", temp_path("on.pt")])
            self.assertEqual(code, 1, err)
            self.assertEqual(len(err.strip().splitlines()), 1, err)
            self.assertIn(fragment, err)
            self.assertFalse(os.path.exists(temp_path("on.pt")))

    def test_ctrl_c_keeps_the_last_whole_epoch_and_resume_continues_it(self):
        out = temp_path("interrupted.pt")
        process = start_script("train.py", "--data-dir", DATA_DIR, "--device", "cpu", "--epochs",
                               "100000", "--log-interval", "1", "--out", out)
        done = self.interrupt_after_epoch_1(process)
        saved = torch.load(out, weights_only=True)
        saved_epochs = "epoch 1 is" if done == 1 else f"epochs 1 to {done} are"  # never "1 to 1"
        self.assertEqual(process.stderr_text.strip(),
                         f"Interrupted (Ctrl-C) in epoch {done + 1}; {saved_epochs} saved "
                         f"in {out}; continue with: python train.py --resume {out} --epochs 100000")
        self.assertEqual((saved["epoch"], len(saved["history"]["loss"])), (done, done * (400 // 64)))
        # Continued to one more epoch, it is the run that trains done + 1 epochs at once.
        resumed = train_run(temp_path("continued.pt"), "--resume", out, "--epochs", str(done + 1))
        at_once = train_run(temp_path("at_once.pt"), "--epochs", str(done + 1))
        assert_same_weights(self, resumed["model"], at_once["model"])

    def test_ctrl_c_never_replaces_a_finished_checkpoint_with_a_partial_run(self):
        out = temp_path("finished.pt")
        train_run(out, "--epochs", "1", "--seed", "5")
        with open(out, "rb") as file:
            finished = file.read()
        process = start_script("train.py", "--data-dir", DATA_DIR, "--device", "cpu", "--epochs",
                               "100000", "--log-interval", "1", "--out", out)
        done = self.interrupt_after_epoch_1(process)
        with open(out, "rb") as file:
            self.assertEqual(file.read(), finished)
        partial = temp_path("finished.partial.pt")
        self.assertEqual(torch.load(partial, weights_only=True)["epoch"], done)
        self.assertIn(f"saved in {partial}; continue with: python train.py --resume {partial} "
                      f"--epochs 100000 --out {out}", process.stderr_text)

    def test_ctrl_c_while_the_finished_run_is_tested_saves_it_whole(self):
        out = temp_path("tested.pt")
        real_predict = train.predict

        def predict_and_ctrl_c(*arguments):
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C, as in a terminal, during the test
            return real_predict(*arguments)

        with mock.patch.object(train, "predict", side_effect=predict_and_ctrl_c):
            code, printed, err = run_script(train, ["--data-dir", DATA_DIR, "--device", "cpu",
                                                    "--epochs", "1", "--out", out])
        self.assertEqual(code, 130)
        self.assertEqual(err.strip(), "Ctrl-C: the finished run is being tested and saved first")
        self.assertIn(f"Saved {out}", printed)
        saved = torch.load(out, weights_only=True)
        self.assertEqual(saved["epoch"], 1)
        self.assertIsNotNone(saved["test_accuracy"])

    def interrupt_after_epoch_1(self, process):
        """Send Ctrl-C once epoch 2 has begun; return how many epochs the checkpoint holds."""
        for line in process.stdout:  # wait until epoch 1 is complete
            if line.startswith("Epoch: 2/"):
                break
        process.send_signal(signal.SIGINT)
        _, process.stderr_text = process.communicate(timeout=60)
        self.assertEqual(process.returncode, 130, process.stderr_text)
        done = int(process.stderr_text.split("in epoch ")[1].split(";")[0]) - 1
        self.assertGreaterEqual(done, 1)  # however many finished before Ctrl-C arrived
        return done


if __name__ == "__main__":
    unittest.main()
