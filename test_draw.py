"""Tests of draw.py: the server's routes and its answers to bad requests, and the page in a real
headless Chromium (skipped, with the reason, only where no browser and driver are installed).

Usage: python -m unittest -v test_draw   (DRAW_SCREENSHOT=docs/draw_page.png saves the screenshot)
"""
import base64
import http.client
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import unittest

import torch
from PIL import Image

import data
import draw
import train
from fixtures import (
    HERE,
    draw_shape,
    make_shapes_mnist,
    png_base64,
    run_script,
    run_subprocess,
    stroke_pixels,
    temporary_folder,
)

CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"


def setUpModule():
    global TEMP, MODEL, SERVER, ORIGIN
    TEMP = temporary_folder()
    shapes = make_shapes_mnist(os.path.join(TEMP, "shapes"))
    MODEL = os.path.join(TEMP, "shapes.pt")
    code, _, err = run_script(train, ["--data-dir", shapes, "--device", "cpu", "--epochs", "4",
                                      "--out", MODEL])
    assert code == 0, err
    SERVER = draw.make_server(draw.load_models([MODEL], "cpu"), "127.0.0.1", 0, "cpu")
    threading.Thread(target=SERVER.serve_forever, daemon=True).start()
    unittest.addModuleCleanup(SERVER.server_close)
    unittest.addModuleCleanup(SERVER.shutdown)  # cleanups run last first: shut down, then close
    ORIGIN = f"http://127.0.0.1:{SERVER.server_address[1]}"


def request(method, path, body=None, headers=None):
    """Send one request to the test server; return (status, decoded JSON or raw bytes)."""
    connection = http.client.HTTPConnection("127.0.0.1", SERVER.server_address[1], timeout=30)
    try:
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        content = response.read()
    finally:
        connection.close()
    if response.getheader("Content-Type") == "application/json":
        return response.status, json.loads(content)
    return response.status, content


