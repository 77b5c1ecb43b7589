"""What each of the page's routes answers: the networks and labelled sets it offers (loaded from
their files), the requests' values checked, and the Page and its Explorer that work out answers.

Usage: from page.routes import Page, load_models, load_sets
       page = Page(load_models(["model.pt"], "cpu"), "cpu"); page.kernels(model=0, snapshot=2)
"""
import base64
import binascii
import io
import os
import re
import threading
from dataclasses import dataclass, field
from http import HTTPStatus

import torch
import torch.nn as nn
from PIL import Image

from common import EVAL_BATCH_SIZE, UserError, accuracy
from data import DataError, load_mnist, raw_folder, to_pixels
from extras.checkpoints import build_model, read_checkpoint
from extras.pictures import DamagedPicture, prepare_digit, read_labelled_folder, read_picture
from extras.report import confusion_matrix
from model import Net
from page.collect import (COLLECT_LIMIT, COLLECT_SIDE, Collector, FolderFull, PictureTooLarge,
                          folder_name)
from page.explain import Explainer, confidence

HERE = os.path.dirname(os.path.abspath(__file__))
PAGE = os.path.join(HERE, "draw.html")
MAX_SIDE = 1000             # pixels per side of a drawing sent as numbers
# A picture file is decoded within as many pixels as the largest drawing sent as numbers: a
# drawing needs far fewer than the photos test.py --image reads, and a request's memory grows with
# its pixels. A photo's JPEG is decoded at 1/2 to 1/8 of its size to fit
# (extras.pictures.open_within_limit).
MAX_PICTURE_PIXELS = MAX_SIDE * MAX_SIDE
MAX_POSITION = 10_000       # a step's map, row and column, each at most
SHOWN_EXAMPLES = 60         # the images of a confusion-matrix cell the explorer shows, at most
# What a refusal says: str.format templates, in words the exported page says too (page/export.py
# sends them there, with extras.pictures', page.collect's and page.explain's).
MESSAGES = {
    "not_an_object": "the request must be a JSON object",
    "query_not_whole": "each field of the query must be a whole number",
    "whole_number": "{name} must be a whole number from {low} to {high}",
    "pixel_rows": "pixels must be a list of equally long rows, at most {side} x {side}",
    "pixel_values": "pixels must be numbers from 0 to 255",
    "one_input": "send one of pixels (a drawing), picture (an image file, base64) or index (an image "
                 "of a set)",
    "one_of_three": "send one of pixels, picture or index",
    "picture_not_text": "picture must be a base64 string",
    "not_base64": "picture is not valid base64",
    "no_set": "no labelled set was given",
    "attribution_not_bool": "attribution must be true or false",
    "stage_not_name": "stage must be the name of a stage",
    "collect_fields": "send label and pixels (a drawing) only",
    "collecting_off": "saving drawings is off: {how} with --collect DIR to turn it on",
}
UNTRAINED = "untrained (random weights)"
ABSENT = object()  # a field the request did not send (JSON's null is sent: None, and refused)


