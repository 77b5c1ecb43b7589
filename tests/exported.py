"""What the tests of the exported file share: the data a file holds, a folder of pictures to
export, a call of the file's routes from Selenium, and FileInBrowser, the file opened as file://
in headless Chromium with nothing requested from any host.

Usage: from tests.exported import CALL, FileInBrowser, export_untrained, exported_data, picture_folder
       (tests only)
"""
import json
import os
import re

import torch

import draw
from model import Net
from tests.fixtures import (browser, downloads_folder, draw_shape, exported_shapes, run_script, shapes_mnist,
                            wait_until)

# Calls window.routes[route](argument) in the page and hands back its answer or its error.
CALL = """
const [route, argument, done] = arguments;
Promise.resolve().then(() => window.routes[route](argument))
  .then((answer) => done({ answer }), (error) => done({ error: error.message, status: error.status }));
"""


def exported_data(path):
    with open(path, encoding="utf-8") as file:
        return json.loads(re.search(r'id="export-data">(.*?)</script>', file.read(), re.S).group(1))


def export_untrained(folder, file="page.html", *flags):
    """Export folder/untrained.pt (Net's first weights from seed 0) with 600 of the shapes'
    training images and draw.py's extra flags to folder/file; return its path."""
    model = os.path.join(folder, "untrained.pt")
    torch.manual_seed(0)
    torch.save({"model": Net().state_dict()}, model)
    path = os.path.join(folder, file)
    code, _, err = run_script(draw, [model, "--data-dir", shapes_mnist(), "--device", "cpu",
                                     "--train-images", "600", *flags, "--export", path])
    assert code == 0, err
    return path


def picture_folder(folder):
    """Write one drawn shape of each digit as folder/0/0.png ... folder/9/0.png; return folder."""
    for label in range(10):
        os.makedirs(os.path.join(folder, str(label)))
        draw_shape(label, torch.Generator().manual_seed(label)).save(
            os.path.join(folder, str(label), "0.png"))
    return folder


class FileInBrowser:
    """Mixed into a TestCase: each test opens exported_shapes()'s file in the run's Chromium, as
    file:// with every host unresolvable, and ends with nothing requested from any host."""

    @classmethod
    def setUpClass(cls):
        cls.driver, cls.downloads = browser(), downloads_folder()

    def open(self, path=None):
        self.driver.get("file://" + (path or exported_shapes().file))
        self.wait_for(lambda: self.script("return document.body.dataset.ready === 'true' "
                                          "|| !!document.getElementById('error').textContent"),
                      "the file to be ready")
        self.assertEqual(self.driver.find_element("id", "error").text, "")

    def setUp(self):
        self.open()

    def tearDown(self):
        # Nothing requested, ever: no script error, no blocked load, no resource fetched.
        severe = [entry["message"] for entry in self.driver.get_log("browser") if entry["level"] == "SEVERE"]
        self.assertEqual(severe, [])
        self.assertEqual(self.driver.execute_script(
            "return performance.getEntriesByType('resource').map((entry) => entry.name)"), [])
        urls = [json.loads(entry["message"])["message"]["params"]["request"]["url"]
                for entry in self.driver.get_log("performance")
                if '"Network.requestWillBeSent"' in entry["message"]]
        self.assertEqual([url for url in urls if not url.startswith(("file://", "data:", "blob:"))], [])

    def wait_for(self, condition, what, timeout=30):
        return wait_until(self.driver, condition, what, timeout)

    def script(self, code):
        return self.driver.execute_script(code)

    def text(self, element_id):
        return self.driver.find_element("id", element_id).text

    def call(self, route, argument=""):
        reply = self.driver.execute_async_script(CALL, route, argument)
        return reply