class ServerTest(unittest.TestCase):
    def test_page_and_model_list(self):
        status, page = request("GET", "/")
        self.assertEqual(status, 200)
        self.assertIn(b'<canvas id="draw"', page)
        self.assertIn(b'id="prediction"', page)
        self.assertNotIn(b"http://", page.replace(b"http://127.0.0.1", b""))  # nothing from elsewhere
        self.assertNotIn(b"https://", page)
        self.assertEqual(request("GET", "/models"), (200, {"models": ["shapes.pt", draw.UNTRAINED]}))

    def test_drawing_gives_prediction_and_every_layer_with_the_models_shapes(self):
        status, answer = request("POST", "/predict", {"model": 0, "pixels": stroke_pixels(1)})
        self.assertEqual(status, 200, str(answer)[:300])
        self.assertEqual(answer["prediction"], 1)
        self.assertAlmostEqual(sum(answer["probabilities"]), 1.0, places=4)
        self.assertEqual([(layer["name"], layer["shape"]) for layer in answer["layers"]],
                         [("convolution1 + ReLU", [6, 24, 24]), ("pool", [6, 12, 12]),
                          ("convolution2 + ReLU", [16, 8, 8]), ("pool", [16, 4, 4]),
                          ("fc1", [30]), ("softmax of fc2", [10])])
        for layer in answer["layers"]:
            self.assertEqual(len(layer["values"]), math.prod(layer["shape"]), layer["name"])
        self.assertEqual(answer["input"]["shape"], [1, 28, 28])
        # The layers are the model's own: the same input through model.py gives the same output.
        model = draw.load_models([MODEL], "cpu")[0][1]
        digit = data.prepare_digit(Image.fromarray(
            torch.tensor(stroke_pixels(1), dtype=torch.uint8).numpy(), mode="L"))
        with torch.no_grad():
            expected = model(digit[None]).softmax(dim=1)[0]
        torch.testing.assert_close(torch.tensor(answer["probabilities"]), expected,
                                   atol=1e-5, rtol=0)

    def test_uploaded_picture_is_prepared_as_test_py_prepares_it(self):
        picture = draw_shape(0, torch.Generator().manual_seed(3))
        status, answer = request("POST", "/predict", {"model": 0, "picture": "data:image/png;base64,"
                                                      + png_base64(picture)})
        self.assertEqual(status, 200, str(answer)[:300])
        self.assertEqual(answer["prediction"], 0)
        expected = data.to_pixels(data.prepare_digit(picture)).flatten()
        torch.testing.assert_close(torch.tensor(answer["input"]["values"]), expected, atol=1e-4, rtol=0)

    def test_kernels_of_each_model(self):
        status, answer = request("GET", "/kernels?model=1")
        self.assertEqual(status, 200)
        self.assertEqual(answer["model"], draw.UNTRAINED)
        self.assertEqual([(k["name"], k["shape"]) for k in answer["kernels"]],
                         [("convolution1", [6, 1, 5, 5]), ("convolution2", [16, 6, 5, 5])])
        self.assertEqual(len(answer["kernels"][1]["values"]), 16 * 6 * 5 * 5)

    def test_every_bad_request_is_a_4xx_with_a_one_line_message(self):
        white = [[255] * 50 for _ in range(50)]
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

    def raw_reply(self, request_head):
        """Send request_head alone on a raw socket; return all the server answers until it closes."""
        with socket.create_connection(SERVER.server_address, timeout=30) as connection:
            connection.sendall(request_head)
            reply = b""
            while chunk := connection.recv(65536):
                reply += chunk
        return reply.decode()

    def test_body_size_cap_and_missing_length(self):
        # 3 MB announced but not sent: refused from the header alone, the connection closed.
        reply = self.raw_reply(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 3000000\r\n\r\n")
        self.assertTrue(reply.startswith("HTTP/1.0 413"), reply)
        self.assertIn("at most 2,097,152", reply)
        reply = self.raw_reply(b"POST /predict HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(reply.startswith("HTTP/1.0 411"), reply)

    def test_concurrent_requests_all_answered_correctly(self):
        drawings = {label: stroke_pixels(label) for label in (0, 1)}
        results, lock = [], threading.Lock()

        def client(number):
            for index in range(12):  # bounded: 8 threads x 12 requests
                label = (number + index) % 2
                status, answer = request("POST", "/predict", {"model": 0, "pixels": drawings[label]})
                with lock:
                    results.append((status, answer.get("prediction"), label))

        threads = [threading.Thread(target=client, args=(number,)) for number in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        self.assertEqual(len(results), 96)
        self.assertEqual([(status, predicted) for status, predicted, _ in results],
                         [(200, label) for _, _, label in results])


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
        process = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "draw.py"), MODEL, "--port", "0", "--host",
             "127.0.0.2", "--device", "cpu"], cwd=HERE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        warning = process.stdout.readline()
        address = process.stdout.readline()
        self.assertEqual(warning.strip(), "Listening on 127.0.0.2: anyone who can reach this "
                                          "address can use the page")
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


def browser_missing():
    """Why the browser test cannot run here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    for path in (CHROMEDRIVER, CHROMIUM):
        if not os.path.exists(path):
            return f"{path} is missing (apt-get install chromium chromium-driver)"
    return None


@unittest.skipIf(browser_missing(), browser_missing())
class BrowserTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,2600",
                         "--disable-dev-shm-usage"):
            options.add_argument(argument)
        options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
        cls.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)

    @classmethod
    def tearDownClass(cls):
        cls.driver.quit()

    def wait_for(self, condition, what, timeout=30):
        from selenium.webdriver.support.ui import WebDriverWait
        return WebDriverWait(self.driver, timeout).until(lambda driver: condition(), message=what)

    def text(self, element_id):
        return self.driver.find_element("id", element_id).text

    def stroke(self, points, kind="mouse"):
        """Draw one stroke through points (x, y in canvas pixels, 0..280) with pointer events."""
        from selenium.webdriver.common.actions.action_builder import ActionBuilder
        from selenium.webdriver.common.actions.interaction import POINTER_MOUSE, POINTER_PEN
        from selenium.webdriver.common.actions.pointer_input import PointerInput

        canvas = self.driver.find_element("id", "draw")
        builder = ActionBuilder(self.driver, mouse=PointerInput(
            POINTER_PEN if kind == "pen" else POINTER_MOUSE, kind))
        pointer = builder.pointer_action
        # Offsets count from the element's centre; the canvas shows 280 x 280 pixels.
        pointer.move_to(canvas, points[0][0] - 140, points[0][1] - 140)
        pointer.pointer_down()
        for x, y in points[1:]:
            pointer.move_to(canvas, x - 140, y - 140)
        pointer.pointer_up()
        builder.perform()

    def setUp(self):
        self.driver.get(ORIGIN + "/")
        self.wait_for(lambda: len(self.driver.find_elements("css selector", "#model option")) == 2,
                      "the model list to load")

    def tearDown(self):
        # Whatever each test did, no script failed and nothing was loaded from another host.
        severe = [entry["message"] for entry in self.driver.get_log("browser")
                  if entry["level"] == "SEVERE" and "/predict" not in entry["message"]]
        self.assertEqual(severe, [])  # no script error, no blocked load
        urls = [json.loads(entry["message"])["message"]["params"]["request"]["url"]
                for entry in self.driver.get_log("performance")
                if '"Network.requestWillBeSent"' in entry["message"]]
        self.assertTrue(urls)  # at least the page itself: the log works
        outside = [url for url in urls if not url.startswith((ORIGIN + "/", "data:", "blob:"))]
        self.assertEqual(outside, [])

    def test_a_mouse_stroke_and_a_pen_circle_are_read_with_every_layer_shown(self):
        self.stroke([(140, 40 + 10 * step) for step in range(21)])  # a 1: top to bottom
        self.wait_for(lambda: self.text("prediction") == "1", "the drawn 1 to be read as 1")
        shapes = [element.text for element in
                  self.driver.find_elements("css selector", "#layers .shape")]
        self.assertEqual(shapes, ["6 × 24 × 24", "6 × 12 × 12", "16 × 8 × 8", "16 × 4 × 4",
                                  "30", "10"])
        self.driver.find_element("id", "clear").click()
        self.assertEqual(self.text("prediction"), "?")
        circle = [(140 + 60 * math.sin(angle / 20 * 2 * math.pi),
                   140 - 95 * math.cos(angle / 20 * 2 * math.pi)) for angle in range(21)]
        self.stroke(circle, kind="pen")  # a 0, drawn with a pen
        self.wait_for(lambda: self.text("prediction") == "0", "the drawn 0 to be read as 0")

    def test_an_uploaded_picture_is_read_and_a_broken_one_is_one_line(self):
        upload = os.path.join(TEMP, "upload_one.png")
        draw_shape(1, torch.Generator().manual_seed(7)).save(upload)
        self.driver.find_element("id", "upload").send_keys(upload)
        self.wait_for(lambda: self.text("prediction") == "1", "the uploaded 1 to be read as 1")
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
        self.wait_for(lambda: self.text("prediction") == "1", "the scripted 1")
        self.assertLess(self.driver.execute_script(INK_PIXELS), 8000)  # Clear left nothing

    def test_switching_networks_updates_the_answer_and_the_kernels(self):
        from selenium.webdriver.support.ui import Select

        self.driver.execute_script(SCRIPTED_STROKE, [[140, 40 + 10 * step] for step in range(21)])
        self.wait_for(lambda: self.text("prediction") == "1", "the scripted 1")
        Select(self.driver.find_element("id", "model")).select_by_index(1)
        self.wait_for(lambda: draw.UNTRAINED in self.text("status"), "the untrained network to answer")
        self.wait_for(lambda: len(self.driver.find_elements("css selector", "#kernels canvas")) == 6 + 96,
                      "the kernels of the untrained network")
        Select(self.driver.find_element("id", "model")).select_by_index(0)
        self.wait_for(lambda: "shapes.pt" in self.text("status"), "the trained network again")
        self.wait_for(lambda: self.text("prediction") == "1", "the trained network's answer")
        screenshot = os.path.join(TEMP, "draw_page.png")
        self.driver.save_screenshot(screenshot)
        if os.environ.get("DRAW_SCREENSHOT"):
            shutil.copyfile(screenshot, os.environ["DRAW_SCREENSHOT"])


if __name__ == "__main__":
    unittest.main()
