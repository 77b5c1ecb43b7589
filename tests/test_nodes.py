"""Tests of page/nodes.py, the one description of a traced network's operations that both the
served page (kinds, sentences, step views) and the exported file (page/offline/ and page/maths/'s ops) read.

Usage: python -m unittest -v tests.test_nodes
"""
import json
import unittest
import warnings

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F

from model import Net
from page.explain import Explainer
from page.nodes import OPERATIONS, describe, details, operation_of, where
from tests.networks import EDITED, OpsNet, SoftmaxNet


def traced(forward, **modules):
    """{node name: (node, Described)} of every call in forward(self, x), with modules as self's."""
    class Network(nn.Module):
        pass

    network = Network()
    for name, module in modules.items():
        network.add_module(name, module)
    Network.forward = forward
    tracer = torch.fx.Tracer()
    tracer.record_stack_traces = True
    graph_module = torch.fx.GraphModule(network, tracer.trace(network.eval()))
    return {node.name: (node, describe(node, operation_of(graph_module, node)))
            for node in graph_module.graph.nodes if node.op.startswith("call_")}


def descriptions(forward, **modules):
    """{node name: Described} of every call in forward(self, x)."""
    return {name: found for name, (_, found) in traced(forward, **modules).items()}


# The tutorial's stages as the page serves them today (GET /predict's layers), key order included.
TUTORIAL_DETAILS = [
    {"kind": "convolution", "code": "self.convolution1: Conv2d", "activation": "ReLU",
     "kernel": [5, 5], "stride": [1, 1], "padding": [[0, 0], [0, 0]], "dilation": [1, 1],
     "groups": 1, "inputs": 1},
    {"kind": "pool", "code": "self.pool: MaxPool2d", "activation": None, "kernel": [2, 2],
     "stride": [2, 2]},
    {"kind": "dropout", "code": "self.conv_dropout: Dropout", "activation": None, "p": 0.5,
     "in_eval": False},
    {"kind": "convolution", "code": "self.convolution2: Conv2d", "activation": "ReLU",
     "kernel": [5, 5], "stride": [1, 1], "padding": [[0, 0], [0, 0]], "dilation": [1, 1],
     "groups": 1, "inputs": 6},
    {"kind": "pool", "code": "self.pool: MaxPool2d", "activation": None, "kernel": [2, 2],
     "stride": [2, 2]},
    {"kind": "flatten", "code": "torch.flatten", "activation": None},
    {"kind": "linear", "code": "self.fc1: Linear", "activation": None, "inputs": 256},
    {"kind": "linear", "code": "self.fc2: Linear", "activation": None, "inputs": 30},
]


class TutorialTest(unittest.TestCase):
    def test_each_stage_is_worded_as_the_page_serves_it(self):
        explainer = Explainer(Net())
        found = [explainer.details[node] for _, node, _ in explainer.stages]
        self.assertEqual(json.dumps(found), json.dumps(TUTORIAL_DETAILS))  # the same JSON, in order

    def test_the_file_computes_each_operation_with_the_tutorials_weights(self):
        explainer = Explainer(Net())
        calls = [explainer.described[node] for node in explainer.graph_module.graph.nodes
                 if node.op.startswith("call_")]
        self.assertEqual([found.op for found in calls],
                         ["conv2d", "relu", "max_pool2d", "identity", "conv2d", "relu",
                          "max_pool2d", "flatten", "linear", "linear"])
        self.assertEqual(calls[0].params, {"weight": "convolution1.weight",
                                           "bias": "convolution1.bias"})
        self.assertEqual(calls[0].settings["padding"], [[0, 0], [0, 0]])  # one vocabulary for both
        self.assertEqual(calls[2].settings, {"kernel": [2, 2], "stride": [2, 2], "padding": [0, 0],
                                             "dilation": [1, 1], "ceil": False, "plain": True})
        self.assertEqual(calls[7].settings, {"start": 1, "end": -1})


def calling(function):
    return lambda self, x: function(x)


