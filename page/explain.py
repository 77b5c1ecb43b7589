"""What the drawing page explains, computed by the model itself: every stage its forward runs, how
one value of a stage was computed, which pixels decided the answer, and how sure the network is.

Usage: from page.explain import Explainer   (draw.py serves it; nothing here knows about HTTP)
"""
import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F

from cli import UserError
from data import background, to_pixels

# Below this top probability the page says the network is not sure. Measured (docs/page.md): the
# tutorial's model gives less to 5% of the test digits it reads right, to 73% of those it reads
# wrong and to 71% of random scribbles; an untrained network never gets above 0.14.
UNSURE_BELOW = 0.8
# MNIST's digits cover this share of the 28 x 28 field with ink brighter than half (the 0.1th and
# 99.9th percentiles of the 70,000 images); a prepared input outside it is unlike a digit.
INK_RANGE = (0.034, 0.295)
# Points on the straight path from an empty box to the digit (integrated gradients); midpoints of
# 64 equal steps add up to within 0.15 of the change in log-probability (measured: 32 right-hand
# points were off by up to 0.8).
ATTRIBUTION_STEPS = 64


# What the page calls each operation it has a picture or a sentence for: module types, then
# functions and tensor methods (by name) that do the same.
KINDS = [((nn.Conv2d,), (), "convolution"),
         ((nn.MaxPool2d,), (F.max_pool2d,), "pool"),
         ((nn.Linear,), (), "linear"),
         ((nn.Dropout,), (F.dropout,), "dropout"),
         ((nn.ReLU,), (F.relu, torch.relu, "relu", "relu_"), "relu"),
         ((nn.BatchNorm2d,), (), "batchnorm"),
         ((nn.Flatten,), (torch.flatten, "flatten", "view", "reshape"), "flatten")]


def kind_of(operation):
    """The page's name for what a module, function or tensor method does, or 'other'."""
    for module_types, functions, kind in KINDS:
        if isinstance(operation, module_types) or any(operation is f or operation == f
                                                      for f in functions):
            return kind
    return "other"


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


class Recorder(torch.fx.Interpreter):
    """Runs a traced model and keeps a copy of every operation's output."""

    def run_node(self, node):
        output = super().run_node(node)
        # A copy, as it is now: nn.ReLU(inplace=True), relu_() or += later in forward() change
        # the tensor itself, and the stage would then show values it never had.
        self.outputs[node] = output.clone() if isinstance(output, torch.Tensor) else output
        return output


