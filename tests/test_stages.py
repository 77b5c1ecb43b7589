"""Tests of the stages, steps and pixels draw.py's page shows: edited networks' own stages and
shapes (in-place operations, grouped and dilated convolutions, functional pooling and dropout),
each value traced to its inputs against a reference computed here, padding, the pixels that
pushed towards a digit and the rule for how sure the network is.

Usage: python -m unittest -v tests.test_stages
"""
import unittest

import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

import common
from extras import pictures
from model import Net
from page import explain, routes
from tests.fixtures import served_shapes, stroke_pixels
from tests.networks import EDITED
from tests.served import request


def setUpModule():
    global MODEL, EDITED_SERVER
    shared = served_shapes()
    MODEL, EDITED_SERVER = shared.model, shared.edited_server


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
                with self.assertRaises(common.UserError) as raised:
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


if __name__ == "__main__":
    unittest.main()
