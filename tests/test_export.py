"""Tests of draw.py --export: the file's answers, computed in the browser, held to the server's
(PyTorch's) for the same bodies; the file opened as file:// in headless Chromium, offline.

Usage: python -m unittest -v tests.test_export   (MNIST_ROOT=... uses 100 real MNIST digits)
"""
import base64
import collections
import contextlib
import copy
import glob
import io
import json
import math
import os
import re
import shutil
import struct
import unittest
import warnings
import zipfile
from unittest import mock

import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image, ImageDraw

import common
import data
import draw
import train
from extras import checkpoints, pictures
from page import export, routes
from page.collect import COLLECT_SIDE
from page.server import answer as server_answer  # 'answer' names the file's answers
from tests.fixtures import (PHONE_PROBLEMS, POINTER_MOVE_MS, browser, browser_missing, downloads_folder,
                            draw_shape, draw_stroke, make_fake_mnist, run_script, shapes_mnist,
                            temporary_folder, thousands_set, wait_until, working_directory)
from tests.networks import EDITED
from tools.benchmark_export import ANSWER_DIGITS, digits_of, drawing_of


class OpsNet(nn.Module):
    """Every other operation the file computes: strides, padding, 'same', dilation, a residual
    x + y, tanh, sigmoid, LeakyReLU, average pooling, padded max pooling, reshape, + a number."""

    def __init__(self):
        super().__init__()
        self.conv_a = nn.Conv2d(1, 4, 3, stride=2, padding=1)        # (4, 14, 14)
        self.conv_same = nn.Conv2d(4, 4, 3, padding="same")
        self.average = nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)
        self.conv_b = nn.Conv2d(4, 6, 3, padding=2, dilation=2)      # (6, 7, 7)
        self.squash = nn.Sigmoid()
        self.fc = nn.Linear(24, 16)
        self.act = nn.LeakyReLU(0.2)
        self.out = nn.Linear(16, 10)

    def forward(self, x):
        x = torch.tanh(self.conv_a(x))
        x = F.leaky_relu(x + self.conv_same(x), 0.1)                # a residual connection
        x = self.squash(self.conv_b(self.average(x)))              # (4, 7, 7) -> (6, 7, 7)
        x = F.max_pool2d(x, 3, stride=2, padding=1, ceil_mode=True)  # (6, 4, 4)
        x = F.avg_pool2d(x, 2).reshape(x.size(0), -1)              # (24,)
        return self.out(self.act(self.fc(x))) + 0.5


class SoftmaxNet(nn.Module):
    """softmax and log_softmax as modules, functions and tensor methods, along several dimensions."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 5, stride=2)                    # (4, 12, 12)
        self.channels = nn.Softmax(dim=1)
        self.fc = nn.Linear(4 * 12 * 12, 32)
        self.out = nn.Linear(32, 10)
        self.last = nn.LogSoftmax()  # no dim: PyTorch takes dim 1 of (N, 10)

    def forward(self, x):
        x = self.channels(self.conv(x))                            # over the 4 maps
        x = x.log_softmax(-1) + torch.softmax(x, 2)                # along each row and each column
        h = F.relu(self.fc(torch.flatten(x, 1)))
        h = h + torch.log_softmax(h, 1) + F.softmax(h, dim=1)
        return self.last(self.out(h))


class ExamplesNet(nn.Module):
    """pytorch/examples' mnist/main.py Net, as it is pasted into model.py."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = self.conv1(x)
        x = F.relu(x)
        x = self.conv2(x)
        x = F.relu(x)
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = self.fc1(x)
        x = F.relu(x)
        x = self.dropout2(x)
        x = self.fc2(x)
        output = F.log_softmax(x, dim=1)
        return output


@contextlib.contextmanager
def examples_net_in_model_py():
    """The scripts build ExamplesNet wherever they build model.py's Net, as if it were pasted there."""
    with mock.patch.object(train, "Net", ExamplesNet), mock.patch.object(checkpoints, "Net", ExamplesNet), \
            mock.patch.object(routes, "Net", ExamplesNet):
        yield


def exported_data(path):
    with open(path, encoding="utf-8") as file:
        return json.loads(re.search(r'id="export-data">(.*?)</script>', file.read(), re.S).group(1))


def exact_weights(network, block):
    """An exported float32 block of network's weights, as one tensor."""
    return torch.frombuffer(bytearray(base64.b64decode(network["weights"][block])), dtype=torch.float32)


