"""The drawing page as one HTML file that needs no Python: draw.html with its scripts inlined and
its back end in the browser (page/offline/, page/maths/), with each network's traced graph and
weights, the explorer's answers worked out here by PyTorch, and the rules the server keeps.

Usage: python draw.py model.pt [recipe.pt ...] --export page.html   (opens offline, by double-click)
"""
import ast
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

from common import MAX_LR, MAX_SEED, UserError, predict, save_atomically
from data import MEAN, STD, to_pixels
from extras.flags import MAX_WEIGHT_DECAY
from extras.pictures import (DAMAGED, EXTRA_MOST, EXTRA_PER_EPOCH, NO_DIGIT, PICTURE_FORMATS,
                             TOO_MANY_PIXELS, UNREAD_FORMAT)
from page.collect import COLLECT_SIDE, FOLDER_FULL, folder_name
from page.design import DESIGN_BOUNDS, DESIGN_MESSAGES, design_data
from page.explain import (ATTRIBUTION_STEPS, INK_RANGE, NO_VALUE, SHOWN_CONTRIBUTIONS,
                          UNSURE_BELOW)
from page.nodes import operation_of, where
from page.routes import (MAX_PICTURE_PIXELS, MAX_POSITION, MAX_SIDE, MESSAGES, SHOWN_EXAMPLES,
                         read_text)

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
# The bounds of the file's training bodies (routes.trainSteps and routes.trainRun alike), each
# refused beyond in one line: train.py's own for the learning rate (the file detects divergence as
# train.py does), the weight decay and the seed (32 bits: the file's generator takes no more, and
# a JSON number cannot carry 2**63 exactly); the file's own, for a phone's memory, for the rest.
# workers: the most that share a batch, whatever number of cores the browser reports: each holds
# its own copy of the training images, and a batch of 64 in more shares leaves each too little to
# do between the messages (docs/page.md, "Both cores").
FILE_TRAINING = {"images": 256, "steps": 100, "epochs": 100, "batchSize": 1024, "lr": MAX_LR,
                 "weightDecay": MAX_WEIGHT_DECAY, "seed": MAX_SEED, "workers": 4}
# Steps between the weights a run in the file sends, for the page to show the network as it is.
FILE_REDRAW_INTERVAL = 200
# The refusals the file words as the server does, and its own of routes.design: str.format
# templates, which its said() fills in.
FILE_MESSAGES = {**MESSAGES, "no_digit": NO_DIGIT, "unread_format": UNREAD_FORMAT,
                 "too_many_pixels": TOO_MANY_PIXELS, "damaged": DAMAGED, "folder_full": FOLDER_FULL,
                 "no_value": NO_VALUE, **DESIGN_MESSAGES}
# The exported file's back end, in the order it runs: the maths (the training worker runs it too,
# with trainer.js), then the routes in the browser; each file says what it holds.
MATHS = ("tensors", "dot-products", "pooling", "nonlinearities", "dropout", "normalisation", "shapes",
         "kernels", "graph", "training", "initialisation")
BACK_END = ("checks", "networks", "digit", "pictures", "images", "answers", "zip", "collect", "explorer",
            "pickle", "checkpoint", "run-checks", "run-end", "training", "design-plan", "design",
            "model-source", "routes")


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
    """The traced graph as page/offline/ runs it: [{name, op, args, settings, params}] as
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
    """Whether page/offline/ computes this node as PyTorch did: x + y of one shape or x + a number;
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
    operation also reads that input: PyTorch then gives it the changed values, page/offline/ (which
    computes everything out of place) the values from before."""
    in_place = (getattr(operation, "inplace", False) is True or node.kwargs.get("inplace") is True
                or node.target is operator.iadd
                or (node.op == "call_method" and str(node.target).endswith("_")))
    source = node.args[0] if node.args else None
    return in_place and isinstance(source, torch.fx.Node) and len(source.users) > 1


def network_data(page, index):
    """Everything page/offline/ needs of one network: graph, stages, each snapshot's weights, the
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
    """The whole state_dict of the final weights, in its order, as page/offline/ writes it back into
    a checkpoint (its window.routes.checkpoint): [key, dtype, shape, bytes], where bytes is None
    for a tensor among keys (the float32 weights block holds it) and else the tensor's own
    little-endian bytes in base64 (num_batches_tracked, an int64 that no operation reads)."""
    entries = []
    for key, tensor in state.items():
        tensor = tensor.detach().cpu()
        if key in keys:
            entries.append([key, "float32", list(tensor.shape), None])
            continue
        # Its bytes as they are (torch's order, little-endian on every machine it runs on): numpy
        # has no bfloat16 or float8 to convert them through.
        values = tensor.contiguous().reshape(-1).view(torch.uint8).numpy()
        entries.append([key, str(tensor.dtype).removeprefix("torch."), list(tensor.shape),
                        base64.b64encode(values.tobytes()).decode()])
    return entries


def weights_of(model, keys):
    """The tensors named keys, as one block of little-endian float32, in base64."""
    state = model.state_dict()
    return floats(torch.cat([state[key].detach().float().cpu().flatten() for key in keys]))


