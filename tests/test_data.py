"""Tests of data.py, extras/pictures.py and extras/augment.py: MNIST as tensors, shuffled batches,
pictures of your own digits prepared as MNIST's were, and the random changes of --augment.

Usage: python -m unittest -v tests.test_data
"""
import contextlib
import io
import json
import os
import unittest
from unittest import mock

import numpy as np
import torch
import torchvision
from PIL import Image

import data
from extras import augment, pictures
from tests.fixtures import (DRIVER, EPS_SEVEN, MNIST_ROOT, NO_REAL_MNIST, ROOT, TUTORIAL_TRANSFORM,
                            TutorialModel, draw_digit, make_fake_mnist, png_header_only, run_in,
                            temporary_folder)


def setUpModule():
    global TEMP, DATA_DIR
    TEMP = temporary_folder()
    DATA_DIR = make_fake_mnist(os.path.join(TEMP, "data"))


def temp_path(name):
    return os.path.join(TEMP, name)


class DataTest(unittest.TestCase):
    def test_tensors_equal_the_tutorial_transform(self):
        for train_split in (True, False):
            images, labels = data.load_mnist(DATA_DIR, train=train_split)
            reference = torchvision.datasets.MNIST(DATA_DIR, train=train_split,
                                                   transform=TUTORIAL_TRANSFORM)
            self.assertEqual(images.shape, (len(reference), 1, 28, 28))
            expected = torch.stack([reference[i][0] for i in range(len(reference))])
            self.assertTrue(torch.equal(images, expected))  # bit for bit, not approximately
            self.assertTrue(torch.equal(labels, reference.targets))

    def test_batches_reshuffle_every_epoch_and_drop_the_last(self):
        labels = torch.arange(100)
        images = labels.float().view(100, 1, 1, 1)
        shuffle = torch.Generator().manual_seed(0)
        epochs = [list(data.train_batches(images, labels, 32, shuffle)) for _ in range(2)]
        for batches in epochs:
            self.assertEqual([len(batch_labels) for _, batch_labels in batches], [32, 32, 32])
            seen = torch.cat([batch_labels for _, batch_labels in batches])
            self.assertEqual(len(set(seen.tolist())), 96)  # no image twice in an epoch
            for batch_images, batch_labels in batches:  # each image keeps its label
                self.assertTrue(torch.equal(batch_images.view(-1).long(), batch_labels))
        first, second = (torch.cat([b for _, b in batches]) for batches in epochs)
        self.assertFalse(torch.equal(first, second))


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
        digit = pictures.prepare_digit(picture)
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
        self.assertTrue(torch.equal(pictures.prepare_digit(dark_on_light),
                                    pictures.prepare_digit(light_on_dark)))

    def test_grey_paper_and_transparent_background(self):
        reference = pictures.prepare_digit(draw_digit((120, 160), (20, 20, 90, 140)))
        grey = pictures.prepare_digit(draw_digit((120, 160), (20, 20, 90, 140), ink=(40, 40, 40),
                                             paper=(200, 195, 190)))
        self.assertLess((grey - reference).abs().max().item(), 0.05)
        # Black ink on clear pixels that are black too: only the alpha channel shows the digit.
        transparent = draw_digit((120, 160), (20, 20, 90, 140), ink=(0, 0, 0, 255),
                                 paper=(0, 0, 0, 0), mode="RGBA")
        self.assertTrue(torch.equal(pictures.prepare_digit(transparent), reference))

    def test_blank_picture_is_refused(self):
        with self.assertRaises(data.DataError):
            pictures.prepare_digit(Image.new("L", (50, 50), 255))


class ReadPictureTest(unittest.TestCase):
    def test_exif_rotated_photo_is_read_upright(self):
        upright = draw_digit((120, 160), (20, 20, 90, 140))  # an 'L': turning it changes it
        path = temp_path("sideways.jpg")
        # As a phone saves it: the pixels turned a quarter, Orientation 6 says to turn them back.
        exif = Image.Exif()
        exif[0x0112] = 6
        upright.transpose(Image.Transpose.ROTATE_90).save(path, exif=exif, quality=95)
        expected = pictures.prepare_digit(upright)
        self.assertLess((pictures.read_picture(path, path) - expected).abs().mean().item(), 0.02)
        exif[0x0112] = 1  # the same pixels with no turn asked are read as they are
        upright.transpose(Image.Transpose.ROTATE_90).save(path, exif=exif, quality=95)
        self.assertGreater((pictures.read_picture(path, path) - expected).abs().mean().item(), 0.1)

    def test_file_objects_and_paths_give_the_same_digit(self):
        path = temp_path("digit.png")
        draw_digit((100, 100), (30, 20, 70, 80)).save(path)
        with open(path, "rb") as file:
            self.assertTrue(torch.equal(pictures.read_picture(file, "upload"),
                                        pictures.read_picture(path, path)))


