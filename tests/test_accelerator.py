"""Tests of every path that differs on an accelerator (CUDA, MPS, ...): skipped, with the reason,
on a machine without one. bash .ci/gpu runs them with the GPU benchmarks in one go.

Usage: python -m unittest -v tests.test_accelerator
"""
import os
import re
import unittest

import torch
from PIL import Image, ImageDraw

import common
import data
import test
import train
from extras import augment
from model import Net
from page import routes
from page.server import answer
from tests.fixtures import make_fake_mnist, run_script, temporary_folder

ACCELERATOR = None if common.device_name("auto") == "cpu" else common.device_name("auto")


def setUpModule():
    global TEMP, DATA_DIR
    TEMP = temporary_folder()
    DATA_DIR = make_fake_mnist(os.path.join(TEMP, "data"), train_size=640, test_size=200)


def temp_path(name):
    return os.path.join(TEMP, name)


def batches_on(images, labels, augmentation):
    """One epoch's batches of 64, seeded, changed by augmentation (a name) unless it is None."""
    generator = torch.Generator().manual_seed(3)
    batches = data.train_batches(images, labels, 64, generator)
    if augmentation is None:
        return batches
    return augment.augmented(batches, len(labels) // 64 * 64, generator, augmentation,
                             data.background())


def train_on(device, out, *flags):
    code, stdout, err = run_script(train, ["--data-dir", DATA_DIR, "--device", device, "--epochs",
                                           "2", "--out", out, *flags])
    assert code == 0, err
    return stdout


class DeviceChoiceTest(unittest.TestCase):
    def test_auto_picks_the_accelerator_and_explicit_names_are_checked(self):
        self.assertEqual(common.device_name("auto"), ACCELERATOR or "cpu")
        self.assertEqual(common.device_name("cpu"), "cpu")
        self.assertEqual(common.available_devices()[0], "cpu")
        if ACCELERATOR:
            self.assertIn(ACCELERATOR, common.available_devices())


@unittest.skipUnless(ACCELERATOR, "no accelerator on this machine (torch sees no CUDA, MPS, ...)")
class AcceleratorTest(unittest.TestCase):
    def test_same_batches_on_the_device_as_on_the_cpu(self):
        images, labels = data.load_mnist(DATA_DIR, train=True)
        for augmentation in (None, "handwriting"):
            cpu_batches, device_batches = (
                batches_on(images.to(device), labels.to(device), augmentation)
                for device in ("cpu", ACCELERATOR))
            for (cpu_images, cpu_labels), (device_images, device_labels) in zip(cpu_batches,
                                                                                device_batches):
                self.assertEqual(device_images.device.type, ACCELERATOR)
                self.assertTrue(torch.equal(cpu_labels, device_labels.cpu()))  # same order
                torch.testing.assert_close(device_images.cpu(), cpu_images, atol=1e-4, rtol=0)

    def test_checkpoints_move_both_ways_and_accuracy_matches_the_cpu(self):
        on_device, on_cpu = temp_path("device.pt"), temp_path("cpu.pt")
        stdout = train_on(ACCELERATOR, on_device, "--augment", "handwriting")
        self.assertIn(f"Device: {ACCELERATOR}", stdout)
        train_on("cpu", on_cpu)
        for path in (on_device, on_cpu):
            accuracies = []
            for device in ("cpu", ACCELERATOR):
                code, out, err = run_script(test, [path, "--data-dir", DATA_DIR, "--device", device,
                                                   "--per-class"])
                self.assertEqual(code, 0, err)
                accuracies.append(float(re.search(r"Test Accuracy: (\d+\.\d+)%", out).group(1)))
            self.assertLessEqual(abs(accuracies[0] - accuracies[1]), 0.1, path)

    def test_pictures_folders_and_the_page_on_the_device(self):
        model_path = temp_path("pictures.pt")
        train_on(ACCELERATOR, model_path)
        picture = Image.new("L", (80, 80), 255)
        ImageDraw.Draw(picture).line((40, 10, 38, 70), fill=0, width=8)
        folder = temp_path("folder")
        os.makedirs(os.path.join(folder, "1"), exist_ok=True)
        picture.save(os.path.join(folder, "1", "one.png"))
        outputs = {}
        for device in ("cpu", ACCELERATOR):
            code, out, err = run_script(test, [model_path, "--device", device, "--images-dir",
                                               folder, "--image", os.path.join(folder, "1", "one.png"),
                                               "--per-class"])
            self.assertEqual(code, 0, err)
            outputs[device] = out
        self.assertEqual(outputs["cpu"], outputs[ACCELERATOR])  # printed from CPU values
        answers = []
        for device in ("cpu", ACCELERATOR):
            page = routes.Page(routes.load_models([model_path], device), device)
            pixels = [[picture.getpixel((x, y)) for x in range(80)] for y in range(80)]
            answers.append(answer(page, "POST", "/predict", {"model": 0, "pixels": pixels}))
        self.assertEqual(answers[0]["prediction"], answers[1]["prediction"])
        torch.testing.assert_close(torch.tensor(answers[1]["probabilities"]),
                                   torch.tensor(answers[0]["probabilities"]), atol=1e-4, rtol=0)
        for layer_cpu, layer_device in zip(answers[0]["layers"], answers[1]["layers"]):
            self.assertEqual(layer_cpu["shape"], layer_device["shape"])

    def test_evaluation_on_the_device_matches_the_cpu(self):
        torch.manual_seed(0)
        model = Net()
        images, labels = data.load_mnist(DATA_DIR, train=False)
        on_cpu = common.predict(model, images)
        on_device = common.predict(model.to(ACCELERATOR), images.to(ACCELERATOR)).cpu()
        self.assertGreaterEqual((on_cpu == on_device).float().mean().item(), 0.99)


if __name__ == "__main__":
    unittest.main()