def flat(state, network):
    return torch.cat([state[key].flatten() for key, _ in network["tensors"]])


class GeluNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(784, 10)

    def forward(self, x):
        return self.fc(F.gelu(torch.flatten(x, 1)))


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


def picture_folder(folder):
    """Write one drawn shape of each digit as folder/0/0.png ... folder/9/0.png; return folder."""
    for label in range(10):
        os.makedirs(os.path.join(folder, str(label)))
        draw_shape(label, torch.Generator().manual_seed(label)).save(
            os.path.join(folder, str(label), "0.png"))
    return folder


def setUpModule():
    global TEMP, SHAPES, MODEL, PAGE, FILE, EDITED_PAGE, EDITED_FILE, DIGITS
    warnings.filterwarnings("ignore", message="Using padding='same' with even kernel")
    warnings.filterwarnings("ignore", message="Implicit dimension choice")  # SoftmaxNet's, on purpose
    TEMP = temporary_folder()
    SHAPES = shapes_mnist()
    MODEL = os.path.join(TEMP, "shapes.pt")
    code, _, err = run_script(train, ["--data-dir", SHAPES, "--device", "cpu", "--epochs", "2",
                                      "--out", MODEL])
    assert code == 0, err
    FILE = os.path.join(TEMP, "page.html")
    code, out, err = run_script(draw, [MODEL, "--data-dir", SHAPES, "--export", FILE,
                                       "--collect", os.path.join(TEMP, "class_digits")])
    assert code == 0, err
    PAGE = routes.Page(routes.load_models([MODEL], "cpu"), "cpu", *routes.load_sets(SHAPES, None),
                     collect=os.path.join(TEMP, "unused"))
    torch.manual_seed(0)
    edited = [routes.Network(name, network().eval()) for name, (network, _) in EDITED.items()]
    edited.append(routes.Network("ops", OpsNet().eval()))
    edited.append(routes.Network("softmax", SoftmaxNet().eval()))
    for network in edited:  # batch norm with learned-looking statistics, not the identity
        for module in network.model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.data.uniform_(0.5, 1.5)
                module.bias.data.uniform_(-0.3, 0.3)
    EDITED_PAGE = routes.Page(edited, "cpu")
    EDITED_FILE = os.path.join(TEMP, "edited.html")
    export.export_page(EDITED_PAGE, EDITED_FILE)
    DIGITS = test_digits(100)


def test_digits(count):
    """count digits as 28 x 28 grey levels: MNIST's test set with MNIST_ROOT, else noisy bars.

    Not the shapes: drawn perfectly symmetric, their centre of mass falls exactly halfway between
    two pixels, where float32 sums in another order round the other way (docs/page.md).
    """
    root = os.environ.get("MNIST_ROOT")
    if not (root and data.raw_folder(root)[1]):
        root = make_fake_mnist(os.path.join(TEMP, "bars"))
    return digits_of(data.load_mnist(root, train=False)[0], count)


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


# Calls window.routes[route](argument) in the page and hands back its answer or its error.
CALL = """
const [route, argument, done] = arguments;
Promise.resolve().then(() => window.routes[route](argument))
  .then((answer) => done({ answer }), (error) => done({ error: error.message, status: error.status }));
"""


