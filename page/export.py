"""The drawing page as one HTML file that needs no Python: draw.html and offline.js inlined, with
each network's traced graph and weights, and the explorer's answers worked out here by PyTorch.

Usage: python draw.py model.pt [recipe.pt ...] --export page.html   (opens offline, by double-click)
"""
import base64
import copy
import io
import json
import operator
import os

import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from cli import UserError, folder_name, predict, save_atomically
from data import MEAN, STD, to_pixels
from page.collect import COLLECT_SIDE
from page.explain import ATTRIBUTION_STEPS, INK_RANGE, UNSURE_BELOW
from page.nodes import operation_of, where
from page.routes import MAX_PICTURE_PIXELS, MAX_SIDE

HERE = os.path.dirname(os.path.abspath(__file__))
MARKER = "<!-- export: the exported file's back end goes here -->"
# The file requests nothing, ever: no connections, no other files, only its own script, style
# and the pictures it makes itself (data: and blob: URLs). It may compile its own WebAssembly
# (kernels.wasm, inlined) and start a worker from its own script (a blob: URL) to train in.
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'unsafe-inline' 'wasm-unsafe-eval'; "
                           "worker-src blob:; style-src 'unsafe-inline'; img-src data: blob:")
SPRITE_COLUMNS = 100  # the explorer's images travel as one PNG, 100 images to a row
# A set of weights other than a checkpoint's final ones (a training snapshot, the untrained
# network the page adds) takes at most this many bytes of the file: float32 while it fits, else 8,
# else 4 bits a weight. A network of a million weights with 13 snapshots then stays under 20 MB
# with its final weights exact, and the tutorial's network stays exact throughout.
COMPACT_BYTES = 2**20
ROUNDING_IMAGES = 1000  # the images of the first set on which the page counts what rounding changes


def argument(value):
    """A graph node's argument as JSON: another node's output, a number, a list or None."""
    if isinstance(value, torch.fx.Node):
        return {"node": value.name}
    if isinstance(value, (tuple, list)):
        return [argument(item) for item in value]
    if value is None or type(value) in (int, float, bool):
        return value
    raise TypeError(f"an argument of type {type(value).__name__}")


def graph_of(explainer, outputs):
    """The traced graph as offline.js runs it: [{name, op, args, settings, params}] as
    page.nodes describes each node, and the name of the node whose output is the logits.
    UserError for an operation it cannot compute."""
    nodes, output = [], None
    for node in explainer.graph_module.graph.nodes:
        if node.op == "placeholder":
            nodes.append({"name": node.name, "op": "input"})
            continue
        if node.op == "output":
            output = node.args[0].name
            continue
        described = explainer.described[node]
        if (described.op is None or not fits(node, described, outputs)
                or changes_a_shared_input(node, operation_of(explainer.graph_module, node))):
            raise UserError(f"the exported page cannot compute {described.code} "
                            f"({where(node)}); without --export, draw.py serves a page that "
                            "shows it")
        settings = described.settings
        if described.op in ("softmax", "log_softmax"):  # the dimension counted from 0
            settings = {**settings, "dim": softmax_dimension(outputs[node.args[0]], settings["dim"])}
        nodes.append({"name": node.name, "op": described.op, "args": argument(described.args),
                      "settings": settings, "params": described.params})
    return nodes, output


def fits(node, described, outputs):
    """Whether offline.js computes this node as PyTorch did: x + y of one shape or x + a number;
    a softmax along a dimension of a tensor."""
    if described.op in ("softmax", "log_softmax"):
        return softmax_dimension(outputs.get(node.args[0]), described.settings["dim"]) is not None
    if described.op != "add":
        return True
    first, second = (outputs.get(arg) if isinstance(arg, torch.fx.Node) else arg
                     for arg in node.args)
    if not isinstance(first, torch.Tensor):
        return False
    if isinstance(second, torch.Tensor):
        return second.shape == first.shape
    return type(second) in (int, float)


def softmax_dimension(value, dim):
    """The dimension of the tensor value that a softmax's dim names, counted from 0 as PyTorch
    counts it (negative from the end; none given: 0 for 1 and 3 dimensions, else 1), or None."""
    if not isinstance(value, torch.Tensor):
        return None
    rank = value.dim()
    if dim is None:
        dim = 0 if rank in (0, 1, 3) else 1
    if type(dim) is not int or not -rank <= dim < rank:
        return None
    return dim % rank