class BadRequest(Exception):
    """A request the page or a script got wrong: answered with its status and a one-line message."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class DigitInput:
    """What a request sends to be read: one of a drawing, a picture file or an image of a set."""

    pixels: object = ABSENT     # a drawing: rows of grey levels
    picture: object = ABSENT    # an image file, base64 (a data: URL too)
    index: object = ABSENT      # an image of a labelled set ...
    set_index: object = 0       # ... of this set


@dataclass
class Network:
    """A network the page offers: its weights after training and, when its checkpoint has them,
    the snapshots taken during training and the per-step history of the run."""

    name: str
    model: nn.Module
    snapshots: list = field(default_factory=list)  # [(step, model)], in order of step
    history: dict = field(default_factory=dict)    # "loss" and "accuracy" of each step
    untrained: bool = False  # the page's own random network, not one of a checkpoint


@dataclass
class Images:
    """A labelled set the page explores: the MNIST test set, or a folder of your pictures."""

    name: str
    images: torch.Tensor  # (N, 1, 28, 28), normalised as the network takes them
    labels: torch.Tensor  # (N,)
    mnist: bool = False   # MNIST's own test set, whose accuracy a checkpoint records


def read_text(path):
    with open(path, encoding="utf-8") as file:
        return file.read()


# The page's own scripts (page/scripts/), by the names draw.html loads them by, in its order.
SCRIPT_NAMES = tuple(re.findall(r'<script src="/scripts/([a-z-]+\.js)"></script>', read_text(PAGE)))


def load_models(paths, device):
    """Return a Network for each checkpoint, then the untrained network (seed 0)."""
    networks = []
    for path in paths:
        checkpoint = read_checkpoint(path)
        snapshots = [(snapshot["step"], build_model(snapshot["model"], path, device))
                     for snapshot in checkpoint.get("snapshots") or []]
        networks.append(Network(os.path.basename(path), build_model(checkpoint["model"], path, device),
                                snapshots, checkpoint.get("history") or {}))
    torch.manual_seed(0)  # the same random weights every time the page starts
    return networks + [Network(UNTRAINED, Net().to(device).eval(), untrained=True)]


def load_sets(data_dir, images_dir):
    """Return the labelled sets to explore and a line saying what is missing (or None).

    The page never downloads MNIST: without it the drawing works as before, and the page says how
    to get it.
    """
    sets, missing = [], None
    present = raw_folder(data_dir)[1]
    if present:
        sets.append(Images("MNIST test set", *load_mnist(data_dir, train=False), mnist=True))
    else:
        missing = mnist_missing(data_dir, "then start draw.py again")
    if images_dir:
        sets.append(Images(folder_name(images_dir),
                           *read_labelled_folder(images_dir)))
    return sets, missing


def mnist_missing(data_dir, then):
    """The line that says data_dir holds no MNIST, how to get it, and then what to do. It names
    the folder by its own name only: the command line that gave it knows the rest."""
    return (f"No MNIST in {folder_name(data_dir)}/MNIST/raw: python train.py with the same "
            f"--data-dir downloads it (or see Offline use in docs/usage.md), {then}.")


def describe(tensor, digits=5):
    """A tensor (batch 1) as JSON: its shape without the batch, and its values rounded."""
    values = tensor[0].detach().cpu()
    # Rounded in float64 by PyTorch: thousands of values a request, and far quicker than round().
    return {"shape": list(values.shape),
            "values": values.double().round(decimals=digits).flatten().tolist()}


def learned_kernels(model):
    """The learned convolution kernels of model, by layer name, with their shapes."""
    return [{"name": name, **describe(module.weight[None])}
            for name, module in model.named_modules() if isinstance(module, nn.Conv2d)]


def whole_number(value, name, low, high):
    """value if it is a whole number from low to high (not a bool); else BadRequest naming the
    request's field, name."""
    if type(value) is not int or not low <= value <= high:
        raise BadRequest(HTTPStatus.BAD_REQUEST,
                         MESSAGES["whole_number"].format(name=name, low=low, high=high))
    return value


def picture_from_pixels(pixels, max_side=MAX_SIDE):
    """A drawing sent as rows of grey levels 0 (black) to 255 (white), as a PIL picture."""
    if not (isinstance(pixels, list) and 0 < len(pixels) <= max_side
            and all(isinstance(row, list) and len(row) == len(pixels[0]) for row in pixels)
            and 0 < len(pixels[0]) <= max_side):
        raise BadRequest(HTTPStatus.BAD_REQUEST, MESSAGES["pixel_rows"].format(side=max_side))
    flat = [value for row in pixels for value in row]
    if not all(type(value) in (int, float) and 0 <= value <= 255 for value in flat):
        raise BadRequest(HTTPStatus.BAD_REQUEST, MESSAGES["pixel_values"])
    grey = torch.tensor(flat, dtype=torch.float32).round().to(torch.uint8)
    return Image.fromarray(grey.view(len(pixels), len(pixels[0])).numpy(), mode="L")


