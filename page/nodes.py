"""What each operation of a traced network is, described once for the page's explanations (its
kind, its sentence, its step view) and for the exported file (the operation it computes).

Usage: from page.nodes import describe, details, operation_of, where
"""
import operator
import os
import re
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass(frozen=True)
class Described:
    """One node of a traced forward(), as both the page and the exported file need it."""

    kind: str            # the page's word for it ("convolution", "pool", ...), "other" if none
    code: str            # as forward() calls it: "self.convolution1: Conv2d", "F.relu", "x.view(...)"
    op: str | None       # the operation the exported file computes it as; None: the file cannot
    settings: dict = field(default_factory=dict)  # the numbers of its maths, one vocabulary
    params: dict | None = None  # its state_dict tensors by role: {"weight": "fc1.weight", ...}
    args: list = field(default_factory=list)      # its inputs (nodes and constants) for the exported file


# The arguments after the input of each function, in order: torch.fx keeps some positional and
# records the rest, defaults included, as keywords.
POOL_ARGUMENTS = ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
AVG_POOL_ARGUMENTS = ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
                      "divisor_override")
DROPOUT_ARGUMENTS = ("p", "training", "inplace")
SOFTMAX_ARGUMENTS = ("dim", "_stacklevel", "dtype")  # F.softmax's; torch's and methods' below
# What a stage's sentence shows of its settings, by kind (details).
SHOWN = {"convolution": ("kernel", "stride", "padding", "dilation", "groups", "inputs"),
         "pool": ("kernel", "stride"), "linear": ("inputs",), "dropout": ("p", "in_eval")}


def pair(value):
    return list(value) if isinstance(value, (tuple, list)) else [value, value]


def arguments_of(node, names):
    """A functional call's arguments after the input, by name."""
    return {**dict(zip(names, node.args[1:])), **node.kwargs}


