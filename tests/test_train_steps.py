"""Tests of window.routes.trainSteps in the exported file, in headless Chromium: the losses,
gradients and weights of Adam steps on one batch held to PyTorch's in train() mode, for the
tutorial's network and every edited one, on one worker and on several, with each of the maths'
paths (WebAssembly with fused multiply-adds, WebAssembly SIMD, the plain loops); dropout; bad
bodies and a network it cannot train refused in one line.

Usage: python -m unittest -v tests.test_train_steps
"""
import copy
import json
import math
import os
import unittest
from unittest import mock

import torch
import torch.nn as nn
import torch.nn.functional as F

import data
from page import export, routes
from tests.exported import FileInBrowser
from tests.fixtures import browser_missing, exported_shapes, shapes_mnist, temporary_folder
from tests.networks import GeluNet
from tools.benchmark_export import drawing_of


def setUpModule():
    global TEMP, SHAPES, PAGE, EDITED_PAGE, EDITED_FILE, DIGITS
    shared = exported_shapes()
    TEMP, SHAPES, PAGE = temporary_folder(), shapes_mnist(), shared.page
    EDITED_PAGE, EDITED_FILE, DIGITS = shared.edited_page, shared.edited_file, shared.digits


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


class BatchSoftmaxNet(GeluNet):
    """A softmax along the batch, which mixes its images: the file trains it on one worker."""

    def forward(self, x):
        return self.fc(torch.softmax(torch.flatten(x, 1), 0))


@unittest.skipIf(browser_missing(), browser_missing())
class TrainStepsInBrowserTest(FileInBrowser, unittest.TestCase):
    """window.routes.trainSteps, the first step of training in the file (issue 30): the losses,
    gradients and weights of Adam steps on one batch, held to PyTorch's in train() mode."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        shapes = data.open_mnist(SHAPES, train=True)
        cls.batch = {"images": shapes.data[:24].tolist(), "labels": shapes.targets[:24].tolist()}

    def same_steps(self, network, body, compare_state=True):
        """trainSteps' answer to body against PyTorch's for network; returns the largest differences.
        The batch is shared among body's workers, unless the network has batch norm."""
        reply = self.call("trainSteps", body)
        self.assertIn("answer", reply, reply)
        answer, (losses, gradients, state) = reply["answer"], pytorch_steps(network, body)
        whole = isinstance(network, BatchSoftmaxNet) or any(isinstance(module, nn.BatchNorm2d)
                                                             for module in network.modules())
        self.assertEqual(answer["workers"], 1 if whole else body["workers"])
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

    def test_the_tutorials_network_and_the_edited_ones_train_as_pytorch_on_one_worker_and_on_several(self):
        # Chromium has relaxed SIMD: the file's maths run kernels-fma.wasm, its fused multiply-adds.
        self.assertEqual(self.script("return maths.kernelsInUse()[0]"), "fma")
        body = {**self.batch, "lr": 0.01, "steps": 5, "dropout": False}
        untrained, trained = PAGE.networks[1].model, PAGE.networks[0].model
        measured = {}
        for workers in (1, 3):  # three shares of the 24 images, more than this machine's cores
            mine = {**body, "workers": workers}
            measured[f"tutorial, untrained, {workers}"] = self.same_steps(untrained, {**mine, "model": 1})
            measured[f"tutorial, untrained, AdamW, {workers}"] = self.same_steps(
                untrained, {**mine, "model": 1, "weightDecay": 0.05})
            # Trained, its gradients on these easy shapes are mostly near Adam's eps (1e-8), where
            # rounding decides the direction of a step of about lr: its weights after five steps
            # part by up to lr * 5 from PyTorch's, and say nothing.
            measured[f"tutorial, trained, {workers}"] = self.same_steps(trained, {**mine, "model": 0},
                                                                        compare_state=False)
        self.open(EDITED_FILE)
        for model, network in enumerate(EDITED_PAGE.networks):
            with self.subTest(network=network.name):
                measured[network.name] = self.same_steps(network.model,
                                                         {**body, "model": model, "workers": 3})
        print("\ntrainSteps against PyTorch, largest differences:", json.dumps(measured))

    def test_the_simd_kernels_and_the_plain_loops_train_as_pytorch_too(self):
        # A browser without relaxed SIMD runs kernels.wasm, one without WebAssembly SIMD the maths'
        # own loops (useKernels finds none): each is held to PyTorch as the first, for every
        # edited network, on two workers (which compute as the page does).
        self.open(EDITED_FILE)
        body = {**self.batch, "lr": 0.01, "steps": 1, "dropout": False, "workers": 2}
        for path, modules in (("simd", "slice(1)"), (None, "slice(2)")):
            chosen = self.script("return maths.useKernels(offline.EXPORT.kernels.%s.map("
                                 "([name, base64]) => [name, offline.bytesOf(base64)]))" % modules)
            self.assertEqual(chosen, path)
            for model, network in enumerate(EDITED_PAGE.networks):
                with self.subTest(path=path, network=network.name):
                    self.same_steps(network.model, {**body, "model": model})

    def test_a_network_that_mixes_the_batchs_images_trains_on_one_worker(self):
        target = os.path.join(TEMP, "batch_softmax.html")
        torch.manual_seed(0)
        network = BatchSoftmaxNet().eval()
        export.export_page(routes.Page([routes.Network("batch softmax", network)], "cpu"), target)
        self.open(target)
        self.same_steps(network, {**self.batch, "model": 0, "lr": 0.01, "steps": 2, "workers": 3})

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
                              ({**good, "workers": 0}, "workers must be a whole number from 1 to 4"),
                              ({**good, "workers": 5}, "workers must be a whole number from 1 to 4"),
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
