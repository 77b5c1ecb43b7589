"""What each of the page's routes answers: the networks and labelled sets it offers (loaded from
their files), the requests' values checked, and the Page and its Explorer that work out answers.

Usage: from page.routes import Page, load_models, load_sets
"""
import base64
import binascii
import io
import os
import threading
import urllib.parse
from dataclasses import dataclass, field
from http import HTTPStatus

import torch
import torch.nn as nn
from PIL import Image

from cli import (EVAL_BATCH_SIZE, UserError, accuracy, build_model, confusion_matrix, folder_name,
                 read_checkpoint)
from data import DataError, load_mnist, raw_folder, to_pixels
from extras.pictures import prepare_digit, read_labelled_folder, read_picture
from model import Net
from page.collect import COLLECT_LIMIT, COLLECT_SIDE, Collector, FolderFull, PictureTooLarge
from page.explain import Explainer, confidence

PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "draw.html")
MAX_SIDE = 1000             # pixels per side of a drawing sent as numbers
# A picture file is decoded within as many pixels as the largest drawing sent as numbers: a
# drawing needs far fewer than the photos test.py --image reads, and a request's memory grows with
# its pixels. A photo's JPEG is decoded at 1/2 to 1/8 of its size to fit
# (extras.pictures.open_within_limit).
MAX_PICTURE_PIXELS = MAX_SIDE * MAX_SIDE
UNTRAINED = "untrained (random weights)"


