"""Tests of designing a network in the exported file (window.routes.design and modelSource, issue 35)
in headless Chromium, file://, nothing requested: the tutorial's layers give the tutorial's network as
the export gives it; a list nobody tuned has PyTorch's parameters, trains with trainRun, and its
model.py and model.pt, in a copy of the project, test, train and draw in PyTorch as the page showed;
impossible lists refused in one line naming the layer, nothing added.

Usage: python -m unittest -v tests.test_design
"""
import base64
import importlib.util
import io
import json
import os
import re
import shutil
import unittest

import torch

from data import load_mnist
from model import Net
from page import design, export, routes
from tests.exported import FileInBrowser, export_untrained, exported_data
from tests.fixtures import (COPY_SET, DRIVER, ROOT, browser_missing, run_in, shapes_mnist,
                            temporary_folder)

# A list of layers nobody tuned: every kind the panel offers but batch norm on maps, which the
# exercises' test trains.
UNTUNED = [{"type": "conv", "channels": 10, "kernel": 3, "padding": 1}, {"type": "relu"},
           {"type": "maxpool", "kernel": 2}, {"type": "conv", "channels": 20, "kernel": 3, "stride": 2},
           {"type": "tanh"}, {"type": "avgpool", "kernel": 2}, {"type": "flatten"},
           {"type": "dropout", "p": 0.3}, {"type": "linear", "features": 40}, {"type": "sigmoid"},
           {"type": "batchnorm"}, {"type": "linear", "features": 10}]
RUN = {"epochs": 1, "batchSize": 50, "lr": 0.01, "seed": 3}
# What the export says of a network, which a designed one must say alike.
SAID = ("{graph: n.graph, stages: n.stages, tensors: n.tensors, state: n.state, kernels: n.kernels, "
        "output: n.output}")
SAID_KEYS = ("graph", "stages", "tensors", "state", "kernels", "output")
CONV, RELU, FLAT = {"type": "conv", "channels": 6, "kernel": 5}, {"type": "relu"}, {"type": "flatten"}
TEN, TUTORIAL = {"type": "linear", "features": 10}, design.TUTORIAL
# Bodies routes.design refuses, and the words of each refusal: every kind of bound, shape and number.
IMPOSSIBLE = [
    ({"layers": [*TUTORIAL[:7], {"type": "conv", "channels": 4, "kernel": 5}, FLAT, TEN]},
     "conv3's 5 x 5 kernel does not fit its 4 x 4 input; use a smaller kernel or padding"),
    ({"layers": [CONV, {"type": "maxpool", "kernel": 7}, {"type": "maxpool", "kernel": 7}, FLAT, TEN]},
     "pool_1's 7 x 7 window does not fit its 3 x 3 input"),
    ({"layers": [CONV, RELU, TEN]},
     "fc1 takes a row of values, but its input is 6 x 24 x 24 maps; add a flatten before it"),
    ({"layers": [CONV, RELU]}, "the last layer, relu, gives 6 x 24 x 24 maps, not the 10 scores"),
    ({"layers": [*TUTORIAL[:-1], {"type": "linear", "features": 9}]},
     "the last layer, fc2, gives 9 values, not the 10 scores of the digits"),
    ({"layers": [FLAT, CONV, TEN]}, "convolution1 needs maps (channels x height x width), but after the "
                                    "flatten its input is a row of 784 values; move it before the flatten"),
    ({"layers": [*TUTORIAL[:9], *[RELU] * 7, TEN]},
     "layer 17 is one too many: a network designed here has at most 16 layers"),
    ({"layers": [{**CONV, "channels": 65}, FLAT, TEN]},
     "convolution1's channels must be a whole number from 1 to 64"),
    ({"layers": [{**CONV, "kernel": 8}, FLAT, TEN]},
     "convolution1's kernel must be a whole number from 1 to 7"),
    ({"layers": [FLAT, {"type": "linear", "features": 513}, TEN]},
     "fc1's features must be a whole number from 1 to 512"),
    ({"layers": [{"type": "conv", "channels": 64, "kernel": 1}, FLAT, {"type": "linear", "features": 512},
                 TEN]},
     "fc1 takes the network to 25,690,752 parameters, more than the 1,000,000 a network designed here "
     "may have; use fewer channels or features"),
    ({"layers": [{"type": "dense", "features": 10}]}, "layer 1's type \"dense\" is not one of conv, relu"),
    ({"layers": [CONV, "relu", FLAT, TEN]}, "layer 2 must be an object with a type, one of conv"),
    ({"layers": [{**CONV, "kernel": 2.5}, FLAT, TEN]}, "convolution1's kernel must be a whole number"),
    ({"layers": [{**CONV, "kernel": "3"}, FLAT, TEN]}, "convolution1's kernel must be a whole number"),
    ({"layers": [{**CONV, "stride": None}, FLAT, TEN]}, "convolution1's stride must be a whole number"),
    ({"layers": [{"type": "conv", "kernel": 3}, FLAT, TEN]},
     "convolution1 needs its channels, a whole number from 1 to 64"),
    ({"layers": [CONV, {"type": "maxpool"}, FLAT, TEN]}, "pool needs its kernel, a whole number from 1 to 7"),
    ({"layers": [CONV, {"type": "dropout", "p": 1.5}, FLAT, TEN]},
     "conv_dropout's p must be a number from 0 to 1"),
    ({"layers": [CONV, {"type": "relu", "inplace": True}, FLAT, TEN]}, "relu takes type only (not inplace)"),
    ({"layers": [{**CONV, "groups": 2}, FLAT, TEN]},
     "convolution1 takes type, channels, kernel, stride, padding only (not groups)"),
    ({"layers": []}, "layers must be a list of up to 16 layers (at least one)"),
    ({"layers": "conv"}, "layers must be a list of up to 16 layers"),
    ({}, "layers must be a list of up to 16 layers"),
    ({"layers": TUTORIAL, "seed": -1}, "seed must be a whole number from 0 to 4294967295"),
    ({"layers": TUTORIAL, "name": "mine"}, "send layers, seed only (not name)"),
    ([], "send layers, seed only"),
]