def drawn_digit(pixels=ABSENT, picture=ABSENT):
    """Prepare the digit sent as pixels (a drawing) or as picture (a file, base64): one of them."""
    if (pixels is ABSENT) == (picture is ABSENT):
        raise BadRequest(HTTPStatus.BAD_REQUEST, MESSAGES["one_input"])
    try:
        if picture is ABSENT:
            return prepare_digit(picture_from_pixels(pixels))
        if not isinstance(picture, str):
            raise BadRequest(HTTPStatus.BAD_REQUEST, MESSAGES["picture_not_text"])
        try:  # a data: URL as the browser's FileReader gives it, or bare base64
            content = base64.b64decode(picture.split(",", 1)[-1], validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest(HTTPStatus.BAD_REQUEST, MESSAGES["not_base64"]) from None
        return read_picture(io.BytesIO(content), "picture", MAX_PICTURE_PIXELS)
    except DamagedPicture as error:  # the decoder's words are no business of the one who asks
        raise BadRequest(HTTPStatus.UNPROCESSABLE_ENTITY, error.short) from None
    except DataError as error:  # no digit in it, too many pixels, a format not read
        raise BadRequest(HTTPStatus.UNPROCESSABLE_ENTITY, str(error)) from None


class Explorer:
    """The labelled sets the page explores, and each network's answers for all their images,
    worked out once per network and snapshot, not at each click."""

    def __init__(self, sets, missing, device):
        self.sets, self.missing, self.device = list(sets), missing, device
        self.answers, self.lock = {}, threading.Lock()  # (explainer, set) -> (N, 10)

    def answers_of(self, explainer, set_index):
        """The probabilities (N, 10) of explainer's network for every image of a set."""
        with self.lock:
            key = (id(explainer), set_index)
            if key not in self.answers:
                self.answers[key] = probabilities(explainer.model,
                                                  self.sets[set_index].images.to(self.device))
            return self.answers[key]

    def chosen_set(self, set_index):
        if not self.sets:
            raise BadRequest(HTTPStatus.NOT_FOUND, self.missing or MESSAGES["no_set"])
        return whole_number(set_index, "set", 0, len(self.sets) - 1)

    def catalogue(self):
        return [{"name": images.name, "count": len(images.labels)} for images in self.sets]

    def image(self, set_index, index):
        """The (1, 28, 28) image index of a set, and its label."""
        images = self.sets[self.chosen_set(set_index)]
        index = whole_number(index, "index", 0, len(images.labels) - 1)
        return images.images[index].to(self.device), int(images.labels[index])

    def testset(self, explainer, set_index=0):
        """The accuracy and confusion matrix of explainer's network on a set."""
        set_index = self.chosen_set(set_index)
        labels = self.sets[set_index].labels
        predictions = self.answers_of(explainer, set_index).argmax(dim=1)
        return {"set": self.sets[set_index].name, "count": len(labels),
                "accuracy": accuracy(predictions, labels),
                "confusion": confusion_matrix(labels, predictions).tolist()}

    def examples(self, explainer, set_index=0, true=None, predicted=None, other=None,
                 shown=SHOWN_EXAMPLES):
        """The images of one confusion-matrix cell (true, predicted), most confident first; or,
        with other (an explainer), the images the chosen network reads right and other wrong."""
        set_index = self.chosen_set(set_index)
        images, answers = self.sets[set_index], self.answers_of(explainer, set_index)
        predictions = answers.argmax(dim=1)
        if other is not None:
            other_predictions = self.answers_of(other, set_index).argmax(dim=1)
            chosen = (predictions == images.labels) & (other_predictions != images.labels)
        else:
            true, predicted = whole_number(true, "true", 0, 9), whole_number(predicted, "predicted", 0, 9)
            chosen = (images.labels == true) & (predictions == predicted)
        found = chosen.nonzero().view(-1)
        confidence = answers[found, predictions[found]]
        order = found[confidence.argsort(descending=True)][:shown]
        pixels = (to_pixels(images.images[order]) * 255).round().clamp(0, 255).to(torch.uint8)
        return {"count": len(found), "examples": [
            {"index": int(i), "label": int(images.labels[i]), "predicted": int(predictions[i]),
             "probability": round(answers[i, predictions[i]].item(), 4),
             "pixels": pixels[position].flatten().tolist()} for position, i in enumerate(order)]}


class Page:
    """What the server answers: the page, the networks, each answer with its explanations; the
    labelled sets (an Explorer) and the saving of drawings (a Collector, or None)."""

    def __init__(self, networks, device, sets=(), missing=None, collect=None,
                 collect_limit=COLLECT_LIMIT):
        with open(PAGE, "rb") as file:
            self.html = file.read()
        self.scripts = {name: read_text(os.path.join(HERE, "scripts", name)).encode()
                        for name in SCRIPT_NAMES}  # read with it: the server answers from these
        self.device, self.networks = device, networks
        self.collector = collect and Collector(collect, collect_limit)  # None: saving is off
        self.explainers = []  # for each network: its snapshots' explainers, then the final one
        for network in networks:
            try:
                self.explainers.append([Explainer(model) for _, model in network.snapshots]
                                       + [Explainer(network.model)])
            except UserError as error:
                raise UserError(f"{network.name}: {error}") from None
        self.explorer = Explorer(sets, missing, device)
        for explainers in self.explainers:  # the final weights now; snapshots when first shown
            for set_index in range(len(self.explorer.sets)):
                self.explorer.answers_of(explainers[-1], set_index)

    # Each method takes the request's fields as keyword arguments (page.server maps the JSON
    # names, "set" to set_index, "map" to map_index, "digit" to target), checks them against what
    # the page holds, and answers a dict to send as JSON; BadRequest with its status otherwise.

    def chosen(self, model=0, snapshot=ABSENT):
        """The index of the network model names, and the explainer of its snapshot (the final
        weights when absent)."""
        index = whole_number(model, "model", 0, len(self.networks) - 1)
        explainers = self.explainers[index]
        if snapshot is ABSENT:
            snapshot = len(explainers) - 1
        return index, explainers[whole_number(snapshot, "snapshot", 0, len(explainers) - 1)]

    def digit(self, digit):
        """The (1, 28, 28) digit a DigitInput sends, on the device, and its label when known."""
        if digit.index is not ABSENT:
            if digit.pixels is not ABSENT or digit.picture is not ABSENT:
                raise BadRequest(HTTPStatus.BAD_REQUEST, MESSAGES["one_of_three"])
            return self.explorer.image(digit.set_index, digit.index)
        return drawn_digit(digit.pixels, digit.picture).to(self.device), None

    def model_list(self):
        return {"models": [network.name for network in self.networks],
                "snapshots": [[step for step, _ in network.snapshots] for network in self.networks],
                "sets": self.explorer.catalogue(), "missing": self.explorer.missing,
                "collect": self.collector and {"folder": self.collector.name,
                                               "limit": self.collector.limit,
                                               "counts": self.collector.counts()}}

    def kernels(self, model=0, snapshot=ABSENT):
        index, explainer = self.chosen(model, snapshot)
        return {"model": self.networks[index].name, "kernels": learned_kernels(explainer.model)}

    def training(self, model=0, snapshot=ABSENT):
        """The run's loss and accuracy at each step, and the steps of its snapshots (snapshot is
        checked, as every route checks it, though the run is the same at each)."""
        index, _ = self.chosen(model, snapshot)
        network = self.networks[index]
        return {"model": network.name, "snapshots": [step for step, _ in network.snapshots],
                **{key: [round(value, 5) for value in network.history.get(key, [])]
                   for key in ("loss", "accuracy")}}

    def testset(self, model=0, snapshot=ABSENT, set_index=0):
        """The accuracy and confusion matrix of the chosen network (at its snapshot)."""
        index, explainer = self.chosen(model, snapshot)
        return {"model": self.networks[index].name, **self.explorer.testset(explainer, set_index)}

    def examples(self, model=0, snapshot=ABSENT, set_index=0, true=None, predicted=None,
                 other=ABSENT):
        """A confusion-matrix cell's images; with other (a network's index), the images the
        chosen network reads right and the other one (at its final weights) wrong."""
        _, explainer = self.chosen(model, snapshot)
        if other is not ABSENT:
            other = self.explainers[whole_number(other, "other", 0, len(self.networks) - 1)][-1]
        return self.explorer.examples(explainer, set_index, true, predicted,
                                      None if other is ABSENT else other)

    def predict(self, digit, model=0, snapshot=ABSENT, attribution=True):
        index, explainer = self.chosen(model, snapshot)
        # attribution=False leaves out the pixels picture (64 passes through the network): the
        # page asks so while the pen moves, and asks for it when the stroke ends.
        if type(attribution) is not bool:
            raise BadRequest(HTTPStatus.BAD_REQUEST, MESSAGES["attribution_not_bool"])
        digit, label = self.digit(digit)  # (1, 28, 28)
        layers = explainer.layers(explainer.run(digit))
        probabilities = layers[-1]["output"][0].cpu()  # (10,)
        prediction = int(probabilities.argmax())
        return {"model": self.networks[index].name, "prediction": prediction, "label": label,
                "probabilities": [round(value, 6) for value in probabilities.tolist()],
                "confidence": confidence(probabilities, digit.cpu()),
                "input": describe(to_pixels(digit[None])),  # brightness 0..1
                "layers": [{**{key: value for key, value in layer.items() if key != "output"},
                            **describe(layer["output"])} for layer in layers],
                "attribution": self.attribution_of(explainer, digit, prediction)
                if attribution else None}

    def step(self, digit, stage=None, map_index=None, row=None, column=None, model=0,
             snapshot=ABSENT):
        _, explainer = self.chosen(model, snapshot)
        if not isinstance(stage, str):
            raise BadRequest(HTTPStatus.BAD_REQUEST, MESSAGES["stage_not_name"])
        position = [whole_number(value, name, 0, MAX_POSITION)
                    for value, name in ((map_index, "map"), (row, "row"), (column, "column"))]
        digit, _ = self.digit(digit)
        try:
            return explainer.step(explainer.run(digit), stage, *position)
        except UserError as error:
            raise BadRequest(HTTPStatus.BAD_REQUEST, str(error)) from None

    def attribution(self, digit, target=None, model=0, snapshot=ABSENT):
        _, explainer = self.chosen(model, snapshot)
        target = whole_number(target, "digit", 0, 9)
        return self.attribution_of(explainer, self.digit(digit)[0], target)

    def collect(self, label=None, pixels=ABSENT, unexpected=()):
        """Save a drawing, as drawn, into the --collect folder under its label; never overwrite.
        unexpected: the names of the request's other fields (model and snapshot allowed)."""
        if self.collector is None:
            raise BadRequest(HTTPStatus.NOT_FOUND,
                             MESSAGES["collecting_off"].format(how="start draw.py"))
        label = whole_number(label, "label", 0, 9)
        if unexpected or pixels is ABSENT:
            raise BadRequest(HTTPStatus.BAD_REQUEST, MESSAGES["collect_fields"])
        picture = picture_from_pixels(pixels, COLLECT_SIDE)  # the page's canvas at most
        try:
            prepare_digit(picture)  # a drawing without a digit would teach the network nothing
        except DataError as error:
            raise BadRequest(HTTPStatus.UNPROCESSABLE_ENTITY, str(error)) from None
        try:
            saved, counts = self.collector.save(picture, label)
        except FolderFull as error:
            raise BadRequest(HTTPStatus.CONFLICT, str(error)) from None
        except PictureTooLarge as error:
            raise BadRequest(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, str(error)) from None
        except OSError as error:  # the digit's folder cannot be made
            raise BadRequest(HTTPStatus.FORBIDDEN, f"cannot save into {self.collector.name} "
                                                   f"({error.strerror or 'a system error'})") from None
        except UserError as error:  # the picture cannot be written there: its path, as the
            # page names the folder ("digits/" and "digits" both start "digits/3/0000.png")
            reason = str(error).replace(os.path.join(self.collector.folder, ""),
                                        os.path.join(self.collector.name, ""), 1)
            raise BadRequest(HTTPStatus.FORBIDDEN, f"cannot save: {reason}") from None
        return {"saved": saved, "counts": counts}

    @staticmethod
    def attribution_of(explainer, digit, target):
        values, total = explainer.attribution(digit, target)
        return {"digit": target, **describe(values[None]), "total": total}


@torch.no_grad()
def probabilities(model, images, batch_size=EVAL_BATCH_SIZE):
    """Return the network's probabilities (N, 10) for images (N, 1, 28, 28), on the CPU."""
    return torch.cat([model(batch).softmax(dim=1).cpu() for batch in images.split(batch_size)])
