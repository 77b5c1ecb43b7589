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
from unittest import mock

import torch
import torchvision
from PIL import Image, ImageDraw, ImageOps

import data
import evaluation
import make_digit_sets
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


class ReadPictureTest(unittest.TestCase):
    def test_exif_rotated_photo_is_read_upright(self):
        upright = draw_digit((120, 160), (20, 20, 90, 140))  # an 'L': turning it changes it
        path = temp_path("sideways.jpg")
        # As a phone saves it: the pixels turned a quarter, Orientation 6 says to turn them back.
        exif = Image.Exif()
        exif[0x0112] = 6
        upright.transpose(Image.Transpose.ROTATE_90).save(path, exif=exif, quality=95)
        expected = data.prepare_digit(upright)
        self.assertLess((data.read_picture(path, path) - expected).abs().mean().item(), 0.02)
        exif[0x0112] = 1  # the same pixels with no turn asked are read as they are
        upright.transpose(Image.Transpose.ROTATE_90).save(path, exif=exif, quality=95)
        self.assertGreater((data.read_picture(path, path) - expected).abs().mean().item(), 0.1)

    def test_file_objects_and_paths_give_the_same_digit(self):
        path = temp_path("digit.png")
        draw_digit((100, 100), (30, 20, 70, 80)).save(path)
        with open(path, "rb") as file:
            self.assertTrue(torch.equal(data.read_picture(file, "upload"),
                                        data.read_picture(path, path)))