class Explainer:
    """The stages of one network, and the explanations of one input's answer."""

    def __init__(self, model):
        self.model = model.eval()
        try:  # torch.fx follows forward() operation by operation, functional calls included
            tracer = torch.fx.Tracer()
            tracer.record_stack_traces = True  # the line of forward() behind each operation
            self.graph_module = torch.fx.GraphModule(model, tracer.trace(model))
        except Exception as error:  # noqa: BLE001  (Python control flow on tensor values, ...)
            raise UserError(f"the page cannot follow this network's forward(): torch.fx says "
                            f"{type(error).__name__}: {' '.join(str(error).split())[:200]}") from None
        try:
            with torch.no_grad():
                output = model(torch.full((1, 1, 28, 28), background(),
                                          device=next(model.parameters()).device))
        except Exception as error:  # noqa: BLE001  (an edited network for other input sizes)
            raise UserError(f"this network cannot take a 1 x 28 x 28 picture, the only input the "
                            f"page makes ({' '.join(str(error).split())[:200]})") from None
        if tuple(output.shape) != (1, 10):
            raise UserError(f"this network answers {tuple(output.shape[1:])} values, not 10 digits")
        self.stages = self.find_stages()
        # What the page needs to word each stage's sentence, worked out once.
        self.details = {node: details_of(node, self.operation(node), shown)
                        for _, node, shown in self.stages}

    def operation(self, node):
        """The module or function a graph node calls ('view' and the like for a tensor method)."""
        if node.op == "call_module":
            return self.graph_module.get_submodule(node.target)
        return node.target

    def find_stages(self):
        """[(name, node computing the stage, node whose output is shown)], in forward()'s order.

        A convolution or linear layer whose only use is a ReLU is shown with it, as one stage.
        """
        stages, merged = [], set()
        for node in self.graph_module.graph.nodes:
            if node.op not in ("call_module", "call_function", "call_method") or node in merged:
                continue
            shown = node
            users = list(node.users)
            if (kind_of(self.operation(node)) in ("convolution", "linear") and len(users) == 1
                    and kind_of(self.operation(users[0])) == "relu"):
                shown = users[0]
                merged.add(shown)
            stages.append((node.name, node, shown))
        return stages

    def run(self, digit):
        """Run digit (1, 28, 28) through the network; return {node: output} for every operation."""
        recorder = Recorder(self.graph_module)
        recorder.outputs = {}
        with torch.no_grad():
            recorder.run(digit[None])
        return recorder.outputs

    def layers(self, outputs):
        """Each stage's name, details and output (batch 1), then the softmax of the answer."""
        layers = [{"name": name, **self.details[node], "output": outputs[shown]}
                  for name, node, shown in self.stages if isinstance(outputs[shown], torch.Tensor)]
        logits = outputs[next(node for node in self.graph_module.graph.nodes
                              if node.op == "output").args[0]]
        # The page's own last stage, named so that it cannot clash with one of the model's.
        name = "softmax" if all(layer["name"] != "softmax" for layer in layers) else "probabilities"
        layers.append({"name": name, "kind": "output", "code": "logits.softmax(dim=1)",
                       "activation": None, "output": logits.softmax(dim=1)})
        return layers

    def step(self, outputs, name, map_index, row, column):
        """How the value at (map_index, row, column) of stage name was computed, from the model's
        own tensors; UserError if there is no such stage or position."""
        found = [(node, shown) for stage, node, shown in self.stages
                 if stage == name and isinstance(outputs[shown], torch.Tensor)]
        if not found:
            raise UserError(f"no stage named {name!r} in this network")
        node, shown = found[0]
        value = outputs[shown][0]  # without the batch: (C, H, W) maps or (N,) a vector
        if value.dim() == 3:
            position = (map_index, row, column)
        elif value.dim() == 1 and map_index == row == 0:
            position = (column,)
        else:
            position = None
        if position is None or not all(0 <= index < size for index, size in zip(position, value.shape)):
            raise UserError(f"{name} has no value at map {map_index}, row {row}, column {column}")
        layer_input = outputs[node.args[0]][0] if node.args and node.args[0] in outputs else None
        answer = step_of(node, self.operation(node), layer_input, map_index, row, column)
        if answer["kind"] != "none" and shown is not node:  # the ReLU shown with it
            answer.update(activation="ReLU", after=max(answer["sum"], 0.0))
        return {"stage": name, "map": map_index, "row": row, "column": column,
                "value": value[position].item(), **answer}

    def attribution(self, digit, target):
        """How much each input pixel moved the network's log-probability of the digit target,
        compared with an empty box (integrated gradients): (28, 28), and the total change.

        The 28 x 28 values add up, within the path's approximation, to log p(target) for this
        input minus log p(target) for an empty box.
        """
        empty = torch.full_like(digit, background())  # (1, 28, 28): black, as MNIST's background
        fractions = (torch.arange(ATTRIBUTION_STEPS, device=digit.device) + 0.5) / ATTRIBUTION_STEPS
        path = empty + fractions.view(-1, 1, 1, 1) * (digit - empty)  # (steps, 1, 28, 28)
        path.requires_grad_(True)
        with torch.enable_grad():
            log_probabilities = F.log_softmax(self.model(path), dim=1)  # (steps, 10)
            gradient, = torch.autograd.grad(log_probabilities[:, target].sum(), path)
        values = (gradient.mean(dim=0) * (digit - empty))[0]  # (28, 28)
        with torch.no_grad():
            ends = F.log_softmax(self.model(torch.stack([empty, digit])), dim=1)  # (2, 10)
        return values, (ends[1, target] - ends[0, target]).item()


