"""Tests that the tutorial's files work copied alone into a course's folder, without the rest of
the project.

Usage: python -m unittest -v tests.test_alone
"""
import os
import shutil
import subprocess
import sys
import unittest

from tests.fixtures import ROOT, temporary_folder


def setUpModule():
    global TEMP
    TEMP = temporary_folder()


# What a teacher who copies one file alone into a course runs with it: (the files copied, from
# the top folder, into one folder; the code run there). Your own pictures need data.py beside them.
ALONE = {
    "model.py": (["model.py"],
                 "import torch, model\n"
                 "print(tuple(model.tutorial_model()(torch.zeros(2, 1, 28, 28)).shape))"),
    "data.py": (["data.py", "extras/pictures.py"],
                "import data, pictures\nfrom PIL import Image, ImageDraw\n"
                "picture = Image.new('L', (40, 40), 255)\n"
                "ImageDraw.Draw(picture).line((20, 5, 20, 35), fill=0, width=4)  # a 1\n"
                "print(tuple(pictures.prepare_digit(picture).shape))\n"
                "try:\n    pictures.read_picture('missing.png', 'missing.png')\n"
                "except data.DataError as error:\n    print(error)"),
    "augment.py": (["extras/augment.py"],
                   "import torch, augment\n"
                   "changes = augment.draw_changes(4, torch.Generator(), **augment.AUGMENTATIONS"
                   "['handwriting'])\n"
                   "print(tuple(augment.augment(torch.full((4, 1, 28, 28), -1.0), *changes, "
                   "background=-1.0).shape))"),
}


class AloneTest(unittest.TestCase):
    def test_model_data_and_augment_each_work_copied_alone(self):
        printed = {}
        for name, (files, code) in ALONE.items():
            folder = os.path.join(TEMP, "alone_" + name[:-3])
            os.makedirs(folder)
            for file in files:
                shutil.copy(os.path.join(ROOT, file), folder)
            # -E -s: no PYTHONPATH and no user packages, so only this folder and the installed
            # torch, torchvision and Pillow can be imported.
            result = subprocess.run([sys.executable, "-E", "-s", "-c", code], cwd=folder,
                                    capture_output=True, text=True, timeout=120)
            self.assertEqual(result.returncode, 0, f"{name}: {result.stderr}")
            printed[name] = result.stdout.splitlines()
        self.assertEqual(printed["model.py"], ["(2, 10)"])
        self.assertEqual(printed["data.py"], ["(1, 28, 28)",
                                              "missing.png: No such file or directory"])
        self.assertEqual(printed["augment.py"], ["(4, 1, 28, 28)"])