def weight_blocks(network, explainers, keys):
    """Each snapshot's weights, then the final ones, as page/offline/ reads them: float32 (exact),
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
    of its own scale, its largest magnitude the largest multiple. Returns the block page/offline/
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
    return {key: value for key, value in answer.items() if key != "model"}  # page/offline/ adds it


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
    """Resizes as extras.pictures.prepare_digit makes them, by this PyTorch: page/offline/ finds from
    them the order in which this build adds a resize's products (one of 8 random rows of 200, to
    5 ... 20 columns: sums of every length modulo 4)."""
    rows = torch.rand(1, 1, 8, 200, generator=torch.Generator().manual_seed(0))
    widths = list(range(5, 21))
    outputs = [F.interpolate(rows, size=(8, width), mode="bilinear", antialias=True)
               for width in widths]
    return {"shape": [8, 200], "input": floats(rows), "widths": widths,
            "outputs": [floats(output) for output in outputs]}


def floats(values):
    """A tensor's values as little-endian float32, in base64, as page/offline/ reads them."""
    return base64.b64encode(values.detach().float().cpu().numpy().astype("<f4").tobytes()).decode()


def export_data(page):
    """The JSON the exported file carries (page/offline/ reads it)."""
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
            # the maths' kernels (page/maths/kernels.js), assembled from page/kernels/
            # (tools.make_kernels): with fused multiply-adds, and without, best first
            "kernels": [[name, base64.b64encode(script_bytes(f"{file}.wasm")).decode()]
                        for name, file in (("fma", "kernels-fma"), ("simd", "kernels"))],
            "ink_range": INK_RANGE,
            # What the server refuses and shows, so that the file refuses and shows the same.
            "limits": {"side": MAX_SIDE, "picture_pixels": MAX_PICTURE_PIXELS,
                       "picture_formats": PICTURE_FORMATS, "collect_side": COLLECT_SIDE,
                       "position": MAX_POSITION, "shown": SHOWN_EXAMPLES,
                       "contributions": SHOWN_CONTRIBUTIONS, "training": FILE_TRAINING,
                       "design": DESIGN_BOUNDS},
            "messages": FILE_MESSAGES, "training_run": tutorial_run(), "design": design_data(state_entries),
            # The downloaded zip's folder: a name of its own, none for the root.
            "collect": collector and {"folder": folder_name(collector.folder),
                                      "limit": collector.limit}}


def tutorial_run():
    """What a run in the file takes of train.py: the defaults it starts from (--epochs,
    --batch-size, --lr, --seed, the tutorial's weight decay), --log-interval's and DIVERGED_LOSS,
    read from train.py's source (page/ imports no script: tests/test_layout.py); with the rule by
    which it repeats the drawings (extras.pictures) and the file's own redraw interval."""
    tree = ast.parse(read_text(os.path.join(os.path.dirname(HERE), "train.py")))
    flags = {node.args[0].value: ast.literal_eval(keyword.value) for node in ast.walk(tree)
             if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument"
             for keyword in node.keywords if keyword.arg == "default"}
    names = {node.targets[0].id: ast.literal_eval(node.value) for node in tree.body
             if isinstance(node, ast.Assign) and node.targets[0].id in ("DIVERGED_LOSS", "TUTORIAL_VALUES")}
    return {"defaults": {"epochs": flags["--epochs"], "batchSize": flags["--batch-size"],
                         "lr": flags["--lr"], "weightDecay": names["TUTORIAL_VALUES"]["weight_decay"],
                         "seed": flags["--seed"]},
            "log_interval": flags["--log-interval"], "diverged_loss": names["DIVERGED_LOSS"],
            "redraw_interval": FILE_REDRAW_INTERVAL, "extra_per_epoch": EXTRA_PER_EPOCH,
            "extra_most": EXTRA_MOST}


def script_bytes(name):
    with open(os.path.join(HERE, name), "rb") as file:
        return file.read()


def inline(text, attributes=""):
    """A script's text as an inline script element ("</script" or "<!--" in it would end it or
    swallow the scripts after it: the project's scripts hold neither, tests/test_scripts.py)."""
    return f"<script{attributes}>\n{text}</script>\n"


def back_end():
    """The file's back end as inline scripts: the maths (run here, and by the training worker,
    which is made of the scripts marked data-worker), the worker's own loop (not run here), then
    the routes in the browser."""
    maths = "".join(inline(read_text(os.path.join(HERE, "maths", f"{name}.js")), " data-worker")
                    for name in MATHS)
    trainer = inline(read_text(os.path.join(HERE, "offline", "trainer.js")), ' type="text/plain" data-worker')
    routes = "".join(inline(read_text(os.path.join(HERE, "offline", f"{name}.js"))) for name in BACK_END)
    return maths + trainer + routes


def page_html(page, mnist=None):
    """draw.html (as the Page read it) with the CSP, the data, the back end and the page's own
    scripts inlined: one file, nothing else needed. mnist: MNIST's training and test images as
    page.mnist_sets packs them (EXPORT.mnist and the text of each element), or None."""
    html = page.html.decode("utf-8")
    for name, text in page.scripts.items():  # where draw.html loads each, in its order
        html = html.replace(f'<script src="/scripts/{name}"></script>\n', inline(text.decode("utf-8")), 1)
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
    data = f'{images}<script type="application/json" id="export-data">{data}</script>\n'
    policy = f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">'
    return (html.replace('<meta charset="utf-8">', f'<meta charset="utf-8">\n{policy}', 1)
                .replace(MARKER + "\n", data + back_end(), 1))


def export_page(page, path, mnist=None):
    """Write the exported page to path atomically (with mnist as page_html takes it); return its
    size in bytes."""
    content = page_html(page, mnist).encode("utf-8")
    save_atomically(path, lambda file: file.write(content))
    return len(content)