class ExportTest(unittest.TestCase):
    """What draw.py --export writes, checked without a browser."""

    def test_only_mnists_own_test_set_is_marked_as_such_whatever_a_folder_is_called(self):
        # A checkpoint the file writes records test_accuracy for MNIST's own test set only.
        mnist, = routes.load_sets(SHAPES, None)[0]
        named = routes.Images("MNIST test set", mnist.images[:3], mnist.labels[:3])
        self.assertTrue(export.set_data(mnist, [])["mnist"])
        self.assertFalse(export.set_data(named, [])["mnist"])

    def test_the_file_holds_its_policy_script_and_data_and_nothing_else_was_made(self):
        with open(FILE, encoding="utf-8") as file:
            html = file.read()
        self.assertIn(f'content="{export.CONTENT_SECURITY_POLICY}"', html)
        self.assertIn("window.routes = {", html)   # offline.js, inlined
        self.assertNotIn(export.MARKER, html)
        self.assertIn('id="export-data"', html)
        self.assertIsNone(re.search(r'(src|href)="(?!data:)', html))  # nothing to fetch
        self.assertFalse(os.path.exists(os.path.join(TEMP, "class_digits")))  # downloads, not a folder
        self.assertEqual(glob.glob(os.path.join(TEMP, ".page.html*")), [])  # no temporary left

    def test_an_operation_the_file_cannot_compute_is_named_with_its_line(self):
        path = os.path.join(TEMP, "gelu.pt")
        torch.save({"model": GeluNet().state_dict()}, path)
        page = routes.Page([routes.Network("gelu", GeluNet().eval())], "cpu")
        target = os.path.join(TEMP, "gelu.html")
        with self.assertRaises(common.UserError) as caught:
            export.export_page(page, target)
        message = str(caught.exception)
        self.assertRegex(message, r"^the exported page cannot compute F\.gelu \(forward\(\) calls it "
                                  r"in test_export\.py, line \d+: return self\.fc\(F\.gelu")
        self.assertNotIn("\n", message)
        self.assertFalse(os.path.exists(target))

    def test_a_dropout_that_drops_in_eval_mode_is_refused(self):
        class Dropping(GeluNet):
            def forward(self, x):
                return self.fc(F.dropout(torch.flatten(x, 1), p=0.2))  # training=True: it drops

        page = routes.Page([routes.Network("dropping", Dropping().eval())], "cpu")
        with self.assertRaisesRegex(common.UserError, r"cannot compute F\.dropout"):
            export.page_html(page)

    def test_a_softmax_in_float32_is_exported_and_in_another_precision_refused(self):
        class Softmax(GeluNet):
            dtype = torch.float32

            def forward(self, x):
                return F.log_softmax(self.fc(torch.flatten(x, 1)), dim=1, dtype=self.dtype)

        page = routes.Page([routes.Network("float", Softmax().eval())], "cpu")
        self.assertIn('"op":"log_softmax"', export.page_html(page))
        Softmax.dtype = torch.float64
        with self.assertRaises(common.UserError) as caught:
            export.page_html(routes.Page([routes.Network("double", Softmax().eval())], "cpu"))
        self.assertRegex(str(caught.exception), r"^the exported page cannot compute F\.log_softmax \(forward")
        self.assertNotIn("\n", str(caught.exception))

    def test_pytorch_examples_net_with_13_snapshots_is_at_most_20_mb_its_final_weights_exact(self):
        torch.manual_seed(0)
        model, steps, snapshots = ExamplesNet(), train.snapshot_steps(3 * 937), []
        for step in steps:  # weights that move between snapshots, as a run's do
            snapshots.append({"step": step, "model": copy.deepcopy(model.state_dict())})
            with torch.no_grad():
                for parameter in model.parameters():
                    parameter.add_(torch.randn_like(parameter), alpha=0.01)
        path, target = os.path.join(TEMP, "examples.pt"), os.path.join(TEMP, "examples.html")
        torch.save({"model": snapshots[-1]["model"], "snapshots": snapshots,
                    "history": {"loss": [1.0] * steps[-1], "accuracy": [0.5] * steps[-1]}}, path)
        with examples_net_in_model_py():
            code, _, err = run_script(draw, [path, "--data-dir", SHAPES, "--export", target])
        self.assertEqual(code, 0, err)
        self.assertLessEqual(os.path.getsize(target), 20 * 2**20)
        trained, untrained = exported_data(target)["networks"]
        self.assertEqual(len(trained["weights"]), 14)  # 13 snapshots, then the final weights
        self.assertTrue(torch.equal(exact_weights(trained, 13), flat(snapshots[-1]["model"], trained)))
        self.assertEqual(trained["weights"][12], 13)  # the last snapshot: the final weights
        self.assertEqual({block["bits"] for block in trained["weights"][:12] + untrained["weights"]}, {4})
        self.assertRegex(trained["training"]["note"],
                         r"^In this file the weights before the last step are kept with 4 bits each, not 32, "
                         r".* \d+\.\d% of the answers")
        # The tutorial's network stays exact, every snapshot.
        tutorial, checkpoint = exported_data(FILE)["networks"][0], torch.load(MODEL, weights_only=True)
        for block, snapshot in enumerate(checkpoint["snapshots"][:-1]):
            self.assertTrue(torch.equal(exact_weights(tutorial, block), flat(snapshot["model"], tutorial)))
        self.assertNotIn("note", tutorial["training"])

    def test_a_folder_of_pictures_is_explored_in_the_file_too(self):
        folder = picture_folder(os.path.join(TEMP, "pictures"))
        target = os.path.join(TEMP, "pictures.html")
        code, _, err = run_script(draw, [MODEL, "--data-dir", SHAPES, "--images-dir", folder,
                                         "--export", target])
        self.assertEqual(code, 0, err)
        with open(target, encoding="utf-8") as file:
            found = re.search(r'id="export-data">(.*?)</script>', file.read(), re.S).group(1)
        sets = json.loads(found)["sets"]  # JSON reads its "\u003c" as "<"
        self.assertEqual([(s["name"], s["count"]) for s in sets], [("MNIST test set", 200), ("pictures", 10)])
        self.assertEqual(sets[1]["labels"], list(range(10)))  # all ten are shown in some cell

    def test_an_in_place_change_of_an_input_read_again_is_refused(self):
        class Shared(GeluNet):
            def forward(self, x):
                x = torch.flatten(x, 1)
                return self.fc(x.relu_() + x)  # PyTorch adds the changed x to itself

        page = routes.Page([routes.Network("shared", Shared().eval())], "cpu")
        with self.assertRaisesRegex(common.UserError, r"cannot compute x\.relu_\(\.\.\.\) \(forward"):
            export.page_html(page)

    def test_the_file_names_folders_by_their_own_name_never_a_path_of_this_machine(self):
        target = os.path.join(TEMP, "paths.html")
        os.makedirs(os.path.join(TEMP, "no_mnist"), exist_ok=True)
        with working_directory(os.path.join(TEMP, "no_mnist")):  # the default ./files: not there
            code, out, err = run_script(draw, [
                MODEL, "--export", target,
                "--images-dir", picture_folder(os.path.join(TEMP, "paths", "class_pictures")),
                "--collect", os.path.join(TEMP, "paths", "class_pictures", "..")])  # --collect ..
        self.assertEqual(code, 0, err)
        self.assertIn("No MNIST in files/MNIST/raw: ", out)  # said once as it starts, not an error
        with open(target, encoding="utf-8") as file:
            html = file.read()
        for path in {TEMP, os.path.realpath(TEMP)}:
            self.assertNotIn(path, html)
        found = json.loads(re.search(r'id="export-data">(.*?)</script>', html, re.S).group(1))
        self.assertEqual(found["collect"]["folder"], "paths")
        self.assertEqual(found["sets"][0]["name"], "class_pictures")
        self.assertTrue(found["missing"].startswith("No MNIST in files/MNIST/raw: "), found["missing"])

    def test_the_page_called_with_keyword_arguments_answers_as_the_server_parses_a_request(self):
        # The export calls Page so; the server turns a query string or a JSON body into that call.
        index = PAGE.examples(true=3, predicted=3)["examples"][0]["index"]
        calls = [(PAGE.testset(model=0, set_index=0), "GET", "/testset", "model=0&set=0"),
                 (PAGE.examples(model=0, snapshot=1, set_index=0, true=3, predicted=3), "GET",
                  "/examples", "model=0&snapshot=1&set=0&true=3&predicted=3"),
                 (PAGE.examples(model=1, other=0, set_index=0), "GET", "/examples", "model=1&other=0&set=0"),
                 (PAGE.training(model=1), "GET", "/training", "model=1"),
                 (PAGE.predict(routes.DigitInput(index=index, set_index=0), model=1, attribution=False),
                  "POST", "/predict", {"model": 1, "set": 0, "index": index, "attribution": False})]
        for typed, method, path, argument in calls:
            self.assertEqual(typed, server_answer(PAGE, method, path, argument), (path, argument))

    def test_the_command_prints_the_file_and_its_size(self):
        target = os.path.join(TEMP, "again.html")
        os.makedirs(os.path.join(TEMP, "none"), exist_ok=True)
        with working_directory(os.path.join(TEMP, "none")):  # no ./files: the default's absence
            code, out, err = run_script(draw, [MODEL, "--export", target])
        self.assertEqual((code, err), (0, ""))
        self.assertRegex(out, r"Wrote .*again\.html \(\d+\.\d\d MB\): open it in a browser")
        code, _, err = run_script(draw, [MODEL, "--export", os.path.join(TEMP, "no", "such.html")])
        self.assertEqual(code, 2)
        self.assertIn("does not exist; create it first", err)


