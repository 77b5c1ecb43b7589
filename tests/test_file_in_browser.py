"""Tests of draw.py --export's file in headless Chromium, opened as file://, offline: its answers,
computed in the browser, held to the server's (PyTorch's) for the same bodies (100 digits, steps,
edited networks, pytorch/examples' Net and its slider, the explorer), bad bodies and pictures
answered as the server answers them, names shown as typed, a phone, drawings downloaded as a zip.

Usage: python -m unittest -v tests.test_file_in_browser   (MNIST_ROOT=... uses 100 real MNIST digits)
"""
import base64
import contextlib
import copy
import glob
import io
import json
import os
import shutil
import unittest
import zipfile

import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image, ImageDraw

import draw
import train
from extras import pictures
from page import export, routes
from page.collect import COLLECT_SIDE
from page.server import answer as server_answer  # 'answer' names the file's answers
from tests.exported import FileInBrowser, exported_data, picture_folder
from tests.fixtures import (PHONE_PROBLEMS, POINTER_MOVE_MS, browser_missing, draw_stroke,
                            exported_shapes, run_script, shapes_mnist, temporary_folder,
                            thousands_set, working_directory)
from tests.networks import ExamplesNet, in_model_py
from tools.benchmark_export import ANSWER_DIGITS, drawing_of


def setUpModule():
    global TEMP, SHAPES, MODEL, PAGE, EDITED_PAGE, EDITED_FILE, DIGITS
    shared = exported_shapes()
    TEMP, SHAPES, MODEL, PAGE = temporary_folder(), shapes_mnist(), shared.model, shared.page
    EDITED_PAGE, EDITED_FILE, DIGITS = shared.edited_page, shared.edited_file, shared.digits


# A name that, inlined as it is, would put the HTML parser in its escaped script state: the data
# would swallow the page's scripts and the file would open blank.
OPENING = "<!--<script>"


class OpeningNet(nn.Module):
    """An edited model.py whose module is called <!--<script> (add_module takes any name)."""

    def __init__(self):
        super().__init__()
        self.add_module(OPENING, nn.Conv2d(1, 4, 5))
        self.fc = nn.Linear(4 * 12 * 12, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(getattr(self, OPENING)(x)), 2)
        return self.fc(torch.flatten(x, 1))


def served(page, route, argument=""):
    """The server's answer to route, as the file is asked it: a query string (GET) or a dict (POST)."""
    return server_answer(page, "GET" if isinstance(argument, str) else "POST", f"/{route}", argument)


def as_json(answer):
    return json.loads(json.dumps(answer))  # tuples become lists, as the server sends them


def difference(first, second, path="answer"):
    """The largest difference between two answers' numbers; anything else must be equal."""
    if isinstance(first, dict):
        if set(first) != set(second):
            raise AssertionError(f"{path}: keys {sorted(set(first) ^ set(second))} differ")
        return max([difference(first[key], second[key], f"{path}.{key}") for key in first] or [0])
    if isinstance(first, list):
        if len(first) != len(second):
            raise AssertionError(f"{path}: {len(first)} values against {len(second)}")
        return max([difference(a, b, path) for a, b in zip(first, second)] or [0])
    if type(first) in (int, float) and type(second) in (int, float):
        return abs(first - second)
    if first != second:
        raise AssertionError(f"{path}: {first!r} against {second!r}")
    return 0


def same_answer(test, file_answer, server_answer):
    """Hold a /predict answer of the file to the server's (the issue's tolerances); return
    whether the prepared input was identical."""
    test.assertEqual(file_answer["prediction"], server_answer["prediction"])
    inputs = (file_answer["input"]["values"], server_answer["input"]["values"])
    largest = max(abs(a - b) for a, b in zip(*inputs))
    test.assertLessEqual(largest, 1 / 255 + 1e-5)  # one grey level at most
    if largest > 1e-5:
        return False
    rest = ("layers", "probabilities", "confidence", "input", "model", "label")
    test.assertLessEqual(difference({key: file_answer[key] for key in rest},
                                    {key: server_answer[key] for key in rest}), 1e-4)
    if server_answer["attribution"] is not None:
        test.assertLessEqual(difference(file_answer["attribution"], server_answer["attribution"]), 1e-3)
    return True



