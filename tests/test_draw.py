"""Tests of draw.py: the server's routes and its answers to bad requests, and the page in a real
headless Chromium (skipped, with the reason, only where no browser and driver are installed).

Usage: python -m unittest -v tests.test_draw   (DRAW_SCREENSHOT=docs/draw_page.png saves the screenshot)
"""
import base64
import contextlib
import http.client
import io
import json
import math
import os
import signal
import socket
import struct
import threading
import unittest
import warnings
from unittest import mock

import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import EpsImagePlugin, Image

import cli
import data
import draw
import test
import train
from extras import pictures
from model import Net
from page import explain, routes
from page.collect import collect_folder
from page.server import NOT_NUMBERS, SECURITY_HEADERS, host_names_this_server, make_server
from tests.fixtures import (EPS_SEVEN, POINTER_MOVE_MS, browser, browser_missing, draw_digit,
                            draw_shape, draw_stroke, fake_ghostscript, png_base64, png_header_only,
                            run_script, run_subprocess, shapes_mnist, start_script, stroke_pixels,
                            temporary_folder, wait_until)


class BatchNormNet(Net):
    """Net as a student edits it: batch normalisation after convolution1, and a third convolution
    (4 x 4 with padding 'same', so 16 x 4 x 4 stays 16 x 4 x 4) without pooling."""

    def __init__(self):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(6)
        self.convolution3 = nn.Conv2d(16, 16, kernel_size=4, padding="same")

    def forward(self, x):
        x = self.pool(F.relu(self.norm1(self.convolution1(x))))
        x = self.conv_dropout(x)
        x = self.pool(F.relu(self.convolution2(x)))
        x = self.convolution3(x)
        return self.fc2(self.fc1(torch.flatten(x, 1)))


class ReluAfterFc1Net(Net):
    """Net with the ReLU between fc1 and fc2 that the tutorial leaves out."""

    def forward(self, x):
        x = self.pool(F.relu(self.convolution1(x)))
        x = self.pool(F.relu(self.convolution2(self.conv_dropout(x))))
        return self.fc2(F.relu(self.fc1(torch.flatten(x, 1))))


class WideNet(nn.Module):
    """A wider network with other names: 12 and 24 kernels, 64 hidden units, nn.ReLU modules."""

    def __init__(self):
        super().__init__()
        self.conv_a = nn.Conv2d(1, 12, kernel_size=5)
        self.act_a = nn.ReLU()
        self.conv_b = nn.Conv2d(12, 24, kernel_size=5)
        self.act_b = nn.ReLU()
        self.hidden = nn.Linear(24 * 4 * 4, 64)
        self.out = nn.Linear(64, 10)

    def forward(self, x):
        x = F.max_pool2d(self.act_a(self.conv_a(x)), 2)
        x = F.max_pool2d(self.act_b(self.conv_b(x)), 2)
        return self.out(self.hidden(x.view(x.size(0), -1)))


class DilatedNet(nn.Module):
    """A grouped, dilated convolution, in-place ReLUs (a module and relu_()), and the functional
    F.max_pool2d and F.dropout, as students write them."""

    def __init__(self):
        super().__init__()
        self.convolution1 = nn.Conv2d(1, 6, kernel_size=5)
        self.norm = nn.BatchNorm2d(6)
        self.act = nn.ReLU(inplace=True)  # changes norm's output tensor itself
        self.convolution2 = nn.Conv2d(6, 12, kernel_size=3, dilation=2, groups=2)
        self.fc = nn.Linear(12 * 4 * 4, 10)

    def forward(self, x):
        x = F.max_pool2d(self.act(self.norm(self.convolution1(x))), 2)  # (6, 12, 12)
        x = F.dropout(x, p=0.25, training=self.training)
        x = F.max_pool2d(self.convolution2(x).relu_(), 2)                # (12, 8, 8) -> (12, 4, 4)
        return self.fc(torch.flatten(x, 1))


# Stage names and shapes each edited network must show, in order.
EDITED = {
    "batchnorm": (BatchNormNet, [("convolution1", [6, 24, 24]), ("norm1", [6, 24, 24]),
                                 ("relu", [6, 24, 24]), ("pool", [6, 12, 12]),
                                 ("conv_dropout", [6, 12, 12]), ("convolution2", [16, 8, 8]),
                                 ("pool_1", [16, 4, 4]), ("convolution3", [16, 4, 4]),
                                 ("flatten", [256]), ("fc1", [30]), ("fc2", [10]), ("softmax", [10])]),
    "relu after fc1": (ReluAfterFc1Net, [("convolution1", [6, 24, 24]), ("pool", [6, 12, 12]),
                                         ("conv_dropout", [6, 12, 12]), ("convolution2", [16, 8, 8]),
                                         ("pool_1", [16, 4, 4]), ("flatten", [256]), ("fc1", [30]),
                                         ("fc2", [10]), ("softmax", [10])]),
    "wide": (WideNet, [("conv_a", [12, 24, 24]), ("max_pool2d", [12, 12, 12]),
                       ("conv_b", [24, 8, 8]), ("max_pool2d_1", [24, 4, 4]), ("view", [384]),
                       ("hidden", [64]), ("out", [10]), ("softmax", [10])]),
    "dilated": (DilatedNet, [("convolution1", [6, 24, 24]), ("norm", [6, 24, 24]),
                             ("act", [6, 24, 24]), ("max_pool2d", [6, 12, 12]),
                             ("dropout", [6, 12, 12]), ("convolution2", [12, 8, 8]),
                             ("max_pool2d_1", [12, 4, 4]), ("flatten", [192]), ("fc", [10]),
                             ("softmax", [10])]),
}


def setUpModule():
    global TEMP, MODEL, SERVER, ORIGIN, EDITED_SERVER, SHAPES, FOLDER
    # BatchNormNet's 'same' padding with an even kernel is on purpose; PyTorch's note that it
    # costs a padded copy of the input would only clutter the test output.
    warnings.filterwarnings("ignore", message="Using padding='same' with even kernel")
    TEMP = temporary_folder()
    shapes = SHAPES = shapes_mnist()
    MODEL = os.path.join(TEMP, "shapes.pt")
    code, _, err = run_script(train, ["--data-dir", shapes, "--device", "cpu", "--epochs", "4",
                                      "--out", MODEL])
    assert code == 0, err
    # The shapes' test set stands in for MNIST's, and a folder of drawn shapes for a class's own.
    FOLDER = os.path.join(TEMP, "class_digits")
    for label in range(10):
        os.makedirs(os.path.join(FOLDER, str(label)))
        for copy in range(3):
            draw_shape(label, torch.Generator().manual_seed(100 * label + copy)).save(
                os.path.join(FOLDER, str(label), f"{copy}.png"))
    with contextlib.redirect_stdout(io.StringIO()):  # "Pictures: 30 read, 0 skipped"
        sets = routes.load_sets(shapes, FOLDER)
    # A second trained network, trained less, to compare with.
    EARLY = os.path.join(TEMP, "early.pt")
    code, _, err = run_script(train, ["--data-dir", shapes, "--device", "cpu", "--epochs", "1",
                                      "--seed", "1", "--batch-size", "256", "--out", EARLY])
    assert code == 0, err
    SERVER = start_server(routes.load_models([MODEL, EARLY], "cpu"), *sets,
                          collect=os.path.join(TEMP, "collected"))
    ORIGIN = f"http://127.0.0.1:{SERVER.server_address[1]}"
    torch.manual_seed(0)
    EDITED_SERVER = start_server([routes.Network(name, network().eval())
                                  for name, (network, _) in EDITED.items()],
                                 *routes.load_sets(os.path.join(TEMP, "no_mnist_here"), None))


def start_server(networks, sets=(), missing=None, collect=None, **settings):
    """Serve the page for networks on a free port of 127.0.0.1 until the module's tests end."""
    server = make_server(networks, "127.0.0.1", 0, "cpu", sets, missing, collect, **settings)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    unittest.addModuleCleanup(server.server_close)
    unittest.addModuleCleanup(server.shutdown)  # cleanups run last first: shut down, then close
    return server


def at_once(client, count, timeout):
    """Run client(0) ... client(count - 1) in threads at once; wait for all, timeout s at most."""
    threads = [threading.Thread(target=client, args=(number,)) for number in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)


def request(method, path, body=None, headers=None, server=None, timeout=30):
    """Send one request to a test server (a POST as JSON, as the page sends it); return (status,
    decoded JSON or raw bytes)."""
    port = (server or SERVER).server_address[1]
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        sent = {"Content-Type": "application/json"} if method == "POST" else {}
        connection.request(method, path, body=body, headers={**sent, **(headers or {})})
        response = connection.getresponse()
        content = response.read()
    finally:
        connection.close()
    if response.getheader("Content-Type") == "application/json":
        return response.status, json.loads(content)
    return response.status, content