def changes_a_shared_input(node, operation):
    """Whether node changes its input in place (relu_(), nn.ReLU(inplace=True), +=) while another
    operation also reads that input: PyTorch then gives it the changed values, offline.js (which
    computes everything out of place) the values from before."""
    in_place = (getattr(operation, "inplace", False) is True or node.kwargs.get("inplace") is True
                or node.target is operator.iadd
                or (node.op == "call_method" and str(node.target).endswith("_")))
    source = node.args[0] if node.args else None
    return in_place and isinstance(source, torch.fx.Node) and len(source.users) > 1


def network_data(page, index):
    """Everything offline.js needs of one network: graph, stages, each snapshot's weights, the
    kernels' names and the run's curves."""
    network, explainers = page.networks[index], page.explainers[index]
    # One input through the network gives every node's output, for the shapes graph_of checks.
    outputs = explainers[-1].run(torch.zeros(1, 28, 28, device=page.device))
    graph, output = graph_of(explainers[-1], outputs)
    kernel_names = [name for name, module in network.model.named_modules()
                    if isinstance(module, nn.Conv2d)]
    keys = sorted({key for node in graph for key in (node.get("params") or {}).values()}
                  | {f"{name}.weight" for name in kernel_names})
    state = network.model.state_dict()
    blocks, rounded, bits = weight_blocks(network, explainers, keys)
    on_the_slider = {snapshot: weights for snapshot, weights in rounded.items()
                     if snapshot < len(explainers) - 1}  # not the untrained network's, which has none
    note = {"note": rounding_note(page, explainers, on_the_slider, bits)} if on_the_slider else {}
    return {"name": network.name, "graph": graph, "output": output,
            "stages": [{"name": name, "node": node.name, "shown": shown.name,
                        "details": explainers[-1].details[node]}
                       for name, node, shown in explainers[-1].stages],
            "tensors": [[key, list(state[key].shape)] for key in keys],
            "weights": blocks, "kernels": kernel_names,
            "training": {**page.training(model=index), **note},
            "state": state_entries(state, keys)}


def state_entries(state, keys):
    """The whole state_dict of the final weights, in its order, as offline.js writes it back into
    a checkpoint (its window.routes.checkpoint): [key, dtype, shape, bytes], where bytes is None
    for a tensor among keys (the float32 weights block holds it) and else the tensor's own
    little-endian bytes in base64 (num_batches_tracked, an int64 that no operation reads)."""
    entries = []
    for key, tensor in state.items():
        tensor = tensor.detach().cpu()
        if key in keys:
            entries.append([key, "float32", list(tensor.shape), None])
            continue
        values = tensor.contiguous().numpy()
        values = values.astype(values.dtype.newbyteorder("<"))
        entries.append([key, str(tensor.dtype).removeprefix("torch."), list(tensor.shape),
                        base64.b64encode(values.tobytes()).decode()])
    return entries


def weights_of(model, keys):
    """The tensors named keys, as one block of little-endian float32, in base64."""
    state = model.state_dict()
    return floats(torch.cat([state[key].detach().float().cpu().flatten() for key in keys]))


def weight_blocks(network, explainers, keys):
    """Each snapshot's weights, then the final ones, as offline.js reads them: float32 (exact),
    the number of the block they equal, or compact (compact_weights); the weights the file computes
    with for each compact block, by snapshot; and the bits a compact weight has."""
    final = explainers[-1].model.state_dict()
    bits = next((bits for bits in (32, 8) if sum(final[key].numel() for key in keys) * bits / 6
                 <= COMPACT_BYTES), 4)  # base64: 6 bits of the file carry 8 of the weights
    blocks, rounded = [], {}
    for snapshot, explainer in enumerate(explainers):
        state, last = explainer.model.state_dict(), snapshot == len(explainers) - 1
        if not last and all(torch.equal(state[key], final[key]) for key in keys):
            blocks.append(len(explainers) - 1)  # the last snapshot: the final weights, kept once
        elif bits == 32 or (last and not network.untrained):
            blocks.append(weights_of(explainer.model, keys))
        else:
            block, rounded[snapshot] = compact_weights(state, keys, bits)
            blocks.append(block)
    return blocks, rounded, bits


