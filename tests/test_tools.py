"""Tests of the teaching tools: --plot, --per-class, --save-errors, --image and the 99% recipe flags.

Usage: python -m unittest -v tests.test_tools
"""
import contextlib
import importlib.util
import io
import os
import re
import unittest
from unittest import mock

import torch
import torchvision
from PIL import Image, ImageOps

import common
import data
import test
import train
from extras import augment, cpu_quota, pictures, recipe, report
from model import Net
from tests.fixtures import (MNIST_ROOT, NO_REAL_MNIST, draw_digit, make_fake_mnist, run_module,
                            run_script, run_subprocess, temporary_folder)
from tools import make_digit_sets


def setUpModule():
    global TEMP, DATA_DIR, MODEL
    TEMP = temporary_folder()
    DATA_DIR = make_fake_mnist(os.path.join(TEMP, "data"), train_size=500, test_size=300)
    MODEL = os.path.join(TEMP, "model.pt")
    code, _, err = run_script(train, ["--data-dir", DATA_DIR, "--device", "cpu", "--out", MODEL])
    assert code == 0, err


def temp_path(name):
    return os.path.join(TEMP, name)


class ImageFlagTest(unittest.TestCase):
    def test_each_picture_gets_a_line_and_bad_files_an_error(self):
        good = temp_path("my_digit.png")
        draw_digit((200, 200), (50, 40, 120, 170)).save(good)
        text = temp_path("notes.png")
        with open(text, "w") as file:
            file.write("not a picture")
        truncated = temp_path("truncated.png")
        with open(good, "rb") as source, open(truncated, "wb") as target:
            target.write(source.read()[:200])
        code, out, err = run_script(test, [MODEL, "--device", "cpu", "--image", good, text,
                                           truncated, temp_path("missing.png"), TEMP])
        self.assertEqual(code, 1)
        # The device line, then the picture's answer: no test set was run.
        self.assertRegex(out, rf"^Device: cpu \(\d+ threads?\)\n{re.escape(good)}: \d \(\d+\.\d%\)\n$")
        errors = err.strip().splitlines()
        self.assertEqual(len(errors), 4, err)
        self.assertIn(f"error: {text}: not an image file", errors[0])
        self.assertIn(f"error: {truncated}: ", errors[1])
        self.assertIn("No such file", errors[2])
        self.assertIn("Is a directory", errors[3])


