"""The layers a network designed in the exported file is made of (its "Design your own" panel and
routes.design): their numbers, defaults and bounds, the refusals' words, the lines of the model.py
it writes, and how page.nodes describes each; written once here, sent by page/export.py.

Usage: from page.design import DESIGN_BOUNDS, DESIGN_MESSAGES, design_data   (page/export.py)
"""
import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F

from page.explain import SHOWN_WITH_RELU, SHOWN_WITH_RELU_AS
from page.nodes import SHOWN, describe, operation_of

# Each refused beyond, and said in the panel: a network the file trains and shows quickly enough on
# a phone.
DESIGN_BOUNDS = {"layers": 16, "channels": 64, "kernel": 7, "features": 512, "parameters": 1_000_000}
# A layer's numbers: [low, high, default]; a default of None: the layer needs it; a string: the
# value of that other number. PyTorch's defaults; p is the only number that need not be whole.
KERNEL = [1, DESIGN_BOUNDS["kernel"], None]
POOL = {"kernel": KERNEL, "stride": [1, DESIGN_BOUNDS["kernel"], "kernel"]}
FIELDS = {
    "conv": {"channels": [1, DESIGN_BOUNDS["channels"], None], "kernel": KERNEL,
             "stride": [1, DESIGN_BOUNDS["kernel"], 1], "padding": [0, DESIGN_BOUNDS["kernel"], 0]},
    "relu": {}, "sigmoid": {}, "tanh": {}, "maxpool": POOL, "avgpool": POOL,
    "dropout": {"p": [0, 1, 0.5]}, "batchnorm": {}, "flatten": {},
    "linear": {"features": [1, DESIGN_BOUNDS["features"], None]},
}
REAL_FIELDS = ("p",)
# How model.py writes each layer: a module built in __init__ (its options written only when not
# PyTorch's default) and called in forward() as self.NAME(x), or a function of x. batchnorm_flat:
# batch norm after the flatten.
MODULES = {
    "conv": ("nn.Conv2d(in_channels={inputs}, out_channels={channels}, kernel_size={kernel}{options})",
             {"stride": ", stride={stride}", "padding": ", padding={padding}"}),
    "maxpool": ("nn.MaxPool2d({kernel}, {stride})", {}),
    "avgpool": ("nn.AvgPool2d({kernel}, {stride})", {}),
    "dropout": ("nn.Dropout({options})  # active only in model.train() mode", {"p": "p={p}"}),
    "batchnorm": ("nn.BatchNorm2d({inputs})", {}),
    "batchnorm_flat": ("nn.BatchNorm1d({inputs})", {}),
    "linear": ("nn.Linear(in_features={inputs}, out_features={features})", {}),
}
CALLED = "self.{name}(x)"
FUNCTIONS = {"relu": "F.relu(x)", "sigmoid": "torch.sigmoid(x)", "tanh": "torch.tanh(x)",
             "flatten": "torch.flatten(x, 1)"}
# The names model.py gives modules: the tutorial's for its layers (its first and second convolution,
# its two fully connected layers, its dropout on the maps), else by kind and order; the first
# pooling "pool", another kind or size of pooling "pool2", ... (identical ones share a module).
NAMES = {"conv": {"tutorial": ["convolution1", "convolution2"], "prefix": "conv"},
         "linear": {"tutorial": ["fc1", "fc2"], "prefix": "fc"},
         "dropout": {"tutorial": ["conv_dropout"], "prefix": "dropout", "maps_only": True},
         "batchnorm": {"tutorial": [], "prefix": "norm"},
         "pool": {"tutorial": ["pool"], "prefix": "pool", "shared": True, "types": ["maxpool", "avgpool"]}}
SOURCE = {
    "file": '''"""A network designed in the "Design your own" panel of the exported drawing page:
{summary}.

Usage: put this file in place of the project's model.py; then python train.py trains it, python
test.py model.pt tests the model.pt the page saved with it and python draw.py model.pt shows it.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self):
        super().__init__()
{modules}

    def forward(self, x):
        # x: (N, 1, 28, 28); each line's output shape is in its comment
{lines}


# The tutorial's name for the class, so code copied from it keeps working.
tutorial_model = Net
''',
    "summary": "{layers} layers, {parameters} parameters",
    "module": "        self.{name} = {module}",
    "line": "        x = {call}",
    "last": "        return {call}",
    "shape": "# (N, {shape})",
    "last_shape": "# (N, {shape}): one score per digit",
    "column": 53,  # where the shapes' comments start, as in the project's model.py
    "product": " * ",  # in_features after a flatten of maps: 16 * 4 * 4, as the tutorial writes it
}
# The tutorial's network, as the panel starts from it.
TUTORIAL = [{"type": "conv", "channels": 6, "kernel": 5}, {"type": "relu"}, {"type": "maxpool", "kernel": 2},
            {"type": "dropout"}, {"type": "conv", "channels": 16, "kernel": 5}, {"type": "relu"},
            {"type": "maxpool", "kernel": 2}, {"type": "flatten"}, {"type": "linear", "features": 30},
            {"type": "linear", "features": 10}]