def details_of(node, operation, shown):
    """What the page needs to word a stage's sentence: its kind, its code and its settings."""
    result = {"kind": kind_of(operation), "code": code_of(node, operation),
              "activation": "ReLU" if shown is not node else None}
    if isinstance(operation, nn.Conv2d):
        result.update(kernel=list(operation.kernel_size), stride=list(operation.stride),
                      padding=padding_of(operation), dilation=list(operation.dilation),
                      groups=operation.groups, inputs=operation.in_channels)
    elif result["kind"] == "pool":
        kernel, stride = pool_settings(node, operation)
        result.update(kernel=kernel, stride=stride)
    elif isinstance(operation, nn.Linear):
        result.update(inputs=operation.in_features)
    elif isinstance(operation, nn.Dropout):
        result.update(p=operation.p, in_eval=False)
    elif result["kind"] == "dropout":
        # F.dropout drops in eval mode too unless forward() passes training=self.training;
        # the trace recorded the value it had in eval mode.
        settings = arguments_of(node, DROPOUT_ARGUMENTS)
        result.update(p=settings.get("p", 0.5), in_eval=bool(settings.get("training", True)))
    return result


def step_of(node, operation, layer_input, map_index, row, column):
    """How operation computed its value at (map_index, row, column) from layer_input (batch
    removed): a convolution, pooling or fully connected step, or {"kind": "none"}."""
    if layer_input is None:
        return {"kind": "none"}
    layer_input = layer_input.float().cpu()
    if isinstance(operation, nn.Conv2d) and operation.padding_mode == "zeros":
        return convolution_step(operation, layer_input, map_index, row, column)
    if kind_of(operation) == "pool" and layer_input.dim() == 3 and plain_pool(node, operation):
        return pool_step(*pool_settings(node, operation), layer_input, map_index, row, column)
    if isinstance(operation, nn.Linear):
        return linear_step(operation, layer_input, column)
    return {"kind": "none"}


def pair(value):
    return list(value) if isinstance(value, (tuple, list)) else [value, value]


