"""Tests of training a whole run in the exported file (window.routes.trainRun, issue 30): in headless
Chromium, offline, on the training images the file carries; its checkpoint read back by test.py and
torch.load; the same seed the same run; bad bodies refused in one line.

Usage: python -m unittest -v tests.test_train_run
"""
import base64
import importlib.util
import io
import os
import re
import unittest

import torch

import draw
import test as test_script
import train
from data import load_mnist, open_mnist
from extras import checkpoints
from page import export, mnist_sets, routes
from tests.exported import CALL
from tests.fixtures import browser, browser_missing, run_script, shapes_mnist, temporary_folder
from tests.networks import DilatedNet
from tools import make_kernels
from tools.benchmark_export import drawing_of

TRAIN_IMAGES = 600  # 12 steps of 50: seconds, not minutes
RUN = {"epochs": 1, "batchSize": 50, "lr": 0.01, "seed": 0}


def setUpModule():
    global TEMP, SHAPES, MODEL, FILE, BARE_FILE, DILATED_FILE
    TEMP = temporary_folder()
    SHAPES = shapes_mnist()
    MODEL = os.path.join(TEMP, "shapes.pt")
    code, _, err = run_script(train, ["--data-dir", SHAPES, "--epochs", "1", "--out", MODEL])
    assert code == 0, err
    FILE, BARE_FILE = os.path.join(TEMP, "page.html"), os.path.join(TEMP, "bare.html")
    for path, images in ((FILE, TRAIN_IMAGES), (BARE_FILE, 0)):
        code, _, err = run_script(draw, [MODEL, "--data-dir", SHAPES, "--export", path,
                                         "--train-images", str(images), "--collect", "mine"])
        assert code == 0, err
    torch.manual_seed(0)
    page = routes.Page([routes.Network("dilated", DilatedNet().eval())], "cpu",
                       *routes.load_sets(SHAPES, None))
    DILATED_FILE = os.path.join(TEMP, "dilated.html")
    export.export_page(page, DILATED_FILE, mnist_sets.mnist_sets(SHAPES, TRAIN_IMAGES))


def checkpoint_of(answer):
    """trainRun's checkpoint, loaded as test.py loads one."""
    return torch.load(io.BytesIO(base64.b64decode(answer["checkpoint"])), weights_only=True)


