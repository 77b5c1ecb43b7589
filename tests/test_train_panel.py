"""The exported file's "Train it here" panel (issue 30) in headless Chromium, opened as file://
with every host unresolvable, on a 390-pixel phone screen: a drawing saved with a collect button,
a run through the page's own controls with the drawings mixed in, train.py's lines, the network in
the Network select, and a model.pt that test.py reads to the accuracy the page showed.

Usage: python -m unittest -v tests.test_train_panel
"""
import glob
import json
import os
import re
import unittest


import test as test_script
from tests.exported import FileInBrowser, export_untrained
from tests.fixtures import (PHONE_PROBLEMS, browser, browser_missing, downloads_folder, draw_stroke,
                            run_script, shapes_mnist, temporary_folder)

TRAINED = "trained in this page (1 epoch, seed 0)"
PROGRESS = r"Epoch: 1/1, Step: 1/10, Loss: \d+\.\d{4}, Accuracy: \d+\.\d{2}%"  # (600 + 30) / 64


def setUpModule():
    global TEMP, SHAPES, FILE, WITHOUT
    TEMP = temporary_folder()
    SHAPES = shapes_mnist()
    collect = ("--collect", os.path.join(TEMP, "class_digits"))
    FILE = export_untrained(TEMP, "page.html", *collect)
    WITHOUT = export_untrained(TEMP, "without.html", "--train-images", "0", *collect)


def replaced(element):
    """Whether the page has replaced element (drawn again) since it was found."""
    from selenium.common.exceptions import StaleElementReferenceException

    try:
        element.is_enabled()
    except StaleElementReferenceException:
        return True
    return False