def padding_of(convolution):
    """The zeros a convolution adds, [[above, below], [left, right]] ('same' and 'valid' worked
    out: for 'same' with an even kernel PyTorch puts the odd zero below and right)."""
    if convolution.padding == "valid":
        return [[0, 0], [0, 0]]
    if convolution.padding == "same":
        totals = [d * (k - 1) for d, k in zip(convolution.dilation, convolution.kernel_size)]
        return [[total // 2, total - total // 2] for total in totals]
    return [[pad, pad] for pad in convolution.padding]


def convolution_step(convolution, layer_input, map_index, row, column):
    """The input patch under the kernel of map_index at (row, column), the kernel, their
    products, the bias and the sum (before any activation)."""
    stride_y, stride_x = convolution.stride
    (pad_above, pad_below), (pad_left, pad_right) = padding_of(convolution)
    (dilation_y, dilation_x), (height, width) = convolution.dilation, convolution.kernel_size
    per_group = convolution.in_channels // convolution.groups
    group = map_index // (convolution.out_channels // convolution.groups)
    channels = list(range(group * per_group, (group + 1) * per_group))
    padded = F.pad(layer_input, (pad_left, pad_right, pad_above, pad_below))  # zeros around (C, H, W)
    top, left = row * stride_y, column * stride_x
    patch = padded[channels, top:top + dilation_y * (height - 1) + 1:dilation_y,
                   left:left + dilation_x * (width - 1) + 1:dilation_x]  # (C, kh, kw)
    kernel = convolution.weight[map_index].detach().float().cpu()  # (C, kh, kw)
    bias = convolution.bias[map_index].item() if convolution.bias is not None else 0.0
    products = patch * kernel
    return {"kind": "convolution", "channels": channels, "shape": list(kernel.shape),
            "patch": patch.flatten().tolist(), "kernel": kernel.flatten().tolist(),
            "products": products.flatten().tolist(), "bias": bias,
            "sum": products.double().sum().item() + bias,
            "top": top - pad_above, "left": left - pad_left}


# The arguments after the input of F.max_pool2d and F.dropout, in order.
POOL_ARGUMENTS = ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
DROPOUT_ARGUMENTS = ("p", "training", "inplace")


def arguments_of(node, names):
    """A functional call's arguments after the input, by name: torch.fx keeps some positional
    and records the rest, defaults included, as keywords."""
    return {**dict(zip(names, node.args[1:])), **node.kwargs}


def pool_settings(node, operation):
    """[rows, columns] of the block and of the stride of nn.MaxPool2d or F.max_pool2d."""
    if isinstance(operation, nn.MaxPool2d):
        return pair(operation.kernel_size), pair(operation.stride or operation.kernel_size)
    settings = arguments_of(node, POOL_ARGUMENTS)
    kernel = settings.get("kernel_size")
    return pair(kernel), pair(settings.get("stride") or kernel)  # stride: the block by default


def plain_pool(node, operation):
    """Whether a max pooling has no padding, dilation or ceil mode, as pool_step assumes."""
    settings = vars(operation) if isinstance(operation, nn.MaxPool2d) \
        else arguments_of(node, POOL_ARGUMENTS)
    return (pair(settings.get("padding", 0)) == [0, 0] and pair(settings.get("dilation", 1)) == [1, 1]
            and not settings.get("ceil_mode") and not settings.get("return_indices"))


def pool_step(kernel, stride, layer_input, map_index, row, column):
    """The block of map_index that the maximum at (row, column) looks at, and the value kept."""
    (size_y, size_x), (stride_y, stride_x) = kernel, stride
    top, left = row * stride_y, column * stride_x
    block = layer_input[map_index, top:top + size_y, left:left + size_x]  # (kh, kw)
    return {"kind": "pool", "shape": list(block.shape), "block": block.flatten().tolist(),
            "kept": int(block.argmax()), "sum": block.max().item(), "top": top, "left": left}


def linear_step(linear, layer_input, column, shown=8):
    """The largest contributions weight x input to the unit at column, the rest, the bias, the sum."""
    inputs = layer_input.flatten()  # (in_features,)
    contributions = linear.weight[column].detach().float().cpu() * inputs
    largest = contributions.abs().argsort(descending=True)[:shown]
    bias = linear.bias[column].item() if linear.bias is not None else 0.0
    return {"kind": "linear", "unit": column, "inputs": len(inputs),
            "largest": [{"index": int(index), "input": inputs[index].item(),
                         "weight": linear.weight[column, index].item(),
                         "product": contributions[index].item()} for index in largest],
            "rest": (contributions.double().sum() - contributions[largest].double().sum()).item(),
            "bias": bias, "sum": contributions.double().sum().item() + bias}


def confidence(probabilities, digit):
    """The top three digits with their probabilities, and whether the answer means little."""
    top = probabilities.topk(3)
    ink = (to_pixels(digit) > 0.5).float().mean().item()  # the share of the field with ink
    unlike_a_digit = not INK_RANGE[0] <= ink <= INK_RANGE[1]
    return {"top": [[int(d), round(p, 6)] for p, d in zip(top.values.tolist(), top.indices.tolist())],
            "ink": ink, "unsure": top.values[0].item() < UNSURE_BELOW or unlike_a_digit,
            "unlike_a_digit": unlike_a_digit, "unsure_below": UNSURE_BELOW, "ink_range": INK_RANGE}