# The tutorial's forward(), as the page shows it: name, shape, kind, activation shown with it.
TUTORIAL_STAGES = [
    ("convolution1", [6, 24, 24], "convolution", "ReLU"), ("pool", [6, 12, 12], "pool", None),
    ("conv_dropout", [6, 12, 12], "dropout", None), ("convolution2", [16, 8, 8], "convolution", "ReLU"),
    ("pool_1", [16, 4, 4], "pool", None), ("flatten", [256], "flatten", None),
    ("fc1", [30], "linear", None), ("fc2", [10], "linear", None), ("softmax", [10], "output", None)]


class ServerTest(unittest.TestCase):
    def test_page_and_model_list(self):
        status, page = request("GET", "/")
        self.assertEqual(status, 200)
        self.assertIn(b'<canvas id="draw"', page)
        self.assertIn(b'id="prediction"', page)
        self.assertNotIn(b"http://", page.replace(b"http://127.0.0.1", b""))  # nothing from elsewhere
        self.assertNotIn(b"https://", page)
        status, answer = request("GET", "/models")
        self.assertEqual((status, answer["models"]), (200, ["shapes.pt", "early.pt", routes.UNTRAINED]))

    def test_drawing_gives_prediction_and_every_layer_with_the_models_shapes(self):
        status, answer = request("POST", "/predict", {"model": 0, "pixels": stroke_pixels(1)})
        self.assertEqual(status, 200, str(answer)[:300])
        self.assertEqual(answer["prediction"], 1)
        self.assertAlmostEqual(sum(answer["probabilities"]), 1.0, places=4)
        self.assertEqual([(layer["name"], layer["shape"], layer["kind"], layer["activation"])
                          for layer in answer["layers"]], TUTORIAL_STAGES)
        self.assertEqual([layer["code"] for layer in answer["layers"]][:6],
                         ["self.convolution1: Conv2d", "self.pool: MaxPool2d",
                          "self.conv_dropout: Dropout", "self.convolution2: Conv2d",
                          "self.pool: MaxPool2d", "torch.flatten"])
        for layer in answer["layers"]:
            self.assertEqual(len(layer["values"]), math.prod(layer["shape"]), layer["name"])
        self.assertEqual(answer["input"]["shape"], [1, 28, 28])
        # The layers are the model's own: the same input through model.py gives the same output.
        model = routes.load_models([MODEL], "cpu")[0].model
        digit = pictures.prepare_digit(Image.fromarray(
            torch.tensor(stroke_pixels(1), dtype=torch.uint8).numpy(), mode="L"))
        with torch.no_grad():
            expected = model(digit[None]).softmax(dim=1)[0]
        torch.testing.assert_close(torch.tensor(answer["probabilities"]), expected,
                                   atol=1e-5, rtol=0)

    def test_one_connection_carries_many_requests_and_an_unread_body_ends_it(self):
        connection = http.client.HTTPConnection("127.0.0.1", SERVER.server_address[1], timeout=30)
        for _ in range(3):  # HTTP/1.1: the connection stays open, as a browser's does
            connection.request("POST", "/predict", json.dumps({"pixels": stroke_pixels(1)}),
                               {"Content-Type": "application/json"})
            response = connection.getresponse()
            self.assertEqual((response.status, json.loads(response.read())["prediction"]), (200, 1))
            self.assertIsNone(response.getheader("Connection"))
        connection.request("POST", "/nowhere", b'{"label": 1}', {"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        self.assertEqual((response.status, response.getheader("Connection")), (404, "close"))
        connection.close()

    def wait_until(self, condition, timeout=30):
        """Wait for condition(), checking every few milliseconds, timeout seconds at most."""
        done = threading.Event()
        for _ in range(int(timeout / 0.005)):
            if condition():
                return
            done.wait(0.005)
        self.fail("the condition did not come true in time")

    def test_opening_the_page_never_waits_behind_pictures(self):
        server = start_server(routes.load_models([MODEL], "cpu"))
        working, let_go, answers = server.RequestHandlerClass.working, threading.Event(), []

        def hold():  # stands in for a picture being worked out
            with working.turn("another address"):
                let_go.wait(timeout=30)

        predictor = threading.Thread(target=lambda: answers.append(
            request("POST", "/predict", {"pixels": stroke_pixels(1)}, server=server)))
        try:
            for _ in range(working.free):
                threading.Thread(target=hold).start()
            self.wait_until(lambda: working.free == 0)
            for path in ("/", "/models", "/kernels?model=0", "/training?model=0"):
                with self.subTest(path=path):
                    self.assertEqual(request("GET", path, server=server, timeout=10)[0], 200)
            predictor.start()
            self.wait_until(lambda: working.queued == 1)  # a picture waits its turn
        finally:
            let_go.set()
        predictor.join(timeout=30)
        self.assertEqual(answers[0][0], 200)

    def test_one_address_holds_at_most_its_share_of_connections(self):
        server = start_server(routes.load_models([MODEL], "cpu"))
        server.connections_per_address = 3  # instead of page.server's CONNECTIONS_PER_ADDRESS, 200
        port = server.server_address[1]
        models = f"GET /models HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
        held = [socket.create_connection(server.server_address, timeout=30) for _ in range(3)]
        try:
            reply = raw_reply(server, b"")  # a fourth, refused at once, before it sends a byte
            self.assertTrue(reply.startswith("HTTP/1.1 429"), reply[:300])
            self.assertIn("at most 3 at once", reply)
            # Another address (127.0.0.2 is this machine too) is served meanwhile.
            with socket.create_connection(server.server_address, timeout=30,
                                          source_address=("127.0.0.2", 0)) as other:
                other.sendall(models.encode())
                self.assertTrue(other.recv(65536).startswith(b"HTTP/1.1 200"))
            held.pop().close()  # a connection that ends gives its place back
            self.wait_until(lambda: server.connections["127.0.0.1"] == 2)
            self.assertTrue(raw_reply(server, models.encode()).startswith("HTTP/1.1 200"))
        finally:
            for connection in held:
                connection.close()

    def test_while_the_pen_moves_the_pixels_picture_can_wait(self):
        canvas = draw_shape(7, torch.Generator().manual_seed(7)).resize((280, 280)).convert("RGBA")
        picture = "data:image/png;base64," + png_base64(canvas)  # as the page's canvas sends it
        status, full = request("POST", "/predict", {"picture": picture})
        status, moving = request("POST", "/predict", {"picture": picture, "attribution": False})
        self.assertEqual(status, 200, moving)
        self.assertIsNone(moving["attribution"])
        self.assertEqual(moving["layers"], full["layers"])
        self.assertEqual(full["attribution"]["digit"], full["prediction"])
        # The PNG of the canvas is prepared exactly as the same grey levels sent as numbers.
        pixels = [[canvas.getpixel((x, y))[0] for x in range(280)] for y in range(280)]
        self.assertEqual(request("POST", "/predict", {"pixels": pixels})[1]["input"], full["input"])
        for value in ("no", 0, None):
            status, answer = request("POST", "/predict", {"picture": picture, "attribution": value})
            self.assertEqual((status, answer["error"]), (400, "attribution must be true or false"))

    def test_uploaded_picture_is_prepared_as_test_py_prepares_it(self):
        picture = draw_shape(0, torch.Generator().manual_seed(3))
        status, answer = request("POST", "/predict", {"model": 0, "picture": "data:image/png;base64,"
                                                      + png_base64(picture)})
        self.assertEqual(status, 200, str(answer)[:300])
        self.assertEqual(answer["prediction"], 0)
        expected = data.to_pixels(pictures.prepare_digit(picture)).flatten()
        torch.testing.assert_close(torch.tensor(answer["input"]["values"]), expected, atol=1e-4, rtol=0)

    def test_kernels_of_each_model(self):
        status, answer = request("GET", "/kernels?model=2")
        self.assertEqual(status, 200)
        self.assertEqual(answer["model"], routes.UNTRAINED)
        self.assertEqual([(k["name"], k["shape"]) for k in answer["kernels"]],
                         [("convolution1", [6, 1, 5, 5]), ("convolution2", [16, 6, 5, 5])])
        self.assertEqual(len(answer["kernels"][1]["values"]), 16 * 6 * 5 * 5)
        torch.manual_seed(0)  # the untrained network is seed 0's, every time the page starts
        torch.testing.assert_close(torch.tensor(answer["kernels"][0]["values"]).view(6, 1, 5, 5),
                                   Net().convolution1.weight.detach(), atol=1e-5, rtol=0)

    def test_every_bad_request_is_a_4xx_with_a_one_line_message(self):
        white = [[255] * 50 for _ in range(50)]
        one = stroke_pixels(1)
        whole_png = base64.b64decode(png_base64(draw_shape(1, torch.Generator())))
        broken_png = whole_png[:len(whole_png) // 2]
        cases = [
            ("GET", "/../README.md", None, {}, 404),
            ("GET", "/%2e%2e/%2e%2e/etc/passwd", None, {}, 404),
            ("GET", "//etc/passwd", None, {}, 404),
            ("GET", "/draw.py", None, {}, 404),
            ("GET", "/kernels?model=9", None, {}, 400),
            ("GET", "/kernels?model=x", None, {}, 400),
            ("GET", "/predict", None, {}, 405),
            ("POST", "/", "{}", {}, 405),
            ("POST", "/predict", "{not json", {}, 400),
            ("POST", "/predict", "[1, 2]", {}, 400),
            ("POST", "/predict", '{"pixels": [[NaN]]}', {}, 400),
            ("POST", "/predict", '{"pixels": [[Infinity, 0]]}', {}, 400),
            ("POST", "/predict", '{"pixels": [[1e999, 0]]}', {}, 400),
            ("POST", "/predict", "[" * 100000 + "]" * 100000, {}, 400),
            ("POST", "/predict", {"pixels": "white"}, {}, 400),
            ("POST", "/predict", {"pixels": []}, {}, 400),
            ("POST", "/predict", {"pixels": [[0, 1], [0]]}, {}, 400),
            ("POST", "/predict", {"pixels": [[0, 300]]}, {}, 400),
            ("POST", "/predict", {"pixels": [[0, -1]]}, {}, 400),
            ("POST", "/predict", {"pixels": [[True, 0]]}, {}, 400),
            ("POST", "/predict", {"pixels": [["0", 0]]}, {}, 400),
            ("POST", "/predict", {"pixels": [[0] * 1001]}, {}, 400),
            ("POST", "/predict", {"pixels": white, "model": 5}, {}, 400),
            ("POST", "/predict", {"pixels": white, "model": "0"}, {}, 400),
            ("POST", "/predict", {"pixels": white, "model": True}, {}, 400),
            ("POST", "/predict", {"model": 0}, {}, 400),
            ("POST", "/predict", {"pixels": white, "picture": "x"}, {}, 400),
            ("POST", "/predict", {"picture": 12}, {}, 400),
            ("POST", "/predict", {"picture": "not base64!"}, {}, 400),
            ("POST", "/predict", {"pixels": white}, {}, 422),                      # empty drawing
            ("POST", "/predict", {"pixels": [[0] * 50] * 50}, {}, 422),          # one colour
            ("POST", "/predict", {"picture": base64.b64encode(b"hello").decode()}, {}, 422),
            ("POST", "/predict", {"picture": base64.b64encode(broken_png).decode()}, {}, 422),
            ("GET", "/step", None, {}, 405),
            ("POST", "/step", {"pixels": one, "map": 0, "row": 0, "column": 0}, {}, 400),
            ("POST", "/step", {"pixels": one, "stage": "fc9", "map": 0, "row": 0, "column": 0}, {}, 400),
            ("POST", "/step", {"pixels": one, "stage": 3, "map": 0, "row": 0, "column": 0}, {}, 400),
            ("POST", "/step", {"pixels": one, "stage": "pool", "map": 6, "row": 0, "column": 0}, {}, 400),
            ("POST", "/step", {"pixels": one, "stage": "pool", "map": 0, "row": 12, "column": 0}, {}, 400),
            ("POST", "/step", {"pixels": one, "stage": "pool", "map": 0, "row": -1, "column": 0}, {}, 400),
            ("POST", "/step", {"pixels": one, "stage": "pool", "map": 0, "row": "1", "column": 0}, {}, 400),
            ("POST", "/step", {"pixels": one, "stage": "pool", "map": 0, "row": 0, "column": True}, {}, 400),
            ("POST", "/step", {"pixels": one, "stage": "fc1", "map": 1, "row": 0, "column": 0}, {}, 400),
            ("POST", "/step", {"pixels": one, "stage": "fc1", "map": 0, "row": 0, "column": 30}, {}, 400),
            ("POST", "/step", {"pixels": white, "stage": "pool", "map": 0, "row": 0, "column": 0}, {}, 422),
            ("POST", "/attribution", {"pixels": one}, {}, 400),
            ("POST", "/attribution", {"pixels": one, "digit": 10}, {}, 400),
            ("POST", "/attribution", {"pixels": one, "digit": 2.5}, {}, 400),
            ("POST", "/attribution", {"pixels": one, "digit": 1, "model": 7}, {}, 400),
            ("POST", "/attribution", {"digit": 1}, {}, 400),
            ("POST", "/attribution", "{broken", {}, 400),
            ("GET", "/testset?model=0&set=2", None, {}, 400),
            ("GET", "/testset?model=x", None, {}, 400),
            ("GET", "/examples?model=0&set=0&true=3", None, {}, 400),
            ("GET", "/examples?model=0&set=0&true=10&predicted=1", None, {}, 400),
            ("GET", "/examples?model=0&set=0&other=7", None, {}, 400),
            ("GET", "/training?model=-1", None, {}, 400),
            ("POST", "/testset", "{}", {}, 405),
            ("POST", "/predict", {"set": 0, "index": 200}, {}, 400),
            ("POST", "/predict", {"set": 0, "index": "3"}, {}, 400),
            ("POST", "/predict", {"set": 0, "index": 3, "pixels": one}, {}, 400),
            ("POST", "/predict", {"pixels": one, "snapshot": 99}, {}, 400),
            ("POST", "/predict", {"pixels": one, "model": 2, "snapshot": 1}, {}, 400),
        ]
        for method, path, body, headers, expected in cases:
            with self.subTest(method=method, path=path, body=str(body)[:60]):
                status, answer = request(method, path, body, headers)
                self.assertEqual(status, expected, str(answer)[:300])
                self.assertIsInstance(answer, dict)
                self.assertEqual(len(answer["error"].splitlines()), 1)
                self.assertNotIn("Traceback", answer["error"])
        status, _ = request("POST", "/predict", {"model": 0, "pixels": stroke_pixels(1)})
        self.assertEqual(status, 200)  # still serving

    def raw_reply(self, headers):
        """A POST /predict with only these headers besides Host and Content-Type, on a raw socket;
        all the server answers until it closes."""
        head = (f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{SERVER.server_address[1]}\r\n"
                "Content-Type: application/json\r\n").encode() + headers + b"\r\n"
        return raw_reply(SERVER, head)

    def test_body_size_cap_and_missing_length(self):
        # 3 MB announced but not sent: refused from the header alone, the connection closed.
        reply = self.raw_reply(b"Content-Length: 3000000\r\n")
        self.assertTrue(reply.startswith("HTTP/1.1 413"), reply)
        self.assertIn("at most 2,097,152", reply)
        reply = self.raw_reply(b"")
        self.assertTrue(reply.startswith("HTTP/1.1 411"), reply)
        # Headers arrive as Latin-1, where "\xb2" is "²": str.isdigit() says yes, int() no.
        reply = self.raw_reply(b"Content-Length: \xb2\r\n")
        self.assertTrue(reply.startswith("HTTP/1.1 400"), reply)  # RFC 9112: an invalid length

    def test_concurrent_requests_all_answered_correctly(self):
        drawings = {label: stroke_pixels(label) for label in (0, 1)}
        results, lock = [], threading.Lock()

        def client(number):
            for index in range(12):  # bounded: 8 threads x 12 requests
                label = (number + index) % 2
                status, answer = request("POST", "/predict", {"model": 0, "pixels": drawings[label]})
                with lock:
                    results.append((status, answer.get("prediction"), label))

        at_once(client, 8, timeout=120)
        self.assertEqual(len(results), 96)
        self.assertEqual([(status, predicted) for status, predicted, _ in results],
                         [(200, label) for _, _, label in results])


class EditedModelTest(unittest.TestCase):
    def test_each_edited_network_shows_its_own_stages_and_shapes(self):
        pixels = stroke_pixels(1)
        for index, (name, (_, expected)) in enumerate(EDITED.items()):
            with self.subTest(network=name):
                status, answer = request("POST", "/predict", {"model": index, "pixels": pixels},
                                         server=EDITED_SERVER)
                self.assertEqual(status, 200, str(answer)[:300])
                self.assertEqual([(layer["name"], layer["shape"]) for layer in answer["layers"]],
                                 expected)
        status, answer = request("POST", "/predict", {"model": 1, "pixels": pixels}, server=EDITED_SERVER)
        fc1 = next(layer for layer in answer["layers"] if layer["name"] == "fc1")
        self.assertEqual(fc1["activation"], "ReLU")  # the added ReLU is seen, and shown with fc1
        self.assertGreaterEqual(min(fc1["values"]), 0)

    def test_in_place_operations_do_not_change_stages_already_shown(self):
        network = EDITED_SERVER.RequestHandlerClass.page.networks[3].model  # DilatedNet
        pixels = stroke_pixels(1)
        digit = pictures.prepare_digit(Image.fromarray(torch.tensor(pixels, dtype=torch.uint8).numpy(),
                                                   mode="L"))
        with torch.no_grad():
            normed = network.norm(network.convolution1(digit[None]))[0]  # (6, 24, 24)
        status, answer = request("POST", "/predict", {"model": 3, "pixels": pixels},
                                 server=EDITED_SERVER)
        layers = {layer["name"]: layer for layer in answer["layers"]}
        self.assertLess(min(layers["norm"]["values"]), 0)  # before the in-place ReLU
        torch.testing.assert_close(torch.tensor(layers["norm"]["values"]).view(6, 24, 24), normed,
                                   atol=1e-5, rtol=0)
        self.assertEqual(min(layers["act"]["values"]), 0)
        self.assertEqual((layers["dropout"]["p"], layers["dropout"]["in_eval"]), (0.25, False))
        self.assertEqual((layers["convolution2"]["dilation"], layers["convolution2"]["groups"]),
                         ([2, 2], 2))

    def test_functional_pooling_and_a_grouped_dilated_convolution_have_step_views(self):
        pool = step("max_pool2d", 5, 7, 2, model=3, server=EDITED_SERVER)
        self.assertEqual((pool["kind"], pool["shape"]), ("pool", [2, 2]))
        self.assertEqual(pool["sum"], pool["value"])
        self.assertEqual(max(pool["block"]), pool["value"])
        wide = step("max_pool2d_1", 20, 3, 1, model=2, server=EDITED_SERVER)  # F.max_pool2d(x, 2)
        self.assertEqual(wide["kind"], "pool")
        convolution = step("convolution2", 7, 4, 6, model=3, server=EDITED_SERVER)
        self.assertEqual(convolution["channels"], [3, 4, 5])  # map 7 is in the second group
        self.assertEqual(convolution["shape"], [3, 3, 3])
        self.assertAlmostEqual(convolution["after"], convolution["value"], places=5)

    def test_kernels_of_a_wider_network(self):
        status, answer = request("GET", "/kernels?model=2", server=EDITED_SERVER)
        self.assertEqual(status, 200)
        self.assertEqual([(k["name"], k["shape"]) for k in answer["kernels"]],
                         [("conv_a", [12, 1, 5, 5]), ("conv_b", [24, 12, 5, 5])])

    def test_a_network_the_page_cannot_show_is_one_line(self):
        class Branching(Net):
            def forward(self, x):
                return super().forward(x) if x.sum() > 0 else super().forward(-x)

        class OtherSize(Net):
            def __init__(self):
                super().__init__()
                self.fc1 = nn.Linear(16 * 5 * 5, 30)  # made for 32 x 32 pictures

        class FiveDigits(Net):
            def __init__(self):
                super().__init__()
                self.fc2 = nn.Linear(30, 5)

        for network, words in ((Branching, "cannot follow this network's forward()"),
                               (OtherSize, "cannot take a 1 x 28 x 28 picture"),
                               (FiveDigits, "answers (5,) values, not 10 digits")):
            with self.subTest(network=network.__name__):
                with self.assertRaises(cli.UserError) as raised:
                    routes.Page([routes.Network("edited.pt", network())], "cpu")
                self.assertIn("edited.pt: this network" if network is not Branching
                              else "edited.pt: the page", str(raised.exception))
                self.assertIn(words, str(raised.exception))
                self.assertEqual(len(str(raised.exception).splitlines()), 1)


def step(stage, map_index, row, column, model=0, server=None, label=1):
    status, answer = request("POST", "/step", {"model": model, "pixels": stroke_pixels(label),
                                               "stage": stage, "map": map_index, "row": row,
                                               "column": column}, server=server)
    assert status == 200, answer
    return answer


class StepTest(unittest.TestCase):
    """Every value of a stage traced to its inputs, checked against a reference computed here."""

    @classmethod
    def setUpClass(cls):
        cls.model = routes.load_models([MODEL], "cpu")[0].model
        digit = pictures.prepare_digit(Image.fromarray(
            torch.tensor(stroke_pixels(1), dtype=torch.uint8).numpy(), mode="L"))
        with torch.no_grad():  # the reference: the tutorial's forward, written out here
            cls.maps1 = F.relu(cls.model.convolution1(digit[None]))[0]  # (6, 24, 24)
            cls.pooled1 = cls.model.pool(cls.maps1)                     # (6, 12, 12)
            cls.maps2 = F.relu(cls.model.convolution2(cls.pooled1[None]))[0]  # (16, 8, 8)
            cls.hidden = cls.model.fc1(torch.flatten(cls.model.pool(cls.maps2[None]), 1))[0]

    def test_convolution2_values_are_their_patch_times_kernel_plus_bias_after_relu(self):
        for map_index, row, column in ((0, 0, 0), (3, 2, 5), (15, 7, 7), (9, 4, 1)):
            answer = step("convolution2", map_index, row, column)
            self.assertEqual(answer["kind"], "convolution")
            self.assertEqual(answer["channels"], list(range(6)))  # every input map
            patch = torch.tensor(answer["patch"]).view(6, 5, 5)
            torch.testing.assert_close(patch, self.pooled1[:, row:row + 5, column:column + 5])
            kernel = torch.tensor(answer["kernel"]).view(6, 5, 5)
            torch.testing.assert_close(kernel, self.model.convolution2.weight[map_index].detach())
            products = torch.tensor(answer["products"]).view(6, 5, 5)
            torch.testing.assert_close(products, patch * kernel)
            total = sum(answer["products"]) + answer["bias"]
            self.assertAlmostEqual(total, answer["sum"], places=5)
            self.assertEqual(answer["activation"], "ReLU")
            expected = self.maps2[map_index, row, column].item()
            self.assertAlmostEqual(max(total, 0), expected, delta=1e-4)
            self.assertAlmostEqual(answer["value"], expected, delta=1e-6)

    def test_pooling_keeps_the_largest_of_its_block(self):
        answer = step("pool", 2, 5, 7)
        block = self.maps1[2, 10:12, 14:16]
        self.assertEqual(answer["block"], block.flatten().tolist())
        self.assertEqual(answer["sum"], block.max().item())
        self.assertEqual(answer["value"], self.pooled1[2, 5, 7].item())

    def test_a_fully_connected_unit_shows_its_largest_contributions(self):
        answer = step("fc1", 0, 0, 12)
        self.assertEqual(answer["kind"], "linear")
        products = [term["product"] for term in answer["largest"]]
        self.assertEqual(products, sorted(products, key=abs, reverse=True))
        total = sum(products) + answer["rest"] + answer["bias"]
        self.assertAlmostEqual(total, self.hidden[12].item(), delta=1e-4)

    def test_padding_and_other_stages(self):
        # convolution3 of the edited network pads 1 above and left, 2 below and right: its
        # corners read zeros outside the map.
        answer = step("convolution3", 4, 0, 0, server=EDITED_SERVER)
        patch = torch.tensor(answer["patch"]).view(16, 4, 4)
        self.assertTrue(torch.equal(patch[:, 0, :], torch.zeros(16, 4)))
        self.assertAlmostEqual(answer["sum"], answer["value"], delta=1e-4)
        answer = step("convolution3", 4, 3, 3, server=EDITED_SERVER)
        patch = torch.tensor(answer["patch"]).view(16, 4, 4)
        self.assertTrue(torch.equal(patch[:, 2:, :], torch.zeros(16, 2, 4)))
        self.assertAlmostEqual(answer["sum"], answer["value"], delta=1e-4)
        self.assertEqual(step("conv_dropout", 0, 3, 3)["kind"], "none")  # nothing to trace
        self.assertEqual(step("norm1", 0, 3, 3, server=EDITED_SERVER)["kind"], "none")

    def test_same_padding_with_an_even_kernel_puts_the_odd_zero_below_and_right(self):
        torch.manual_seed(0)
        for convolution in (nn.Conv2d(2, 3, kernel_size=4, padding="same"),
                            nn.Conv2d(2, 3, kernel_size=(2, 3), padding="same", dilation=(3, 1))):
            layer_input = torch.randn(2, 7, 7)
            with torch.no_grad():
                output = convolution(layer_input[None])[0]  # (3, 7, 7): 'same' keeps the size
            for map_index, row, column in [(0, 0, 0), (1, 6, 6), (2, 0, 6), (2, 6, 0), (1, 3, 4)]:
                answer = explain.convolution_step(convolution, layer_input, map_index, row, column)
                self.assertAlmostEqual(answer["sum"], output[map_index, row, column].item(),
                                       delta=1e-5, msg=(convolution, map_index, row, column))
        self.assertEqual(explain.padding_of(convolution), [[1, 2], [1, 1]])


class AttributionAndConfidenceTest(unittest.TestCase):
    def test_pixels_add_up_to_the_change_from_an_empty_box(self):
        status, answer = request("POST", "/predict", {"model": 0, "pixels": stroke_pixels(1)})
        self.assertEqual(status, 200)
        attribution = answer["attribution"]
        self.assertEqual((attribution["digit"], attribution["shape"]), (1, [28, 28]))
        for digit in (1, 4, 0):
            status, other = request("POST", "/attribution", {"model": 0, "digit": digit,
                                                             "pixels": stroke_pixels(1)})
            self.assertEqual((status, other["digit"]), (200, digit))
            self.assertAlmostEqual(sum(other["values"]), other["total"],
                                   delta=0.1 + 0.05 * abs(other["total"]))
        self.assertGreater(attribution["total"], 0)  # the 1 made the network more sure of 1
        # Black pixels are the empty box itself, so they cannot have pushed either way.
        black = [value for value, pixel in zip(attribution["values"], answer["input"]["values"])
                 if pixel == 0]
        self.assertEqual(set(black), {0.0})

    def test_how_sure_follows_the_measured_rule(self):
        status, answer = request("POST", "/predict", {"model": 0, "pixels": stroke_pixels(1)})
        confidence = answer["confidence"]
        self.assertEqual([digit for digit, _ in confidence["top"]][0], 1)
        self.assertEqual([p for _, p in confidence["top"]],
                         sorted(answer["probabilities"], reverse=True)[:3])
        self.assertFalse(confidence["unsure"])
        status, answer = request("POST", "/predict", {"model": 2, "pixels": stroke_pixels(1)})
        self.assertTrue(answer["confidence"]["unsure"])  # the untrained network is never sure
        self.assertLess(answer["confidence"]["top"][0][1], explain.UNSURE_BELOW)
        dot = [[0 if (x - 140) ** 2 + (y - 140) ** 2 < 30 else 255 for x in range(280)]
               for y in range(280)]  # a dot, blown up to a filled disc by the preparation
        status, answer = request("POST", "/predict", {"model": 0, "pixels": dot})
        self.assertTrue(answer["confidence"]["unlike_a_digit"] and answer["confidence"]["unsure"])


class ExplorerTest(unittest.TestCase):
    """The labelled sets on the page, against test.py and the model itself."""

    def per_class(self, *flags):
        """test.py --per-class on the first network: (accuracy in %, confusion matrix rows)."""
        code, out, err = run_script(test, [MODEL, "--device", "cpu", "--per-class", *flags])
        self.assertEqual(code, 0, err)
        lines = out.splitlines()
        start = lines.index("Confusion matrix: row = true digit, column = predicted digit") + 2
        matrix = [[int(count) for count in line.split()[1:]] for line in lines[start:start + 10]]
        accuracy = next(line for line in lines if line.startswith("Test Accuracy: "))
        return float(accuracy.split(": ")[1].rstrip("%")), matrix

    def test_accuracy_and_confusion_matrix_equal_test_py_per_class(self):
        for set_index, flags in ((0, ["--data-dir", SHAPES]), (1, ["--images-dir", FOLDER])):
            with self.subTest(set=set_index):
                status, answer = request("GET", f"/testset?model=0&set={set_index}")
                self.assertEqual(status, 200, answer)
                accuracy, matrix = self.per_class(*flags)
                self.assertEqual(answer["confusion"], matrix)
                self.assertEqual(round(answer["accuracy"] * 100, 2), accuracy)

    def test_a_cell_lists_its_images_most_confident_first(self):
        images, labels = data.load_mnist(SHAPES, train=False)
        status, answer = request("GET", "/testset?model=1&set=0")  # early.pt makes mistakes
        cells = [(count, true, predicted) for true, row in enumerate(answer["confusion"])
                 for predicted, count in enumerate(row) if true != predicted and count]
        count, true, predicted = max(cells)
        status, cell = request("GET", f"/examples?model=1&set=0&true={true}&predicted={predicted}")
        self.assertEqual((status, cell["count"], len(cell["examples"])), (200, count, count))
        probabilities = [example["probability"] for example in cell["examples"]]
        self.assertEqual(probabilities, sorted(probabilities, reverse=True))
        model = routes.load_models([os.path.join(TEMP, "early.pt")], "cpu")[0].model
        for example in cell["examples"]:
            index = example["index"]
            self.assertEqual((example["label"], example["predicted"]), (true, predicted))
            self.assertEqual(int(labels[index]), true)
            with torch.no_grad():
                answer_of_model = model(images[index][None]).softmax(dim=1)[0]
            self.assertEqual(int(answer_of_model.argmax()), predicted)
            self.assertAlmostEqual(answer_of_model[predicted].item(), example["probability"], places=4)
            expected = (data.to_pixels(images[index]) * 255).round().flatten().tolist()
            self.assertEqual(example["pixels"], expected)  # the test image itself

    def test_an_image_of_a_set_goes_through_the_network_with_its_label(self):
        images, labels = data.load_mnist(SHAPES, train=False)
        for index in (0, 57, 199):
            status, answer = request("POST", "/predict", {"model": 0, "set": 0, "index": index})
            self.assertEqual(status, 200, answer)
            self.assertEqual(answer["label"], int(labels[index]))
            torch.testing.assert_close(torch.tensor(answer["input"]["values"]),
                                       data.to_pixels(images[index]).flatten(), atol=1e-5, rtol=0)
            status, step = request("POST", "/step", {"set": 0, "index": index, "stage": "pool",
                                                     "map": 0, "row": 3, "column": 3})
            self.assertEqual(status, 200, step)
        status, answer = request("POST", "/predict", {"set": 1, "index": 29})  # a picture of a 9
        self.assertEqual((status, answer["label"]), (200, 9))

    def test_two_networks_compared_image_by_image(self):
        status, first = request("GET", "/examples?model=0&other=1&set=0")
        status, second = request("GET", "/examples?model=1&other=0&set=0")
        images, labels = data.load_mnist(SHAPES, train=False)
        networks = routes.load_models([MODEL, os.path.join(TEMP, "early.pt")], "cpu")
        with torch.no_grad():
            right = [network.model(images).argmax(dim=1) == labels for network in networks[:2]]
        self.assertEqual(first["count"], int((right[0] & ~right[1]).sum()))
        self.assertEqual(second["count"], int((right[1] & ~right[0]).sum()))
        self.assertGreater(first["count"], 0)
        for example in first["examples"]:
            self.assertTrue(right[0][example["index"]] and not right[1][example["index"]])

    def test_the_training_run_and_its_snapshots(self):
        checkpoint = torch.load(MODEL, weights_only=True)
        status, run = request("GET", "/training?model=0")
        self.assertEqual(run["snapshots"], [snapshot["step"] for snapshot in checkpoint["snapshots"]])
        self.assertEqual(len(run["loss"]), len(checkpoint["history"]["loss"]))
        pixels = stroke_pixels(1)
        first = request("POST", "/predict", {"model": 0, "snapshot": 0, "pixels": pixels})[1]
        last = request("POST", "/predict", {"model": 0, "snapshot": len(run["snapshots"]) - 1,
                                            "pixels": pixels})[1]
        final = request("POST", "/predict", {"model": 0, "pixels": pixels})[1]
        untrained = request("POST", "/predict", {"model": 2, "pixels": pixels})[1]
        self.assertEqual(last["probabilities"], final["probabilities"])
        self.assertEqual(first["probabilities"], untrained["probabilities"])  # seed 0 both times
        self.assertNotEqual(first["prediction"], final["prediction"])
        status, kernels = request("GET", "/kernels?model=0&snapshot=0")
        self.assertEqual(kernels["kernels"], request("GET", "/kernels?model=2")[1]["kernels"])
        self.assertEqual(request("GET", "/training?model=2")[1]["snapshots"], [])  # none kept

    def test_the_confusion_matrix_follows_the_training_slider(self):
        images, labels = data.load_mnist(SHAPES, train=False)
        torch.manual_seed(0)  # step 0 of the run is the untrained network of its seed
        untrained = Net().eval()
        with torch.no_grad():
            expected = test.confusion_matrix(labels, untrained(images).argmax(dim=1)).tolist()
        status, first = request("GET", "/testset?model=0&snapshot=0&set=0")
        self.assertEqual((status, first["confusion"]), (200, expected))
        final = request("GET", "/testset?model=0&set=0")[1]
        self.assertGreater(final["accuracy"], first["accuracy"] + 0.3)
        status, cell = request("GET", "/examples?model=0&snapshot=0&set=0&true=1&predicted="
                               f"{max(range(10), key=lambda digit: expected[1][digit])}")
        self.assertEqual(cell["count"], max(expected[1]))

    def test_without_mnist_the_page_says_how_to_get_it(self):
        status, catalogue = request("GET", "/models", server=EDITED_SERVER)
        self.assertEqual(catalogue["sets"], [])
        self.assertIn("No MNIST in", catalogue["missing"])
        self.assertIn("python train.py with the same --data-dir", catalogue["missing"])
        status, answer = request("GET", "/testset?model=0", server=EDITED_SERVER)
        self.assertEqual(status, 404)
        self.assertEqual(answer["error"], catalogue["missing"])


def raw_reply(server, request_head):
    """Send request_head (and a body) on a raw socket; return all the server answers until it
    closes."""
    with socket.create_connection(server.server_address, timeout=30) as connection:
        connection.sendall(request_head)
        reply = b""
        while chunk := connection.recv(65536):
            reply += chunk
    return reply.decode()


def trickle(server, head, piece, pause=0.2, count=50):
    """Send head, then piece every pause seconds, count times at most, until the server answers;
    return all it answers until it closes ("" if it never did) and how many pieces were sent."""
    with socket.create_connection(server.server_address, timeout=30) as connection:
        connection.sendall(head)
        reply, sent = None, 0
        while reply is None and sent < count:
            connection.settimeout(pause)
            try:
                reply = connection.recv(65536)  # b"" if it closed without a word
            except TimeoutError:
                connection.sendall(piece)
                sent += 1
        if reply is None:
            return "", sent
        connection.settimeout(30)
        with contextlib.suppress(ConnectionResetError):  # a piece it never read resets it
            while chunk := connection.recv(65536):
                reply += chunk
    return reply.decode(), sent


class OverflowTest(unittest.TestCase):
    def test_weights_that_overflow_are_answered_in_one_line_never_as_nan(self):
        """Weights that are numbers but so large that the network computes infinities and NaN:
        JSON has no such values, so the answer is a 422 that says why, not invalid JSON."""
        huge = Net()
        with torch.no_grad():
            for parameter in huge.parameters():
                parameter.mul_(1e30)
        server = start_server([routes.Network("huge", huge.eval())])
        for path, body in [("/predict", {"pixels": stroke_pixels(7)}),
                           ("/step", {"pixels": stroke_pixels(7), "stage": "fc2", "map": 0,
                                      "row": 0, "column": 3})]:
            with self.subTest(path=path):
                status, answer = request("POST", path, body, server=server)
                self.assertEqual(status, 422, answer)
                self.assertEqual(answer["error"], NOT_NUMBERS)
        self.assertEqual(request("GET", "/models", server=server)[0], 200)


class HostilePictureTest(unittest.TestCase):
    """Picture files sent to the page that would start a program or take much memory."""

    def test_an_eps_picture_is_refused_by_name_and_starts_no_program(self):
        folder, marker = fake_ghostscript(os.path.join(TEMP, "fake_gs"))
        eps = base64.b64encode(EPS_SEVEN).decode()
        # Pillow looks for gs once a process: forgetting it makes it find the fake one first.
        with mock.patch.dict(os.environ, {"PATH": folder + os.pathsep + os.environ["PATH"]}), \
                mock.patch.object(EpsImagePlugin, "gs_binary", None):
            for route, body, expected in [
                    ("/predict", {"picture": eps}, 422),
                    ("/predict", {"picture": "data:application/postscript;base64," + eps}, 422),
                    ("/collect", {"label": 7, "picture": eps}, 400)]:
                with self.subTest(route=route, body=str(body)[:40]):
                    status, answer = request("POST", route, body)
                    self.assertFalse(os.path.exists(marker), "a program was started")
                    self.assertEqual(status, expected, answer)
                    self.assertEqual(len(answer["error"].splitlines()), 1)
                    if route == "/predict":
                        self.assertIn("picture: EPS files are not read, only PNG", answer["error"])

    def test_a_picture_of_more_pixels_than_a_drawing_is_refused_before_decoding(self):
        path = os.path.join(TEMP, "deep.png")
        png_header_only(path, 4096, 4096, bit_depth=16, colour_type=6)  # 16-bit RGBA
        with open(path, "rb") as file:
            picture = base64.b64encode(file.read()).decode()
        with mock.patch("PIL.ImageFile.ImageFile.load", side_effect=AssertionError("decoded")):
            status, answer = request("POST", "/predict", {"picture": picture})
        self.assertEqual(status, 422, answer)
        self.assertIn("too many pixels for a picture of one digit (4096 x 4096 pixels, at most "
                      "1,000,000 are read)", answer["error"])
        # A phone's photo is decoded at a quarter of its size instead, and answered.
        buffer = io.BytesIO()
        draw_digit((4000, 3000), (1500, 500, 2500, 2500), mode="L").save(buffer, format="JPEG")
        status, answer = request("POST", "/predict",
                                 {"picture": base64.b64encode(buffer.getvalue()).decode()})
        self.assertEqual(status, 200, answer)


class GuardTest(unittest.TestCase):
    """Who may use the page: requests to its own address, POSTs from its own page as JSON, and
    the token when it has one; no frames, no silent clients."""

    def test_a_request_naming_another_host_is_refused(self):
        port = SERVER.server_address[1]
        for host, expected in ((f"127.0.0.1:{port}", "200"), (f"localhost:{port}", "200"),
                               (f"evil.example:{port}", "403"), ("127.0.0.1", "403"),
                               (f"127.0.0.1:{port + 1}", "403"), ("", "403")):
            with self.subTest(host=host):
                reply = raw_reply(SERVER, f"GET /models HTTP/1.1\r\nHost: {host}\r\n"
                                          "Connection: close\r\n\r\n".encode())
                self.assertEqual(reply.split()[1], expected, reply[:300])
        self.assertTrue(host_names_this_server("192.168.1.20:8000", "0.0.0.0", 8000))
        self.assertTrue(host_names_this_server(f"{socket.gethostname()}:8000", "0.0.0.0", 8000))
        self.assertFalse(host_names_this_server("rebound.example:8000", "0.0.0.0", 8000))
        self.assertFalse(host_names_this_server("192.168.1.20:8000", "127.0.0.1", 8000))

    def test_a_post_from_another_site_or_not_json_is_refused_and_nothing_written(self):
        server = start_server(routes.load_models([MODEL], "cpu"),
                              collect=os.path.join(TEMP, "collect_guarded"))
        port = server.server_address[1]
        body = json.dumps({"label": 1, "pixels": stroke_pixels(1)})
        for headers, expected in [({"Origin": "http://evil.example", "Content-Type": "text/plain"}, 403),
                                  ({"Origin": "null", "Content-Type": "application/json"}, 403),
                                  ({"Origin": f"http://localhost:{port + 1}",
                                    "Content-Type": "application/json"}, 403),
                                  ({"Content-Type": "text/plain"}, 415),
                                  ({"Content-Type": "application/x-www-form-urlencoded"}, 415),
                                  ({"Content-Type": ""}, 415)]:
            with self.subTest(headers=headers):
                status, answer = request("POST", "/collect", body, headers=headers, server=server)
                self.assertEqual(status, expected, answer)
                self.assertEqual(len(answer["error"].splitlines()), 1)
        self.assertFalse(os.path.exists(os.path.join(TEMP, "collect_guarded", "1")))  # nothing
        status, answer = request("POST", "/collect", body, server=server, headers={
            "Origin": f"http://127.0.0.1:{port}", "Content-Type": "application/json; charset=utf-8"})
        self.assertEqual(status, 200, answer)  # the page itself

    def test_with_a_token_every_route_needs_it(self):
        server = start_server(routes.load_models([MODEL], "cpu"), token="s3cret-token")
        for path in ("/", "/models", "/kernels?model=0", "/?token=wrong", "/models?token="):
            with self.subTest(path=path):
                status, answer = request("GET", path, server=server)
                self.assertEqual(status, 403)
                self.assertIn("needs its token", answer["error"])
        status, _ = request("POST", "/predict", {"pixels": stroke_pixels(1)}, server=server)
        self.assertEqual(status, 403)
        self.assertEqual(request("GET", "/?token=s3cret-token", server=server)[0], 200)
        status, answer = request("GET", "/kernels?model=0&token=s3cret-token", server=server)
        self.assertEqual((status, answer["model"]), (200, "shapes.pt"))
        bearer = {"Authorization": "Bearer s3cret-token"}
        self.assertEqual(request("GET", "/models", headers=bearer, server=server)[0], 200)
        status, answer = request("POST", "/predict", {"pixels": stroke_pixels(1)}, headers=bearer,
                                 server=server)
        self.assertEqual(status, 200, answer)

    def test_beyond_loopback_the_address_printed_carries_a_token(self):
        served = []

        class Stopped:  # stands in for the server: listens nowhere, stops at once
            server_address = ("192.0.2.7", 8000)

            def serve_forever(self):
                raise KeyboardInterrupt

            def server_close(self):
                pass

        def fake_server(*arguments, token=None, **settings):
            served.append(token)
            return Stopped()

        with mock.patch.object(draw, "make_server", side_effect=fake_server):
            code, out, _ = run_script(draw, [MODEL, "--host", "192.0.2.7", "--device", "cpu"])
            self.assertEqual(code, 130)
            self.assertIn(f"Open http://192.0.2.7:8000/?token={served[0]} (Ctrl-C", out)
            self.assertGreaterEqual(len(served[0]), 20)
            code, out, _ = run_script(draw, [MODEL, "--host", "127.0.0.1", "--device", "cpu"])
        self.assertIsNone(served[1])  # loopback: this computer only, no token
        self.assertNotIn("token", out)

    def test_the_page_cannot_be_framed_and_a_silent_client_is_let_go(self):
        status, _ = request("GET", "/")
        connection = http.client.HTTPConnection("127.0.0.1", SERVER.server_address[1], timeout=30)
        connection.request("GET", "/")
        response = connection.getresponse()
        response.read()
        connection.close()
        self.assertIn("frame-ancestors 'none'", response.getheader("Content-Security-Policy"))
        self.assertEqual(response.getheader("X-Frame-Options"), "DENY")
        server = start_server(routes.load_models([MODEL], "cpu"))
        server.RequestHandlerClass.idle_timeout = 0.5  # instead of page.server's IDLE_TIMEOUT, 20 s
        reply = raw_reply(server, f"GET /models HTTP/1.1\r\nHost: 127.0.0.1:"
                                  f"{server.server_address[1]}\r\n\r\n".encode())  # kept open
        # Answered, then closed by the server (raw_reply reads until then) without a word more.
        self.assertTrue(reply.startswith("HTTP/1.1 200"), reply[:300])
        self.assertEqual(reply.count("HTTP/1.1"), 1)

    def test_a_request_slower_than_its_deadline_is_answered_408_and_let_go(self):
        server = start_server(routes.load_models([MODEL], "cpu"))
        server.RequestHandlerClass.request_deadline = 1  # instead of page.server's REQUEST_DEADLINE, 30 s
        post = (f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{server.server_address[1]}\r\n"
                "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{").encode()
        for what, head, piece in (("header lines", b"GET /models HTTP/1.1\r\n", b"X-Slow: 1\r\n"),
                                  ("a body", post, b" "), ("a body that stops", post, b"")):
            with self.subTest(what):
                reply, sent = trickle(server, head, piece)
                self.assertLess(sent, 50)  # cut off, not served for as long as it likes
                self.assertTrue(reply.startswith("HTTP/1.1 408"), reply[:300])
                self.assertIn("\r\nConnection: close\r\n", reply)
                self.assertIn("did not arrive whole within 1 s", reply)

    def test_the_standard_librarys_own_refusals_are_the_pages_json_with_its_headers(self):
        port = SERVER.server_address[1]
        for status, head in (("414", b"GET /" + b"a" * 65532),  # a request line over 65,536 bytes
                             ("431", b"GET / HTTP/1.1\r\nX: " + b"a" * 65534),  # a header line so
                             ("501", f"PUT / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()),
                             ("400", b"GARBAGE\r\n"), ("400", b"GET / HTTP/x\r\n"),
                             ("403", b"GET /\r\n\r\n")):  # HTTP/0.9, whose answers have no headers
            with self.subTest(head=head[:20]):
                answer_head, _, body = raw_reply(SERVER, head).partition("\r\n\r\n")
                status_line, *lines = answer_head.split("\r\n")
                self.assertEqual(status_line.split()[1], status, answer_head)
                headers = dict(line.split(": ", 1) for line in lines)
                self.assertEqual({name: headers.get(name) for name in SECURITY_HEADERS},
                                 SECURITY_HEADERS)
                self.assertEqual((headers["Content-Type"], headers["Connection"]),
                                 ("application/json", "close"))
                self.assertEqual(len(json.loads(body)["error"].splitlines()), 1)

    def test_a_client_that_resets_its_connection_leaves_no_traceback(self):
        server = start_server(routes.load_models([MODEL], "cpu"))
        served, shutdown_request = threading.Event(), server.shutdown_request

        def shut_down_and_tell(connection):  # the server's last step with a connection
            shutdown_request(connection)
            served.set()

        server.shutdown_request = shut_down_and_tell
        body = json.dumps({"pixels": stroke_pixels(1)})
        head = (f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{server.server_address[1]}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
        with contextlib.redirect_stderr(io.StringIO()) as err:
            connection = socket.create_connection(server.server_address, timeout=30)
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            connection.sendall((head + body).encode())
            connection.close()  # unread, with a reset: as a tab closed mid-answer does
            self.assertTrue(served.wait(timeout=30))
        self.assertEqual(err.getvalue(), "")
        self.assertEqual(request("GET", "/models", server=server)[0], 200)  # still serving


class CollectTest(unittest.TestCase):
    """POST /collect: the class's drawings saved as labelled pictures, never overwriting; each
    test with a server and a folder of its own."""

    def collect_server(self, name, **settings):
        folder = collect_folder(os.path.join(TEMP, name))  # made, as --collect makes it
        return start_server(routes.load_models([MODEL], "cpu"), collect=folder, **settings), folder

    def test_a_drawing_is_saved_as_drawn_under_its_label_with_a_new_name_each_time(self):
        server, collected = self.collect_server("collect_new_names")
        folder = os.path.join(collected, "4")
        pixels = stroke_pixels(4)
        status, first = request("POST", "/collect", {"label": 4, "pixels": pixels}, server=server)
        self.assertEqual((status, first["saved"]), (200, os.path.join("4", "0000.png")), first)
        with Image.open(os.path.join(folder, "0000.png")) as saved:  # as drawn, not prepared
            self.assertEqual((saved.size, saved.mode), ((280, 280), "L"))
            self.assertEqual(torch.tensor(list(saved.tobytes())).view(280, 280).tolist(), pixels)
        with open(os.path.join(folder, "0001.png"), "wb") as file:
            file.write(b"put here by hand")
        status, second = request("POST", "/collect", {"label": 4, "pixels": stroke_pixels(0)},
                                 server=server)
        self.assertEqual(second["saved"], os.path.join("4", "0002.png"))  # 0001 is taken
        with open(os.path.join(folder, "0001.png"), "rb") as file:
            self.assertEqual(file.read(), b"put here by hand")  # never overwritten
        self.assertEqual(second["counts"], [0, 0, 0, 0, 3, 0, 0, 0, 0, 0])  # the hand-made one too
        self.assertEqual(request("GET", "/models", server=server)[1]["collect"]["counts"],
                         second["counts"])
        self.assertEqual([name for name in os.listdir(folder) if name.endswith(".tmp")], [])

    def test_bad_labels_pictures_and_folders_are_refused(self):
        server, collected = self.collect_server("collect_refusals")
        one, white = stroke_pixels(1), [[255] * 40 for _ in range(40)]
        for body, expected in [({"label": 10, "pixels": one}, 400), ({"label": -1, "pixels": one}, 400),
                               ({"label": "3", "pixels": one}, 400), ({"label": True, "pixels": one}, 400),
                               ({"pixels": one}, 400), ({"label": 3}, 400),
                               ({"label": 3, "picture": png_base64(draw_shape(3, torch.Generator()))}, 400),
                               ({"label": 3, "pixels": [[0, 999]]}, 400),
                               ({"label": 3, "pixels": white}, 422)]:
            with self.subTest(body=str(body)[:50]):
                status, answer = request("POST", "/collect", body, server=server)
                self.assertEqual(status, expected, answer)
                self.assertEqual(len(answer["error"].splitlines()), 1)
        # A digit's folder that cannot be made (a file in its place): 403, and nothing written.
        with open(os.path.join(collected, "7"), "w") as file:
            file.write("not a folder")
        status, answer = request("POST", "/collect", {"label": 7, "pixels": one}, server=server)
        self.assertEqual(status, 403, answer)
        self.assertIn("cannot save into", answer["error"])
        self.assertEqual(sorted(os.listdir(collected)), ["7"])
        status, answer = request("POST", "/collect", {"label": 1, "pixels": one}, server=EDITED_SERVER)
        self.assertEqual(status, 404)  # off unless draw.py --collect DIR
        self.assertIn("--collect DIR", answer["error"])
        self.assertIsNone(request("GET", "/models", server=EDITED_SERVER)[1]["collect"])

    def test_without_hard_links_saves_still_never_overwrite(self):
        server, collected = self.collect_server("collect_on_a_usb_stick")
        with mock.patch("os.link", side_effect=PermissionError(1, "Operation not permitted")):
            names = [request("POST", "/collect", {"label": 2, "pixels": stroke_pixels(2)},
                             server=server)[1]["saved"] for _ in range(3)]
        self.assertEqual(names, [os.path.join("2", f"{number:04d}.png") for number in range(3)])
        self.assertEqual(sorted(os.listdir(os.path.join(collected, "2"))),
                         ["0000.png", "0001.png", "0002.png"])

    def test_a_digit_takes_at_most_the_limit(self):
        server, collected = self.collect_server("collect_limit", collect_limit=2)
        statuses = [request("POST", "/collect", {"label": 5, "pixels": stroke_pixels(5)},
                            server=server)[0] for _ in range(3)]
        self.assertEqual(statuses, [200, 200, 409])
        status, answer = request("POST", "/collect", {"label": 5, "pixels": stroke_pixels(5)},
                                 server=server)
        self.assertIn("holds 2 pictures already, the most this page saves of one digit", answer["error"])
        self.assertEqual(len(os.listdir(os.path.join(collected, "5"))), 2)
        self.assertEqual(request("POST", "/collect", {"label": 6, "pixels": stroke_pixels(6)},
                                 server=server)[0], 200)  # another digit has room
        self.assertEqual(request("GET", "/models", server=server)[1]["collect"]["limit"], 2)

    def test_a_saved_drawing_is_at_most_the_canvas_and_a_bounded_png(self):
        server, collected = self.collect_server("collect_bounded")
        one = stroke_pixels(1)  # 280 x 280, as the page's canvas sends it
        noise = torch.randint(0, 256, (280, 280), generator=torch.Generator().manual_seed(0))
        for pixels, expected, message in [
                ([row + row[:1] for row in one], 400, "at most 280 x 280"),
                (one + one[:1], 400, "at most 280 x 280"),
                (noise.tolist(), 413, "bytes as a PNG, at most 16,384 are saved")]:
            with self.subTest(shape=(len(pixels), len(pixels[0])), expected=expected):
                status, answer = request("POST", "/collect", {"label": 8, "pixels": pixels},
                                         server=server)
                self.assertEqual(status, expected, answer)
                self.assertIn(message, answer["error"])
        self.assertEqual(os.listdir(collected), [])  # nothing written
        status, answer = request("POST", "/collect", {"label": 8, "pixels": one}, server=server)
        self.assertEqual(status, 200, answer)
        with contextlib.redirect_stdout(io.StringIO()):  # read as train.py --extra-images-dir does
            _, labels = pictures.read_labelled_folder(collected)
        self.assertEqual(labels.tolist(), [8])

    def test_a_class_saving_at_once_loses_and_shares_no_name(self):
        server, collected = self.collect_server("collect_class")
        drawings = {label: [row[::2] for row in stroke_pixels(label)[::2]] for label in range(10)}
        results, lock = [], threading.Lock()

        def student(number):  # 20 saves, one after another, as fast as answers come
            for save in range(20):
                label = (number + save) % 10
                status, answer = request("POST", "/collect", {"label": label,
                                                              "pixels": drawings[label]},
                                         server=server)
                with lock:
                    results.append((status, answer.get("saved")))

        at_once(student, 30, timeout=300)
        self.assertEqual(len(results), 600)
        self.assertEqual({status for status, _ in results}, {200})
        names = [name for _, name in results]
        self.assertEqual(len(set(names)), 600)  # no name given twice
        on_disk = [os.path.join(digit, name) for digit in sorted(os.listdir(collected))
                   for name in os.listdir(os.path.join(collected, digit))]
        self.assertEqual(sorted(on_disk), sorted(names))  # and no file lost or extra
        for path in on_disk:
            with Image.open(os.path.join(collected, path)) as picture:
                picture.load()  # every one a whole, readable picture
                self.assertEqual(picture.size, (140, 140))
        counts = request("GET", "/models", server=server)[1]["collect"]["counts"]
        self.assertEqual(counts, [len(os.listdir(os.path.join(collected, str(digit))))
                                  for digit in range(10)])

    def test_the_page_names_folders_by_their_own_name_never_a_path_of_this_machine(self):
        # --collect and --data-dir as paths of this machine, the folder given as "collect_named/..".
        # The path ends in a separator, as a shell's completion writes it.
        collected = collect_folder(os.path.join(TEMP, "collect_named", "class", "..", ""))
        with contextlib.redirect_stdout(io.StringIO()):
            sets = routes.load_sets(os.path.join(TEMP, "no_mnist_here"), FOLDER)
        server = start_server(routes.load_models([MODEL], "cpu"), *sets, collect=collected,
                              collect_limit=1)
        body = {"label": 5, "pixels": stroke_pixels(5)}
        answers = [request("GET", "/models", server=server)]
        answers += [request("POST", "/collect", body, server=server) for _ in range(2)]  # 200, 409
        with open(os.path.join(collected, "7"), "w") as file:
            file.write("not a folder")  # 403: cannot be made
        answers.append(request("POST", "/collect", {**body, "label": 7}, server=server))
        with mock.patch("os.fsync", side_effect=OSError(28, "No space left on device")):
            answers.append(request("POST", "/collect", {**body, "label": 3}, server=server))  # 403
        self.assertEqual([status for status, _ in answers], [200, 200, 409, 403, 403])
        for path in {TEMP, os.path.realpath(TEMP)}:
            self.assertNotIn(path, json.dumps(answers))
        catalogue = answers[0][1]
        self.assertEqual(catalogue["collect"]["folder"], "collect_named")
        self.assertEqual([s["name"] for s in catalogue["sets"]], ["class_digits"])
        self.assertTrue(catalogue["missing"].startswith("No MNIST in no_mnist_here/MNIST/raw: "))
        self.assertTrue(answers[2][1]["error"].startswith("collect_named/5 holds 1 pictures"))
        self.assertEqual(answers[4][1]["error"], "cannot save: collect_named/3/0000.png: could "
                                                 "not be written (No space left on device)")

    def test_a_collect_folder_that_cannot_be_made_is_one_line(self):
        blocker = os.path.join(TEMP, "a_file")
        with open(blocker, "w") as file:
            file.write("x")
        code, _, err = run_script(draw, [MODEL, "--collect", os.path.join(blocker, "digits")])
        self.assertEqual(code, 2)
        self.assertNotIn("Traceback", err)
        self.assertIn(": error: argument --collect: cannot make folder",  # usage, then one line
                      err.strip().splitlines()[-1])
        self.assertTrue(err.strip().splitlines()[-1].endswith("(Not a directory)"), err)


class CommandLineTest(unittest.TestCase):
    def test_port_in_use_is_one_line(self):
        port = str(SERVER.server_address[1])
        result = run_subprocess("draw.py", MODEL, "--port", port, "--device", "cpu")
        self.assertEqual(result.returncode, 1)
        self.assertEqual(result.stderr.strip(),
                         f"error: port {port} is already in use; choose another with --port")

    def test_bad_port_and_checkpoint(self):
        code, _, err = run_script(draw, [MODEL, "--port", "70000"])
        self.assertEqual(code, 2)
        self.assertIn("argument --port: must be a port number", err)
        code, _, err = run_script(draw, [os.path.join(TEMP, "missing.pt"), "--port", "0"])
        self.assertEqual(code, 1)
        self.assertIn("no such file", err)

    def test_ctrl_c_stops_with_one_line_and_130(self):
        # 127.0.0.2 is loopback too: another address than the default, still only this machine.
        process = start_script("draw.py", MODEL, "--port", "0", "--host", "127.0.0.2", "--device", "cpu")
        device = process.stdout.readline()
        address = process.stdout.readline()  # loopback: no token needed, none printed
        self.assertRegex(device, r"^Device: cpu \(\d+ threads?\)$")
        self.assertRegex(address, r"^Open http://127\.0\.0\.2:\d+/ \(Ctrl-C stops the server\)$")
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
        self.assertEqual(process.returncode, 130)
        self.assertEqual(err.strip(), "Stopped (Ctrl-C).")


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
# What is hard to read on a phone, each as a line: anything past the screen's edge, a count of
# the confusion matrix on more than one line (its corner on more than two), a word of a stage's
# title cut across two lines, a label of the training curves under 10 CSS pixels.
PHONE_PROBLEMS = """
const problems = [], width = document.documentElement.clientWidth, range = document.createRange();
const lines = (target) => new Set([...target.getClientRects()].map((box) => Math.round(box.top))).size;
for (const element of document.querySelectorAll("body *")) {
  const box = element.getBoundingClientRect();
  if (box.width > 0 && (box.left < -0.5 || box.right > width + 0.5)) {
    problems.push(`${element.tagName}#${element.id}.${element.className} spans ${box.left} to ${box.right}`);
  }
}
for (const cell of document.querySelectorAll("#confusion td")) {
  range.selectNodeContents(cell);
  if (lines(range) > 1) problems.push(`the count ${cell.textContent} takes ${lines(range)} lines`);
}
const corner = document.querySelector("#confusion th");
range.selectNodeContents(corner);
if (lines(range) > 2) problems.push(`the corner ${corner.textContent} takes ${lines(range)} lines`);
const titles = document.createTreeWalker(document.getElementById("stages"), NodeFilter.SHOW_TEXT);
for (let text = titles.nextNode(); text; text = titles.nextNode()) {
  if (!text.parentElement.closest("h2")) continue;
  for (const word of text.textContent.matchAll(/\\S+/g)) {
    range.setStart(text, word.index);
    range.setEnd(text, word.index + word[0].length);
    if (lines(range) > 1) problems.push(`${word[0]} is cut across lines`);
  }
}
const sizes = [], fillText = CanvasRenderingContext2D.prototype.fillText;
CanvasRenderingContext2D.prototype.fillText = function (...text) {  // the size each label is shown at
  const shown = this.canvas.getBoundingClientRect().width / this.canvas.width;
  if (this.canvas.id === "curves") sizes.push(parseFloat(this.font) * this.getTransform().a * shown);
  return fillText.apply(this, text);
};
showTrainingStep();
CanvasRenderingContext2D.prototype.fillText = fillText;
if (sizes.length === 0 || Math.min(...sizes) < 10) problems.push(`curve labels of ${sizes} pixels`);
return problems;
"""


def thousands_set(root):
    """The shapes' test set of root 50 times over, 10,000 images as MNIST's test set: the
    confusion matrix then holds counts of four digits."""
    images, labels = data.load_mnist(root, train=False)
    return routes.Images("MNIST-sized set", images.repeat(50, 1, 1, 1), labels.repeat(50))


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
        saved = sorted(os.listdir(os.path.join(TEMP, "collected", "1")))
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
        self.wait_for(lambda: len(self.driver.find_elements("css selector", "#kernels canvas")) == 6 + 96,
                      "the kernels of the untrained network")
        self.assertIn("had to pick one of ten anyway", self.text("confidence"))  # never sure
        Select(self.driver.find_element("id", "model")).select_by_index(0)
        self.wait_for(lambda: "shapes.pt" in self.text("status"), "the trained network again")
        self.wait_for_answer("1")


if __name__ == "__main__":
    unittest.main()
