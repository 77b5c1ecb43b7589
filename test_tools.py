"""Tests of the teaching tools: --plot, --per-class, --save-errors, --image and the 99% recipe flags.

Usage: python -m unittest -v test_tools
"""
import contextlib
import importlib.util
import io
import os
import re
import tempfile
import unittest

import torch
import torchvision
from PIL import Image, ImageDraw, ImageOps

import data
import test
import train
from model import Net
from test_smoke import MNIST_ROOT, make_fake_mnist, run_script, run_subprocess


def setUpModule():
    global TEMP, DATA_DIR, MODEL
    TEMP = tempfile.TemporaryDirectory()
    DATA_DIR = make_fake_mnist(os.path.join(TEMP.name, "data"), train_size=500, test_size=300)
    MODEL = os.path.join(TEMP.name, "model.pt")
    code, _, err = run_script(train, ["--data-dir", DATA_DIR, "--device", "cpu", "--out", MODEL])
    assert code == 0, err


def tearDownModule():
    TEMP.cleanup()


def temp_path(name):
    return os.path.join(TEMP.name, name)


def draw_digit(size, box, ink="black", paper="white", mode="RGB"):
    """A picture of a thick 'L': a bar down the left of box and one along its bottom."""
    picture = Image.new(mode, size, paper)
    draw = ImageDraw.Draw(picture)
    left, top, right, bottom = box
    thickness = (right - left) // 4
    draw.rectangle((left, top, left + thickness, bottom), fill=ink)
    draw.rectangle((left, bottom - thickness, right, bottom), fill=ink)
    return picture


def ink_box_and_centre(digit):
    """Bounding box (height, width) of the ink and its centre of mass (row, column)."""
    ink = digit[0] + 1  # background 0
    rows = (ink > 0.1).any(dim=1).nonzero().view(-1)
    columns = (ink > 0.1).any(dim=0).nonzero().view(-1)
    coordinates = torch.arange(28, dtype=torch.float32)
    centre = ((ink.sum(1) * coordinates).sum() / ink.sum(), (ink.sum(0) * coordinates).sum() / ink.sum())
    return (rows[-1] - rows[0] + 1, columns[-1] - columns[0] + 1), centre


class PrepareDigitTest(unittest.TestCase):
    def test_prepared_as_mnist_fit_20_and_centred_by_mass(self):
        picture = draw_digit((400, 300), (250, 30, 330, 230))  # tall, far off-centre, dark on light
        digit = data.prepare_digit(picture)
        self.assertEqual(digit.shape, (1, 28, 28))
        self.assertEqual(digit[0, 0, 0].item(), -1.0)  # background as MNIST's black after Normalize
        self.assertAlmostEqual(digit.max().item(), 1.0, places=2)  # full-strength ink
        (height, width), (row, column) = ink_box_and_centre(digit)
        self.assertIn(height, (20, 21))  # the long side fits 20 pixels (21 with antialiasing)
        self.assertLess(width, height)   # aspect ratio kept: 80 x 200 stays narrow
        self.assertLess(abs(row - 14), 0.75)
        self.assertLess(abs(column - 14), 0.75)

    def test_light_ink_on_dark_gives_the_same_digit(self):
        dark_on_light = draw_digit((120, 160), (20, 20, 90, 140))
        light_on_dark = draw_digit((120, 160), (20, 20, 90, 140), ink="white", paper="black")
        self.assertTrue(torch.equal(data.prepare_digit(dark_on_light),
                                    data.prepare_digit(light_on_dark)))

    def test_grey_paper_and_transparent_background(self):
        reference = data.prepare_digit(draw_digit((120, 160), (20, 20, 90, 140)))
        grey = data.prepare_digit(draw_digit((120, 160), (20, 20, 90, 140), ink=(40, 40, 40),
                                             paper=(200, 195, 190)))
        self.assertLess((grey - reference).abs().max().item(), 0.05)
        # Black ink on clear pixels that are black too: only the alpha channel shows the digit.
        transparent = draw_digit((120, 160), (20, 20, 90, 140), ink=(0, 0, 0, 255),
                                 paper=(0, 0, 0, 0), mode="RGBA")
        self.assertTrue(torch.equal(data.prepare_digit(transparent), reference))

    def test_blank_picture_is_refused(self):
        with self.assertRaises(data.UserError):
            data.prepare_digit(Image.new("L", (50, 50), 255))


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
                                           truncated, temp_path("missing.png"), TEMP.name])
        self.assertEqual(code, 1)
        self.assertRegex(out, rf"^{re.escape(good)}: \d \(\d+\.\d%\)\n$")  # no test set run
        errors = err.strip().splitlines()
        self.assertEqual(len(errors), 4, err)
        self.assertIn(f"error: {text}: not an image file", errors[0])
        self.assertIn(f"error: {truncated}: ", errors[1])
        self.assertIn("No such file", errors[2])
        self.assertIn("Is a directory", errors[3])


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
        model = test.load_model(untrained, "cpu")
        images, labels = data.load_mnist(DATA_DIR, train=False)
        predictions = test.predict(model, images, 1000)
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