# The refusals of routes.design, str.format templates that the file's said() fills in (page/export.py
# adds them to the file's messages); each names the layer.
DESIGN_MESSAGES = {
    "design_layers": "layers must be a list of up to {most} layers (at least one), each an object with its "
                     "type",
    "design_too_many": "layer {number} is one too many: a network designed here has at most {most} layers",
    "design_not_layer": "layer {number} must be an object with a type, one of {types}",
    "design_type": "layer {number}'s type {given} is not one of {types}",
    "design_fields": "{name} takes {fields} only (not {unknown})",
    "design_missing": "{name} needs its {field}, a whole number from {low} to {high}",
    "design_p": "{name}'s p must be a number from {low} to {high}",
    "design_kernel": "{name}'s {kernel} x {kernel} kernel does not fit its {side} x {side} input; use a "
                     "smaller kernel or padding",
    "design_window": "{name}'s {kernel} x {kernel} window does not fit its {side} x {side} input; use a "
                     "smaller kernel or less pooling before it",
    "design_maps": "{name} needs maps (channels x height x width), but after the flatten its input is a row "
                   "of {count} values; move it before the flatten",
    "design_flatten": "{name} takes a row of values, but its input is {shape} maps; add a flatten before it",
    "design_ends_in_maps": "the last layer, {name}, gives {shape} maps, not the 10 scores of the digits; "
                           "end with a flatten and a linear layer of 10 features",
    "design_not_ten": "the last layer, {name}, gives {count} values, not the 10 scores of the digits; end "
                      "with a linear layer of 10 features",
    "design_parameters": "{name} takes the network to {count} parameters, more than the {most} a network "
                         "designed here may have; use fewer channels or features",
    "design_not_designed": "network {model} ({given}) was not designed in this page: its model.py is the one "
                           "it was trained with",
}


def module_of(kind, options=""):
    """The module model.py builds for a layer of this kind, with small numbers (a probe)."""
    return eval(MODULES[kind][0].split("  #")[0].format(  # noqa: S307 (this file's own templates)
        inputs=2, channels=2, kernel=2, stride=2, features=2, options=options), {"nn": nn})


def probe(kind, state_entries):
    """How page.nodes describes a layer of kind as model.py writes it, traced alone: its kind, op,
    code (the module's attribute as {name}), settings and the roles of its parameters; the name
    torch.fx gives a function's node; a module's state_dict entries as state_entries writes them."""
    class Probe(nn.Module):
        def forward(self, x):
            return self.layer(x) if kind in MODULES else eval(FUNCTIONS[kind], {  # noqa: S307
                "F": F, "torch": torch, "x": x})

    network = Probe()
    if kind in MODULES:
        network.layer = module_of(kind)
    graph_module = torch.fx.GraphModule(network, torch.fx.Tracer().trace(network))
    node = next(node for node in graph_module.graph.nodes if node.op not in ("placeholder", "output"))
    described = describe(node, operation_of(graph_module, node))
    roles = list(described.params or {})
    state = network.layer.state_dict() if kind in MODULES else {}
    return {"kind": described.kind, "op": described.op, "settings": described.settings, "roles": roles,
            "code": described.code.replace("self.layer:", "self.{name}:"),
            "node": None if kind in MODULES else node.name, "state": state_entries(state, roles)}


def design_data(state_entries):
    """What the exported file needs to design a network (EXPORT.design; its bounds are in
    EXPORT.limits.design and its refusals among EXPORT.messages); state_entries: page.export's."""
    modules = {kind: {"template": template, "options": options}
               for kind, (template, options) in MODULES.items()}
    return {"fields": FIELDS, "real": REAL_FIELDS, "modules": modules,
            "called": CALLED, "functions": FUNCTIONS, "names": NAMES, "source": SOURCE, "tutorial": TUTORIAL,
            "nodes": {kind: probe(kind, state_entries) for kind in [*MODULES, *FUNCTIONS]},
            "shown": SHOWN, "shown_with_relu": {"kinds": SHOWN_WITH_RELU, "activation": SHOWN_WITH_RELU_AS}}