@unittest.skipIf(browser_missing(), browser_missing())
class TrainRunTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.driver = browser()
        cls.driver.set_script_timeout(120)

    def open(self, path=None):
        self.driver.get("file://" + (path or FILE))
        self.assertEqual(self.driver.execute_async_script(
            "const done = arguments[0]; (function wait() { document.body.dataset.ready === 'true' "
            "? done(true) : setTimeout(wait, 20); })();"), True)

    def call(self, route, body=""):
        return self.driver.execute_async_script(CALL, route, body)

    def run_ok(self, body):
        reply = self.call("trainRun", body)
        self.assertIn("answer", reply, reply)
        return reply["answer"]

    def test_a_run_joins_the_networks_and_test_py_reads_its_checkpoint_with_its_accuracy(self):
        self.open()
        answer = self.run_ok(RUN)
        steps = TRAIN_IMAGES // RUN["batchSize"]
        # The run's network comes after the checkpoint's and the untrained one.
        self.assertEqual((answer["steps"], answer["model"]), (steps, 2))
        self.assertGreater(answer["seconds"], 0)
        checkpoint = checkpoint_of(answer)
        self.assertIsNone(checkpoints.checkpoint_problem(checkpoint))
        self.assertEqual(len(checkpoint["history"]["loss"]), steps)
        self.assertEqual([s["step"] for s in checkpoint["snapshots"]], [0, 1, 2, 5, 10, steps])
        self.assertEqual(checkpoint["test_accuracy"], answer["testAccuracy"])
        path = os.path.join(TEMP, "trained_here.pt")
        with open(path, "wb") as file:
            file.write(base64.b64decode(answer["checkpoint"]))
        code, out, err = run_script(test_script, [path, "--data-dir", SHAPES])
        self.assertEqual(code, 0, err)
        printed = float(re.search(r"Test Accuracy: ([\d.]+)%", out).group(1))
        self.assertAlmostEqual(printed, 100 * answer["testAccuracy"], delta=0.05)
        # The page now has it: in the list, with its curves, snapshots and explorer answers.
        models = self.call("models")["answer"]
        self.assertEqual(models["models"][-1], "trained in this page (1 epoch, seed 0)")
        self.assertEqual(models["snapshots"][-1], [0, 1, 2, 5, 10, steps])
        testset = self.call("testset", "model=2")["answer"]
        self.assertEqual((testset["accuracy"], testset["count"]), (answer["testAccuracy"], 200))
        self.assertEqual(testset["confusion"], answer["confusion"])
        cell = self.call("examples", "model=2&true=3&predicted=3")["answer"]
        self.assertEqual(cell["count"], answer["confusion"][3][3])
        self.assertTrue(all(len(example["pixels"]) == 784 for example in cell["examples"]))
        refused = self.call("testset", "model=2&snapshot=0")
        self.assertEqual(refused["status"], 404)
        self.assertIn("final weights", refused["error"])
        drawn = self.call("predict", {"model": 2, "pixels": drawing_of(self.digit(3)), "attribution": False})
        self.assertEqual(drawn["answer"]["model"], models["models"][-1])

    def digit(self, index):
        """A test image of the shapes set as 28 rows of grey levels."""
        return open_mnist(SHAPES, train=False).data[index].tolist()

    def test_the_same_seed_trains_the_same_weights_and_another_seed_others(self):
        self.open()
        answers = [self.run_ok({**RUN, "seed": seed, "workers": workers})
                   for seed, workers in ((5, 2), (5, 2), (6, 2), (5, 1))]
        self.assertEqual([answer["workers"] for answer in answers], [2, 2, 2, 1])
        runs = [checkpoint_of(answer) for answer in answers]
        same, other = runs[0]["model"], runs[2]["model"]
        self.assertTrue(all(torch.equal(same[key], runs[1]["model"][key]) for key in same))
        self.assertEqual(runs[0]["history"], runs[1]["history"])
        self.assertFalse(torch.equal(same["fc1.weight"], other["fc1.weight"]))
        # One worker draws the same dropout masks for the batch as two, each for its half: the
        # first step's loss differs only by how its sum was added up.
        self.assertAlmostEqual(runs[3]["history"]["loss"][0], runs[0]["history"]["loss"][0], delta=1e-6)
        names = self.call("models")["answer"]["models"][2:]
        self.assertEqual(names, ["trained in this page (1 epoch, seed 5)",
                                 "trained in this page (1 epoch, seed 5), run 2",
                                 "trained in this page (1 epoch, seed 6)",
                                 "trained in this page (1 epoch, seed 5), run 3"])

    def test_from_trained_weights_and_from_the_runs_initial_ones(self):
        self.open()
        for start, network in (("trained", 0), ("initial", 0)):
            with self.subTest(start=start):
                answer = self.run_ok({**RUN, "from": start, "model": network})
                loss = checkpoint_of(answer)["history"]["loss"][0]
                # The trained network starts far better than chance (2.30); its initial one at chance.
                self.assertLess(loss, 1.0) if start == "trained" else self.assertGreater(loss, 2.0)

    def test_bad_bodies_and_a_second_run_are_refused_in_one_line(self):
        self.open()
        for body, status, words in [
            ({"epochs": 0}, 400, "epochs must be a whole number from 1 to 100"),
            ({"batchSize": 2.5}, 400, "batchSize must be a whole number"),
            ({"batchSize": 1024}, 400, "larger than the 600 training images"),
            ({"lr": -1}, 400, "lr must be a number above 0"),
            ({"lr": "0.01"}, 400, "lr must be a number"),
            ({"seed": -1}, 400, "seed must be a whole number"),
            ({"from": "yesterday"}, 400, "from must be fresh, initial or trained"),
            ({"model": 7}, 400, "model must be a whole number from 0 to 1"),
            ({"extra": "yes"}, 400, "extra must be true or false"),
            ({"workers": 0}, 400, "workers must be a whole number from 1 to 4"),
            ({"extra": True}, 409, "no drawings are collected yet"),
            ({"steps": 5}, 400, "(not steps)"),
            ([1, 2], 400, "send model, epochs"),
        ]:
            with self.subTest(body=body):
                reply = self.call("trainRun", body)
                self.assertEqual(reply.get("status"), status, reply)
                self.assertIn(words, reply["error"])
                self.assertNotIn("\n", reply["error"])
        # One run at a time; trainStop ends it, refused, and the page forgets its network.
        reply = self.driver.execute_async_script("""
            const done = arguments[0], ended = (error) => error.message;
            const first = window.routes.trainRun({ epochs: 100 }).then(() => 'finished', ended);
            const second = window.routes.trainRun({}).then(() => 'finished', ended);
            second.then((message) => {
              window.routes.trainStop();
              first.then((end) => done([message, end, window.routes.models().models.length]));
            });""")
        self.assertEqual(reply, ["a network is training in this page already: wait for it to finish, "
                                 "or stop it", "training stopped", 2])
        self.open(BARE_FILE)
        reply = self.call("trainRun", RUN)
        self.assertEqual(reply["status"], 404)
        self.assertIn("carries no training images", reply["error"])

    def test_the_drawings_collected_here_are_mixed_in_and_scored_before_and_after(self):
        self.open()
        for index in range(4):  # the shapes of the first test images, saved with their labels
            label = open_mnist(SHAPES, train=False).targets[index].item()
            reply = self.call("collect", {"label": label, "pixels": drawing_of(self.digit(index))})
            self.assertIn("answer", reply, reply)
        answer = self.run_ok({**RUN, "extra": True})
        drawings = answer["drawings"]
        self.assertTrue(0 <= drawings["before"] <= 1 and 0 <= drawings["after"] <= 1, drawings)
        # train.py's rule: 8,000 / 4 pictures is more than 30, so each is seen 30 times an epoch.
        self.assertEqual(answer["steps"], (TRAIN_IMAGES + 4 * 30) // RUN["batchSize"])

    def test_a_network_with_batch_norm_groups_and_dilation_trains_and_keeps_its_statistics(self):
        self.open(DILATED_FILE)
        answer = self.run_ok({**RUN, "from": "trained", "workers": 2})
        self.assertEqual(answer["workers"], 1)  # batch norm's statistics are the whole batch's
        state = checkpoint_of(answer)["model"]
        self.assertEqual(state["norm.num_batches_tracked"].item(), answer["steps"])
        self.assertFalse(torch.equal(state["norm.running_mean"], torch.zeros(6)))
        model = DilatedNet().eval()
        model.load_state_dict(state)  # every key, as PyTorch's own network has them
        images, labels = load_mnist(SHAPES, train=False)
        with torch.no_grad():
            accuracy = (model(images).argmax(dim=1) == labels).float().mean().item()
        self.assertAlmostEqual(accuracy, answer["testAccuracy"], delta=1 / len(labels) + 1e-9)


@unittest.skipIf(importlib.util.find_spec("wasmtime") is None,
                 "wasmtime, which assembles WebAssembly text, is not installed (pip install wasmtime)")
class KernelsTest(unittest.TestCase):
    def test_kernels_wasm_is_kernels_wat_assembled(self):
        # The bytes the page runs are made from the source beside them, by the command named there
        # (run in this process: a new one would spend seconds importing torch for common's sake).
        code, out, err = run_script(make_kernels, ["--check"])
        self.assertEqual((code, err), (0, ""), out)
        self.assertEqual(out, "page/kernels.wasm is up to date\npage/kernels-fma.wasm is up to date\n")


if __name__ == "__main__":
    unittest.main()