@unittest.skipIf(browser_missing(), browser_missing())
class FileInBrowserTest(unittest.TestCase):
    """The exported file in headless Chromium, opened as file:// with every host unresolvable."""

    @classmethod
    def setUpClass(cls):
        cls.driver, cls.downloads = browser(), downloads_folder()

    def open(self, path=None):
        self.driver.get("file://" + (path or FILE))
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
        with examples_net_in_model_py():
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


@contextlib.contextmanager
def batch_norm_net_in_model_py():
    """The scripts build tests.networks' BatchNormNet wherever they build model.py's Net."""
    from tests.networks import BatchNormNet

    with mock.patch.object(train, "Net", BatchNormNet), mock.patch.object(checkpoints, "Net", BatchNormNet), \
            mock.patch.object(routes, "Net", BatchNormNet):
        yield


def test_accuracy_line(checkpoint, *argv):
    """The Test Accuracy line that python test.py checkpoint prints on the shapes' test set."""
    import test as test_script

    code, out, err = run_script(test_script, [checkpoint, "--data-dir", SHAPES, "--device", "cpu", *argv])
    assert code == 0, err
    return re.search(r"Test Accuracy: .*", out).group(0)


@unittest.skipIf(browser_missing(), browser_missing())
class CheckpointInBrowserTest(unittest.TestCase):
    """Back to Python (issue 30's first step): the file writes a checkpoint of train.py's format,
    a torch.save zip that torch.load reads with weights_only=True, and test.py and draw.py read."""

    @classmethod
    def setUpClass(cls):
        cls.driver, cls.downloads = browser(), downloads_folder()
        # An edited network with batch norm as a run leaves it: statistics, and a count of batches
        # (num_batches_tracked, int64, which no operation of the file reads).
        from tests.networks import BatchNormNet

        torch.manual_seed(3)
        model = BatchNormNet()
        model.norm1.running_mean.uniform_(-0.5, 0.5)
        model.norm1.running_var.uniform_(0.5, 2.0)
        model.norm1.num_batches_tracked.fill_(937)
        cls.norm_model, cls.norm_file = os.path.join(TEMP, "norm.pt"), os.path.join(TEMP, "norm.html")
        torch.save({"model": model.state_dict(), "epoch": 1}, cls.norm_model)
        with batch_norm_net_in_model_py():
            code, _, err = run_script(draw, [cls.norm_model, "--data-dir", SHAPES, "--export", cls.norm_file])
        assert code == 0, err

    def open(self, page):
        self.driver.get("file://" + page)
        wait_until(self.driver, lambda: self.driver.execute_script(
            "return document.body.dataset.ready === 'true'"), "the file to be ready")

    def written(self, page, body, name):
        """Open page, ask routes.checkpoint(body), write its bytes to TEMP/name; the path."""
        self.open(page)
        reply = self.driver.execute_async_script(CALL, "checkpoint", body)
        self.assertNotIn("error", reply)
        path = os.path.join(TEMP, name)
        with open(path, "wb") as file:
            file.write(base64.b64decode(reply["answer"]))
        return path

    def assert_same_weights(self, written, original):
        self.assertEqual(list(written), list(original))  # every key, in the state_dict's order
        for key, tensor in original.items():
            self.assertEqual(written[key].dtype, tensor.dtype, key)
            self.assertTrue(torch.equal(written[key], tensor), key)  # bit for bit

    def assert_aligned_as_torch_save(self, path):
        """Each tensor's bytes start at a multiple of 64 in the archive, as torch.save puts them
        (torch.load's mmap=True maps them so)."""
        with open(path, "rb") as file:
            raw = file.read()
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            for info in archive.infolist():
                start = info.header_offset
                name_length, extra_length = struct.unpack("<HH", raw[start + 26:start + 30])
                if "/data/" in info.filename:
                    self.assertEqual((start + 30 + name_length + extra_length) % 64, 0, info.filename)
        self.assertEqual([name for name in names if "/data/" not in name],
                         ["model/data.pkl", "model/.format_version", "model/.storage_alignment",
                          "model/byteorder", "model/version"])

    def test_the_tutorials_checkpoint_is_read_by_torch_test_py_and_draw_py(self):
        path = self.written(FILE, {"model": 0}, "from_the_file.pt")
        written, original = torch.load(path, weights_only=True), torch.load(MODEL, weights_only=True)
        self.assert_same_weights(written["model"], original["model"])
        self.assertIs(type(written["model"]), collections.OrderedDict)
        self.assertEqual([snapshot["step"] for snapshot in written["snapshots"]],
                         [snapshot["step"] for snapshot in original["snapshots"]])
        for mine, theirs in zip(written["snapshots"], original["snapshots"]):
            self.assert_same_weights(mine["model"], theirs["model"])  # the tutorial's are exact
        for key in ("loss", "accuracy"):  # as the page has them: rounded to 5 digits
            self.assertEqual(written["history"][key], [round(v, 5) for v in original["history"][key]])
            self.assertTrue(all(type(v) is float for v in written["history"][key]))
        self.assertEqual(written["test_accuracy"], original["test_accuracy"])
        self.assertEqual(test_accuracy_line(path), test_accuracy_line(MODEL))
        target = os.path.join(TEMP, "from_the_file.html")
        code, _, err = run_script(draw, [path, "--data-dir", SHAPES, "--export", target])
        self.assertEqual(code, 0, err)
        read, first = (exported_data(path)["networks"][0]["training"] for path in (target, FILE))
        self.assertEqual({**read, "model": first["model"]}, first)  # the same run, by another name
        code, _, err = run_script(train, ["--data-dir", SHAPES, "--device", "cpu", "--epochs", "1",
                                          "--init-from", path, "--out", os.path.join(TEMP, "further.pt")])
        self.assertEqual(code, 0, err)
        self.assert_aligned_as_torch_save(path)
        mapped = torch.load(path, weights_only=True, mmap=True)
        self.assert_same_weights(mapped["model"], original["model"])

    def test_the_untrained_network_too(self):
        written = torch.load(self.written(FILE, {"model": 1}, "untrained.pt"), weights_only=True)
        self.assert_same_weights(written["model"], PAGE.networks[1].model.state_dict())
        self.assertEqual((written["snapshots"], written["history"]), ([], {"loss": [], "accuracy": []}))

    def test_an_edited_network_keeps_its_batch_norm_statistics_and_int64_count(self):
        path = self.written(self.norm_file, {"model": 0}, "norm_from_the_file.pt")
        written = torch.load(path, weights_only=True)
        original = torch.load(self.norm_model, weights_only=True)
        self.assert_same_weights(written["model"], original["model"])
        self.assertEqual(written["model"]["norm1.num_batches_tracked"].item(), 937)
        with batch_norm_net_in_model_py():
            line = test_accuracy_line(path)
            self.assertEqual(line, test_accuracy_line(self.norm_model))
            # the accuracy the page showed, which it wrote as test_accuracy
            self.assertEqual(line, f"Test Accuracy: {written['test_accuracy'] * 100:.2f}%")
            code, _, err = run_script(draw, [path, "--data-dir", SHAPES, "--export",
                                             os.path.join(TEMP, "norm_again.html")])
        self.assertEqual(code, 0, err)

    def test_a_bad_body_is_refused_in_one_line(self):
        self.open(FILE)
        for body, message in (({"model": 7}, "model must be a whole number from 0 to 1"),
                              ({"model": 0, "snapshot": 1}, "send model (the number of a network) only"),
                              ("model", "send model (the number of a network) only")):
            reply = self.driver.execute_async_script(CALL, "checkpoint", body)
            self.assertEqual((reply.get("status"), reply.get("error")), (400, message), body)

    def test_the_button_downloads_model_pt(self):
        from selenium.webdriver.support.ui import Select

        self.open(FILE)
        target = os.path.join(self.downloads, "model.pt")
        for stale in glob.glob(os.path.join(self.downloads, "model*.pt")):
            os.remove(stale)
        Select(self.driver.find_element("id", "model")).select_by_index(1)  # the untrained network
        button = self.driver.find_element("id", "checkpoint-download")
        self.assertEqual(button.text, "Download model.pt")
        button.click()
        wait_until(self.driver, lambda: os.path.exists(target) and not glob.glob(target + ".crdownload"),
                   "model.pt")
        reply = self.driver.execute_async_script(CALL, "checkpoint", {"model": 1})
        expected = base64.b64decode(reply["answer"])
        with open(target, "rb") as file:
            self.assertEqual(file.read(), expected)
        written = torch.load(target, weights_only=True)
        self.assert_same_weights(written["model"], PAGE.networks[1].model.state_dict())