class ImagesDirTest(unittest.TestCase):
    def labelled_folder(self, name, digits=(0, 1, 2), per_digit=3):
        """A folder in ImageFolder's layout: name/<digit>/*.png, each an 'L' drawing."""
        folder = temp_path(name)
        for digit in digits:
            os.makedirs(os.path.join(folder, str(digit)), exist_ok=True)
            for index in range(per_digit):
                draw_digit((60 + 10 * index, 80), (10, 10, 40, 70)).save(
                    os.path.join(folder, str(digit), f"{index}.png" if index % 2 else f"{index}.jpg"))
        return folder

    def test_good_folder_is_evaluated_like_the_test_set(self):
        folder = self.labelled_folder("good", digits=(3, 7))  # digit names, not positions 0 and 1
        gif = os.path.join(folder, "7", "extra.gif")  # any format Pillow reads
        draw_digit((60, 80), (10, 10, 40, 70)).save(gif)
        with open(os.path.join(folder, "3", "notes.txt"), "w") as file:
            file.write("not a picture")
        code, out, err = run_script(test, [MODEL, "--device", "cpu", "--images-dir", folder,
                                           "--per-class"])
        self.assertEqual(code, 0, err)
        self.assertIn("Pictures: 7 read, 1 skipped", out)
        self.assertIn("notes.txt: not an image file", err)
        self.assertEqual(len(err.strip().splitlines()), 1)
        model = common.load_model(MODEL, "cpu")
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            images, labels = pictures.read_labelled_folder(folder)
        self.assertEqual(sorted(labels.tolist()), [3, 3, 3, 7, 7, 7, 7])
        expected = common.accuracy(common.predict(model, images), labels)
        self.assertIn(f"Test Accuracy: {expected * 100:.2f}%", out)
        self.assertRegex(out, r"\n3  \d+\.\d{2}%  \(\d/3\)\n")  # the per-digit table
        self.assertRegex(out, r"\n7  \d+\.\d{2}%  \(\d/4\)\n")
        self.assertIn("Confusion matrix", out)

    def test_bad_layouts_are_one_error_line(self):
        other = self.labelled_folder("other")
        os.makedirs(os.path.join(other, "seven"))
        empty = temp_path("empty_dir")
        os.makedirs(empty, exist_ok=True)
        no_files = temp_path("no_files")
        os.makedirs(os.path.join(no_files, "4"), exist_ok=True)
        unreadable = temp_path("unreadable")
        os.makedirs(os.path.join(unreadable, "5"), exist_ok=True)
        with open(os.path.join(unreadable, "5", "a.png"), "wb") as file:
            file.write(b"\x89PNG broken")
        for folder, fragment in [(temp_path("missing_dir"), "no such folder"),
                                 (empty, "found none"), (other, "found seven"),
                                 (no_files, "hold no pictures"),
                                 (unreadable, "none of its 1 files is a readable picture")]:
            code, out, err = run_script(test, [MODEL, "--device", "cpu", "--images-dir", folder])
            self.assertEqual(code, 1, folder)
            self.assertNotIn("Traceback", err)
            self.assertIn(f"error: {folder}: ", err.strip().splitlines()[-1])
            self.assertIn(fragment, err.strip().splitlines()[-1])
        code, _, err = run_script(test, [MODEL, "--images-dir", other, "--save-errors",
                                         temp_path("e.png")])
        self.assertEqual(code, 2)
        self.assertIn("leave out --images-dir", err)


class DigitSetsTest(unittest.TestCase):
    def test_drawn_set_is_a_seeded_labelled_folder(self):
        folders = [temp_path("drawn_a"), temp_path("drawn_b")]
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            for folder in folders:
                make_digit_sets.write_drawn(folder, per_digit=2)
            images, labels = pictures.read_labelled_folder(folders[0])
        self.assertEqual(images.shape, (20, 1, 28, 28))
        self.assertEqual(sorted(labels.tolist()), sorted(list(range(10)) * 2))
        for digit in ("0", "7"):
            with open(os.path.join(folders[0], digit, "0001.png"), "rb") as first, \
                    open(os.path.join(folders[1], digit, "0001.png"), "rb") as second:
                self.assertEqual(first.read(), second.read())  # the same seed, the same digits

    def test_uci_set_without_scikit_learn_is_one_line(self):
        fake = temp_path("no_sklearn")
        os.makedirs(os.path.join(fake, "sklearn"), exist_ok=True)
        with open(os.path.join(fake, "sklearn", "__init__.py"), "w") as file:
            file.write("raise ImportError('No module named sklearn')\n")
        result = run_module("tools.make_digit_sets", temp_path("uci_sets"), "--sets", "uci",
                            env={**os.environ, "PYTHONPATH": fake})
        self.assertEqual(result.returncode, 1)
        self.assertEqual(result.stderr.strip(),
                         "error: the uci set needs scikit-learn: pip install scikit-learn")


