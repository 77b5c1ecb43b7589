"""Tests of the exported file's guards (issue 37): a stop at any moment, unknown fields refused as
own keys, trainSteps bounded as trainRun, a network whose checkpoint cannot be written refused
before it trains, a picture's size read from its header; the file's answers next to the server's.

Usage: python -m unittest -v tests.test_file_guards
"""
import base64
import io
import json
import os
import struct
import unittest
import zlib

import torch
import torch.nn as nn
from PIL import Image, ImageDraw

from model import Net
from page import export, mnist_sets, routes
from page.routes import BadRequest
from page.server import answer as server_answer, parse_json
from tests.fixtures import browser, browser_missing, shapes_mnist, temporary_folder, wait_until
from tests.exported import CALL
from tools.benchmark_export import drawing_of

TRAIN_IMAGES = 200  # 4 steps of 50: a run ends in a moment
RUN = {"epochs": 1, "batchSize": 50, "lr": 0.01, "seed": 0}
# Fields that every JavaScript object has (the in operator finds them), each sent as a body's own.
INHERITED = ("__proto__", "constructor", "toString", "valueOf", "hasOwnProperty")
# The exported networks: the tutorial's, and with a buffer of each dtype (numpy has no bfloat16).
NETWORKS = {"tutorial": None, "complex": torch.complex64, "unsigned": torch.uint16, "brain": torch.bfloat16}


class BufferNet(nn.Module):
    """The tutorial's network with one more buffer, of a dtype no checkpoint the file writes holds."""

    def __init__(self, dtype):
        super().__init__()
        self.net = Net()
        self.register_buffer("extra", torch.arange(1, 4).to(dtype))

    def forward(self, x):
        return self.net(x)


def setUpModule():
    global TEMP, PAGE, FILE, EXPORTED
    TEMP, shapes = temporary_folder(), shapes_mnist()
    torch.manual_seed(0)
    networks = [routes.Network(name, (BufferNet(dtype) if dtype else Net()).eval())
                for name, dtype in NETWORKS.items()]
    PAGE = routes.Page(networks, "cpu", *routes.load_sets(shapes, None),
                       collect=os.path.join(TEMP, "mine"), collect_limit=1)
    FILE = os.path.join(TEMP, "page.html")
    export.export_page(PAGE, FILE, mnist_sets.mnist_sets(shapes, TRAIN_IMAGES))
    EXPORTED = export.export_data(PAGE)


def encoded(content):
    return "data:application/octet-stream;base64," + base64.b64encode(content).decode()


def saved(picture, form, **options):
    buffer = io.BytesIO()
    picture.save(buffer, form, **options)
    return bytearray(buffer.getvalue())


def declaring(form, width, height):
    """A small picture in form whose header says width x height: Pillow and the file read that
    size and refuse it before they decode a pixel (a decoder would find too few)."""
    picture = Image.new("RGB", (40, 40), "white")
    if form == "PNG":
        content = saved(picture, "PNG")
        content[16:24] = struct.pack(">II", width, height)
        content[29:33] = struct.pack(">I", zlib.crc32(bytes(content[12:29])))
    elif form == "JPEG":
        content = saved(picture, "JPEG")
        frame = content.index(b"\xff\xc0")
        content[frame + 5:frame + 9] = struct.pack(">HH", height, width)
    elif form == "GIF":
        content = saved(picture, "GIF")
        content[6:10] = struct.pack("<HH", width, height)
    elif form == "BMP":
        content = saved(picture, "BMP")
        content[18:26] = struct.pack("<ii", width, -height)  # rows from the top: a negative height
    elif form == "WEBP":  # lossy (VP8: 14 bits a side) and lossless (VP8L: 14 bits, minus one)
        content = saved(picture, "WEBP")
        content[26:30] = struct.pack("<HH", width, height)
    elif form == "WEBP-lossless":
        content = saved(picture, "WEBP", lossless=True)
        bits = struct.unpack("<I", content[21:25])[0] & ~((1 << 28) - 1)
        content[21:25] = struct.pack("<I", bits | (width - 1) | (height - 1) << 14)
    elif form == "TIFF":
        content = saved(picture, "TIFF")
        directory = struct.unpack("<I", content[4:8])[0]
        for entry in range(struct.unpack("<H", content[directory:directory + 2])[0]):
            at = directory + 2 + 12 * entry
            tag, kind = struct.unpack("<HH", content[at:at + 4])
            if tag in (256, 257):
                size = width if tag == 256 else height
                content[at + 8:at + 12] = struct.pack("<HH" if kind == 3 else "<I",
                                                      *((size, 0) if kind == 3 else (size,)))
    return bytes(content)