# Weights after five steps: at most 1.4e-5 apart here (docs/page.md), Adam being float32 on both sides.
STATE_TOLERANCE = 1e-4

def without_dropout(x, *args, **kwargs):
    """F.dropout (which nn.Dropout calls too) as an identity: PyTorch's masks cannot be matched."""
    return x


def pytorch_steps(model, body):
    """PyTorch's answer to a trainSteps body: the model in train() mode without dropout,
    nn.CrossEntropyLoss, torch.optim.Adam (AdamW with a weight decay) on the batch, steps times.
    Returns the losses, the first step's gradients and the state_dict after the last, flat."""
    model = copy.deepcopy(model).train()
    images = torch.tensor(body["images"], dtype=torch.uint8)
    inputs = data.transform(images.permute(1, 2, 0).numpy()).unsqueeze(1)  # as load_mnist
    labels = torch.tensor(body["labels"])
    decay = body.get("weightDecay", 0)
    optimizer = (torch.optim.AdamW(model.parameters(), lr=body["lr"], weight_decay=decay) if decay
                 else torch.optim.Adam(model.parameters(), lr=body["lr"]))
    losses, gradients = [], None
    with mock.patch.object(F, "dropout", without_dropout):
        for _ in range(body["steps"]):
            optimizer.zero_grad()
            loss = nn.CrossEntropyLoss()(model(inputs), labels)
            loss.backward()
            gradients = gradients or {name: p.grad.flatten().clone() for name, p in model.named_parameters()}
            optimizer.step()
            losses.append(loss.item())
    state = {key: value.flatten() for key, value in model.state_dict().items()
             if not key.endswith("num_batches_tracked")}  # a count the file does not carry
    return losses, gradients, state


