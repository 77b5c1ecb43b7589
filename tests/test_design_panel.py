"""The exported file's "Design your own" panel (issue 35) used as a student would, in headless
Chromium on a 390-pixel phone screen, file://, nothing requested: layers changed, removed, added and
typed wrong, each row's shape and the worked formula live, a sentence (never a blank panel or a
console error) for a network that cannot be built; "Use this network", one short epoch in the Train
panel, then its model.py and model.pt downloaded, which test.py reads to the accuracy the page showed.

Usage: python -m unittest -v tests.test_design_panel
"""
import glob
import os
import re
import shutil
import unittest


from tests.exported import FileInBrowser, export_untrained
from tests.fixtures import (COPY_SET, PHONE_PROBLEMS, ROOT, browser_missing, downloads_folder, draw_stroke,
                            run_in, shapes_mnist, temporary_folder)


def setUpModule():
    global TEMP, SHAPES, FILE
    TEMP = temporary_folder()
    SHAPES = shapes_mnist()
    FILE = export_untrained(TEMP)


@unittest.skipIf(browser_missing(), browser_missing())
class DesignPanelTest(FileInBrowser, unittest.TestCase):
    def setUp(self):
        self.driver.set_window_size(390, 844)
        self.open(FILE)
        self.wait_for(lambda: self.element("#design-panel").is_displayed(), "the Design panel")

    def tearDown(self):
        self.driver.set_window_size(1280, 2600)
        super().tearDown()

    def element(self, selector):
        return self.driver.find_element("css selector", selector)

    def row(self, index):
        return self.element(f'#design-layers li[data-row="{index}"]')

    def rows(self):
        """Each row's name, shape and parameters, as the panel shows them."""
        parts = ("name", "shape", "parameters")
        return [[item.find_element("css selector", f".design-{part}").text for part in parts]
                for item in self.driver.find_elements("css selector", "#design-layers li")]

    def type_into(self, index, field, text):
        """Type text into a row's number field, replacing what it held, as a student does."""
        from selenium.webdriver.common.keys import Keys

        field = self.row(index).find_element("css selector", f'input[data-field="{field}"]')
        field.send_keys(Keys.CONTROL, "a")
        field.send_keys(Keys.BACKSPACE, *text)

    def press(self, index, action):
        self.row(index).find_element("css selector", f'button[data-action="{action}"]').click()

    def choose(self, index, layer_type):
        from selenium.webdriver.support.ui import Select

        Select(self.row(index).find_element("css selector", "select")).select_by_value(layer_type)

    def refused(self):
        """The panel's sentence, once it says one; there is no Use button then."""
        self.wait_for(lambda: self.text("design-error"), "a sentence")
        self.assertFalse(self.element("#design-use").is_displayed())
        return self.text("design-error")

    def downloaded(self, name, button):
        """The file the button downloads, named name, once it is whole. Chromium holds a .py file
        until the user keeps it: as a user pressing Keep, the download is allowed for the while."""
        target = os.path.join(downloads_folder(), name)
        for stale in glob.glob(os.path.join(downloads_folder(), "model*")):
            os.remove(stale)
        self.driver.execute_cdp_cmd("Browser.setDownloadBehavior",
                                    {"behavior": "allow", "downloadPath": downloads_folder()})
        try:
            self.element(f"#{button}").click()
            self.wait_for(lambda: os.path.exists(target) and not glob.glob(target + ".crdownload"), name)
        finally:
            self.driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "default"})
        return target

    def test_a_student_designs_trains_and_downloads_both_files(self):
        self.element("#clear").click()
        draw_stroke(self.driver, [(100 + 8 * step, 60 + 9 * step) for step in range(18)])
        self.assertEqual(self.rows()[0], ["convolution1", "6 × 24 × 24", "156 parameters"])
        self.assertEqual(self.text("design-total"), "10,592 parameters in all; it ends in 10 values, one "
                                                    "score for each digit.")
        self.type_into(0, "kernel", "3")  # 3 x 3 kernels, exercise 2
        self.wait_for(lambda: self.rows()[0][1] == "6 × 26 × 26", "the new shape")
        self.assertIn("floor((28 − 3 + 2 × 0) / 1) + 1 = 26", self.text("design-worked"))
        self.type_into(4, "kernel", "3")
        self.wait_for(lambda: self.rows()[7] == ["flatten", "400", "0 parameters"], "16 x 5 x 5 for fc1")
        self.press(7, "remove")
        self.assertEqual(self.refused(), "fc1 takes a row of values, but its input is 16 x 5 x 5 maps; add a "
                                         "flatten before it.")
        self.assertIn("design-bad", self.row(7).get_attribute("class"))
        self.press(6, "add")  # a ReLU below pool_1, made a flatten
        self.choose(7, "flatten")
        self.press(8, "add")  # a ReLU between fc1 and fc2, exercise 4
        self.wait_for(lambda: self.element("#design-use").is_displayed(), "the Use button")
        self.assertEqual([row[0] for row in self.rows()[7:]], ["flatten", "fc1", "relu_2", "fc2"])
        self.assertEqual(self.text("design-error"), "")
        self.element("#design-use").click()
        self.wait_for(lambda: self.element("#model").get_attribute("value") == "2", "the network chosen")
        self.assertIn('Added to the Network list as "designed in this page (untrained, seed 0)"',
                      self.text("design-status"))
        self.wait_for(lambda: self.script("return document.body.dataset.busy === 'false'")
                      and "designed in this page" in self.text("status"), "its answer to the drawing")
        self.assertEqual(self.script('return document.querySelector(\'section[data-stage="fc1"] h2\')'
                                     '.firstChild.textContent'), "fc1 + ReLU")
        self.assertTrue(self.element("#design-downloads").is_displayed())
        # One short epoch in the Train panel: the designed network, chosen, from fresh weights.
        field = self.element("#train-epochs")
        field.clear()
        field.send_keys("1")
        self.element("#train-start").click()
        self.wait_for(lambda: "Test Accuracy" in self.text("train-log") or self.text("train-error"),
                      "the run's end", 120)
        self.assertEqual(self.text("train-error"), "")
        accuracy = float(re.search(r"Test Accuracy: (\d+\.\d{2})%", self.text("train-log")).group(1))
        self.assertEqual(self.element("#model").get_attribute("value"), "3")
        self.assertEqual(self.script(PHONE_PROBLEMS), [])
        # Both files, and the copy of the project they make with the tutorial's files.
        folder = os.path.join(TEMP, "project")
        os.makedirs(folder)
        for name in COPY_SET:
            shutil.copy(os.path.join(ROOT, name), folder)
        shutil.copytree(os.path.join(ROOT, "extras"), os.path.join(folder, "extras"))
        for name, button in (("model.py", "design-source"), ("model.pt", "design-checkpoint")):
            shutil.copy(self.downloaded(name, button), folder)
        with open(os.path.join(folder, "model.py"), encoding="utf-8") as file:
            self.assertIn("self.convolution1 = nn.Conv2d(in_channels=1, out_channels=6, kernel_size=3)",
                          file.read())
        result = run_in(folder, "test.py", "model.pt", "--data-dir", SHAPES, "--device", "cpu")
        self.assertEqual(result.returncode, 0, result.stderr)
        printed = float(re.search(r"Test Accuracy: ([\d.]+)%", result.stdout).group(1))
        self.assertLessEqual(abs(printed - accuracy), 0.05)

    def test_a_network_that_cannot_be_built_is_a_sentence_naming_its_layer(self):
        self.type_into(0, "kernel", "9")
        self.assertEqual(self.refused(), "convolution1's kernel must be a whole number from 1 to 7.")
        self.assertEqual(self.rows()[0], ["convolution1", "?", ""])
        self.assertEqual(self.rows()[1], ["—", "?", ""])
        self.type_into(0, "kernel", "")
        self.assertEqual(self.refused(), "convolution1 needs its kernel, a whole number from 1 to 7.")
        self.type_into(0, "kernel", "5")
        self.type_into(4, "kernel", "7")  # 12 - 7 + 1 = 6, pooled to 3: fc1 takes 16 x 3 x 3
        self.wait_for(lambda: self.rows()[7][1] == "144", "the new flatten")
        self.type_into(6, "kernel", "7")  # another pooling than pool: a module of its own
        self.assertEqual(self.refused(), "pool2's 7 x 7 window does not fit its 6 x 6 input; use a smaller "
                                         "kernel or less pooling before it.")
        self.element("#design-reset").click()
        self.wait_for(lambda: self.element("#design-use").is_displayed(), "the tutorial's network again")
        self.choose(9, "relu")
        self.assertIn("the 10 scores of the digits", self.refused())
        self.press(9, "remove")
        for _ in range(8):
            self.press(0, "add")
        self.assertEqual(self.refused(), "Layer 17 is one too many: a network designed here has at most 16 "
                                         "layers.")
        # Nothing past the phone's edge (this untrained network has no training curves to measure).
        no_curves = (PHONE_PROBLEMS.replace("page.showTrainingStep();", "")
                     .replace("sizes.length === 0 || ", ""))
        self.assertEqual(self.script(no_curves), [])


if __name__ == "__main__":
    unittest.main()
