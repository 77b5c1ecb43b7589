"""What the drawing page explains, computed by the model itself: every stage its forward runs, how
one value of a stage was computed, which pixels decided the answer, and how sure the network is.

Usage: from page.explain import Explainer   (page.routes answers with it; nothing here knows about HTTP)
"""
import torch
import torch.fx
import torch.nn.functional as F

from common import UserError
from data import background, to_pixels
from page.nodes import describe, details, operation_of, padding_of

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
# A fully connected unit's step view shows this many of its largest contributions.
SHOWN_CONTRIBUTIONS = 8
# A stage of these kinds whose only use is a ReLU is shown with it, as one picture, titled with it.
SHOWN_WITH_RELU, SHOWN_WITH_RELU_AS = ("convolution", "linear"), "ReLU"
# What a click outside a stage's values is told, in words the exported page says too (page/export.py).
NO_VALUE = "{name} has no value at map {map}, row {row}, column {column}"


def copied(value):
    """A copy of an operation's output as it is now: nn.ReLU(inplace=True), relu_() or += later in
    forward() change the tensor itself, and the stage would then show values it never had."""
    return value.clone() if isinstance(value, torch.Tensor) else value


def recording(graph_module):
    """Return a module whose forward gives a copy of every operation's output, in graph order, and
    those operations (graph_module's nodes). It runs as generated Python, as the traced model does,
    not through torch.fx's Interpreter, which looks up and dispatches each node at every call."""
    graph, new_node, operations, kept = torch.fx.Graph(), {}, [], []
    for node in graph_module.graph.nodes:
        if node.op == "output":
            continue
        new_node[node] = graph.node_copy(node, lambda argument: new_node[argument])
        operations.append(node)
        kept.append(graph.call_function(copied, (new_node[node],)))  # at once, before any change
    graph.output(tuple(kept))
    return torch.fx.GraphModule(graph_module, graph), operations


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
        # What each operation is (page.nodes), then the stages and their sentences, worked out once.
        self.described = {node: describe(node, operation_of(self.graph_module, node))
                          for node in self.graph_module.graph.nodes}
        self.stages = self.find_stages()
        self.recording, self.operations = recording(self.graph_module)
        self.details = {node: details(self.described[node], SHOWN_WITH_RELU_AS if shown is not node else None)
                        for _, node, shown in self.stages}

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
            if (self.described[node].kind in SHOWN_WITH_RELU and len(users) == 1
                    and self.described[users[0]].kind == "relu"):
                shown = users[0]
                merged.add(shown)
            stages.append((node.name, node, shown))
        return stages

    def run(self, digit):
        """Run digit (1, 28, 28) through the network; return {node: output} for every operation."""
        with torch.no_grad():
            return dict(zip(self.operations, self.recording(digit[None])))

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
            raise UserError(NO_VALUE.format(name=name, map=map_index, row=row, column=column))
        layer_input = outputs[node.args[0]][0] if node.args and node.args[0] in outputs else None
        answer = step_of(self.described[node], operation_of(self.graph_module, node), layer_input,
                         map_index, row, column)
        if answer["kind"] != "none" and shown is not node:  # the ReLU shown with it
            answer.update(activation=SHOWN_WITH_RELU_AS, after=max(answer["sum"], 0.0))
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


def step_of(described, operation, layer_input, map_index, row, column):
    """How operation (described: page.nodes) computed its value at (map_index, row, column) from
    layer_input (batch removed): a convolution, pooling or fully connected step, or
    {"kind": "none"}."""
    if layer_input is None:
        return {"kind": "none"}
    layer_input = layer_input.float().cpu()
    if described.op == "conv2d":  # nn.Conv2d padding with zeros
        return convolution_step(operation, layer_input, map_index, row, column)
    if described.kind == "pool" and layer_input.dim() == 3 and described.settings["plain"]:
        return pool_step(described.settings["kernel"], described.settings["stride"], layer_input,
                         map_index, row, column)
    if described.kind == "linear":  # nn.Linear
        return linear_step(operation, layer_input, column)
    return {"kind": "none"}


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


def pool_step(kernel, stride, layer_input, map_index, row, column):
    """The block of map_index that the maximum at (row, column) looks at, and the value kept."""
    (size_y, size_x), (stride_y, stride_x) = kernel, stride
    top, left = row * stride_y, column * stride_x
    block = layer_input[map_index, top:top + size_y, left:left + size_x]  # (kh, kw)
    return {"kind": "pool", "shape": list(block.shape), "block": block.flatten().tolist(),
            "kept": int(block.argmax()), "sum": block.max().item(), "top": top, "left": left}


def linear_step(linear, layer_input, column, shown=SHOWN_CONTRIBUTIONS):
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