class MomentumNoneNet(GeluNet):
    """A batch norm with momentum=None (a cumulative average of every batch): the file refuses
    to train it."""

    def __init__(self):
        super().__init__()
        self.norm = nn.BatchNorm2d(1, momentum=None)

    def forward(self, x):
        return self.fc(torch.flatten(self.norm(x), 1))


@unittest.skipIf(browser_missing(), browser_missing())
class TrainStepsInBrowserTest(unittest.TestCase):
    """window.routes.trainSteps, the first step of training in the file (issue 30): the losses,
    gradients and weights of Adam steps on one batch, held to PyTorch's in train() mode."""

    setUp, tearDown, open, wait_for, script, call = (
        FileInBrowserTest.setUp, FileInBrowserTest.tearDown, FileInBrowserTest.open,
        FileInBrowserTest.wait_for, FileInBrowserTest.script, FileInBrowserTest.call)

    @classmethod
    def setUpClass(cls):
        cls.driver, cls.downloads = browser(), downloads_folder()
        shapes = data.open_mnist(SHAPES, train=True)
        cls.batch = {"images": shapes.data[:24].tolist(), "labels": shapes.targets[:24].tolist()}

    def same_steps(self, network, body, compare_state=True):
        """trainSteps' answer to body against PyTorch's for network; returns the largest differences."""
        reply = self.call("trainSteps", body)
        self.assertIn("answer", reply, reply)
        answer, (losses, gradients, state) = reply["answer"], pytorch_steps(network, body)
        self.assertEqual(len(answer["losses"]), body["steps"])
        measured = {"loss": abs(answer["losses"][0] - losses[0]),
                    "losses": max(abs(a - b) for a, b in zip(answer["losses"], losses)),
                    "gradient": 0, "state": 0}
        self.assertLessEqual(measured["loss"], 1e-5)
        self.assertLessEqual(measured["losses"], 1e-3)
        self.assertEqual(set(answer["gradients"]), set(gradients))
        # Each gradient within 1e-4 of its tensor's largest, except a tensor whose gradient is zero
        # in exact arithmetic (a bias just before a batch norm, which the normalising takes out):
        # PyTorch's is then its float32 rounding, held to 1e-4 of the network's largest gradient.
        largest = max(expected.abs().max().item() for expected in gradients.values())
        noise = {key for key, expected in gradients.items() if expected.abs().max() < 1e-3 * largest}
        for key, expected in gradients.items():
            scale = largest if key in noise else expected.abs().max().item()
            error = (torch.tensor(answer["gradients"][key]) - expected).abs().max().item() / scale
            self.assertLessEqual(error, 1e-4, key)
            measured["gradient"] = max(measured["gradient"], error)
        self.assertEqual(set(answer["state"]), set(state))
        if not compare_state:
            return measured
        # Adam turns that rounding into steps of +-lr (its step is the gradient's sign at first),
        # so such a bias, and the running means that average it in, may part by 2 lr a step (a
        # step each way).
        loose = noise | ({key for key in state if key.endswith("running_mean")} if noise else set())
        for key, expected in state.items():
            error = (torch.tensor(answer["state"][key]) - expected).abs().max().item()
            bound = 2 * body["lr"] * body["steps"] if key in loose else STATE_TOLERANCE
            self.assertLessEqual(error, bound, key)
            measured["state"] = max(measured["state"], 0 if key in loose else error)
        return measured

    def test_the_tutorials_network_and_the_edited_ones_train_as_pytorch(self):
        body = {**self.batch, "lr": 0.01, "steps": 5, "dropout": False}
        untrained, trained = PAGE.networks[1].model, PAGE.networks[0].model
        measured = {"tutorial, untrained": self.same_steps(untrained, {**body, "model": 1}),
                    "tutorial, untrained, AdamW": self.same_steps(untrained, {**body, "model": 1,
                                                                               "weightDecay": 0.05}),
                    # Trained, its gradients on these easy shapes are mostly near Adam's eps (1e-8),
                    # where rounding decides the direction of a step of about lr: its weights after
                    # five steps part by up to lr * 5 from PyTorch's, and say nothing.
                    "tutorial, trained": self.same_steps(trained, {**body, "model": 0}, compare_state=False)}
        self.open(EDITED_FILE)
        for model, network in enumerate(EDITED_PAGE.networks):
            with self.subTest(network=network.name):
                measured[network.name] = self.same_steps(network.model, {**body, "model": model})
        print("\ntrainSteps against PyTorch, largest differences:", json.dumps(measured))

    def test_the_plain_loops_train_as_pytorch_too(self):
        # A browser without WebAssembly SIMD runs maths.js's own loops (useKernels finds none):
        # they are held to PyTorch as the kernels are, for every edited network.
        self.open(EDITED_FILE)
        self.assertIs(self.script("return maths.useKernels(null)"), False)
        body = {**self.batch, "lr": 0.01, "steps": 1, "dropout": False}
        for model, network in enumerate(EDITED_PAGE.networks):
            with self.subTest(network=network.name):
                self.same_steps(network.model, {**body, "model": model})

    def test_the_page_keeps_its_network_and_dropout_drops_when_asked(self):
        drawing = {"pixels": drawing_of(DIGITS[2]), "attribution": False}
        before = self.call("predict", drawing)["answer"]
        body = {**self.batch, "model": 0, "lr": 0.01, "steps": 2}
        kept = self.call("trainSteps", body)["answer"]
        dropped = self.call("trainSteps", {**body, "dropout": True})["answer"]
        self.assertEqual(self.call("predict", drawing)["answer"], before)
        self.assertNotEqual(kept["losses"], dropped["losses"])  # a mask of half the values
        self.assertTrue(all(map(math.isfinite, dropped["losses"])))
        again = self.call("trainSteps", body)["answer"]  # the same weights to start from each time
        self.assertEqual(again, kept)

    def test_bad_bodies_and_a_network_it_cannot_train_are_refused_in_one_line(self):
        good = {**self.batch, "model": 0, "lr": 0.01, "steps": 1}
        image = self.batch["images"][0]
        for body, message in [({}, "images must be"), ({**good, "model": 9}, "model must be"),
                              ({**good, "images": [image[:27]]}, "image 0 must be 28 rows"),
                              ({**good, "images": [[[256] * 28] * 28], "labels": [0]}, "grey levels must be"),
                              ({**good, "labels": [3]}, "labels must be"), ({**good, "lr": 0}, "lr must be"),
                              ({**good, "steps": 0}, "steps must be"),
                              ({**good, "dropout": "no"}, "dropout must be"),
                              ({**good, "weightDecay": -1}, "weightDecay must be"),
                              ({**good, "epochs": 1}, "send model, images")]:
            reply = self.call("trainSteps", body)
            self.assertEqual(reply.get("status"), 400, (body.keys(), reply))
            self.assertIn(message, reply["error"])
            self.assertNotIn("\n", reply["error"])
        target = os.path.join(TEMP, "momentum_none.html")
        network = routes.Network("cumulative", MomentumNoneNet().eval())
        export.export_page(routes.Page([network], "cpu"), target)
        self.open(target)
        reply = self.call("trainSteps", {**good, "model": 0})
        self.assertEqual(reply.get("status"), 422, reply)
        self.assertRegex(reply["error"], r"^network 0 \(cumulative\) cannot be trained in this file: norm "
                                         r"\(batch_norm with momentum=None")


if __name__ == "__main__":
    unittest.main()