class RecipeFlagsTest(unittest.TestCase):
    def test_onecycle_peaks_at_lr_and_ends_near_zero(self):
        args = train.parse_args(["--schedule", "onecycle", "--lr", "0.02", "--epochs", "2"])
        model = torch.nn.Linear(1, 1)
        optimizer, scheduler = train.make_optimizer(model, args, steps_per_epoch=50)
        rates = []
        for _ in range(100):
            optimizer.step()
            scheduler.step()
            rates.append(optimizer.param_groups[0]["lr"])
        self.assertAlmostEqual(max(rates), 0.02, places=4)
        self.assertLess(rates[-1], 0.02 / 1000)

    def test_augment_keeps_background_and_is_seeded(self):
        images = torch.full((32, 1, 28, 28), -1.0)  # black, as MNIST after Normalize
        images[:, :, 9:19, 9:19] = 1.0                # a white square in the middle
        first = data.augment(images, torch.Generator().manual_seed(1))
        again = data.augment(images, torch.Generator().manual_seed(1))
        self.assertEqual(first.shape, (32, 1, 28, 28))
        self.assertTrue(torch.equal(first, again))
        self.assertFalse(torch.equal(first, images))
        self.assertFalse(torch.equal(first[0], first[1]))  # each image changed its own way
        self.assertEqual(first[:, :, 0, 0].max().item(), -1.0)  # corners stay background
        self.assertGreaterEqual(first.min().item(), -1.0 - 1e-6)
        self.assertLessEqual(first.max().item(), 1.0 + 1e-6)

    def test_no_dropout_epochs_turn_dropout_off_only_at_the_end(self):
        args = train.parse_args(["--epochs", "3", "--no-dropout-epochs", "1", "--batch-size", "100"])
        images, labels = data.load_mnist(DATA_DIR, train=True)
        model = Net()
        optimizer, _ = train.make_optimizer(model, args, steps_per_epoch=5)
        shuffle = torch.Generator().manual_seed(0)
        dropout_on = []
        for epoch in (1, 2, 3):
            with contextlib.redirect_stdout(io.StringIO()):  # its progress lines
                train.train_epoch(model, optimizer, None, images, labels, shuffle, epoch, args)
            dropout_on.append(model.conv_dropout.training)
            self.assertTrue(model.training)
        self.assertEqual(dropout_on, [True, True, False])
        code, _, err = run_script(train, ["--epochs", "2", "--no-dropout-epochs", "3"])
        self.assertEqual(code, 2)
        self.assertIn("--no-dropout-epochs 3 is more than --epochs 2", err)

    def test_recipe_flags_train_end_to_end(self):
        code, out, err = run_script(train, ["--data-dir", DATA_DIR, "--device", "cpu", "--epochs",
                                            "2", "--batch-size", "128", "--schedule", "onecycle",
                                            "--augment", "--no-dropout-epochs", "1",
                                            "--out", temp_path("recipe.pt")])
        self.assertEqual(code, 0, err)
        args = torch.load(temp_path("recipe.pt"), weights_only=True)["args"]
        self.assertEqual((args["schedule"], args["augment"], args["no_dropout_epochs"]),
                         ("onecycle", True, 1))


@unittest.skipUnless(os.path.isfile(os.path.join(MNIST_ROOT, "MNIST", "raw", "t10k-images-idx3-ubyte")),
                     "set MNIST_ROOT to a folder holding MNIST/raw/ (real MNIST) to run this test")
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
            differences.append((data.prepare_digit(page) - images[index]).abs().mean().item())
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
        predicted = [int(line.split(": ")[1][0]) for line in out.splitlines()]
        correct = sum(p == label for p, label in zip(predicted, labels[:30].tolist()))
        self.assertGreaterEqual(correct, 27, out)


if __name__ == "__main__":
    unittest.main()