class PictureFormatTest(unittest.TestCase):
    def test_the_formats_a_digit_comes_in_are_read_and_a_phones_mpo_decoded_smaller(self):
        upright = draw_digit((120, 160), (20, 20, 90, 140), mode="RGB")
        expected = pictures.prepare_digit(upright)
        for name, options in [("PNG", {}), ("JPEG", {"quality": 95}), ("GIF", {}), ("BMP", {}),
                              ("TIFF", {}), ("WEBP", {"lossless": True}),
                              ("MPO", {"save_all": True, "append_images": [upright]})]:  # phones'
            with self.subTest(format=name):
                buffer = io.BytesIO()
                upright.save(buffer, format=name, **options)
                self.assertLess((pictures.read_picture(buffer, name) - expected).abs().mean().item(),
                                0.02)
                if name == "MPO":  # over the limit, as a JPEG is: decoded at half the size
                    with mock.patch.object(pictures, "MAX_PIXELS", 60 * 80):
                        with pictures.open_within_limit(buffer) as picture:
                            self.assertEqual((picture.format, picture.size), ("MPO", (60, 80)))

    def test_other_formats_are_refused_by_name_without_opening_them(self):
        buffer = io.BytesIO()
        draw_digit((120, 160), (20, 20, 90, 140)).save(buffer, format="PPM")  # Pillow reads PPM
        for name, content in [("digit.ppm", buffer.getvalue()), ("seven.eps", EPS_SEVEN)]:
            with self.subTest(name=name):
                with mock.patch("PIL.EpsImagePlugin.EpsImageFile._open",
                                side_effect=AssertionError("opened as EPS")):
                    with self.assertRaises(data.DataError) as raised:
                        pictures.read_picture(io.BytesIO(content), name)
                kind = name.split(".")[1].upper()
                self.assertEqual(str(raised.exception), f"{name}: {kind} files are not read, only "
                                                        "PNG, JPEG, GIF, BMP, TIFF, WEBP")
        with self.assertRaisesRegex(data.DataError, "^notes: not an image file of a format"):
            pictures.read_picture(io.BytesIO(b"just text"), "notes")


class LargeAndDeepPictureTest(unittest.TestCase):
    def test_too_many_pixels_are_refused_from_the_header_before_decoding(self):
        path = temp_path("huge.png")
        png_header_only(path, 9000, 9000)  # 81 million pixels: under Pillow's own limit
        with mock.patch("PIL.ImageFile.ImageFile.load", side_effect=AssertionError("decoded")):
            with self.assertRaisesRegex(data.DataError, "too many pixels .*9000 x 9000"):
                pictures.read_picture(path, path)
        small = temp_path("small.png")
        draw_digit((200, 200), (60, 40, 140, 160)).save(small)
        with mock.patch.object(pictures, "MAX_PIXELS", 199 * 200):
            with self.assertRaisesRegex(data.DataError, "too many pixels"):
                pictures.read_picture(small, small)
        self.assertEqual(pictures.read_picture(small, small).shape, (1, 28, 28))
        png_header_only(path, 20_000, 20_000)  # over Pillow's own limit: refused in our words too
        with self.assertRaises(data.DataError) as caught:
            pictures.read_picture(path, "huge.png")
        self.assertEqual(str(caught.exception), pictures.TOO_MANY_PIXELS.format(
            name="huge.png", why="more than 178,956,970 pixels, at most 16,777,216 are read"))

    def test_a_large_jpeg_is_decoded_smaller_instead(self):
        path = temp_path("photo.jpg")
        photo = draw_digit((4800, 3600), (1800, 600, 2800, 3000), mode="L")  # 17.3 million pixels
        photo.save(path, quality=90)
        opened = []
        real_open = pictures.open_within_limit
        with mock.patch.object(pictures, "open_within_limit",
                               side_effect=lambda *args: opened.append(real_open(*args)) or opened[-1]):
            digit = pictures.read_picture(path, path)
        self.assertEqual(opened[0].size, (2400, 1800))  # decoded at half the size: 4.3 million
        expected = pictures.prepare_digit(photo)  # every pixel, as it was read before the limit
        self.assertLess((digit - expected).abs().mean().item(), 0.002)

    def test_16_bit_grey_keeps_its_levels(self):
        eight_bit = draw_digit((120, 160), (20, 20, 90, 140), ink=30, paper=230, mode="L")
        levels = np.asarray(eight_bit).astype(np.uint16) * 257  # 0..255 -> 0..65535
        path = temp_path("scan16.png")
        Image.fromarray(levels).save(path)
        with Image.open(path) as picture:
            self.assertIn(picture.mode, ("I", "I;16"))  # Pillow reads 16-bit PNGs as these
        self.assertTrue(torch.equal(pictures.read_picture(path, path), pictures.prepare_digit(eight_bit)))