@unittest.skipIf(browser_missing(), browser_missing())
class FileGuardsTest(unittest.TestCase):
    """The exported file in headless Chromium, opened afresh for each test."""

    @classmethod
    def setUpClass(cls):
        cls.driver = browser()

    def setUp(self):
        self.driver.get("file://" + FILE)
        wait_until(self.driver, lambda: self.script("return document.body.dataset.ready === 'true'"),
                   "the file to be ready")

    def script(self, code, *arguments):
        return self.driver.execute_script(code, *arguments)

    def call(self, route, argument=""):
        return self.driver.execute_async_script(CALL, route, argument)

    def call_json(self, route, text):
        """route's reply to a body as JSON.parse makes it from text: a "__proto__" its own key."""
        return self.driver.execute_async_script(
            CALL.replace("window.routes[route](argument)", "window.routes[route](JSON.parse(argument))"),
            route, text)

    def same_refusal(self, route, body):
        """The file refuses body as the server does: the same status and line."""
        with self.assertRaises(BadRequest) as caught:
            server_answer(PAGE, "POST", f"/{route}", body)
        self.assertEqual(self.call(route, body), {"error": str(caught.exception),
                                                  "status": caught.exception.status}, route)

    def models(self):
        return self.call("models")["answer"]["models"]

    # ---- trainStop, at any moment
    def test_a_stop_at_any_moment_ends_the_run_and_its_network(self):
        before = self.models()
        stops = self.driver.execute_async_script("""
            const [run, batch, done] = arguments, ended = (error) => error.message;
            (async () => {
              // right after the call, while the training images decode
              const first = window.routes.trainRun(run).then(() => 'finished', ended);
              const replies = [window.routes.trainStop(), await first];
              // once the worker has trained: while the test set is read and the checkpoint written
              let stopped;
              replies.push(await window.routes.trainRun(run, (message) => {
                if (message.kind === 'done') stopped = window.routes.trainStop();
              }).then(() => 'finished', ended), stopped);
              // trainSteps, as soon as it is asked; then nothing is training
              const steps = window.routes.trainSteps(batch).then(() => 'finished', ended);
              replies.push(window.routes.trainStop(), await steps, window.routes.trainStop());
              return replies;
            })().then(done, (error) => done(String(error)));""", RUN, self.batch(1, 1))
        self.assertEqual(stops, [True, "training stopped", "training stopped", True,
                                 True, "training stopped", False])
        self.assertEqual(self.models(), before)  # no network of a run that was stopped

    def test_the_stop_button_while_it_starts_stops_it(self):
        self.script("document.getElementById('train-start').click(); "
                    "document.getElementById('train-stop').click();")
        wait_until(self.driver, lambda: self.script(
            "return document.getElementById('train-error').textContent") == "training stopped", "the stop")
        wait_until(self.driver, lambda: self.script(
            "return !document.getElementById('train-start').disabled"), "the panel to be ready again")
        self.assertEqual(self.models(), list(NETWORKS))

    # ---- bodies
    def batch(self, count, steps):
        return {"images": [[[0] * 28] * 28] * count, "labels": [3] * count, "lr": 0.01, "steps": steps}

    def test_every_unknown_field_is_refused_even_one_every_object_has(self):
        bodies = {"trainRun": RUN, "trainSteps": self.batch(1, 1), "checkpoint": {"model": 0},
                  "collect": {"label": 3, "pixels": [[0]]}}
        tried = 0
        for route, good in bodies.items():
            for key in INHERITED:
                with self.subTest(route=route, key=key):
                    reply = self.call_json(route, json.dumps({**good, key: 1}))
                    self.assertEqual(reply.get("status"), 400, reply)
                    self.assertNotIn("\n", reply["error"])
                    if route.startswith("train"):
                        self.assertIn(f"(not {key})", reply["error"])
                    tried += 1
        self.assertEqual(self.models(), list(NETWORKS))  # nothing trained
        # predict reads only the fields it takes, own ones: as the server, which ignores the rest.
        for key in INHERITED:
            body = {key: {"index": 0, "pixels": [[0]]}}
            with self.assertRaises(BadRequest) as caught:
                server_answer(PAGE, "POST", "/predict", body)
            self.assertEqual(self.call_json("predict", json.dumps(body)),
                             {"error": str(caught.exception), "status": caught.exception.status})
        self.assertEqual(tried, 20)

    def test_a_body_that_is_no_object_gets_the_servers_refusal(self):
        for text in ("[1, 2]", "null", "3", '"pixels"'):
            with self.assertRaises(BadRequest) as caught:
                parse_json(text.encode())
            for route in ("predict", "step", "attribution", "collect"):
                with self.subTest(route=route, body=text):
                    self.assertEqual(self.call_json(route, text),
                                     {"error": str(caught.exception), "status": caught.exception.status})

    def test_train_steps_is_bounded_as_train_run_with_the_exports_limits(self):
        limits = EXPORTED["limits"]["training"]
        self.assertEqual(limits, export.FILE_TRAINING)
        good = self.batch(2, 1)
        for field, value in [("lr", 1e308), ("lr", 0), ("lr", limits["lr"] * 1.5), ("weightDecay", 2),
                             ("weightDecay", -0.1), ("lr", "0.01"), ("weightDecay", None)]:
            with self.subTest(field=field, value=value):
                steps, run = (self.call(route, {**body, field: value})
                              for route, body in (("trainSteps", good), ("trainRun", RUN)))
                self.assertEqual(steps.get("status"), 400, steps)
                self.assertEqual(steps, run)  # the same line for the same value
                self.assertIn(str(limits[field]), steps["error"])
        for body, words in [({**good, "steps": limits["steps"] + 1},
                             f"steps must be a whole number from 1 to {limits['steps']}"),
                            (self.batch(limits["images"] + 1, 1),
                             f"images must be a list of 1 to {limits['images']} images")]:
            reply = self.call("trainSteps", body)
            self.assertEqual((reply.get("status"), reply.get("error")), (400, words))

    def test_train_steps_trains_off_the_page_which_keeps_answering(self):
        # The most it takes (256 images, 100 steps) froze the page for seconds: it runs in the
        # worker now, and a drawing is answered meanwhile; a second training waits its turn.
        limits = EXPORTED["limits"]["training"]
        reply = self.driver.execute_async_script("""
            const [body, drawing, done] = arguments, replies = [];
            let settled = false;
            const steps = window.routes.trainSteps(body).then(() => 'finished', (error) => error.message)
              .finally(() => { settled = true; });
            window.routes.trainRun({}).catch((error) => replies.push(error.message));
            window.routes.predict(drawing).then(async (answer) => {
              replies.push(answer.prediction >= 0, settled, window.routes.trainStop(), await steps);
              done(replies);
            });""", self.batch(limits["images"], limits["steps"]),
            {"pixels": drawing_of([[0] * 10 + [255] * 8 + [0] * 10] * 28), "attribution": False})
        self.assertEqual(reply, ["a network is training in this page already: wait for it to finish, or "
                                 "stop it", True, False, True, "training stopped"])

    def test_a_network_whose_checkpoint_cannot_be_written_is_refused_before_it_trains(self):
        for model, dtype in ((1, "complex64"), (2, "uint16")):
            reply = self.driver.execute_async_script("""
                const [body, done] = arguments, messages = [];
                window.routes.trainRun(body, (message) => messages.push(message.kind))
                  .then(() => done('finished'), (error) => done([error.status, error.message, messages]));""",
                {**RUN, "model": model})
            name = ("complex", "unsigned")[model - 1]
            self.assertEqual(reply, [422, f"network {model} ({name}) cannot be trained in this file: "
                                          f"its extra is {dtype}, which the checkpoint it writes cannot "
                                          "hold", []])
        self.assertEqual(self.models(), list(NETWORKS))
        # One of bfloat16 is exported (numpy has no such dtype) and written back as it was.
        written = torch.load(io.BytesIO(base64.b64decode(self.call("checkpoint", {"model": 3})["answer"])),
                             weights_only=True)
        self.assertTrue(torch.equal(written["model"]["extra"], PAGE.networks[3].model.extra))
        # A run that fails as it trains leaves no network either: a rate that diverges.
        reply = self.call("trainRun", {**RUN, "lr": 1})
        self.assertEqual(reply.get("status"), 422, reply)
        self.assertIn("training diverged", reply["error"])
        self.assertEqual(self.models(), list(NETWORKS))

    # ---- pictures, side by side with the server
    def test_a_picture_too_large_is_refused_from_its_header_as_the_server_refuses_it(self):
        self.script("window.decoded = 0; const decode = window.createImageBitmap; window.createImageBitmap"
                    " = (...given) => { window.decoded += 1; return decode(...given); };")
        for form in ("PNG", "JPEG", "GIF", "BMP", "WEBP", "WEBP-lossless", "TIFF"):
            with self.subTest(form=form):
                self.same_refusal("predict", {"picture": encoded(declaring(form, 12_000, 12_000)),
                                              "attribution": False})
        self.assertEqual(self.script("return window.decoded"), 0)  # not one decoded

    def test_a_picture_one_pixel_wide_or_high_is_read_as_the_server_reads_it(self):
        for size, line in (((1, 1_000_000), [(0, 300_000), (0, 700_000)]),
                           ((1_000_000, 1), [(200_000, 0), (300_000, 0)])):
            picture = Image.new("L", size, 255)
            ImageDraw.Draw(picture).line(line, fill=0)
            body = {"picture": encoded(saved(picture, "PNG")), "attribution": False}
            server = server_answer(PAGE, "POST", "/predict", dict(body))
            reply = self.call("predict", body)
            self.assertIn("answer", reply, reply)
            self.assertEqual(reply["answer"]["prediction"], server["prediction"], size)
            self.assertEqual(reply["answer"]["input"]["values"], server["input"]["values"], size)

    def test_a_picture_refused_gets_the_servers_line(self):
        white = Image.new("L", (50, 50), 255)
        damaged = saved(white, "PNG")
        at = damaged.index(b"IDAT") + 4
        damaged[at:at + 8] = b"\xff" * 8  # its pixels' zlib stream, broken: Pillow and Chromium fail
        for content in (saved(white, "PNG"), saved(white, "GIF"), b"hello, not a picture", damaged):
            with self.subTest(content=content[:12]):
                self.same_refusal("predict", {"picture": encoded(content)})
        self.same_refusal("predict", {"pixels": [[255] * 5] * 5})  # a drawing: no "picture: "

    # ---- the page's words
    def test_one_picture_and_one_drawing_are_said_in_the_singular(self):
        drawing = drawing_of([[0] * 12 + [255] * 4 + [0] * 12] * 28)
        self.assertIn("answer", self.call("collect", {"label": 3, "pixels": drawing}))
        reply = self.call("collect", {"label": 3, "pixels": drawing})
        self.assertEqual((reply["status"], reply["error"]),
                         (409, "mine/3 holds 1 picture already, the most this page saves of one digit "
                               "(draw.py --collect-limit)"))
        self.script("document.getElementById('collect-download').click()")
        self.assertEqual(self.script("return document.getElementById('collect-status').textContent"),
                         "Downloaded 1 drawing as mine.zip.")

    def test_the_kernels_of_a_layer_are_one_picture(self):
        # Thousands of canvases (pytorch/examples' Net has 32 x 64 kernels) made every answer's
        # redraw of the page slow: each layer's kernels are drawn as one canvas.
        sizes = self.script("return [...document.querySelectorAll('#kernels canvas')]"
                            ".map((canvas) => [canvas.width, canvas.height])")
        # convolution1: 6 kernels of 5 x 5 side by side, 12 pixels a weight, bordered, 3 apart;
        # convolution2: 16 rows of 6 kernels of 5 x 5, 6 pixels a weight.
        self.assertEqual(sizes, [[6 * 62 + 5 * 3, 62], [6 * 32 + 5 * 3, 16 * 32 + 15 * 3]])


if __name__ == "__main__":
    unittest.main()
