"""Tests of draw.py's server: the page and its answers (every layer, uploaded pictures, kernels),
every kind of bad request answered in one line, the size cap, connections and concurrent clients,
answers worked out a few at a time, overflowing weights, port in use, bad flags and Ctrl-C.

Usage: python -m unittest -v tests.test_server
"""
import base64
import http.client
import json
import math
import os
import signal
import socket
import threading
import unittest

import torch
from PIL import Image

import data
import draw
from extras import pictures
from model import Net
from page import routes
from page.server import NOT_NUMBERS
from tests.fixtures import (draw_shape, png_base64, run_script, served_shapes,
                            start_script, start_server, stroke_pixels, temporary_folder)
from tests.served import TUTORIAL_STAGES, at_once, raw_reply, request


def setUpModule():
    global TEMP, MODEL, SERVER
    shared = served_shapes()
    TEMP, MODEL, SERVER = temporary_folder(), shared.model, shared.server


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


class CommandLineTest(unittest.TestCase):
    def test_port_in_use_is_one_line(self):
        port = str(SERVER.server_address[1])
        code, _, err = run_script(draw, [MODEL, "--port", port, "--device", "cpu"])
        self.assertEqual(code, 1)
        self.assertEqual(err.strip(), f"error: port {port} is already in use; choose another with --port")

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
        if address.startswith("No MNIST in "):  # no ./files here: said, not an error
            address = process.stdout.readline()
        self.assertRegex(device, r"^Device: cpu \(\d+ threads?\)$")
        self.assertRegex(address, r"^Open http://127\.0\.0\.2:\d+/ \(Ctrl-C stops the server\)$")
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
        self.assertEqual(process.returncode, 130)
        self.assertEqual(err.strip(), "Stopped (Ctrl-C).")


if __name__ == "__main__":
    unittest.main()