@unittest.skipIf(browser_missing(), browser_missing())
class TrainPanelTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.driver = browser()

    def setUp(self):
        self.driver.set_window_size(390, 844)
        self.open(FILE)

    def tearDown(self):
        self.driver.set_window_size(1280, 2600)
        # Nothing requested, ever: no script error, no resource fetched.
        severe = [entry["message"] for entry in self.driver.get_log("browser")
                  if entry["level"] == "SEVERE"]
        self.assertEqual(severe, [])
        self.assertEqual(self.script("return performance.getEntriesByType('resource').length"), 0)
        urls = [json.loads(entry["message"])["message"]["params"]["request"]["url"]
                for entry in self.driver.get_log("performance")
                if '"Network.requestWillBeSent"' in entry["message"]]
        self.assertEqual([url for url in urls if not url.startswith(("file://", "data:", "blob:"))], [])

    def open(self, path):
        self.driver.get("file://" + path)
        self.wait_for(lambda: self.script("return document.body.dataset.ready === 'true'"),
                      "the file to be ready")
        self.wait_for(lambda: self.text("train-about"), "the Train panel's sentence")

    wait_for, script, text = FileInBrowser.wait_for, FileInBrowser.script, FileInBrowser.text

    def element(self, selector):
        return self.driver.find_element("css selector", selector)

    def set_value(self, element_id, value):
        field = self.driver.find_element("id", element_id)
        field.clear()
        field.send_keys(value)

    def draw(self):
        self.driver.find_element("id", "clear").click()
        draw_stroke(self.driver, [(100 + 8 * step, 60 + 9 * step) for step in range(18)])
        self.wait_for(lambda: self.script("return document.body.dataset.busy === 'false'"), "the answer")

    def networks(self):
        return [option.text for option in self.driver.find_elements("css selector", "#model option")]

    def test_the_tutorials_settings_are_the_defaults(self):
        self.assertIn("on the 600 MNIST training images this file carries", self.text("train-about"))
        self.assertEqual([self.element(f"#train-{name}").get_attribute("value")
                          for name in ("epochs", "lr", "batch", "seed", "from")],
                         ["3", "0.01", "64", "0", "fresh"])
        # An untrained checkpoint has no snapshot of step 0 to start from; a drawing must be saved first.
        self.assertFalse(self.element('#train-from option[value="initial"]').is_enabled())
        self.element("#train-extra").click()
        self.element("#train-start").click()
        self.wait_for(lambda: self.text("train-error"), "the refusal")
        self.assertTrue(self.text("train-error").startswith("no drawings are collected yet"))
        self.assertEqual(self.networks(), ["untrained.pt", "untrained (random weights)"])

    def test_drawing_goes_on_while_it_trains_and_stop_takes_the_network_away(self):
        self.set_value("train-epochs", "100")
        self.set_value("train-batch", "4")  # short steps: the weights change every 200 of them
        self.element("#train-start").click()
        self.wait_for(lambda: "Epoch: 1/100, Step: 1/150" in self.text("train-log"), "the first line")
        # As many workers as the browser says it has cores, at most the export's bound.
        workers = self.script("return Math.min(navigator.hardwareConcurrency, "
                              "window.exportedData.training.bounds.workers)")
        self.assertRegex(self.text("train-status"),
                         rf"^step [\d,]+ of 15,000, [\d.]+ s, on {workers} workers?$")
        self.wait_for(lambda: self.element("#model").get_attribute("value") == "2",
                      "the live network, chosen")
        self.draw()  # while it trains
        live = TRAINED.replace("1 epoch", "100 epochs")
        self.wait_for(lambda: f"answered by {live}" in self.text("status"), "an answer of the live network")
        self.assertEqual(self.text("error"), "")
        stage = self.element('section[data-stage="fc2"]')
        kernels = self.element('section[data-kernels="convolution1"]')
        # Every 200 steps its weights change, and the drawing's stages and the kernels are redrawn.
        self.wait_for(lambda: replaced(stage) and replaced(kernels), "a redraw with new weights")
        self.element("#train-stop").click()
        self.wait_for(lambda: self.text("train-error") == "training stopped", "the stop")
        self.assertEqual(self.networks(), ["untrained.pt", "untrained (random weights)"])
        self.assertEqual(self.element("#model").get_attribute("value"), "0")  # chosen again
        self.wait_for(lambda: self.text("status") == "answered by untrained.pt",
                      "the answer of the network chosen")
        self.assertTrue(self.element("#train-start").is_enabled())

    def test_a_run_with_a_drawing_prints_train_pys_lines_and_test_py_reads_its_model_pt_alike(self):
        self.draw()
        self.element('#collect-buttons button[data-label="3"]').click()
        self.wait_for(lambda: "Kept as 3/0000.png" in self.text("collect-status"), "the drawing kept")
        self.set_value("train-epochs", "1")
        self.element("#train-extra").click()
        self.element("#train-start").click()
        self.wait_for(lambda: "Test Accuracy" in self.text("train-log") or self.text("train-error"),
                      "the run's end", 60)
        self.assertEqual((self.text("train-error"), self.text("error")), ("", ""))
        lines = self.text("train-log").split("\n")
        self.assertRegex(lines[0], f"^{PROGRESS}$")
        self.assertRegex(lines[1], r"^Run Time: \d+\.\d{2} s$")
        accuracy = re.fullmatch(r"Test Accuracy: (\d+\.\d{2})%", lines[2]).group(1)
        self.assertRegex(lines[3], r"^The 1 drawing saved on this page, read right: "
                                   r"\d+\.\d{2}% before training, \d+\.\d{2}% after$")
        self.assertEqual(len(lines), 4)
        # The new network, chosen, with its confusion matrix and its training slider.
        self.assertEqual(self.networks(), ["untrained.pt", "untrained (random weights)", TRAINED])
        self.assertEqual(self.element("#model").get_attribute("value"), "2")
        self.wait_for(lambda: f"{TRAINED} reads {accuracy}% of the 200 images" in self.text("testset-status"),
                      "the explorer's accuracy")
        self.assertEqual(len(self.driver.find_elements("css selector", "#confusion td")), 100)
        self.assertTrue(self.element("#training").is_displayed())
        self.assertEqual(self.element("#training-step").get_attribute("max"), "4")  # steps 0, 1, 2, 5 and 9
        self.assertEqual(self.script(PHONE_PROBLEMS), [])
        # Back to Python: the model.pt the button saves reads to the same accuracy.
        target = os.path.join(downloads_folder(), "model.pt")
        for stale in glob.glob(os.path.join(downloads_folder(), "model*.pt")):
            os.remove(stale)
        self.element("#checkpoint-download").click()
        self.wait_for(lambda: os.path.exists(target) and not glob.glob(target + ".crdownload"), "model.pt")
        code, out, err = run_script(test_script, [target, "--data-dir", SHAPES, "--device", "cpu"])
        self.assertEqual(code, 0, err)
        read = float(re.search(r"Test Accuracy: (\d+\.\d{2})%", out).group(1))
        self.assertLessEqual(abs(read - float(accuracy)), 0.05, out)

    def test_a_file_without_training_images_says_so(self):
        self.open(WITHOUT)
        self.assertEqual(self.text("train-about"), "This file carries no training images: export it with "
                                                    "draw.py --data-dir DIR (see --train-images).")
        self.assertFalse(self.element("#train-controls").is_displayed())


if __name__ == "__main__":
    unittest.main()