class LabelledFolderTest(unittest.TestCase):
    def test_empty_digit_folders_and_hidden_entries_are_passed_over(self):
        folder = temp_path("class")
        for name in ("0", "1", "2", "3", ".ipynb_checkpoints"):
            os.makedirs(os.path.join(folder, name))
        draw_digit((100, 100), (30, 20, 70, 80)).save(os.path.join(folder, "3", "a.png"))
        draw_digit((100, 100), (30, 20, 70, 80)).save(os.path.join(folder, ".ipynb_checkpoints",
                                                                   "b.png"))
        with open(os.path.join(folder, "2", ".DS_Store"), "wb") as file:
            file.write(b"\0\0\0\1Bud1")
        with contextlib.redirect_stdout(io.StringIO()) as out:
            images, labels = pictures.read_labelled_folder(folder)
        self.assertEqual((images.shape, labels.tolist()), ((1, 1, 28, 28), [3]))
        self.assertEqual(out.getvalue(), "Pictures: 1 read, 0 skipped\n")
        os.remove(os.path.join(folder, "3", "a.png"))
        with self.assertRaisesRegex(data.DataError, "subfolders 0 to 9 hold no pictures"):
            pictures.read_labelled_folder(folder)


class HostileFolderTest(unittest.TestCase):
    """A labelled folder with links to itself, a fifo named like a picture and a link to a
    picture elsewhere: only the plain files inside are read, and every reader ends."""

    @classmethod
    def setUpClass(cls):
        cls.folder = temp_path("hostile_class")
        for digit in ("0", "7"):
            os.makedirs(os.path.join(cls.folder, digit))
        draw_digit((100, 100), (30, 20, 70, 80)).save(os.path.join(cls.folder, "7", "own.png"))
        draw_digit((100, 100), (40, 10, 60, 90)).save(temp_path("elsewhere.png"))
        os.symlink(".", os.path.join(cls.folder, "0", "a"))  # each one a way round for ever
        os.symlink(".", os.path.join(cls.folder, "0", "b"))
        os.symlink("..", os.path.join(cls.folder, "7", "up"))
        os.mkfifo(os.path.join(cls.folder, "7", "b.png"))  # opening it would wait for a writer
        os.symlink(temp_path("elsewhere.png"), os.path.join(cls.folder, "7", "theirs.png"))
        os.symlink(temp_path("elsewhere.png"), os.path.join(cls.folder, "3"))

    def test_only_the_plain_files_inside_are_read(self):
        with contextlib.redirect_stdout(io.StringIO()) as out, \
                contextlib.redirect_stderr(io.StringIO()) as err:
            images, labels = pictures.read_labelled_folder(self.folder)
        self.assertEqual(labels.tolist(), [7])
        own = pictures.read_picture(os.path.join(self.folder, "7", "own.png"), "own")
        self.assertTrue(torch.equal(images[0], own))
        self.assertEqual(out.getvalue(), "Pictures: 1 read, 0 skipped\n")
        self.assertEqual(err.getvalue(), f"Not read: 6 links, fifos, devices or unreadable folders "
                                         f"in {self.folder} (only plain files are read; no link is "
                                         "followed)\n")

    def test_a_picture_swapped_for_a_fifo_is_not_waited_for(self):
        with self.assertRaisesRegex(data.DataError, "b.png: not a plain file"):
            pictures.read_plain_picture(os.path.join(self.folder, "7", "b.png"))
        with self.assertRaisesRegex(data.DataError, "theirs.png: "):
            pictures.read_plain_picture(os.path.join(self.folder, "7", "theirs.png"))

    def test_the_count_looked_at_is_bounded(self):
        with mock.patch.object(pictures, "MAX_FOLDER_ENTRIES", 3), \
                self.assertRaisesRegex(data.DataError, "more than 3 files and folders to look at"):
            pictures.read_labelled_folder(self.folder)

    def test_test_and_the_export_end_reading_only_the_plain_files(self):
        checkpoint = temp_path("hostile_folder.pt")
        torch.save({"model": TutorialModel().state_dict()}, checkpoint)
        # Both in one process of their own (a folder that never ends would stop it, not the suite).
        driven = run_in(ROOT, "-c", DRIVER, json.dumps([
            ("test", [checkpoint, "--images-dir", self.folder, "--device", "cpu"]),
            ("draw", [checkpoint, "--images-dir", self.folder, "--device", "cpu", "--data-dir",
                      DATA_DIR, "--export", temp_path("hostile.html")])]), timeout=60)
        self.assertEqual(driven.returncode, 0, driven.stderr)
        (code, out, err, _), (code_export, _, err_export, _) = json.loads(driven.stdout)
        self.assertEqual(code, 0, err)
        self.assertIn("Pictures: 1 read, 0 skipped", out)
        self.assertEqual(code_export, 0, err_export)
        self.assertIn("Not read: 6 links", err_export)