@unittest.skipIf(browser_missing(), browser_missing())
class FileInBrowserTest(FileInBrowser, unittest.TestCase):
    """The exported file in headless Chromium, opened as file:// with every host unresolvable."""

    def predict_drawings(self, digits, **fields):
        answers = self.driver.execute_async_script(ANSWER_DIGITS, digits, fields)
        self.assertIsInstance(answers, list, answers)
        return answers

    def test_100_digits_get_the_servers_answer_with_every_stage_and_the_pixels_picture(self):
        identical = 0
        for start in range(0, len(DIGITS), 10):  # ten at a time: each answer holds every stage
            batch = DIGITS[start:start + 10]
            for digit, answer in zip(batch, self.predict_drawings(batch)):
                server = as_json(served(PAGE, "predict", {"pixels": drawing_of(digit)}))
                identical += same_answer(self, answer, server)
        self.assertGreaterEqual(len(DIGITS), 100)
        self.assertGreaterEqual(identical, 0.95 * len(DIGITS))

    def test_a_picture_body_is_prepared_as_the_server_prepares_it(self):
        for digit in DIGITS[:10]:
            buffer = io.BytesIO()
            Image.fromarray(torch.tensor(drawing_of(digit), dtype=torch.uint8).numpy()).save(buffer, "PNG")
            body = {"picture": "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode(),
                    "attribution": False}
            same_answer(self, self.call("predict", body)["answer"], as_json(served(PAGE, "predict", body)))

    def test_step_views_give_the_servers_products_sums_and_values(self):
        body = {"pixels": drawing_of(DIGITS[3])}
        for stage, position in [("convolution2", (5, 3, 4)), ("convolution1", (2, 0, 23)),
                                ("pool", (1, 5, 6)), ("fc1", (0, 0, 7)), ("fc2", (0, 0, 3)),
                                ("flatten", (0, 0, 17))]:
            request = {**body, "stage": stage, **dict(zip(("map", "row", "column"), position))}
            reply = self.call("step", request)
            self.assertIn("answer", reply, reply)
            server = as_json(served(PAGE, "step", request))
            if server["kind"] == "linear":  # ties among the largest may come in another order
                for answer in (reply["answer"], server):
                    answer["largest"].sort(key=lambda item: item["index"])
            self.assertLessEqual(difference(reply["answer"], server), 1e-4, stage)

    def test_edited_networks_answer_as_the_server_stage_by_stage(self):
        self.open(EDITED_FILE)
        for model, network in enumerate(EDITED_PAGE.networks):
            identical = 0
            for digit, answer in zip(DIGITS[:8], self.predict_drawings(DIGITS[:8], model=model)):
                server = as_json(served(EDITED_PAGE, "predict",
                                        {"model": model, "pixels": drawing_of(digit)}))
                identical += same_answer(self, answer, server)
            self.assertGreaterEqual(identical, 7, network.name)
            for stage in (layer for layer in server["layers"] if layer["kind"] in ("convolution", "pool")):
                request = {"model": model, "pixels": drawing_of(DIGITS[7]), "stage": stage["name"],
                           "map": 1, "row": 1, "column": 2}
                reply = self.call("step", request)
                expected = as_json(served(EDITED_PAGE, "step", request))
                self.assertLessEqual(difference(reply["answer"], expected), 1e-4,
                                     (network.name, stage["name"]))

    def test_pytorch_examples_net_answers_as_the_server_and_its_slider_as_its_rounded_weights(self):
        path, target = os.path.join(TEMP, "examples_run.pt"), os.path.join(TEMP, "examples_run.html")
        with in_model_py(ExamplesNet):
            code, _, err = run_script(train, ["--data-dir", SHAPES, "--device", "cpu", "--epochs", "1",
                                              "--out", path])
            self.assertEqual(code, 0, err)
            code, _, err = run_script(draw, [path, "--data-dir", SHAPES, "--export", target])
            self.assertEqual(code, 0, err)
            page = routes.Page(routes.load_models([path], "cpu"), "cpu")
        self.open(target)
        self.wait_for(lambda: "kept with 4 bits each" in self.text("training-note"), "the slider's note")
        identical = sum(same_answer(self, answer,
                                    as_json(served(page, "predict", {"pixels": drawing_of(digit)})))
                        for digit, answer in zip(DIGITS[:4], self.predict_drawings(DIGITS[:4])))
        self.assertGreaterEqual(identical, 3)
        # A snapshot on the slider: PyTorch with the weights the file rounded gives the file's answer.
        network, keys = page.networks[0], [key for key, _ in exported_data(target)["networks"][0]["tensors"]]
        model = copy.deepcopy(network.snapshots[2][1])
        model.load_state_dict(export.compact_weights(model.state_dict(), keys, 4)[1], strict=False)
        rounded = routes.Page([routes.Network(network.name, model)], "cpu")
        for digit, answer in zip(DIGITS[4:6], self.predict_drawings(DIGITS[4:6], snapshot=2)):
            same_answer(self, answer, as_json(served(rounded, "predict", {"pixels": drawing_of(digit)})))

    def test_models_kernels_training_and_the_explorer_equal_the_servers(self):
        self.assertEqual(self.call("models")["answer"], {**as_json(served(PAGE, "models")),
                                                         "collect": {"folder": "class_digits",
                                                                     "limit": 500, "counts": [0] * 10}})
        snapshots = len(PAGE.explainers[0])
        for query in ("model=0", "model=1", f"model=0&snapshot={snapshots // 2}"):
            self.assertLessEqual(difference(self.call("kernels", query)["answer"],
                                            as_json(served(PAGE, "kernels", query))), 1e-5)
            self.assertEqual(self.call("training", query)["answer"], as_json(served(PAGE, "training", query)))
            self.assertEqual(self.call("testset", query)["answer"], as_json(served(PAGE, "testset", query)))
        for query in ("model=0&true=3&predicted=3", "model=1&true=2&predicted=5",
                      "model=0&snapshot=1&true=0&predicted=0", "model=0&other=1", "model=1&other=0"):
            self.assertEqual(self.call("examples", query)["answer"],
                             as_json(served(PAGE, "examples", query)), query)
        for snapshot in (0, 1, snapshots // 2):  # the training slider: the network after that step
            body = {"pixels": drawing_of(DIGITS[5]), "snapshot": snapshot}
            self.assertTrue(same_answer(self, self.call("predict", body)["answer"],
                                        as_json(served(PAGE, "predict", body))))
        for index in (0, 7):  # an image the explorer shows, sent through the network as it is
            shown = served(PAGE, "examples", "model=0&true=3&predicted=3")["examples"]
            body = {"set": 0, "index": shown[index]["index"]}
            self.assertTrue(same_answer(self, self.call("predict", body)["answer"],
                                        as_json(served(PAGE, "predict", body))))

    def test_bad_bodies_get_the_servers_status_and_message(self):
        good = {"pixels": drawing_of(DIGITS[0])}
        bad = [("predict", {}), ("predict", {**good, "picture": "x"}), ("predict", {"pixels": [[1, 2], [3]]}),
               ("predict", {"pixels": [[300]]}), ("predict", {"pixels": [[255] * 5] * 5}),
               ("predict", {**good, "model": 7}), ("predict", {**good, "snapshot": -1}),
               ("predict", {**good, "attribution": "yes"}), ("predict", {"index": 10 ** 6}),
               ("predict", {"set": 3, "index": 0}),
               ("step", {**good, "stage": "nothing", "map": 0, "row": 0, "column": 0}),
               ("step", {**good, "stage": "fc1", "map": 0, "row": 0, "column": 30}),
               ("step", {**good, "stage": 3}), ("attribution", {**good, "digit": 10}),
               ("collect", {"label": 3}), ("collect", {"label": 11, **good}),
               ("testset", "set=x"), ("examples", "true=1"), ("kernels", "model=9")]
        for route, body in bad:
            with self.assertRaises(routes.BadRequest) as caught:
                served(PAGE, route, body)
            reply = self.call(route, body)
            self.assertEqual((reply.get("status"), reply.get("error")),
                             (caught.exception.status, str(caught.exception)), (route, body))

    def refused_as_by_the_server(self, route, body):
        """The file's reply to body equals the server's refusal; its status."""
        with self.assertRaises(routes.BadRequest) as caught:
            served(PAGE, route, body)
        reply = self.call(route, body)
        self.assertEqual((reply.get("status"), reply.get("error")),
                         (caught.exception.status, str(caught.exception)), route)
        return caught.exception.status

    def test_a_picture_of_more_pixels_than_the_server_reads_gets_its_422(self):
        # A digit the file could read, one pixel column wider than the server decodes: the file
        # takes the limit from the export (EXPORT.limits), not from a copy of its own.
        picture = Image.new("L", (routes.MAX_SIDE + 1, routes.MAX_SIDE), 255)
        ImageDraw.Draw(picture).line([(500, 200), (500, 800)], fill=0, width=60)
        buffer = io.BytesIO()
        picture.save(buffer, "PNG")
        body = {"picture": "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()}
        self.assertEqual(self.refused_as_by_the_server("predict", body), 422)

    def test_a_drawing_larger_than_the_canvas_is_not_saved_and_gets_collects_400(self):
        side = COLLECT_SIDE + 1  # a 1, one pixel wider and taller than the page's canvas
        pixels = [[0 if 130 <= column <= 150 and 40 <= row <= 240 else 255 for column in range(side)]
                  for row in range(side)]
        self.assertEqual(self.refused_as_by_the_server("collect", {"label": 1, "pixels": pixels}), 400)

    def test_a_digit_drawn_on_the_canvas_is_read_as_the_server_reads_it(self):
        self.stroke([(140, 40 + 10 * step) for step in range(21)])  # a 1, top to bottom
        self.wait_for(lambda: self.script("return document.body.dataset.busy === 'false' && "
                                          "!!document.querySelector('#attribution[data-digit]')"),
                      "the file to answer the drawing")
        picture = self.driver.execute_script("return document.getElementById('draw').toDataURL('image/png')")
        server = as_json(served(PAGE, "predict", {"picture": picture}))
        self.assertEqual(self.driver.find_element("id", "prediction").text, str(server["prediction"]))
        shown = [section.get_attribute("data-stage") for section in
                 self.driver.find_elements("css selector", "#stages section")]
        self.assertEqual(shown, [layer["name"] for layer in server["layers"]])
        same_answer(self, self.call("predict", {"picture": picture})["answer"], server)
        # A click on a value of convolution2 shows how it was computed, with the server's sum.
        canvas = self.driver.find_element("css selector",
                                          'section[data-stage="convolution2"] canvas[data-map="2"]')
        from selenium.webdriver.common.action_chains import ActionChains
        box = canvas.rect
        x, y = 3.5 * box["width"] / 8 - box["width"] / 2, 4.5 * box["height"] / 8 - box["height"] / 2
        ActionChains(self.driver, duration=POINTER_MOVE_MS).move_to_element_with_offset(
            canvas, x, y).click().perform()  # (4, 3)
        self.wait_for(lambda: self.driver.find_elements("id", "step"), "the step view")
        step = as_json(served(PAGE, "step", {"picture": picture, "stage": "convolution2",
                                  "map": 2, "row": 4, "column": 3}))
        self.assertIn(f"{step['sum']:.4f}"[:-1], self.driver.find_element("id", "step").text)

    def stroke(self, points):
        draw_stroke(self.driver, points)

    def test_a_confusion_cell_opens_its_images_and_a_click_sends_one_through_the_network(self):
        cell = self.driver.find_element("css selector", '#confusion td[data-true="4"][data-predicted="4"]')
        cell.click()
        self.wait_for(lambda: self.driver.find_elements("css selector", "#examples figure"),
                      "the cell's images")
        figures = self.driver.find_elements("css selector", "#examples figure")
        expected = served(PAGE, "examples", "model=0&true=4&predicted=4")["examples"]
        self.assertEqual([int(figure.get_attribute("data-index")) for figure in figures],
                         [example["index"] for example in expected])
        figures[2].click()
        server = served(PAGE, "predict", {"set": 0, "index": expected[2]["index"]})
        self.wait_for(lambda: "true label: 4" in self.driver.find_element("id", "truth").text,
                      "the image's answer")
        self.assertEqual(self.driver.find_element("id", "prediction").text, str(server["prediction"]))

    def test_a_name_that_opens_a_script_comment_shows_as_typed(self):
        # The four ways a name reaches the data: a checkpoint, an --images-dir folder, a module of
        # an edited model.py, and the --data-dir of the line that says MNIST is missing.
        from selenium.webdriver.support.ui import Select

        root = os.path.join(TEMP, "opening")
        checkpoint, data_dir = os.path.join(root, f"{OPENING}.pt"), os.path.join(root, "data", OPENING)
        pictures = picture_folder(os.path.join(root, "pictures", OPENING))
        shutil.copy(MODEL, checkpoint)
        with contextlib.redirect_stdout(io.StringIO()):  # "Pictures: 10 read, 0 skipped"
            sets = routes.load_sets(data_dir, pictures)
        networks = routes.load_models([checkpoint], "cpu") + [routes.Network("edited", OpeningNet().eval())]
        export.export_page(routes.Page(networks, "cpu", *sets), os.path.join(root, "names.html"))
        export.export_page(routes.Page(networks[:1], "cpu", *routes.load_sets(data_dir, None)),
                           os.path.join(root, "missing.html"))
        self.open(os.path.join(root, "names.html"))
        options = self.driver.find_elements("css selector", "#model option")
        self.assertEqual([option.text for option in options], [f"{OPENING}.pt", routes.UNTRAINED, "edited"])
        self.assertEqual(self.driver.find_element("css selector", "#set option").text, f"{OPENING} (10)")
        Select(self.driver.find_element("id", "model")).select_by_index(2)
        self.stroke([(140, 40 + 10 * step) for step in range(21)])
        self.wait_for(lambda: self.script("return document.body.dataset.busy === 'false'")
                      and "edited" in self.text("status"), "the edited network's answer")
        codes = [code.text for code in self.driver.find_elements("css selector", "#stages .code")]
        self.assertIn(f"self.{OPENING}: Conv2d", codes)
        self.wait_for(lambda: self.driver.find_elements("css selector", "#kernels [data-kernels]"),
                      "the kernels")
        self.assertEqual(self.driver.find_element("css selector", "#kernels [data-kernels]")
                         .get_attribute("data-kernels"), OPENING)
        self.open(os.path.join(root, "missing.html"))
        self.assertIn(f"{OPENING}/MNIST/raw: ", self.text("testset-status"))

    def test_on_a_phone_nothing_scrolls_sideways_and_everything_reads(self):
        target = os.path.join(TEMP, "thousands.html")  # counts of four digits, as MNIST's
        export.export_page(routes.Page(routes.load_models([MODEL], "cpu"), "cpu", [thousands_set(SHAPES)]),
                           target)
        self.driver.set_window_size(390, 844)
        try:
            self.open(target)
            self.stroke([(140, 40 + 10 * step) for step in range(21)])
            self.wait_for(lambda: self.driver.execute_script("return document.body.dataset.busy === 'false'"),
                          "the answer")
            width = self.script("return document.documentElement.clientWidth")
            self.assertLessEqual(self.script("return document.documentElement.scrollWidth"), width)
            canvas = self.driver.find_element("id", "draw").rect
            self.assertLessEqual(canvas["x"] + canvas["width"], width)
            counts = [cell.text for cell in self.driver.find_elements("css selector", "#confusion td")]
            self.assertEqual(max(len(count) for count in counts), 4)
            self.maxDiff = None
            self.assertEqual(self.script(PHONE_PROBLEMS), [])
        finally:
            self.driver.set_window_size(1280, 2600)

    def keep_and_download(self, saves, archive):
        """Draw, keep each drawing under its label (saves: (label, the name it is kept as)), then
        download them; return the downloaded file's path."""
        for label, name in saves:
            self.driver.find_element("id", "clear").click()
            self.stroke([(100 + 8 * step, 60 + 9 * step) for step in range(18)])
            self.wait_for(lambda: self.driver.execute_script("return document.body.dataset.busy === 'false'"),
                          "the answer")
            self.driver.find_element("css selector", f'#collect-buttons button[data-label="{label}"]').click()
            self.wait_for(lambda saved=name: f"Kept as {saved}" in self.text("collect-status"),
                          f"the save as {name}")
        self.driver.find_element("id", "collect-download").click()
        archive = os.path.join(self.downloads, archive)
        self.wait_for(lambda: os.path.exists(archive) and not glob.glob(archive + ".crdownload"),
                      f"the download of {archive}")
        return archive

    def test_drawings_of_a_folder_given_as_a_path_that_climbs_download_under_its_own_name(self):
        target, inside = os.path.join(TEMP, "climbing.html"), os.path.join(TEMP, "chiffres_é", "sub")
        os.makedirs(inside)
        with working_directory(inside):  # draw.py --collect .. run in chiffres_é/sub
            page = routes.Page(routes.load_models([MODEL], "cpu"), "cpu", collect="..")
        export.export_page(page, target)
        self.open(target)
        archive = self.keep_and_download([(3, "3/0000.png")], "chiffres_é.zip")
        with zipfile.ZipFile(archive) as files:
            self.assertEqual(files.namelist(), ["chiffres_é/3/0000.png"])  # never "../3/0000.png"

    def test_drawings_labelled_in_the_file_download_as_a_folder_train_py_reads(self):
        archive = self.keep_and_download(((3, "3/0000.png"), (3, "3/0001.png"), (7, "7/0000.png")),
                                         "class_digits.zip")
        folder = os.path.join(TEMP, "unzipped")
        with zipfile.ZipFile(archive) as files:
            self.assertEqual(sorted(files.namelist()), ["class_digits/3/0000.png", "class_digits/3/0001.png",
                                                         "class_digits/7/0000.png"])
            files.extractall(folder)
        with contextlib.redirect_stdout(io.StringIO()):
            images, labels = pictures.read_labelled_folder(os.path.join(folder, "class_digits"))
        self.assertEqual(labels.tolist(), [3, 3, 7])
        self.assertEqual(tuple(images.shape), (3, 1, 28, 28))


if __name__ == "__main__":
    unittest.main()
