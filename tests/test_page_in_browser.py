"""Tests of draw.py's page in a real headless Chromium (skipped, with the reason, only where no
browser and driver are installed): drawing with a mouse, a pen and a script, clicking a value and
a digit, edited networks, a confusion cell, the slider, the token, saving and uploading, a phone.

Usage: python -m unittest -v tests.test_page_in_browser
"""
import json
import math
import os
import unittest

import torch

from page import routes
from tests.fixtures import (PHONE_PROBLEMS, POINTER_MOVE_MS, browser, browser_missing, draw_shape,
                            draw_stroke, served_shapes, shapes_mnist, start_server, stroke_pixels,
                            temporary_folder, thousands_set, wait_until)
from tests.networks import EDITED
from tests.served import TUTORIAL_STAGES, request


def setUpModule():
    global TEMP, MODEL, SHAPES, COLLECTED, SERVER, ORIGIN, EDITED_SERVER
    shared = served_shapes()
    TEMP, MODEL, SHAPES, COLLECTED = temporary_folder(), shared.model, shapes_mnist(), shared.collected
    SERVER, EDITED_SERVER = shared.server, shared.edited_server
    ORIGIN = f"http://127.0.0.1:{SERVER.server_address[1]}"


# Draws one stroke through canvas points (0..280) with pointer events made in JavaScript.
SCRIPTED_STROKE = """
const points = arguments[0];
const canvas = document.getElementById("draw");
const box = canvas.getBoundingClientRect();
const fire = (type, [x, y]) => canvas.dispatchEvent(new PointerEvent(type, {bubbles: true,
    pointerId: 7, pointerType: "pen", clientX: box.left + x * box.width / 280,
    clientY: box.top + y * box.height / 280}));
fire("pointerdown", points[0]);
points.slice(1).forEach((point) => fire("pointermove", point));
fire("pointerup", points[points.length - 1]);
"""
# How many of the drawing's pixels are ink (darker than mid-grey).
INK_PIXELS = """
const pixels = document.getElementById("draw").getContext("2d").getImageData(0, 0, 280, 280).data;
let ink = 0;
for (let i = 0; i < pixels.length; i += 4) ink += pixels[i] < 128;
return ink;
"""