def compact_weights(state, keys, bits):
    """The tensors named keys with bits a weight: each row (one unit's weights) as whole multiples
    of its own scale, its largest magnitude the largest multiple. Returns the block offline.js
    reads ({bits, scales, codes}: a scale per row, then each code plus 2 ** (bits - 1), packed
    lowest bits first) and {key: the weights the file computes with}."""
    largest = 2 ** (bits - 1) - 1
    scales, codes, rounded = [], [], {}
    for key in keys:
        tensor = state[key].detach().float().cpu()
        rows = tensor.reshape(tensor.shape[0], -1) if tensor.dim() > 1 else tensor.reshape(1, -1)
        scale = rows.abs().amax(dim=1, keepdim=True) / largest
        code = (rows / torch.where(scale > 0, scale, 1)).round()
        scales.append(scale.flatten())
        codes.append(code.flatten())
        rounded[key] = (code * scale).reshape(tensor.shape)
    packed = (torch.cat(codes) + largest + 1).to(torch.uint8)
    if bits == 4:  # two codes a byte
        packed = F.pad(packed, (0, len(packed) % 2)).view(-1, 2)
        packed = packed[:, 0] | (packed[:, 1] << 4)
    return ({"bits": bits, "scales": floats(torch.cat(scales)),
             "codes": base64.b64encode(packed.numpy().tobytes()).decode()}, rounded)


def rounding_note(page, explainers, rounded, bits):
    """The sentence the training slider shows when the file rounds snapshots: how many answers
    to the first images of the first set the rounding changes."""
    sentence = (f"In this file the weights before the last step are kept with {bits} bits each, "
                "not 32, to keep it small")
    if not page.explorer.sets:
        return sentence + ": their answers can differ a little from PyTorch's."
    images = page.explorer.sets[0].images[:ROUNDING_IMAGES].to(page.device)
    changed = 0
    for snapshot, weights in rounded.items():
        exact = page.explorer.answers_of(explainers[snapshot], 0)[:ROUNDING_IMAGES].argmax(dim=1)
        model = copy.deepcopy(explainers[snapshot].model)
        model.load_state_dict(weights, strict=False)  # the rounded tensors; the rest as it was
        changed += (predict(model, images) != exact).sum().item()
    share = changed / (len(images) * len(rounded))
    return (sentence + f": at those steps, {share:.1%} of the answers to {len(images):,} images of "
            f"the {page.explorer.sets[0].name} differ from PyTorch's.")


def explorer_data(page, shown):
    """Per network, snapshot and set: the accuracy and confusion matrix, and each cell's images
    (most confident first, as the served page shows them); per pair of networks, the images one
    reads right and the other wrong. Every image these name is added to shown[set]."""
    cells, testsets = [], []
    for index, explainers in enumerate(page.explainers):
        cells.append([]), testsets.append([])
        for snapshot in range(len(explainers)):
            chosen = {"model": index, "snapshot": snapshot}
            testsets[-1].append([without_model(page.testset(**chosen, set_index=s))
                                 for s in range(len(page.explorer.sets))])
            cells[-1].append([[compact(page.examples(**chosen, set_index=s, true=t, predicted=p),
                                       shown[s])
                               for t in range(10) for p in range(10)]
                              for s in range(len(page.explorer.sets))])
    comparisons = [[[compact(page.examples(model=a, other=b, set_index=s), shown[s], True)
                     if a != b else None for b in range(len(page.networks))]
                    for a in range(len(page.networks))] for s in range(len(page.explorer.sets))]
    return cells, testsets, comparisons


def without_model(answer):
    return {key: value for key, value in answer.items() if key != "model"}  # offline.js adds it


def compact(answer, shown, with_predictions=False):
    """An /examples answer without its pixels: [count, indices, (predictions,) probabilities]."""
    indices = [example["index"] for example in answer["examples"]]
    shown.update(indices)
    probabilities = [example["probability"] for example in answer["examples"]]
    if with_predictions:
        predictions = [example["predicted"] for example in answer["examples"]]
        return [answer["count"], indices, predictions, probabilities]
    return [answer["count"], indices, probabilities]