class AugmentTest(unittest.TestCase):
    def square(self):
        """32 black images (after normalisation) with a bright 10 x 10 square in the middle."""
        images = torch.full((32, 1, 28, 28), data.background())
        images[:, :, 9:19, 9:19] = (1 - data.MEAN) / data.STD
        return images

    def augmented(self, images, seed=1, **limits):
        changes = augment.draw_changes(len(images), torch.Generator().manual_seed(seed), **limits)
        return augment.augment(images, *changes, background=data.background())

    def check_keeps_background(self):
        images = self.square()
        for name, limits in augment.AUGMENTATIONS.items():
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
        thicker = augment.augment(images, torch.eye(2, 3).expand(32, 2, 3), stroke=torch.ones(32),
                                  background=data.background())
        thinner = augment.augment(images, torch.eye(2, 3).expand(32, 2, 3), stroke=-torch.ones(32),
                                  background=data.background())
        self.assertGreater((thicker > data.background() + 0.5).sum(), ink * 1.2)
        self.assertLess((thinner > data.background() + 0.5).sum(), ink * 0.8)
        same = augment.augment(images, torch.eye(2, 3).expand(32, 2, 3), stroke=torch.zeros(32),
                               background=data.background())
        torch.testing.assert_close(same, images)  # no change asked: the identity map keeps all
        blurred = augment.augment(images, torch.eye(2, 3).expand(32, 2, 3), blur=torch.ones(32),
                                  background=data.background())
        self.assertLess(blurred[0, 0, 9, 9], images[0, 0, 9, 9])  # corners soften ...
        self.assertGreater(blurred[0, 0, 8, 12], data.background())  # ... ink spreads out ...
        ink_before = (images - data.background()).sum().item()
        ink_after = (blurred - data.background()).sum().item()
        self.assertAlmostEqual(ink_after / ink_before, 1, delta=0.05)  # ... about as much ink

    def test_fast_3x3_maximum_equals_max_pooling(self):
        ink = torch.randn(5, 1, 28, 28)  # either sign: the minimum is -maximum_3x3(-ink)
        self.assertTrue(torch.equal(augment.maximum_3x3(ink),
                                    torch.nn.functional.max_pool2d(ink, 3, stride=1, padding=1)))

    def test_training_batches_are_the_same_whatever_the_order_of_use(self):
        """Augmentation draws come from the one generator, so a seed gives the same epoch."""
        labels = torch.arange(100) % 10
        images = self.square()[:1].repeat(100, 1, 1, 1)
        epochs = []
        for _ in range(2):
            generator = torch.Generator().manual_seed(4)
            batches = data.train_batches(images, labels, 32, generator)
            epochs.append(list(augment.augmented(batches, 96, generator, "handwriting",
                                                 data.background())))
        self.assertEqual(len(epochs[0]), 3)
        for (first_images, first_labels), (again_images, again_labels) in zip(*epochs):
            self.assertTrue(torch.equal(first_images, again_images))
            self.assertTrue(torch.equal(first_labels, again_labels))
        self.assertFalse(torch.equal(epochs[0][0][0], images[:32]))  # changed


@unittest.skipIf(*NO_REAL_MNIST)
class RealMnistTest(unittest.TestCase):
    def test_tensors_equal_torchvision_on_real_mnist(self):
        images, labels = data.load_mnist(MNIST_ROOT, train=False)
        reference = torchvision.datasets.MNIST(MNIST_ROOT, train=False, transform=TUTORIAL_TRANSFORM)
        expected = torch.stack([reference[i][0] for i in range(len(reference))])
        self.assertTrue(torch.equal(images, expected))
        self.assertTrue(torch.equal(labels, reference.targets))


if __name__ == "__main__":
    unittest.main()