@unittest.skipIf(browser_missing(), browser_missing())
class BrowserTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.driver = browser()

    def wait_for(self, condition, what, timeout=30):
        return wait_until(self.driver, condition, what, timeout)

    def text(self, element_id):
        return self.driver.find_element("id", element_id).text

    def stroke(self, points, kind="mouse"):
        draw_stroke(self.driver, points, kind)

    def wait_for_answer(self, prediction=None):
        """Wait until the page has shown the answer to its last drawing (and it is prediction)."""
        self.wait_for(lambda: self.driver.find_element("tag name", "body").get_attribute("data-busy")
                      == "false" and (prediction is None or self.text("prediction") == prediction),
                      f"the page to answer {prediction or ''}")

    def click_map(self, stage, map_index, row, column):
        """Click the pixel (row, column) of map map_index of a stage, as a user does."""
        from selenium.webdriver.common.action_chains import ActionChains

        canvas = self.driver.find_element(
            "css selector", f'section[data-stage="{stage}"] canvas[data-map="{map_index}"]')
        height, width = (int(canvas.get_attribute(side)) for side in ("height", "width"))
        box = canvas.rect  # the canvas as shown, in CSS pixels; offsets count from its centre
        x = (column + 0.5) * box["width"] / width - box["width"] / 2
        y = (row + 0.5) * box["height"] / height - box["height"] / 2
        ActionChains(self.driver, duration=POINTER_MOVE_MS).move_to_element_with_offset(
            canvas, x, y).click().perform()

    def stage_names(self):
        return [section.get_attribute("data-stage")
                for section in self.driver.find_elements("css selector", "#stages section")]

    def open_page(self, origin, models):
        self.driver.get(origin + "/")
        self.wait_for(lambda: len(self.driver.find_elements("css selector", "#model option")) == models,
                      "the model list to load")

    def setUp(self):
        self.open_page(ORIGIN, 3)

    def tearDown(self):
        # Whatever each test did, no script failed and nothing was loaded from another host.
        severe = [entry["message"] for entry in self.driver.get_log("browser")
                  if entry["level"] == "SEVERE" and "/predict" not in entry["message"]]
        self.assertEqual(severe, [])  # no script error, no blocked load
        urls = [json.loads(entry["message"])["message"]["params"]["request"]["url"]
                for entry in self.driver.get_log("performance")
                if '"Network.requestWillBeSent"' in entry["message"]]
        self.assertTrue(urls)  # at least the page itself: the log works
        ours = ("http://127.0.0.1:", "data:", "blob:")  # the test servers, and nothing else
        self.assertEqual([url for url in urls if not url.startswith(ours)], [])

    def test_a_mouse_stroke_and_a_pen_circle_are_read_with_every_stage_shown(self):
        self.stroke([(140, 40 + 10 * step) for step in range(21)])  # a 1: top to bottom
        self.wait_for_answer("1")
        self.assertEqual(self.stage_names(), [name for name, *_ in TUTORIAL_STAGES])
        shapes = [element.text for element in
                  self.driver.find_elements("css selector", "#stages .shape")]
        self.assertEqual(shapes, [" × ".join(map(str, shape)) for _, shape, *_ in TUTORIAL_STAGES])
        maps = self.driver.find_elements("css selector", '[data-stage="convolution2"] canvas[data-map]')
        self.assertEqual([canvas.get_attribute("data-map") for canvas in maps], [str(i) for i in range(16)])
        self.driver.find_element("id", "clear").click()
        self.assertEqual(self.text("prediction"), "?")
        circle = [(140 + 60 * math.sin(angle / 20 * 2 * math.pi),
                   140 - 95 * math.cos(angle / 20 * 2 * math.pi)) for angle in range(21)]
        self.stroke(circle, kind="pen")  # a 0, drawn with a pen
        self.wait_for_answer("0")

    def test_clicking_a_convolution2_value_shows_the_sum_that_gives_it(self):
        self.stroke([(140, 40 + 10 * step) for step in range(21)])
        self.wait_for_answer("1")
        for map_index, row, column in ((3, 2, 5), (11, 6, 1)):
            self.click_map("convolution2", map_index, row, column)
            self.wait_for(lambda index=map_index: self.driver.find_elements("id", "step") and
                          self.driver.find_element("id", "step").get_attribute("data-map") == str(index),
                          "the step-by-step view")
            view = self.driver.find_element("id", "step")
            self.assertEqual([view.get_attribute(f"data-{key}") for key in ("stage", "row", "column")],
                             ["convolution2", str(row), str(column)])
            value, total = (float(view.get_attribute(key)) for key in ("data-value", "data-sum"))
            self.assertAlmostEqual(total, value, delta=1e-4)
            self.assertIn("the value in the map ✓", view.text)
            self.assertEqual(len(view.find_elements("css selector", "table")), 6 * 3)  # 6 input maps
        self.click_map("pool", 0, 5, 5)
        self.wait_for(lambda: self.driver.find_element("id", "step").get_attribute("data-stage") == "pool",
                      "the pooling block")
        self.click_map("fc1", 0, 0, 7)
        self.wait_for(lambda: self.driver.find_element("id", "step").get_attribute("data-stage") == "fc1",
                      "the largest contributions of fc1's unit 7")
        view = self.driver.find_element("id", "step")
        self.assertAlmostEqual(float(view.get_attribute("data-sum")),
                               float(view.get_attribute("data-value")), delta=1e-4)

    def test_clicking_a_digit_shows_which_pixels_pushed_towards_it(self):
        self.stroke([(140, 40 + 10 * step) for step in range(21)])
        self.wait_for_answer("1")
        self.assertEqual(self.driver.find_element("id", "attribution").get_attribute("data-digit"), "1")
        self.driver.find_element("css selector", '#bars .track[data-digit="7"]').click()
        self.wait_for(lambda: self.driver.find_element("id", "attribution").get_attribute("data-digit")
                      == "7", "the pixels for 7")
        self.assertIn("towards 7", self.text("attribution-sentence"))

    def test_an_empty_looking_scribble_is_called_unsure(self):
        self.stroke([(200, 200), (204, 203), (201, 206)])  # a speck, blown up by the preparation
        self.wait_for(lambda: "had to pick one of ten anyway" in self.text("confidence"),
                      "the low-confidence sentence")
        self.assertIn("unsure", self.driver.find_element("id", "confidence").get_attribute("class"))

    def test_every_edited_network_renders_every_stage(self):
        from selenium.webdriver.support.ui import Select

        self.open_page(f"http://127.0.0.1:{EDITED_SERVER.server_address[1]}", len(EDITED))
        self.stroke([(140, 40 + 10 * step) for step in range(21)])
        for index, (name, (_, expected)) in enumerate(EDITED.items()):
            Select(self.driver.find_element("id", "model")).select_by_index(index)
            self.wait_for(lambda name=name: self.text("status") == f"answered by {name}", name)
            self.wait_for_answer()
            self.assertEqual(self.stage_names(), [stage for stage, _ in expected], name)
        Select(self.driver.find_element("id", "model")).select_by_index(0)
        self.wait_for(lambda: self.text("status") == "answered by batchnorm", "batchnorm again")
        self.wait_for_answer()
        sentence = self.driver.find_element(
            "css selector", '[data-stage="convolution3"] .why').text
        self.assertIn("floor((4 − 4 + 1 + 2) / 1) + 1 = 4", sentence)  # 'same', even kernel: uneven
        self.click_map("convolution3", 2, 3, 3)  # padded: the view still adds up
        self.assert_step_view_adds_up("convolution3")
        Select(self.driver.find_element("id", "model")).select_by_index(3)
        self.wait_for(lambda: self.text("status") == "answered by dilated", "dilated")
        self.wait_for_answer()

        def sentence_of(stage):
            return self.driver.find_element("css selector", f'[data-stage="{stage}"] .why').text
        self.assertIn("kernel of 3 × 3 × 3 (see the kernels below) slid over 3 of the 6 maps of "
                      "dropout (2 groups of maps", sentence_of("convolution2"))
        self.assertIn("covers 2 × (3 − 1) + 1 = 5 pixels. Size: floor((12 − 5 + 2 × 0) / 1) + 1 = 8",
                      sentence_of("convolution2"))
        self.assertIn("Dropout (p = 0.25)", sentence_of("dropout"))
        self.click_map("max_pool2d", 4, 6, 6)  # F.max_pool2d: its block, as nn.MaxPool2d's
        self.assert_step_view_adds_up("max_pool2d")
        self.click_map("convolution2", 7, 4, 6)  # grouped and dilated
        self.assert_step_view_adds_up("convolution2")

    def assert_step_view_adds_up(self, stage):
        self.wait_for(lambda: self.driver.find_elements("css selector", f'#step[data-stage="{stage}"]'),
                      f"the step-by-step view of {stage}")
        view = self.driver.find_element("id", "step")
        self.assertAlmostEqual(float(view.get_attribute("data-sum")),
                               float(view.get_attribute("data-value")), delta=1e-4)

    def test_on_a_phone_nothing_scrolls_sideways_and_the_prediction_stays_in_view(self):
        server = start_server(routes.load_models([MODEL], "cpu"), [thousands_set(SHAPES)])
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": 390, "height": 844, "deviceScaleFactor": 3, "mobile": True})
        try:
            self.open_page(f"http://127.0.0.1:{server.server_address[1]}", 2)
            self.stroke([(140, 40 + 10 * step) for step in range(21)])
            self.wait_for_answer("1")
            self.click_map("convolution2", 3, 2, 5)
            self.wait_for(lambda: self.driver.find_elements("id", "step"), "the step-by-step view")
            widths = self.driver.execute_script(
                "return [document.documentElement.scrollWidth, window.innerWidth]")
            self.assertEqual(widths[1], 390)
            self.assertLessEqual(widths[0], widths[1])  # nothing wider than the screen
            self.wait_for(lambda: self.driver.execute_script("return document.body.dataset.ready"),
                          "the confusion matrix and the curves")
            counts = [cell.text for cell in self.driver.find_elements("css selector", "#confusion td")]
            self.assertEqual(max(len(count) for count in counts), 4)
            self.assertEqual(self.driver.execute_script(PHONE_PROBLEMS), [])
            self.driver.execute_script("window.scrollTo(0, 0)")
            bottom = self.driver.execute_script(
                "return document.getElementById('prediction').getBoundingClientRect().bottom")
            self.assertLessEqual(bottom, 844)  # in view with the drawing box, without scrolling
        finally:
            self.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

    def test_a_confusion_cell_opens_its_images_and_one_goes_through_the_network(self):
        from selenium.webdriver.support.ui import Select

        Select(self.driver.find_element("id", "model")).select_by_index(1)  # early.pt: mistakes
        self.wait_for(lambda: "early.pt reads" in self.text("testset-status"), "its test accuracy")
        cells = self.driver.find_elements("css selector", "#confusion td")
        self.assertEqual(len(cells), 100)
        mistake = max((cell for cell in cells
                       if cell.get_attribute("data-true") != cell.get_attribute("data-predicted")),
                      key=lambda cell: int(cell.text))
        true, predicted = mistake.get_attribute("data-true"), mistake.get_attribute("data-predicted")
        mistake.click()
        self.wait_for(lambda: len(self.driver.find_elements("css selector", "#examples [data-index]"))
                      == int(mistake.text), "the images of the cell")
        thumbnail = self.driver.find_element("css selector", "#examples [data-index]")
        index = thumbnail.get_attribute("data-index")
        thumbnail.click()
        self.wait_for(lambda: self.text("truth").startswith(f"true label: {true} "), "the true label")
        self.wait_for_answer(predicted)  # the mistake, now open in every stage below
        self.assertIn(f"#{index}", self.text("truth"))
        self.assertEqual(len(self.stage_names()), len(TUTORIAL_STAGES))
        self.click_map("convolution2", 0, 4, 4)  # every explanation works on a test image too
        self.wait_for(lambda: self.driver.find_elements("id", "step"), "the step-by-step view")

    def test_the_training_slider_replays_the_run_on_the_drawing(self):
        self.stroke([(140, 40 + 10 * step) for step in range(21)])
        self.wait_for_answer("1")
        slider = self.driver.find_element("id", "training-step")
        self.assertEqual(slider.get_attribute("value"), slider.get_attribute("max"))  # final weights
        untrained = request("POST", "/predict", {"model": 2, "pixels": stroke_pixels(1)})[1]
        move = "arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input'));"
        self.driver.execute_script(move, slider, 0)
        self.wait_for_answer(str(untrained["prediction"]))  # step 0: the run's untrained network
        self.assertTrue(self.text("training-label").startswith("0 of "))
        self.driver.execute_script(move, slider, slider.get_attribute("max"))
        self.wait_for_answer("1")

    def test_a_page_opened_with_its_token_sends_it_with_every_request(self):
        server = start_server(routes.load_models([MODEL], "cpu"), token="class-token")
        origin = f"http://127.0.0.1:{server.server_address[1]}"
        self.driver.get(origin + "/?token=class-token")  # as the address draw.py printed
        self.wait_for(lambda: len(self.driver.find_elements("css selector", "#model option")) == 2,
                      "the model list to load with the token")
        self.stroke([(140, 40 + 10 * step) for step in range(21)])
        self.wait_for_answer("1")
        self.assertEqual(self.text("error"), "")
        self.driver.get(origin + "/")  # without it: refused, the page never loads
        self.assertIn("needs its token", self.driver.find_element("tag name", "body").text)
        self.driver.get(ORIGIN + "/")  # tearDown checks the log of the usual page
        self.driver.get_log("browser")  # the refused page's 403 is not a script error

    def test_without_mnist_the_page_says_how_to_get_it(self):
        self.open_page(f"http://127.0.0.1:{EDITED_SERVER.server_address[1]}", len(EDITED))
        self.wait_for(lambda: "No MNIST in" in self.text("testset-status"), "the missing-MNIST line")
        self.assertTrue(self.driver.find_element("id", "training").get_attribute("hidden"))
        self.stroke([(140, 40 + 10 * step) for step in range(21)])
        self.wait_for_answer()  # drawing works as before

    def test_a_drawing_is_labelled_and_saved_and_the_count_goes_up(self):
        self.stroke([(140, 40 + 10 * step) for step in range(21)])
        self.wait_for_answer("1")
        count = self.driver.find_element("css selector", '#collect .count[data-label="1"]')
        before = int(count.text.split()[0])
        self.driver.find_element("css selector", '#collect button[data-label="1"]').click()
        self.wait_for(lambda: self.driver.find_element(
            "css selector", '#collect .count[data-label="1"]').text == f"{before + 1} saved",
            "the count of saved 1s to go up")
        self.assertIn("Saved as 1", self.text("collect-status"))
        saved = sorted(os.listdir(os.path.join(COLLECTED, "1")))
        self.assertEqual(len(saved), before + 1)

    def test_an_uploaded_picture_is_read_and_a_broken_one_is_one_line(self):
        upload = os.path.join(TEMP, "upload_one.png")
        draw_shape(1, torch.Generator().manual_seed(7)).save(upload)
        self.driver.find_element("id", "upload").send_keys(upload)
        self.wait_for_answer("1")
        self.assertEqual(self.text("error"), "")
        broken = os.path.join(TEMP, "broken.png")
        with open(broken, "wb") as file:
            file.write(b"\x89PNG\r\n\x1a\n" + b"\x00" * 50)
        self.driver.find_element("id", "upload").send_keys(broken)
        self.wait_for(lambda: "picture" in self.text("error"), "a one-line error for a broken file")

    def test_a_scripted_stroke_after_clear_draws_only_itself(self):
        self.stroke([(60, 60), (220, 220)])
        self.driver.find_element("id", "clear").click()
        # As a teacher's script would: pointer events made in JavaScript (no pointer to capture).
        self.driver.execute_script(SCRIPTED_STROKE, [[140, 40 + 10 * step] for step in range(21)])
        self.wait_for_answer("1")
        self.assertLess(self.driver.execute_script(INK_PIXELS), 8000)  # Clear left nothing

    def test_switching_networks_updates_the_answer_and_the_kernels(self):
        from selenium.webdriver.support.ui import Select

        self.driver.execute_script(SCRIPTED_STROKE, [[140, 40 + 10 * step] for step in range(21)])
        self.wait_for_answer("1")
        Select(self.driver.find_element("id", "model")).select_by_index(2)
        self.wait_for(lambda: routes.UNTRAINED in self.text("status"), "the untrained network to answer")
        self.wait_for(lambda: len(self.driver.find_elements("css selector", "#kernels canvas")) == 2,
                      "the kernels of the untrained network (a canvas a layer)")
        self.assertIn("had to pick one of ten anyway", self.text("confidence"))  # never sure
        Select(self.driver.find_element("id", "model")).select_by_index(0)
        self.wait_for(lambda: "shapes.pt" in self.text("status"), "the trained network again")
        self.wait_for_answer("1")


if __name__ == "__main__":
    unittest.main()