class AugmentTest(unittest.TestCase):
    def square(self):
        """32 black images (after normalisation) with a bright 10 x 10 square in the middle."""
        images = torch.full((32, 1, 28, 28), data.background())
        images[:, :, 9:19, 9:19] = (1 - data.MEAN) / data.STD
        return images

    def augmented(self, images, seed=1, **limits):
        return data.augment(images, *data.draw_changes(len(images), torch.Generator().manual_seed(seed),
                                                       **limits))

    def check_keeps_background(self):
        images = self.square()
        for name, limits in data.AUGMENTATIONS.items():
            first, again = self.augmented(images, **limits), self.augmented(images, **limits)
            self.assertEqual(first.shape, (32, 1, 28, 28), name)
            self.assertTrue(torch.equal(first, again), name)  # seeded
            self.assertFalse(torch.equal(first[0], first[1]), name)  # each image its own way
            self.assertFalse(torch.equal(first, images), name)
            corners = first[:, :, [0, 0, -1, -1], [0, -1, 0, -1]]
            torch.testing.assert_close(corners, torch.full_like(corners, data.background()))
            self.assertGreaterEqual(first.min().item(), data.background() - 1e-5, name)
            self.assertLessEqual(first.max().item(), images.max().item() + 1e-5, name)

    def test_seeded_shape_kept_background_stays_background(self):
        self.check_keeps_background()

    def test_background_stays_under_another_mean_and_std(self):
        with mock.patch.multiple(data, MEAN=0.1307, STD=0.3081):
            self.assertAlmostEqual(data.background(), -0.4242, places=4)
            self.check_keeps_background()

    def test_stroke_thickness_as_asked(self):
        images = self.square()
        images[:, :, 13:15, 5:23] = images.max()  # and a 2-pixel bar through it
        ink = (images > data.background() + 0.5).sum()
        thicker = data.augment(images, torch.eye(2, 3).expand(32, 2, 3), stroke=torch.ones(32))
        thinner = data.augment(images, torch.eye(2, 3).expand(32, 2, 3), stroke=-torch.ones(32))
        self.assertGreater((thicker > data.background() + 0.5).sum(), ink * 1.2)
        self.assertLess((thinner > data.background() + 0.5).sum(), ink * 0.8)
        same = data.augment(images, torch.eye(2, 3).expand(32, 2, 3), stroke=torch.zeros(32))
        torch.testing.assert_close(same, images)  # no change asked: the identity map keeps all
        blurred = data.augment(images, torch.eye(2, 3).expand(32, 2, 3), blur=torch.ones(32))
        self.assertLess(blurred[0, 0, 9, 9], images[0, 0, 9, 9])  # corners soften ...
        self.assertGreater(blurred[0, 0, 8, 12], data.background())  # ... ink spreads out ...
        ink_before = (images - data.background()).sum().item()
        ink_after = (blurred - data.background()).sum().item()
        self.assertAlmostEqual(ink_after / ink_before, 1, delta=0.05)  # ... about as much ink

    def test_fast_3x3_maximum_equals_max_pooling(self):
        ink = torch.randn(5, 1, 28, 28)  # either sign: the minimum is -maximum_3x3(-ink)
        self.assertTrue(torch.equal(data.maximum_3x3(ink),
                                    torch.nn.functional.max_pool2d(ink, 3, stride=1, padding=1)))

    def test_training_batches_are_the_same_whatever_the_order_of_use(self):
        """Augmentation draws come from the one generator, so a seed gives the same epoch."""
        labels = torch.arange(100) % 10
        images = self.square()[:1].repeat(100, 1, 1, 1)
        epochs = [list(data.train_batches(images, labels, 32, torch.Generator().manual_seed(4),
                                          data.AUGMENTATIONS["handwriting"])) for _ in range(2)]
        for (first_images, first_labels), (again_images, again_labels) in zip(*epochs):
            self.assertTrue(torch.equal(first_images, again_images))
            self.assertTrue(torch.equal(first_labels, again_labels))


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
        model = evaluation.load_model(MODEL, "cpu")
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            images, labels = test.read_labelled_folder(folder)
        self.assertEqual(sorted(labels.tolist()), [3, 3, 3, 7, 7, 7, 7])
        expected = evaluation.accuracy(evaluation.predict(model, images), labels)
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
            images, labels = test.read_labelled_folder(folders[0])
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
        result = run_subprocess("make_digit_sets.py", temp_path("uci_sets"), "--sets", "uci",
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
        model = evaluation.load_model(untrained, "cpu")
        images, labels = data.load_mnist(DATA_DIR, train=False)
        predictions = evaluation.predict(model, images)
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
                test.save_error_grid(path, images, torch.tensor([1, 1]), torch.tensor([7, 7]))
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

    def test_momentum_is_what_the_flags_say(self):
        model = torch.nn.Linear(1, 1)
        args = train.parse_args(["--optimizer", "sgd", "--momentum", "0.9"])
        optimizer, _ = train.make_optimizer(model, args, steps_per_epoch=10)
        self.assertEqual(optimizer.param_groups[0]["momentum"], 0.9)
        args = train.parse_args(["--optimizer", "sgd"])
        self.assertEqual(train.make_optimizer(model, args, 10)[0].param_groups[0]["momentum"], 0.5)
        # One-cycle moves sgd's momentum and adam's first beta from 0.95 to 0.85 and back.
        for optimizer_name, read in (("sgd", lambda group: group["momentum"]),
                                     ("adam", lambda group: group["betas"][0])):
            args = train.parse_args(["--optimizer", optimizer_name, "--schedule", "onecycle"])
            self.assertIsNone(args.momentum)
            optimizer, scheduler = train.make_optimizer(model, args, steps_per_epoch=100)
            values = []
            for _ in range(300):
                values.append(read(optimizer.param_groups[0]))
                optimizer.step()
                scheduler.step()
            self.assertAlmostEqual(values[0], 0.95)
            self.assertAlmostEqual(min(values), 0.85, places=3)
            self.assertAlmostEqual(values[-1], 0.95, places=3)
        code, _, err = run_script(train, ["--schedule", "onecycle", "--momentum", "0.9"])
        self.assertEqual(code, 2)
        self.assertIn("--momentum has no effect with --schedule onecycle", err)

    def test_no_dropout_and_no_augment_epochs_switch_off_only_at_the_end(self):
        args = train.parse_args(["--epochs", "3", "--no-dropout-epochs", "1", "--batch-size", "100",
                                 "--augment", "handwriting", "--no-augment-epochs", "2"])
        images, labels = data.load_mnist(DATA_DIR, train=True)
        model = Net()
        with mock.patch.object(train, "set_dropout", wraps=train.set_dropout) as spy, \
                mock.patch.object(train, "train_batches", wraps=train.train_batches) as batches, \
                contextlib.redirect_stdout(io.StringIO()):  # its progress lines
            train.train(model, images, labels, args)
        self.assertEqual([call.kwargs["active"] for call in spy.call_args_list],
                         [True, True, False])
        self.assertEqual([call.args[4] for call in batches.call_args_list],
                         [data.AUGMENTATIONS["handwriting"], None, None])
        self.assertFalse(model.conv_dropout.training)
        self.assertTrue(model.training and model.fc1.training)
        train.set_dropout(model, active=True)
        self.assertTrue(model.conv_dropout.training)
        code, _, err = run_script(train, ["--epochs", "2", "--no-dropout-epochs", "3"])
        self.assertEqual(code, 2)
        self.assertIn("--no-dropout-epochs 3 is more than --epochs 2", err)
        code, _, err = run_script(train, ["--epochs", "2", "--no-augment-epochs", "5"])
        self.assertEqual(code, 2)
        self.assertIn("--no-augment-epochs 5 is more than --epochs 2", err)

    def test_recipe_flags_train_end_to_end(self):
        code, out, err = run_script(train, ["--data-dir", DATA_DIR, "--device", "cpu", "--epochs",
                                            "2", "--batch-size", "128", "--schedule", "onecycle",
                                            "--augment", "--no-dropout-epochs", "1",
                                            "--out", temp_path("recipe.pt")])
        self.assertEqual(code, 0, err)
        args = torch.load(temp_path("recipe.pt"), weights_only=True)["args"]
        self.assertEqual((args["schedule"], args["augment"], args["no_dropout_epochs"]),
                         ("onecycle", "light", 1))


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
