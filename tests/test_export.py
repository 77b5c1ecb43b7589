"""Tests of what draw.py --export writes, without a browser: the file holds its policy, script and
data and nothing else; an operation it cannot compute, a dropout that drops and a softmax in
another precision refused with their line; pytorch/examples' Net within 20 MB; folders named by
their own name; the command's lines.

Usage: python -m unittest -v tests.test_export
"""
import base64
import copy
import glob
import json
import os
import re
import unittest

import torch
import torch.nn.functional as F

import common
import draw
import train
from page import export, routes
from page.server import answer as server_answer
from tests.exported import exported_data, picture_folder
from tests.fixtures import (exported_shapes, run_folder, run_script, shapes_mnist, temporary_folder,
                            working_directory)
from tests.networks import ExamplesNet, GeluNet, in_model_py


def setUpModule():
    global TEMP, SHAPES, MODEL, PAGE, FILE
    shared = exported_shapes()
    TEMP, SHAPES, MODEL, PAGE, FILE = (temporary_folder(), shapes_mnist(), shared.model, shared.page,
                                       shared.file)


def exact_weights(network, block):
    """An exported float32 block of network's weights, as one tensor."""
    return torch.frombuffer(bytearray(base64.b64decode(network["weights"][block])), dtype=torch.float32)


def flat(state, network):
    return torch.cat([state[key].flatten() for key, _ in network["tensors"]])


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
        beside = os.path.dirname(FILE)
        self.assertFalse(os.path.exists(os.path.join(beside, "class_digits")))  # downloads, not a folder
        self.assertEqual(glob.glob(os.path.join(beside, ".page.html*")), [])  # no temporary left

    def test_an_operation_the_file_cannot_compute_is_named_with_its_line(self):
        path = os.path.join(TEMP, "gelu.pt")
        torch.save({"model": GeluNet().state_dict()}, path)
        page = routes.Page([routes.Network("gelu", GeluNet().eval())], "cpu")
        target = os.path.join(TEMP, "gelu.html")
        with self.assertRaises(common.UserError) as caught:
            export.export_page(page, target)
        message = str(caught.exception)
        self.assertRegex(message, r"^the exported page cannot compute F\.gelu \(forward\(\) calls it "
                                  r"in networks\.py, line \d+: return self\.fc\(F\.gelu")
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
        with in_model_py(ExamplesNet):
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
        for path in {TEMP, os.path.realpath(TEMP), run_folder(), os.path.realpath(run_folder())}:
            self.assertNotIn(path, html)  # MODEL is in the run's folder
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


if __name__ == "__main__":
    unittest.main()