def padding_of(convolution):
    """The zeros a convolution adds, [[above, below], [left, right]] ('same' and 'valid' worked
    out: for 'same' with an even kernel PyTorch puts the odd zero below and right)."""
    if convolution.padding == "valid":
        return [[0, 0], [0, 0]]
    if convolution.padding == "same":
        totals = [d * (k - 1) for d, k in zip(convolution.dilation, convolution.kernel_size)]
        return [[total // 2, total - total // 2] for total in totals]
    return [[pad, pad] for pad in convolution.padding]


def convolution(module):
    """(settings, op) of nn.Conv2d: the exported file pads with zeros only."""
    return ({"kernel": list(module.kernel_size), "stride": list(module.stride),
             "padding": padding_of(module), "dilation": list(module.dilation),
             "groups": module.groups, "inputs": module.in_channels},
            "conv2d" if module.padding_mode == "zeros" else None)


def max_pool(settings):
    """(settings, op) of nn.MaxPool2d's attributes or F.max_pool2d's arguments. plain: no
    padding, dilation, ceil mode or indices, as the step view's block assumes."""
    kernel = pair(settings.get("kernel_size"))
    found = {"kernel": kernel, "stride": pair(settings.get("stride") or kernel),  # the block
             "padding": pair(settings.get("padding", 0)),
             "dilation": pair(settings.get("dilation", 1)), "ceil": bool(settings.get("ceil_mode"))}
    indices = bool(settings.get("return_indices"))
    found["plain"] = (found["padding"] == [0, 0] and found["dilation"] == [1, 1]
                      and not found["ceil"] and not indices)
    return found, None if indices else "max_pool2d"  # a tuple (values, indices) out


def average_pool(settings):
    kernel = pair(settings.get("kernel_size"))
    return {"kernel": kernel, "stride": pair(settings.get("stride") or kernel),
            "padding": pair(settings.get("padding", 0)), "ceil": bool(settings.get("ceil_mode")),
            "count_include_pad": bool(settings.get("count_include_pad", True)),
            "divisor": settings.get("divisor_override")}, "avg_pool2d"


def dropout(settings):
    """F.dropout drops in eval mode too unless forward() passes training=self.training; the trace
    recorded the value it had in eval mode."""
    in_eval = bool(settings.get("training", True))
    return {"p": settings.get("p", 0.5), "in_eval": in_eval}, None if in_eval else "identity"


def leaky_relu(settings):
    return {"slope": settings.get("negative_slope", 0.01)}, "leaky_relu"


def flatten(settings):
    """nn.Flatten's attributes or torch.flatten's arguments (which start at 0, nn.Flatten at 1)."""
    return {"start": settings.get("start_dim", 0), "end": settings.get("end_dim", -1)}, "flatten"


def softmax(op):
    """The reader of a softmax's or log_softmax's call: the exported file computes in float32 only."""
    def read(node):
        names = SOFTMAX_ARGUMENTS if node.target in (F.softmax, F.log_softmax) else ("dim", "dtype")
        settings = arguments_of(node, names)
        in_float32 = settings.get("dtype") in (None, torch.float32)
        return {"dim": settings.get("dim")}, op if in_float32 else None
    return read


def called(names, read):
    """The reader of a call whose arguments after the input are names, in order."""
    return lambda node: read(arguments_of(node, names))


def add(node):
    """x + y or x + a number only: the exported file adds two inputs, without alpha."""
    return {}, "add" if len(node.args) == 2 and not node.kwargs else None


@dataclass(frozen=True)
class Operation:
    """A row of OPERATIONS: what it is recognised as and how its settings are read."""

    kind: str
    op: str
    modules: tuple = ()       # matched by isinstance for the kind; by exact type for op when exact
    functions: tuple = ()     # functions and tensor methods (by name)
    read_module: object = None  # module -> (settings, op or None)
    read_call: object = None    # node of a function or method call -> (settings, op or None)
    exact: bool = False       # a subclass may override forward(): the file computes exact types only
    roles: tuple = ()         # its state_dict tensors


OPERATIONS = [
    Operation("convolution", "conv2d", (nn.Conv2d,), read_module=convolution,
              roles=("weight", "bias")),
    Operation("pool", "max_pool2d", (nn.MaxPool2d,), (F.max_pool2d,),
              lambda module: max_pool(vars(module)), called(POOL_ARGUMENTS, max_pool)),
    Operation("other", "avg_pool2d", (nn.AvgPool2d,), (F.avg_pool2d,),
              lambda module: average_pool(vars(module)),
              called(AVG_POOL_ARGUMENTS, average_pool)),
    Operation("linear", "linear", (nn.Linear,),
              read_module=lambda module: ({"inputs": module.in_features}, "linear"),
              roles=("weight", "bias")),
    Operation("dropout", "identity", (nn.Dropout,), (F.dropout,),  # in eval mode
              lambda module: ({"p": module.p, "in_eval": False}, "identity"),  # never drops then
              called(DROPOUT_ARGUMENTS, dropout), exact=True),
    Operation("relu", "relu", (nn.ReLU,), (F.relu, torch.relu, "relu", "relu_"), exact=True),
    Operation("other", "tanh", (nn.Tanh,), (torch.tanh, F.tanh, "tanh"), exact=True),
    Operation("other", "sigmoid", (nn.Sigmoid,), (torch.sigmoid, F.sigmoid, "sigmoid"), exact=True),
    Operation("other", "leaky_relu", (nn.LeakyReLU,), (F.leaky_relu,),
              lambda module: leaky_relu(vars(module)), called(("negative_slope",), leaky_relu),
              exact=True),
    Operation("batchnorm", "batch_norm", (nn.BatchNorm2d, nn.BatchNorm1d),
              read_module=lambda module: ({"eps": module.eps, "momentum": module.momentum},
                                          "batch_norm" if module.track_running_stats else None),
              roles=("weight", "bias", "running_mean", "running_var")),
    Operation("flatten", "flatten", (nn.Flatten,), (torch.flatten, "flatten"),
              lambda module: flatten(vars(module)), called(("start_dim", "end_dim"), flatten),
              exact=True),
    Operation("flatten", "view", functions=("view", "reshape")),
    Operation("other", "identity", (nn.Identity,), exact=True),
    Operation("other", "size", functions=("size",)),
    Operation("other", "add", functions=(operator.add, operator.iadd, torch.add, "add"),
              read_call=add),
    Operation("other", "softmax", (nn.Softmax,), (F.softmax, torch.softmax, "softmax"),
              lambda module: ({"dim": module.dim}, "softmax"), softmax("softmax"), exact=True),
    Operation("other", "log_softmax", (nn.LogSoftmax,),
              (F.log_softmax, torch.log_softmax, "log_softmax"),
              lambda module: ({"dim": module.dim}, "log_softmax"), softmax("log_softmax"),
              exact=True),
]


def operation_of(graph_module, node):
    """The module or function a graph node calls ('view' and the like for a tensor method)."""
    if node.op == "call_module":
        return graph_module.get_submodule(node.target)
    return node.target


def row_of(node, operation):
    """The row of OPERATIONS that node's operation is, or None."""
    if node.op == "call_module":
        return next((row for row in OPERATIONS if isinstance(operation, row.modules)), None)
    if node.op in ("call_function", "call_method"):
        return next((row for row in OPERATIONS
                     if any(operation is f or operation == f for f in row.functions)), None)
    return None


def describe(node, operation):
    """What node (calling operation, see operation_of) is, for the page and the exported file."""
    code, row = code_of(node, operation), row_of(node, operation)
    if row is None:
        return Described("other", code, None)
    if node.op == "call_module":
        settings, op = row.read_module(operation) if row.read_module else ({}, row.op)
        if row.exact and type(operation) not in row.modules:
            op = None
        params = {role: f"{node.target}.{role}" for role in row.roles
                  if getattr(operation, role, None) is not None} if row.roles else None
        return Described(row.kind, code, op, settings, params, list(node.args[:1]))
    settings, op = row.read_call(node) if row.read_call else ({}, row.op)
    return Described(row.kind, code, op, settings, None, call_arguments(node, row.op))


def call_arguments(node, op):
    """A function's or method's inputs, as the exported file's op takes them."""
    args = list(node.args)
    if op == "view":  # x.view(n, -1) or x.view((n, -1)): the shape as one list
        shape = args[1] if len(args) == 2 and isinstance(args[1], (tuple, list)) else args[1:]
        return [args[0], list(shape)]
    if op == "size":
        return args[:2]
    if op == "add":
        return args
    return args[:1]


def details(described, activation):
    """What the page needs to word a stage's sentence: its kind, its code, the activation shown
    with it, and the settings its kind shows."""
    return {"kind": described.kind, "code": described.code, "activation": activation,
            **{key: described.settings[key] for key in SHOWN.get(described.kind, ())}}


def code_of(node, operation):
    """How forward() calls the operation, as a reader of model.py would write it."""
    if node.op == "call_module":
        return f"self.{node.target}: {type(operation).__name__}"
    if node.op == "call_method":
        return f"x.{node.target}(...)"
    name = getattr(operation, "__name__", str(operation))
    # F.gelu and the like are defined in torch._C, but a reader calls them F.gelu.
    for prefix, namespace in (("F", F), ("torch", torch)):
        if getattr(namespace, name, None) is operation:
            return f"{prefix}.{name}"
    return name


def where(node):
    """Where forward() calls a node's operation: 'forward() calls it in model.py, line 25:
    x = F.gelu(x)'."""
    torch_folder = os.path.dirname(torch.__file__)
    frame = r'File "([^"]+)", line (\d+), in \w+\n(?:    (.*))?'  # (path, line, code) of a call
    frames = re.findall(frame, node.stack_trace or "")
    calls = [frame for frame in frames if not frame[0].startswith(torch_folder)]  # not torch.fx's
    if not calls:
        return f"the stage {node.name}"
    path, line, code = calls[-1]
    return (f"forward() calls it in {os.path.basename(path)}, line {line}"
            + (f": {code.strip()}" if code else ""))