class PerClassAndErrorsTest(unittest.TestCase):
    def test_per_class_rows_and_confusion_matrix_agree(self):
        code, out, err = run_script(test, [MODEL, "--data-dir", DATA_DIR, "--device", "cpu",
                                           "--per-class"])
        self.assertEqual(code, 0, err)
        accuracy = float(re.search(r"Test Accuracy: (\d+\.\d{2})%", out).group(1))
        rows = re.findall(r"^(\d)  (\d+\.\d{2})%  \((\d+)/(\d+)\)$", out, re.MULTILINE)
        self.assertEqual([int(row[0]) for row in rows], list(range(10)))
        matrix = [list(map(int, line.split()[1:])) for line in out.splitlines()
                  if re.fullmatch(r"\s+\d(\s+\d+){10}", line)]
        self.assertEqual(len(matrix), 10)
        _, labels = data.load_mnist(DATA_DIR, train=False)
        for digit, (_, _, correct, total) in enumerate(rows):
            self.assertEqual(matrix[digit][digit], int(correct))
            self.assertEqual(sum(matrix[digit]), int(total))
            self.assertEqual(int(total), (labels == digit).sum().item())
        diagonal = sum(matrix[digit][digit] for digit in range(10))
        self.assertAlmostEqual(diagonal / len(labels) * 100, accuracy, delta=0.005)

    def test_error_grid_lists_exactly_the_misclassified_images(self):
        # Untrained weights get most digits wrong, so the grid is full and the limit shows.
        torch.manual_seed(0)
        untrained = temp_path("untrained.pt")
        torch.save(Net().state_dict(), untrained)
        model = common.load_model(untrained, "cpu")
        images, labels = data.load_mnist(DATA_DIR, train=False)
        predictions = common.predict(model, images)
        wrong = (predictions != labels).nonzero().view(-1).tolist()
        self.assertGreater(len(wrong), 100)
        path = temp_path("errors.png")
        code, out, err = run_script(test, [untrained, "--data-dir", DATA_DIR, "--device", "cpu",
                                           "--save-errors", path])
        self.assertEqual(code, 0, err)
        self.assertIn(f"Saved {path}: 100 of {len(wrong)} misclassified", out)
        listed = re.findall(r"#(\d+):(\d)->(\d)", out)
        self.assertEqual([int(index) for index, _, _ in listed], wrong[:100])
        for index, true, predicted in listed:
            self.assertEqual((int(true), int(predicted)),
                             (labels[int(index)].item(), predictions[int(index)].item()))
        with Image.open(path) as picture:
            self.assertEqual(picture.size, (10 * 84, 10 * (84 + 14)))  # 10 x 10 tiles of 3x size


    def test_error_grid_undoes_another_mean_and_std(self):
        with mock.patch.multiple(data, MEAN=0.1307, STD=0.3081):
            images = torch.full((2, 1, 28, 28), data.background())  # black ...
            images[:, :, 4:24, 12:16] = (1 - data.MEAN) / data.STD  # ... with a white bar
            path = temp_path("grid_other_mean.png")
            with contextlib.redirect_stdout(io.StringIO()):
                report.save_error_grid(path, images, torch.tensor([1, 1]), torch.tensor([7, 7]))
        with Image.open(path) as sheet:
            tile = sheet.crop((0, 14, 84, 98))  # the first digit, below its label strip
            self.assertEqual(tile.getpixel((0, 0)), 0)
            self.assertEqual(tile.getpixel((14 * 3, 14 * 3)), 255)


@unittest.skipUnless(importlib.util.find_spec("matplotlib"), "matplotlib is not installed")
class PlotTest(unittest.TestCase):
    def test_plot_writes_a_png(self):
        path = temp_path("curves.png")
        code, out, err = run_script(train, ["--data-dir", DATA_DIR, "--device", "cpu",
                                            "--out", temp_path("plot.pt"), "--plot", path])
        self.assertEqual(code, 0, err)
        self.assertIn(f"Saved {path}", out)
        with Image.open(path) as picture:
            self.assertEqual(picture.format, "PNG")
            self.assertEqual(picture.size, (1100, 400))


class PlotWithoutMatplotlibTest(unittest.TestCase):
    def test_plot_fails_at_once_saying_how_to_install(self):
        # A stand-in package that fails to import, as a missing matplotlib does.
        fake = temp_path("no_matplotlib")
        os.makedirs(os.path.join(fake, "matplotlib"))
        with open(os.path.join(fake, "matplotlib", "__init__.py"), "w") as file:
            file.write("raise ImportError('No module named matplotlib')\n")
        result = run_subprocess("train.py", "--data-dir", DATA_DIR, "--plot", temp_path("c.png"),
                                env={**os.environ, "PYTHONPATH": fake})
        self.assertEqual(result.returncode, 2)
        self.assertNotIn("Traceback", result.stderr)
        self.assertIn("pip install matplotlib", result.stderr.strip().splitlines()[-1])
        self.assertEqual(result.stdout, "")  # refused before training