class RowTest(unittest.TestCase):
    """Each row of OPERATIONS, found as a module and as the functions and methods that do the same."""

    def same(self, module, *functions):
        """Every way of writing one operation gets the kind, op and settings the module gets."""
        found = descriptions(lambda self, x: self.m(x), m=module)["m"]
        for function in functions:
            other = next(iter(descriptions(calling(function)).values()))
            self.assertEqual((other.kind, other.op, other.settings),
                             (found.kind, found.op, found.settings), other.code)
        return found

    def test_modules_functions_and_methods_of_one_operation_are_described_alike(self):
        seen = {self.same(nn.MaxPool2d(2), lambda x: F.max_pool2d(x, 2)).op,
                self.same(nn.AvgPool2d(3, stride=2, padding=1), lambda x: F.avg_pool2d(x, 3, 2, 1)).op,
                self.same(nn.ReLU(), F.relu, torch.relu, lambda x: x.relu(), lambda x: x.relu_()).op,
                self.same(nn.Tanh(), torch.tanh, F.tanh, lambda x: x.tanh()).op,
                self.same(nn.Sigmoid(), torch.sigmoid, F.sigmoid, lambda x: x.sigmoid()).op,
                self.same(nn.LeakyReLU(0.2), lambda x: F.leaky_relu(x, 0.2),
                          lambda x: F.leaky_relu(x, negative_slope=0.2)).op,
                self.same(nn.Flatten(), lambda x: torch.flatten(x, 1), lambda x: x.flatten(1)).op,
                self.same(nn.Softmax(dim=1), lambda x: F.softmax(x, dim=1),
                          lambda x: torch.softmax(x, 1), lambda x: x.softmax(1)).op,
                self.same(nn.LogSoftmax(dim=-1), lambda x: F.log_softmax(x, -1),
                          lambda x: torch.log_softmax(x, dim=-1), lambda x: x.log_softmax(-1)).op}
        dropout = descriptions(lambda self, x: F.dropout(self.m(x), 0.5, self.training),
                               m=nn.Dropout(0.5))
        self.assertEqual([(found.kind, found.op, found.settings) for found in dropout.values()],
                         [("dropout", "identity", {"p": 0.5, "in_eval": False})] * 2)
        only = descriptions(lambda self, x: self.fc(self.norm(self.conv(x)).view(x.size(0), -1)
                                                    + 1.0) + self.keep(x.reshape(-1, 10)),
                            conv=nn.Conv2d(1, 2, 3), norm=nn.BatchNorm2d(2), fc=nn.Linear(2, 10),
                            keep=nn.Identity())
        seen |= {found.op for found in only.values()} | {"identity"}  # nn.Dropout's, above
        self.assertEqual(seen, {row.op for row in OPERATIONS})  # every row was found

    def test_each_call_takes_its_inputs_and_weights_as_offline_js_does(self):
        found = descriptions(lambda self, x: self.fc(x.view((x.size(0), -1)) + x.view(-1, 784)),
                             fc=nn.Linear(784, 10, bias=False))
        self.assertEqual([str(arg) for arg in found["view"].args], ["x", "[size, -1]"])
        self.assertEqual([str(arg) for arg in found["size"].args], ["x", "0"])
        self.assertEqual([str(arg) for arg in found["add"].args], ["view", "view_1"])
        self.assertEqual(found["fc"].params, {"weight": "fc.weight"})  # bias=False: no such key
        norm = descriptions(lambda self, x: self.norm(x), norm=nn.BatchNorm2d(1))["norm"]
        self.assertEqual(norm.params, {role: f"norm.{role}" for role in
                                       ("weight", "bias", "running_mean", "running_var")})


class CannotComputeTest(unittest.TestCase):
    """What the exported file cannot compute still has the page's kind, code and sentence."""

    def test_each_has_op_none_with_its_kind_and_code(self):
        cases = [
            (lambda self, x: self.m(x), {"m": nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect")},
             "convolution", "self.m: Conv2d"),
            (lambda self, x: self.m(x)[0], {"m": nn.MaxPool2d(2, return_indices=True)}, "pool",
             "self.m: MaxPool2d"),
            (lambda self, x: self.m(x), {"m": nn.BatchNorm2d(1, track_running_stats=False)},
             "batchnorm", "self.m: BatchNorm2d"),
            (lambda self, x: F.dropout(x, p=0.2), {}, "dropout", "F.dropout"),  # drops in eval mode
            (lambda self, x: torch.add(x, x, alpha=2), {}, "other", "torch.add"),
            (lambda self, x: x.softmax(1, dtype=torch.float64), {}, "other", "x.softmax(...)"),
            (lambda self, x: F.gelu(x), {}, "other", "F.gelu"),
        ]
        for forward, modules, kind, code in cases:
            with self.subTest(code=code):
                found = next(iter(descriptions(forward, **modules).values()))
                self.assertEqual((found.kind, found.code, found.op), (kind, code, None))
        dropping = next(iter(descriptions(lambda self, x: F.dropout(x, p=0.2)).values()))
        self.assertEqual(details(dropping, None), {"kind": "dropout", "code": "F.dropout",
                                                   "activation": None, "p": 0.2, "in_eval": True})

    def test_where_names_the_line_of_forward(self):
        def forward(self, x):
            return F.gelu(x)

        node, _ = traced(forward)["gelu"]
        self.assertRegex(where(node), r"^forward\(\) calls it in test_nodes\.py, line \d+: "
                                      r"return F\.gelu\(x\)$")


class EditedNetworksTest(unittest.TestCase):
    def test_every_operation_of_the_edited_networks_is_described_for_both_readers(self):
        networks = {name: network for name, (network, _) in EDITED.items()}
        for name, network in {**networks, "ops": OpsNet, "softmax": SoftmaxNet}.items():
            with self.subTest(network=name):
                with warnings.catch_warnings():  # both on purpose, as in fixtures.exported_shapes
                    warnings.filterwarnings("ignore", message="Using padding='same' with even")
                    warnings.filterwarnings("ignore", message="Implicit dimension choice")
                    explainer = Explainer(network())
                state = explainer.model.state_dict()
                for node in explainer.graph_module.graph.nodes:
                    if node.op.startswith("call_"):
                        found = explainer.described[node]
                        self.assertIsNotNone(found.op, found.code)  # fixtures.exported_shapes exports each
                        self.assertTrue(set((found.params or {}).values()) <= set(state), found.code)
        dilated = Explainer(EDITED["dilated"][0]())
        stages = {name: dilated.details[node] for name, node, _ in dilated.stages}
        self.assertEqual((stages["dropout"]["p"], stages["dropout"]["in_eval"]), (0.25, False))
        self.assertEqual((stages["max_pool2d"]["kind"], stages["act"]["kind"]), ("pool", "relu"))
        self.assertEqual((stages["convolution2"]["dilation"], stages["convolution2"]["groups"]),
                         ([2, 2], 2))