def set_data(images, indices):
    """A set's name and size, and the images the explorer shows, as one PNG (and their labels)."""
    indices = sorted(indices)
    data = {"name": images.name, "mnist": images.mnist, "count": len(images.labels),
            "indices": indices, "labels": images.labels[indices].tolist(), "sprite": None}
    if indices:
        pixels = (to_pixels(images.images[indices]) * 255).round().clamp(0, 255).to(torch.uint8)
        rows = -(-len(indices) // SPRITE_COLUMNS)
        sheet = torch.zeros(rows * SPRITE_COLUMNS, 28, 28, dtype=torch.uint8)
        sheet[:len(indices)] = pixels[:, 0]
        sheet = sheet.view(rows, SPRITE_COLUMNS, 28, 28).permute(0, 2, 1, 3).reshape(rows * 28, -1)
        buffer = io.BytesIO()
        Image.fromarray(sheet.numpy(), mode="L").save(buffer, format="PNG", optimize=True)
        data["sprite"] = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    return data


def resize_probe():
    """Resizes as extras.pictures.prepare_digit makes them, by this PyTorch: offline.js finds from
    them the order in which this build adds a resize's products (one of 8 random rows of 200, to
    5 ... 20 columns: sums of every length modulo 4)."""
    rows = torch.rand(1, 1, 8, 200, generator=torch.Generator().manual_seed(0))
    widths = list(range(5, 21))
    outputs = [F.interpolate(rows, size=(8, width), mode="bilinear", antialias=True)
               for width in widths]
    return {"shape": [8, 200], "input": floats(rows), "widths": widths,
            "outputs": [floats(output) for output in outputs]}


def floats(values):
    """A tensor's values as little-endian float32, in base64, as offline.js reads them."""
    return base64.b64encode(values.detach().float().cpu().numpy().astype("<f4").tobytes()).decode()


def export_data(page):
    """The JSON the exported file carries (offline.js reads it)."""
    networks = [network_data(page, index) for index in range(len(page.networks))]
    shown = [set() for _ in page.explorer.sets]
    cells, testsets, comparisons = explorer_data(page, shown)
    for network, network_cells, network_testsets in zip(networks, cells, testsets):
        network.update(cells=network_cells, testsets=network_testsets)
    collector = page.collector
    return {"networks": networks, "comparisons": comparisons, "missing": page.explorer.missing,
            "sets": [set_data(images, indices)
                     for images, indices in zip(page.explorer.sets, shown)],
            "sprite_columns": SPRITE_COLUMNS, "mean": MEAN, "std": STD,
            "attribution_steps": ATTRIBUTION_STEPS, "unsure_below": UNSURE_BELOW,
            "resize_probe": resize_probe(),
            # maths.js's products and convolutions, assembled from kernels.wat (tools.make_kernels)
            "kernels": base64.b64encode(script_bytes("kernels.wasm")).decode(),
            "ink_range": INK_RANGE,
            # What the server refuses, so that the file refuses the same (offline.js).
            "limits": {"side": MAX_SIDE, "picture_pixels": MAX_PICTURE_PIXELS,
                       "collect_side": COLLECT_SIDE},
            # The downloaded zip's folder: a name of its own, none for the root (offline.js).
            "collect": collector and {"folder": folder_name(collector.folder),
                                      "limit": collector.limit}}


def script_bytes(name):
    with open(os.path.join(HERE, name), "rb") as file:
        return file.read()


def page_html(page, mnist=None):
    """draw.html (as the Page read it) with the CSP, the data, maths.js, trainer.js and
    offline.js inlined: one file, nothing else needed. mnist: MNIST's training and test images as
    page.mnist_sets packs them (EXPORT.mnist and the text of each element), or None."""
    html = page.html.decode("utf-8")
    maths, trainer, script = (script_bytes(name).decode("utf-8")
                              for name in ("maths.js", "trainer.js", "offline.js"))
    exported, images = export_data(page), ""
    if mnist:
        exported["mnist"], texts = mnist
        # Outside the JSON, which the page parses as it opens: these are read when first needed.
        # Their alphabet has no "<", so no "</script" can occur.
        images = "".join(f'<script type="text/plain" id="{name}">{text}</script>\n'
                         for name, text in texts.items())
    # Any "<" inside a script may end it ("</script>") or make the parser swallow the scripts
    # after it ("<!--<script>"); JSON's "\u003c" is the same character, and "<" occurs in JSON
    # only inside strings (a name, a path, a line of code).
    data = json.dumps(exported, separators=(",", ":")).replace("<", "\\u003c")
    back_end = (f'{images}<script type="application/json" id="export-data">{data}</script>\n'
                f'<script id="maths-js">\n{maths}</script>\n'
                # The training worker's own part: not run here; offline.js starts it with maths.js.
                f'<script type="text/plain" id="trainer-js">\n{trainer}</script>\n'
                f"<script>\n{script}</script>")
    policy = f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">'
    return (html.replace('<meta charset="utf-8">', f'<meta charset="utf-8">\n{policy}', 1)
                .replace(MARKER, back_end, 1))


def export_page(page, path, mnist=None):
    """Write the exported page to path atomically (with mnist as page_html takes it); return its
    size in bytes."""
    content = page_html(page, mnist).encode("utf-8")
    save_atomically(path, lambda file: file.write(content))
    return len(content)