class ExtraImagesTest(unittest.TestCase):
    """train.py --extra-images-dir and --init-from: a class's own pictures in training."""

    @classmethod
    def setUpClass(cls):
        cls.folder = temp_path("class_pictures")
        for digit in range(10):
            os.makedirs(os.path.join(cls.folder, str(digit)), exist_ok=True)
            for copy in range(2):
                draw_digit((60 + 10 * copy, 90), (10, 10, 40 + digit, 70)).save(
                    os.path.join(cls.folder, str(digit), f"{copy}.png"))
        with open(os.path.join(cls.folder, "3", "broken.png"), "wb") as file:
            file.write(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)

    def test_pictures_are_prepared_as_image_prepares_them_and_repeated(self):
        args, _ = train.parse_args(["--extra-images-dir", self.folder, "--extra-repeats", "3"])
        images, labels = data.load_mnist(DATA_DIR, train=True)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            all_images, all_labels, record = pictures.with_extra_pictures(images, labels, args)
        self.assertEqual(len(all_labels), 500 + 3 * 20)
        self.assertIn(f"Extra pictures: 20 from {self.folder}, each seen 3 times per epoch", out.getvalue())
        self.assertEqual((record["train_images"], record["extra_pictures"]["count"]), (560, 20))
        args, _ = train.parse_args(["--extra-images-dir", self.folder, "--extra-images-dir", self.folder])
        with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(io.StringIO()):
            _, both, _ = pictures.with_extra_pictures(images, labels, args)
        self.assertEqual(len(both), 500 + 40 * pictures.EXTRA_MOST)  # 40 pictures: 200 each, capped
        self.assertIn(f"Extra pictures: 40 from {self.folder}, {self.folder}, each seen 30 times",
                      out.getvalue())
        self.assertEqual(err.getvalue().count("broken.png"), 1)  # named once, skipped
        found = torchvision.datasets.ImageFolder(self.folder).samples
        readable = [(path, label) for path, label in found if not path.endswith("broken.png")]
        for position, (path, label) in enumerate(readable):
            for repeat in range(3):
                index = 500 + repeat * 20 + position
                self.assertTrue(torch.equal(all_images[index], pictures.read_picture(path, path)), path)
                self.assertEqual(int(all_labels[index]), label)

    def test_same_seed_same_weights_and_the_run_records_its_folders(self):
        weights = []
        for name in ("extra_a.pt", "extra_b.pt"):
            code, out, err = run_script(train, ["--data-dir", DATA_DIR, "--device", "cpu", "--epochs",
                                                "1", "--extra-images-dir", self.folder, "--out",
                                                temp_path(name)])
            self.assertEqual(code, 0, err)
            checkpoint = torch.load(temp_path(name), weights_only=True)
            weights.append(checkpoint["model"])
        for key in weights[0]:
            self.assertTrue(torch.equal(weights[0][key], weights[1][key]), key)
        self.assertEqual(checkpoint["args"]["extra_images_dir"], [self.folder])
        self.assertEqual(checkpoint["args"]["extra_repeats"], 30)  # the default's count, for --resume
        self.assertEqual(len(checkpoint["history"]["loss"]), (500 + 30 * 20) // 64)
        code, _, err = run_script(train, ["--data-dir", DATA_DIR, "--extra-images-dir",
                                          temp_path("no_such_folder"), "--out", temp_path("x.pt")])
        self.assertEqual((code, err.strip()), (1, f"error: {temp_path('no_such_folder')}: no such folder"))

    def test_init_from_starts_at_any_checkpoint_test_py_reads(self):
        bare = temp_path("bare_state.pt")
        torch.save(Net().state_dict(), bare)  # a bare state_dict, as the tutorial would save it
        for start in (bare, MODEL):
            with self.subTest(start=os.path.basename(start)):
                out = temp_path("fine_tuned.pt")
                code, _, err = run_script(train, ["--data-dir", DATA_DIR, "--device", "cpu",
                                                  "--epochs", "1", "--lr", "0.001", "--init-from",
                                                  start, "--extra-images-dir", self.folder,
                                                  "--out", out])
                self.assertEqual(code, 0, err)
                first = torch.load(out, weights_only=True)["snapshots"][0]
                expected = common.load_model(start, "cpu").state_dict()
                for key, value in expected.items():  # step 0 is the weights it started from
                    self.assertTrue(torch.equal(first["model"][key], value), key)
        code, _, err = run_script(train, ["--data-dir", DATA_DIR, "--init-from", temp_path("none.pt"),
                                          "--out", temp_path("x.pt")])
        self.assertEqual(code, 1)
        self.assertIn("no such file", err)


class RecipeFlagsTest(unittest.TestCase):
    def test_onecycle_peaks_at_lr_and_ends_near_zero(self):
        model = torch.nn.Linear(1, 1)
        optimizer, scheduler = recipe.make_optimizer(model, 0.02, 0.0, "onecycle", epochs=2,
                                                    steps_per_epoch=50)
        rates = []
        for _ in range(100):
            optimizer.step()
            scheduler.step()
            rates.append(optimizer.param_groups[0]["lr"])
        self.assertAlmostEqual(max(rates), 0.02, places=4)
        self.assertLess(rates[-1], 0.02 / 1000)

    def test_onecycle_warms_up_the_tutorial_network_from_a_25th_of_lr_for_30_percent(self):
        for weight_decay, kind in ((0.0, torch.optim.Adam), (0.1, torch.optim.AdamW)):
            model = Net()
            optimizer, scheduler = recipe.make_optimizer(model, 0.02, weight_decay, "onecycle",
                                                        epochs=2, steps_per_epoch=50)
            self.assertIs(type(optimizer), kind)
            self.assertEqual(len(optimizer.param_groups[0]["params"]), 8)  # every weight and bias
            rates = []
            for _ in range(100):
                rates.append(optimizer.param_groups[0]["lr"])
                optimizer.step()
                scheduler.step()
            self.assertAlmostEqual(rates[0], 0.02 / 25)  # PyTorch's div_factor
            self.assertEqual(rates.index(max(rates)), 29)  # the peak after 30% of the steps
            self.assertEqual(rates[:30], sorted(rates[:30]))  # rising, then falling
            self.assertEqual(rates[29:], sorted(rates[29:], reverse=True))

    def test_onecycle_moves_adams_first_beta_and_constant_leaves_it(self):
        model = torch.nn.Linear(1, 1)
        optimizer, scheduler = recipe.make_optimizer(model, 0.01, 0.0, "constant", 1, 10)
        self.assertIsNone(scheduler)
        self.assertEqual(optimizer.param_groups[0]["betas"][0], 0.9)  # Adam's own default
        # One-cycle moves Adam's first beta from 0.95 to 0.85 and back.
        optimizer, scheduler = recipe.make_optimizer(model, 0.01, 0.0, "onecycle", 3, 100)
        values = []
        for _ in range(300):
            values.append(optimizer.param_groups[0]["betas"][0])
            optimizer.step()
            scheduler.step()
        self.assertAlmostEqual(values[0], 0.95)
        self.assertAlmostEqual(min(values), 0.85, places=3)
        self.assertAlmostEqual(values[-1], 0.95, places=3)

    def test_weight_decay_shrinks_each_weight_by_lr_times_decay(self):
        # With no gradient Adam's step is 0, so all that moves a weight is the decay.
        model = torch.nn.Linear(3, 2)
        weights = model.weight.detach().clone()
        optimizer, _ = recipe.make_optimizer(model, 0.01, 0.5, "constant", 1, 10)
        model.weight.grad = torch.zeros_like(model.weight)
        optimizer.step()
        torch.testing.assert_close(model.weight.detach(), weights * (1 - 0.01 * 0.5))
        optimizer, _ = recipe.make_optimizer(model, 0.01, 0.0, "constant", 1, 10)
        self.assertIs(type(optimizer), torch.optim.Adam)  # the tutorial's optimizer, unchanged

    def test_no_dropout_and_no_augment_epochs_switch_off_only_at_the_end(self):
        args, _ = train.parse_args(["--epochs", "3", "--no-dropout-epochs", "1", "--batch-size", "100",
                                 "--augment", "handwriting", "--no-augment-epochs", "2"])
        images, labels = data.load_mnist(DATA_DIR, train=True)
        model = Net()
        with mock.patch.object(recipe, "set_dropout", wraps=recipe.set_dropout) as spy, \
                mock.patch.object(augment, "augmented", wraps=augment.augmented) as changed, \
                contextlib.redirect_stdout(io.StringIO()):  # its progress lines
            list(train.train(model, images, labels, args))  # every epoch
        self.assertEqual([call.kwargs["active"] for call in spy.call_args_list],
                         [True, True, False])
        self.assertEqual([call.args[3] for call in changed.call_args_list],
                         ["handwriting"])  # the first epoch only
        self.assertFalse(model.conv_dropout.training)
        self.assertTrue(model.training and model.fc1.training)
        recipe.set_dropout(model, active=True)
        self.assertTrue(model.conv_dropout.training)
        code, _, err = run_script(train, ["--epochs", "2", "--no-dropout-epochs", "3"])
        self.assertEqual(code, 2)
        self.assertIn("--no-dropout-epochs 3 is more than --epochs 2", err)
        code, _, err = run_script(train, ["--epochs", "2", "--no-augment-epochs", "5"])
        self.assertEqual(code, 2)
        self.assertIn("--no-augment-epochs 5 is more than --epochs 2", err)

    def test_train_py_states_the_extras_values_in_its_flags(self):
        # Written out, so that the flags and their help need no extras/ module.
        actions = {action.dest: action for action in train.build_parser()._actions}
        self.assertEqual(actions["augment"].choices, ["none", *augment.AUGMENTATIONS])
        self.assertIn(f"about {pictures.EXTRA_PER_EPOCH:,} an epoch, at most "
                      f"{pictures.EXTRA_MOST} each", actions["extra_repeats"].help)

    def test_recipe_flags_train_end_to_end(self):
        code, out, err = run_script(train, ["--data-dir", DATA_DIR, "--device", "cpu", "--epochs",
                                            "2", "--batch-size", "128", "--schedule", "onecycle",
                                            "--augment", "--no-dropout-epochs", "1",
                                            "--out", temp_path("recipe.pt")])
        self.assertEqual(code, 0, err)
        args = torch.load(temp_path("recipe.pt"), weights_only=True)["args"]
        self.assertEqual((args["schedule"], args["augment"], args["no_dropout_epochs"]),
                         ("onecycle", "light", 1))


class ThreadsTest(unittest.TestCase):
    """The CPU threads each script chooses from what this process may really use."""

    def setUp(self):
        threads = torch.get_num_threads()
        self.addCleanup(torch.set_num_threads, threads)  # the rest of the suite as it was

    def quota(self, files):
        """cpu_quota.cgroup_cpu_quota with these files (path under /cg: text) for the system's."""
        def read_text(path):
            return files.get(path.replace(os.sep, "/"), "")
        with mock.patch.object(cpu_quota, "read_text", side_effect=read_text):
            return cpu_quota.cgroup_cpu_quota("/cg")

    def test_cgroup_quotas_v2_and_v1_and_none(self):
        # cgroup v2, as JupyterHub's systemd spawner sets a user's limit: the least on the path.
        self.assertEqual(self.quota({"/proc/self/cgroup": "0::/user.slice/alice\n",
                                     "/cg/cpu.max": "max 100000\n",
                                     "/cg/user.slice/cpu.max": "400000 100000\n",
                                     "/cg/user.slice/alice/cpu.max": "150000 100000\n"}), 1.5)
        # cgroup v1, as Docker sets --cpus 0.5.
        self.assertEqual(self.quota({"/proc/self/cgroup": "5:cpu,cpuacct:/docker/abc\n",
                                     "/cg/cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "50000\n",
                                     "/cg/cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n"}),
                         0.5)
        self.assertIsNone(self.quota({"/proc/self/cgroup": "0::/\n", "/cg/cpu.max": "max 100000"}))
        self.assertIsNone(self.quota({"/proc/self/cgroup": "4:cpu:/\n",
                                      "/cg/cpu/cpu.cfs_quota_us": "-1\n"}))
        with mock.patch.object(cpu_quota, "cgroup_cpu_quota", return_value=0.5):
            self.assertEqual(common.usable_cpus(), 1)  # a part of a CPU is still one thread
        with mock.patch.object(cpu_quota, "cgroup_cpu_quota", return_value=None), \
                mock.patch("os.sched_getaffinity", return_value={0, 1, 2}, create=True):
            self.assertEqual(common.usable_cpus(), 3)

    def test_threads_flag_then_omp_num_threads_then_a_quarter_of_the_cpus(self):
        with mock.patch.dict(os.environ, {"OMP_NUM_THREADS": "3"}):
            self.assertEqual(common.set_threads(2), 2)
            self.assertEqual(torch.get_num_threads(), 2)
            self.assertEqual(common.set_threads(), 3)
        with mock.patch.dict(os.environ, {"OMP_NUM_THREADS": ""}), \
                mock.patch.object(common, "usable_cpus", return_value=16):
            self.assertEqual(common.set_threads(), 4)
        with mock.patch.dict(os.environ, {"OMP_NUM_THREADS": "²"}), \
                mock.patch.object(common, "usable_cpus", return_value=2):
            self.assertEqual(common.set_threads(), 1)

    def test_each_script_says_what_it_chose_on_its_first_line(self):
        out = os.path.join(TEMP, "threads.pt")
        code, printed, err = run_script(train, ["--data-dir", DATA_DIR, "--device", "cpu",
                                                "--epochs", "1", "--threads", "2", "--out", out])
        self.assertEqual((code, printed.splitlines()[0]), (0, "Device: cpu (2 threads)"), err)
        code, printed, err = run_script(test, [out, "--data-dir", DATA_DIR, "--device", "cpu",
                                               "--threads", "1"])
        self.assertEqual((code, printed.splitlines()[0]), (0, "Device: cpu (1 thread)"), err)
        code, _, err = run_script(train, ["--threads", "0"])
        self.assertEqual(code, 2)
        self.assertIn("argument --threads: must be a whole number of at least 1", err)


@unittest.skipIf(*NO_REAL_MNIST)
class RealDigitPicturesTest(unittest.TestCase):
    def test_mnist_digits_survive_the_round_trip_through_pictures(self):
        """Real test digits, enlarged and drawn dark on light paper, come back as themselves."""
        images, labels = data.load_mnist(MNIST_ROOT, train=False)
        reference = torchvision.datasets.MNIST(MNIST_ROOT, train=False)
        differences, paths = [], []
        for index in range(30):
            picture = ImageOps.invert(reference[index][0].resize((140, 140), Image.BILINEAR))
            page = Image.new("L", (260, 200), 235)
            page.paste(picture, (10 + 3 * index, 30))
            paths.append(temp_path(f"real_{index}_{labels[index]}.png"))
            page.save(paths[-1])
            differences.append((pictures.prepare_digit(page) - images[index]).abs().mean().item())
        # MNIST digits were prepared this way, so preparing them again changes them less than
        # moving them by one pixel would.
        one_pixel = (torch.roll(images[:30], 1, dims=3) - images[:30]).abs().mean().item()
        self.assertLess(sum(differences) / len(differences), 0.6 * one_pixel)
        model_path = temp_path("real.pt")
        code, _, err = run_script(train, ["--data-dir", MNIST_ROOT, "--device", "cpu",
                                          "--epochs", "1", "--out", model_path])
        self.assertEqual(code, 0, err)
        code, out, err = run_script(test, [model_path, "--device", "cpu", "--image", *paths])
        self.assertEqual(code, 0, err)
        predicted = [int(line.split(": ")[1][0]) for line in out.splitlines()[1:]]  # after Device:
        correct = sum(p == label for p, label in zip(predicted, labels[:30].tolist()))
        self.assertGreaterEqual(correct, 27, out)


if __name__ == "__main__":
    unittest.main()