class BadRequest(Exception):
    """A request the page or a script got wrong: answered with its status and a one-line message."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status



@dataclass
class Network:
    """A network the page offers: its weights after training and, when its checkpoint has them,
    the snapshots taken during training and the per-step history of the run."""

    name: str
    model: nn.Module
    snapshots: list = field(default_factory=list)  # [(step, model)], in order of step
    history: dict = field(default_factory=dict)    # "loss" and "accuracy" of each step



@dataclass
class Images:
    """A labelled set the page explores: the MNIST test set, or a folder of your pictures."""

    name: str
    images: torch.Tensor  # (N, 1, 28, 28), normalised as the network takes them
    labels: torch.Tensor  # (N,)



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
    return networks + [Network(UNTRAINED, Net().to(device).eval())]



def load_sets(data_dir, images_dir):
    """Return the labelled sets to explore and a line saying what is missing (or None).

    The page never downloads MNIST: without it the drawing works as before, and the page says how
    to get it.
    """
    sets, missing = [], None
    present = raw_folder(data_dir)[1]
    if present:
        sets.append(Images("MNIST test set", *load_mnist(data_dir, train=False)))
    else:
        # The page names the folder only: the command line that gave it knows the rest.
        missing = (f"No MNIST in {folder_name(data_dir)}/MNIST/raw: python train.py with the same "
                   "--data-dir downloads it (or see Offline use in docs/usage.md), then start "
                   "draw.py again.")
    if images_dir:
        sets.append(Images(folder_name(images_dir),
                           *read_labelled_folder(images_dir)))
    return sets, missing



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



def query_numbers(query):
    """The fields of a query string (?model=0&set=1) as whole numbers; BadRequest otherwise."""
    fields = {key: values[0] for key, values in urllib.parse.parse_qs(query).items()}
    try:
        return {key: int(value) for key, value in fields.items()}
    except ValueError:
        raise BadRequest(HTTPStatus.BAD_REQUEST, "each field of the query must be a whole "
                                                 "number") from None



def whole_number(request, key, low, high):
    """request[key] if it is a whole number from low to high (not a bool); else BadRequest."""
    value = request.get(key)
    if type(value) is not int or not low <= value <= high:
        raise BadRequest(HTTPStatus.BAD_REQUEST, f"{key} must be a whole number from {low} to {high}")
    return value



def picture_from_pixels(pixels, max_side=MAX_SIDE):
    """A drawing sent as rows of grey levels 0 (black) to 255 (white), as a PIL picture."""
    if not (isinstance(pixels, list) and 0 < len(pixels) <= max_side
            and all(isinstance(row, list) and len(row) == len(pixels[0]) for row in pixels)
            and 0 < len(pixels[0]) <= max_side):
        raise BadRequest(HTTPStatus.BAD_REQUEST, "pixels must be a list of equally long rows, "
                                                 f"at most {max_side} x {max_side}")
    flat = [value for row in pixels for value in row]
    if not all(type(value) in (int, float) and 0 <= value <= 255 for value in flat):
        raise BadRequest(HTTPStatus.BAD_REQUEST, "pixels must be numbers from 0 to 255")
    grey = torch.tensor(flat, dtype=torch.float32).round().to(torch.uint8)
    return Image.fromarray(grey.view(len(pixels), len(pixels[0])).numpy(), mode="L")



def digit_from_request(request):
    """Prepare the digit in a request holding 'pixels' (a drawing) or 'picture' (a file, base64)."""
    if ("pixels" in request) == ("picture" in request):
        raise BadRequest(HTTPStatus.BAD_REQUEST, "send one of pixels (a drawing), picture (an "
                                                 "image file, base64) or index (an image of a set)")
    try:
        if "pixels" in request:
            return prepare_digit(picture_from_pixels(request["pixels"]))
        picture = request["picture"]
        if not isinstance(picture, str):
            raise BadRequest(HTTPStatus.BAD_REQUEST, "picture must be a base64 string")
        try:  # a data: URL as the browser's FileReader gives it, or bare base64
            content = base64.b64decode(picture.split(",", 1)[-1], validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest(HTTPStatus.BAD_REQUEST, "picture is not valid base64") from None
        return read_picture(io.BytesIO(content), "picture", MAX_PICTURE_PIXELS)
    except DataError as error:  # no digit in it, a damaged file, ...
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

    def chosen_set(self, request):
        if not self.sets:
            raise BadRequest(HTTPStatus.NOT_FOUND, self.missing or "no labelled set was given")
        return whole_number({"set": 0, **request}, "set", 0, len(self.sets) - 1)

    def catalogue(self):
        return [{"name": images.name, "count": len(images.labels)} for images in self.sets]

    def image(self, request):
        """The (1, 28, 28) image a request's 'set' and 'index' name, and its label."""
        images = self.sets[self.chosen_set(request)]
        index = whole_number(request, "index", 0, len(images.labels) - 1)
        return images.images[index].to(self.device), int(images.labels[index])

    def testset(self, explainer, request):
        """The accuracy and confusion matrix of explainer's network on the chosen set."""
        set_index = self.chosen_set(request)
        labels = self.sets[set_index].labels
        predictions = self.answers_of(explainer, set_index).argmax(dim=1)
        return {"set": self.sets[set_index].name, "count": len(labels),
                "accuracy": accuracy(predictions, labels),
                "confusion": confusion_matrix(labels, predictions).tolist()}

    def examples(self, explainer, request, other=None, shown=60):
        """The images of one confusion-matrix cell (true, predicted), most confident first; or,
        with other (an explainer), the images the chosen network reads right and other wrong."""
        set_index = self.chosen_set(request)
        images, answers = self.sets[set_index], self.answers_of(explainer, set_index)
        predictions = answers.argmax(dim=1)
        if other is not None:
            other_predictions = self.answers_of(other, set_index).argmax(dim=1)
            chosen = (predictions == images.labels) & (other_predictions != images.labels)
        else:
            true, predicted = (whole_number(request, key, 0, 9) for key in ("true", "predicted"))
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

    def chosen(self, request):
        """The network a request's 'model' names (0 when none), and the explainer of its
        'snapshot' (the final weights when none)."""
        index = whole_number({"model": 0, **request}, "model", 0, len(self.networks) - 1)
        explainers = self.explainers[index]
        snapshot = whole_number({"snapshot": len(explainers) - 1, **request}, "snapshot", 0,
                                len(explainers) - 1)
        return index, explainers[snapshot]

    def digit(self, request):
        """The (1, 28, 28) digit a request sends, on the device, and its label when it is known."""
        if "index" in request:
            if "pixels" in request or "picture" in request:
                raise BadRequest(HTTPStatus.BAD_REQUEST, "send one of pixels, picture or index")
            return self.explorer.image(request)
        return digit_from_request(request).to(self.device), None

    def model_list(self, query=""):
        return {"models": [network.name for network in self.networks],
                "snapshots": [[step for step, _ in network.snapshots] for network in self.networks],
                "sets": self.explorer.catalogue(), "missing": self.explorer.missing,
                "collect": self.collector and {"folder": self.collector.name,
                                               "limit": self.collector.limit,
                                               "counts": self.collector.counts()}}

    def kernels(self, query):
        index, explainer = self.chosen(query_numbers(query))
        return {"model": self.networks[index].name, "kernels": learned_kernels(explainer.model)}

    def training(self, query):
        """The run's loss and accuracy at each step, and the steps of its snapshots."""
        index, _ = self.chosen(query_numbers(query))
        network = self.networks[index]
        return {"model": network.name, "snapshots": [step for step, _ in network.snapshots],
                **{key: [round(value, 5) for value in network.history.get(key, [])]
                   for key in ("loss", "accuracy")}}

    def testset(self, query):
        """The accuracy and confusion matrix of the chosen network (at its snapshot)."""
        request = query_numbers(query)
        index, explainer = self.chosen(request)
        return {"model": self.networks[index].name, **self.explorer.testset(explainer, request)}

    def examples(self, query):
        """A confusion-matrix cell's images; with 'other', the images the chosen network reads
        right and the other one (at its final weights) wrong."""
        request = query_numbers(query)
        _, explainer = self.chosen(request)
        other = None
        if "other" in request:
            other = self.explainers[whole_number(request, "other", 0, len(self.networks) - 1)][-1]
        return self.explorer.examples(explainer, request, other)

    def predict(self, request):
        index, explainer = self.chosen(request)
        # "attribution": false leaves out the pixels picture (64 passes through the network):
        # the page asks so while the pen moves, and asks for it when the stroke ends.
        with_attribution = request.get("attribution", True)
        if type(with_attribution) is not bool:
            raise BadRequest(HTTPStatus.BAD_REQUEST, "attribution must be true or false")
        digit, label = self.digit(request)  # (1, 28, 28)
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
                if with_attribution else None}

    def step(self, request):
        _, explainer = self.chosen(request)
        stage = request.get("stage")
        if not isinstance(stage, str):
            raise BadRequest(HTTPStatus.BAD_REQUEST, "stage must be the name of a stage")
        position = [whole_number(request, key, 0, 10_000) for key in ("map", "row", "column")]
        digit, _ = self.digit(request)
        try:
            return explainer.step(explainer.run(digit), stage, *position)
        except UserError as error:
            raise BadRequest(HTTPStatus.BAD_REQUEST, str(error)) from None

    def attribution(self, request):
        _, explainer = self.chosen(request)
        target = whole_number(request, "digit", 0, 9)
        return self.attribution_of(explainer, self.digit(request)[0], target)

    def collect(self, request):
        """Save a drawing, as drawn, into the --collect folder under its label; never overwrite."""
        if self.collector is None:
            raise BadRequest(HTTPStatus.NOT_FOUND, "saving drawings is off: start draw.py with "
                                                   "--collect DIR to turn it on")
        label = whole_number(request, "label", 0, 9)
        if set(request) - {"label", "pixels", "model", "snapshot"} or "pixels" not in request:
            raise BadRequest(HTTPStatus.BAD_REQUEST, "send label and pixels (a drawing) only")
        picture = picture_from_pixels(request["pixels"], COLLECT_SIDE)  # the page's canvas at most
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
                                                   f"({error.strerror or error})") from None
        except UserError as error:  # the picture cannot be written there: its path, as the
            # page names the folder
            reason = str(error).replace(self.collector.folder, self.collector.name, 1)
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