def setUpModule():
    global TEMP, SHAPES, FILE
    TEMP = temporary_folder()
    SHAPES = shapes_mnist()
    FILE = export_untrained(TEMP)


def module_of(path):
    """The module a model.py file defines."""
    spec = importlib.util.spec_from_file_location("designed_model", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def project_copy(folder, source, checkpoint):
    """The tutorial's files, extras/, page/ and draw.py copied into folder, with source as model.py
    and checkpoint's bytes (base64) as model.pt."""
    os.makedirs(folder)
    for name in [*COPY_SET, "draw.py"]:
        shutil.copy(os.path.join(ROOT, name), folder)
    for package in ("extras", "page"):
        shutil.copytree(os.path.join(ROOT, package), os.path.join(folder, package),
                        ignore=shutil.ignore_patterns("__pycache__"))
    with open(os.path.join(folder, "model.py"), "w", encoding="utf-8") as file:
        file.write(source)
    with open(os.path.join(folder, "model.pt"), "wb") as file:
        file.write(base64.b64decode(checkpoint))
    return folder


@unittest.skipIf(browser_missing(), browser_missing())
class DesignTest(FileInBrowser, unittest.TestCase):
    def open(self, path=None):
        super().open(path or FILE)

    def answer(self, route, body):
        reply = self.call(route, body)
        self.assertIn("answer", reply, reply)
        return reply["answer"]

    def said(self, model):
        return self.script(f"const n = offline.EXPORT.networks[{model}]; return {SAID};")

    def test_the_tutorials_layers_are_the_tutorials_network_as_the_export_gives_it(self):
        answer = self.answer("design", {"layers": design.TUTORIAL})
        self.assertEqual((answer["model"], answer["parameters"]), (2, 10_592))
        rows = [(layer["name"], layer["shape"], layer["parameters"]) for layer in answer["layers"]]
        self.assertEqual(rows, [
            ("convolution1", [6, 24, 24], 156), ("relu", [6, 24, 24], 0), ("pool", [6, 12, 12], 0),
            ("conv_dropout", [6, 12, 12], 0), ("convolution2", [16, 8, 8], 2416), ("relu_1", [16, 8, 8], 0),
            ("pool_1", [16, 4, 4], 0), ("flatten", [256], 0), ("fc1", [30], 7710), ("fc2", [10], 310)])
        # Its graph, stages (with their details), weights' names and shapes and state_dict: the export's
        # of model.py's Net.
        self.assertEqual(self.said(2), self.said(0))
        self.assertEqual(self.answer("models", "")["models"][2], "designed in this page (untrained, seed 0)")
        # Its model.py builds model.py's network: the same state_dict, and the same stages traced.
        path = os.path.join(TEMP, "tutorial_model.py")
        with open(path, "w", encoding="utf-8") as file:
            file.write(self.answer("modelSource", {"model": 2})["source"])
        designed = module_of(path)
        self.assertIs(designed.tutorial_model, designed.Net)
        shapes = {key: value.shape for key, value in designed.Net().state_dict().items()}
        self.assertEqual(shapes, {key: value.shape for key, value in Net().state_dict().items()})

    def test_a_list_nobody_tuned_trains_here_and_in_pytorch_as_the_page_showed(self):
        answer = self.answer("design", {"layers": UNTUNED, "seed": RUN["seed"]})
        model = answer["model"]
        self.assertEqual([layer["name"] for layer in answer["layers"]],
                         ["convolution1", "relu", "pool", "convolution2", "tanh", "pool2", "flatten",
                          "dropout1", "fc1", "sigmoid", "norm1", "fc2"])
        source = self.answer("modelSource", {"model": model})["source"]
        untrained = self.answer("checkpoint", {"model": model})
        trained = self.answer("trainRun", {**RUN, "model": model})
        self.assertEqual(trained["model"], model + 1)
        # PyTorch's Net of the page's model.py: its parameters, and the page's graph of the export's.
        folder = project_copy(os.path.join(TEMP, "untuned"), source, trained["checkpoint"])
        net = module_of(os.path.join(folder, "model.py")).Net()
        self.assertEqual(sum(p.numel() for p in net.parameters()), answer["parameters"])
        self.assertEqual(answer["parameters"], 100 + 1820 + 7240 + 80 + 410)
        checkpoint = torch.load(io.BytesIO(base64.b64decode(trained["checkpoint"])), weights_only=True)
        net.load_state_dict(checkpoint["model"], strict=True)
        page = routes.Page([routes.Network("untuned", net.eval())], "cpu")
        exported = export.network_data(page, 0)
        self.assertEqual(self.said(model + 1), {key: exported[key] for key in SAID_KEYS})
        # A run from fresh weights of the seed starts from the designed network's weights.
        first = checkpoint["snapshots"][0]
        self.assertEqual(first["step"], 0)
        designed = torch.load(io.BytesIO(base64.b64decode(untrained)), weights_only=True)["model"]
        # (num_batches_tracked: a snapshot of the file has the final count, docs/page.md)
        self.assertTrue(all(torch.equal(designed[key], first["model"][key]) for key in designed
                            if not key.endswith("num_batches_tracked")))
        # PyTorch's answers for 20 test digits are the page's.
        images, _ = load_mnist(SHAPES, train=False)
        with torch.no_grad():
            expected = net(images[:20]).softmax(dim=1)
        for index in range(20):
            shown = self.answer("predict", {"model": model + 1, "set": 0, "index": index,
                                            "attribution": False})
            self.assertLess((torch.tensor(shown["probabilities"]) - expected[index]).abs().max().item(), 1e-5)
        # test.py prints the page's accuracy; train.py trains the model.py; draw.py shows it.
        # (the three in one process of the copy, each as its script runs)
        driven = run_in(folder, "-c", DRIVER, json.dumps([
            ("test", ["model.pt", "--data-dir", SHAPES, "--device", "cpu"]),
            ("train", ["--epochs", "1", "--data-dir", SHAPES, "--device", "cpu", "--out", "again.pt"]),
            ("draw", ["model.pt", "--device", "cpu", "--export", "page.html"])]))
        self.assertEqual(driven.returncode, 0, driven.stderr)
        (code, tested, err, _), (code_train, trained_out, err_train, _), (code_draw, _, err_draw, _) = \
            json.loads(driven.stdout)
        self.assertEqual(code, 0, err)
        printed = float(re.search(r"Test Accuracy: ([\d.]+)%", tested).group(1))
        self.assertLessEqual(abs(printed - 100 * trained["testAccuracy"]), 0.05)
        self.assertEqual(code_train, 0, err_train)
        self.assertIn("Test Accuracy: ", trained_out)
        self.assertEqual(code_draw, 0, err_draw)
        self.assertEqual(exported_data(os.path.join(folder, "page.html"))["networks"][0]["graph"],
                         exported["graph"])

    def test_an_impossible_list_is_one_line_naming_the_layer_and_adds_nothing(self):
        for body, words in IMPOSSIBLE:
            with self.subTest(body=body):
                reply = self.call("design", body)
                self.assertEqual(reply.get("status"), 400, reply)
                self.assertIn(words, reply["error"])
                self.assertNotIn("\n", reply["error"])
        self.assertEqual(len(self.answer("models", "")["models"]), 2)  # nothing added

    def test_model_source_is_for_a_designed_network_only(self):
        for body, words in [({"model": 0}, "network 0 (untrained.pt) was not designed in this page"),
                            ({"model": 5}, "model must be a whole number from 0 to 1"),
                            ({"model": 0, "seed": 1}, "send model only (not seed)")]:
            with self.subTest(body=body):
                reply = self.call("modelSource", body)
                self.assertEqual(reply.get("status"), 400, reply)
                self.assertIn(words, reply["error"])


if __name__ == "__main__":
    unittest.main()
