"""Draw a digit in the browser and watch it flow through the network you trained, stage by stage:
how each value was computed, which pixels decided the answer, and how sure the network is.

Usage: python draw.py model.pt [recipe.pt ...] [--port 8000] [--host 127.0.0.1] [--device auto]
       then open http://127.0.0.1:8000/;  or  python draw.py model.pt --export page.html (no server)
"""
import argparse
import base64
import binascii
import collections
import contextlib
import hmac
import io
import ipaddress
import json
import os
import re
import secrets
import socket
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import torch
import torch.nn as nn
from PIL import Image

from cli import (UserError, add_data_and_device_arguments, checked, device_line, folder_name,
                 output_path, positive_int, run_main, set_threads, usable_cpus)
from collect import (COLLECT_LIMIT, COLLECT_SIDE, Collector, FolderFull, PictureTooLarge,
                     collect_folder)
from data import (DataError, load_mnist, prepare_digit, raw_folder, read_labelled_folder,
                  read_picture, to_pixels)
from evaluation import (accuracy, build_model, confusion_matrix, probabilities,
                        read_checkpoint)
from explain import Explainer, confidence
from export import export_page
from model import Net

PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "draw.html")
MAX_BODY = 2 * 2**20        # bytes; a 280 x 280 drawing as JSON is about 0.3 MB
MAX_SIDE = 1000             # pixels per side of a drawing sent as numbers
# A picture file is decoded within as many pixels as the largest drawing sent as numbers: a
# drawing needs far fewer than the photos test.py --image reads, and a request's memory grows with
# its pixels. A photo's JPEG is decoded at 1/2 to 1/8 of its size to fit (data.open_within_limit).
MAX_PICTURE_PIXELS = MAX_SIDE * MAX_SIDE
UNTRAINED = "untrained (random weights)"
NOT_NUMBERS = ("the network computed values that are not numbers (NaN or infinite) for this input: "
               "its weights are too large for float32 arithmetic")
# Only this machine's own files and answers: nothing may come from other hosts (classrooms are
# often offline, and a page that fetches nothing can leak nothing).
# No other site may show the page in a frame (clickjacking: a click there would be a click here).
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; "
                               "style-src 'self' 'unsafe-inline'; "
                               "script-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}
IDLE_TIMEOUT = 20  # seconds a connection may stay silent, waiting for its next request
# Seconds from a request's first byte to its last (request line, headers and body), and again for
# its answer to be written: the largest body (MAX_BODY) arrives in time at about 0.6 Mbit/s, a
# crowded classroom network, while a client that sends a byte now and then frees its thread soon.
REQUEST_DEADLINE = 30
# A browser opens at most 6 connections to one server, so a class of 30 behind one address (a
# school's NAT) holds up to 180 at once; one address cannot hold more threads than this.
CONNECTIONS_PER_ADDRESS = 200

port_number = checked(int, lambda value: 0 <= value <= 65535, "a port number from 0 to 65535")


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


def parse_json(body):
    """Return the JSON object in body; NaN and Infinity (Python's json takes them) are refused."""
    def refuse_constant(name):
        raise BadRequest(HTTPStatus.BAD_REQUEST, f"{name} is not a number this page accepts")

    try:
        request = json.loads(body, parse_constant=refuse_constant)
    except (ValueError, RecursionError) as error:  # RecursionError: absurdly deep nesting
        raise BadRequest(HTTPStatus.BAD_REQUEST, f"malformed JSON ({error})") from None
    if not isinstance(request, dict):
        raise BadRequest(HTTPStatus.BAD_REQUEST, "the request must be a JSON object")
    return request


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


class Handler(BaseHTTPRequestHandler):
    """Fixed routes only: no part of a URL ever reaches the file system."""

    page = None  # a Page, set by make_server()
    server_version = "draw.py"
    # A request line without a version (HTTP/0.9) or with one that cannot be read would be
    # answered as HTTP/0.9, without a status line or any header: as HTTP/1.0 instead, so that
    # every answer carries SECURITY_HEADERS.
    default_request_version = "HTTP/1.0"
    # HTTP/1.1 keeps a connection open for the next request, as browsers expect: a drawing's
    # updates then skip a new connection (and a new thread here) each time.
    protocol_version = "HTTP/1.1"
    # (method, path): what answers it, with the query string (GET) or the JSON body (POST).
    ROUTES = {("GET", "/"): lambda page, query: page.html,
              ("GET", "/models"): Page.model_list,
              ("GET", "/kernels"): Page.kernels,
              ("GET", "/training"): Page.training,
              ("GET", "/testset"): Page.testset,
              ("GET", "/examples"): Page.examples,
              ("POST", "/predict"): Page.predict,
              ("POST", "/step"): Page.step,
              ("POST", "/attribution"): Page.attribution,
              ("POST", "/collect"): Page.collect}
    # Routes that only read what the page holds, with no network run and no picture read: they
    # take turns of their own (quick), so that opening the page never waits behind pictures.
    QUICK_ROUTES = {("GET", "/"), ("GET", "/models"), ("GET", "/kernels"), ("GET", "/training")}

    token = None  # with a token, every request must carry it (set by make_server())
    # Answers are worked out one more at a time than there are CPUs, the others in the order
    # they came. Thirty threads working at once take turns for Python's interpreter lock so often
    # that a class gets fewer answers a second than ten would, and the unlucky wait longest
    # (measured: docs/classroom.md).
    working = None  # Turns(...), set by make_server()
    quick = None    # Turns(...) for QUICK_ROUTES, set by make_server()
    # A slow or silent client cannot hold a thread for ever; settable per server (the tests).
    idle_timeout, request_deadline = IDLE_TIMEOUT, REQUEST_DEADLINE

    def setup(self):
        super().setup()
        self.rfile.close()  # the standard library's reader times each read alone: replaced
        self.reader = DeadlineReader(self.connection, self.idle_timeout, self.request_deadline)
        self.rfile = io.BufferedReader(self.reader)

    def handle_one_request(self):
        """Read and answer one request within its deadline. One that misses it is answered 408
        and its connection closed; a connection that stays silent is closed without a word."""
        self.reader.next_request()
        super().handle_one_request()  # a read or a write past its time closes the connection
        if self.reader.timed_out and self.reader.deadline is not None:
            # As the standard library sets them for its own refusals before a request is read.
            self.requestline, self.request_version, self.command = "", "", ""
            self.send_json({"error": f"the request did not arrive whole within "
                                     f"{self.request_deadline} s"}, HTTPStatus.REQUEST_TIMEOUT)

    def send_error(self, code, message=None, explain=None):
        """The standard library's own refusals (a request line or header too long, a method
        without a route, a malformed request) in the page's form: JSON with its headers. The
        rest of such a request cannot be trusted, so its connection ends."""
        self.close_connection = True
        self.send_json({"error": (message or HTTPStatus(code).phrase)[:200]}, code)

    def do_GET(self):
        self.answer()

    def do_POST(self):
        self.answer()

    def answer(self):
        path, _, query = self.path.partition("?")
        self.body_read = False
        try:
            query = self.admitted(query)
            route = self.ROUTES.get((self.command, path))
            if route is None:
                known = any(known_path == path for _, known_path in self.ROUTES)
                status = HTTPStatus.METHOD_NOT_ALLOWED if known else HTTPStatus.NOT_FOUND
                raise BadRequest(status, f"no {self.command} {path[:100]} here")
            argument = query if self.command == "GET" else parse_json(self.read_body())
            with self.quick if (self.command, path) in self.QUICK_ROUTES else self.working:
                content = route(self.page, argument)
        except TimeoutError:
            raise  # the body missed its deadline: handle_one_request answers 408
        except BadRequest as error:
            if self.command == "POST" and not self.body_read:
                # Refused before its body was read (no length, too large, not ours): the unread
                # bytes would be taken for the next request, so the connection ends.
                self.close_connection = True
            self.send_json({"error": str(error)}, error.status)
        except Exception as error:  # noqa: BLE001  (a bug must not kill the server; say what)
            self.send_json({"error": f"internal error ({type(error).__name__}: {error})"},
                           HTTPStatus.INTERNAL_SERVER_ERROR)
        else:
            if isinstance(content, bytes):
                self.send(HTTPStatus.OK, content, "text/html; charset=utf-8")
            else:
                self.send_json(content)

    def admitted(self, query):
        """Refuse a request that is not this page's own; return the query without the token.

        Host must name this server: a site that points its own name at 127.0.0.1 (DNS
        rebinding) sends that name. A POST must come from this page or a script, never from a
        page of another site (its Origin), and be JSON: a form or a text/plain body, which a
        browser sends to any address without asking, is refused.
        """
        if not host_names_this_server(self.headers.get("Host"), *self.server.server_address[:2]):
            raise BadRequest(HTTPStatus.FORBIDDEN, "this server answers requests to its own "
                                                   "address only (the Host header)")
        fields = urllib.parse.parse_qsl(query, keep_blank_values=True)
        if self.token is not None:
            given = [value for key, value in fields if key == "token"]
            authorization = self.headers.get("Authorization", "")
            given += [authorization[len("Bearer "):]] if authorization.startswith("Bearer ") else []
            if not any(hmac.compare_digest(value.encode(), self.token.encode()) for value in given):
                raise BadRequest(HTTPStatus.FORBIDDEN, "this page needs its token: open the "
                                                       "address draw.py printed, ?token=... included")
        if self.command == "POST":
            origin = self.headers.get("Origin")
            if origin is not None and origin != f"http://{self.headers.get('Host')}":
                raise BadRequest(HTTPStatus.FORBIDDEN, f"requests from {origin[:100]} are "
                                                       "refused: only this page may send them")
            kind = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            if kind != "application/json":
                raise BadRequest(HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                                 "send the body as JSON, with Content-Type: application/json")
        return urllib.parse.urlencode([(key, value) for key, value in fields if key != "token"])

    def read_body(self):
        length = self.headers.get("Content-Length")
        if length is None or not (length.isascii() and length.isdigit()):  # "²".isdigit() too
            raise BadRequest(HTTPStatus.LENGTH_REQUIRED, "a Content-Length header is needed")
        if int(length) > MAX_BODY:
            raise BadRequest(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                             f"request of {int(length):,} bytes; at most {MAX_BODY:,} are accepted")
        self.body_read = True
        return self.rfile.read(int(length))

    def send_json(self, content, status=HTTPStatus.OK):
        # Compact: an answer holds thousands of numbers, and every byte is written and read.
        try:  # JSON has no NaN or infinity; weights that are numbers can still overflow to them
            body = json.dumps(content, separators=(",", ":"), allow_nan=False)
        except ValueError:
            status, body = HTTPStatus.UNPROCESSABLE_ENTITY, json.dumps({"error": NOT_NUMBERS})
        self.send(status, body.encode(), "application/json")

    def send(self, status, body, content_type):
        # The answer gets a deadline of its own (sendall's timeout bounds the whole write): a
        # client that reads it a byte at a time cannot hold the thread either.
        self.connection.settimeout(self.request_deadline)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        if self.close_connection:
            self.send_header("Connection", "close")
        for header, value in SECURITY_HEADERS.items():
            self.send_header(header, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):  # noqa: A002  (quiet: one line per request is noise)
        pass


def is_loopback(host):
    """Whether host, a name or an address, is this computer alone."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_names_this_server(header, host, port):
    """Whether a request's Host header ("name:port") names this server, listening on host:port.

    On a loopback address only loopback names count. On another address (a classroom's), any IP
    address names it (the machine may have several), and so does its own name; a DNS name of
    another site, which DNS rebinding would send, does not.
    """
    match = re.fullmatch(r"(?:\[([0-9A-Fa-f:.]+)\]|([^:\[\]]+))(?::(\d{1,5}))?", header or "")
    if match is None or int(match.group(3) or 80) != port:
        return False
    name = (match.group(1) or match.group(2)).lower()
    if is_loopback(host):
        return is_loopback(name)
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return name in {host.lower(), "localhost", socket.gethostname().lower(),
                        socket.getfqdn().lower()}


class Turns:
    """A context manager that lets count threads in at once and the others in the order they
    came: a thread that leaves hands its turn straight to the one that has waited longest."""

    def __init__(self, count):
        self.lock, self.free, self.waiting = threading.Lock(), count, collections.deque()

    def __enter__(self):
        with self.lock:
            if self.free and not self.waiting:
                self.free -= 1
                return
            turn = threading.Event()
            self.waiting.append(turn)
        turn.wait()

    def __exit__(self, *exception):
        with self.lock:
            if self.waiting:
                self.waiting.popleft().set()
            else:
                self.free += 1


class DeadlineReader(io.RawIOBase):
    """A connection's bytes, read so that each request arrives whole within its deadline: the
    wait for its first byte is bounded by idle_timeout, the rest by request_deadline from then.
    A timeout on each read alone lets a client that sends a line now and then keep its thread."""

    def __init__(self, connection, idle_timeout, request_deadline):
        self.connection, self.idle_timeout = connection, idle_timeout
        self.request_deadline = request_deadline
        self.next_request()

    def next_request(self):
        self.deadline = None  # the time.monotonic() the request must be in by, from its first byte
        self.timed_out = False

    def readable(self):
        return True

    def readinto(self, buffer):
        if self.deadline is None:
            left = self.idle_timeout
        else:
            left = self.deadline - time.monotonic()
        try:
            if left <= 0:  # a timeout of 0 would make the socket non-blocking instead
                raise TimeoutError("the request missed its deadline")
            self.connection.settimeout(left)
            count = self.connection.recv_into(buffer)
        except TimeoutError:
            self.timed_out = True
            raise
        if count and self.deadline is None:
            self.deadline = time.monotonic() + self.request_deadline
        return count


def refusal(status, message):
    """A whole HTTP answer, JSON with the page's headers, for a connection refused unread."""
    body = json.dumps({"error": message}).encode()
    head = [f"HTTP/1.1 {status.value} {status.phrase}", "Content-Type: application/json",
            f"Content-Length: {len(body)}", "Cache-Control: no-store", "Connection: close",
            *(f"{header}: {value}" for header, value in SECURITY_HEADERS.items())]
    return "\r\n".join(head).encode() + b"\r\n\r\n" + body


class PageServer(ThreadingHTTPServer):
    # The standard library's queue of 5 waiting connections resets some of a class's saves
    # when 30 arrive at once; the system caps this at its own limit (often 4096).
    request_queue_size = 128
    connections_per_address = CONNECTIONS_PER_ADDRESS  # settable per server (the tests)

    def __init__(self, *arguments, **settings):
        super().__init__(*arguments, **settings)
        self.connections, self.connections_lock = collections.Counter(), threading.Lock()

    def process_request(self, request, client_address):
        """Serve a connection in a thread of its own, unless its address holds its share of
        connections already: that one is refused here, at once, and holds no thread."""
        address = client_address[0]
        with self.connections_lock:
            admitted = self.connections[address] < self.connections_per_address
            if admitted:
                self.connections[address] += 1
        if not admitted:
            request.settimeout(0)  # a short answer into an empty buffer; never wait for it
            with contextlib.suppress(OSError):
                request.send(refusal(HTTPStatus.TOO_MANY_REQUESTS, "too many connections from "
                                     f"this address (at most {self.connections_per_address} at "
                                     "once); try again when others have ended"))
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:  # no thread started: nothing will let its place go
            self.let_go(address)
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.let_go(client_address[0])

    def let_go(self, address):
        with self.connections_lock:
            self.connections[address] -= 1
            if not self.connections[address]:
                del self.connections[address]  # the table holds only addresses connected now

    def handle_error(self, request, client_address):
        """Print nothing for a client that went away mid-request (a closed tab, a reload, a
        phone leaving the network) or missed its deadline: the page goes on serving, nothing is
        to be done, and a class's reloads would bury a real report. Anything else is a bug of
        the server: the standard library's report, traceback included."""
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


def make_server(networks, host, port, device, sets=(), missing=None, collect=None,
                collect_limit=COLLECT_LIMIT, token=None):
    """Return a threading HTTP server for the page; UserError if the address cannot be used.
    With a token, every request must carry it (?token=... or Authorization: Bearer ...)."""
    page = Page(networks, device, sets, missing, collect, collect_limit)
    handler = type("PageHandler", (Handler,), {"page": page, "token": token,
                                               "working": Turns(usable_cpus() + 1),
                                               "quick": Turns(usable_cpus() + 1)})
    try:
        return PageServer((host, port), handler)
    except OSError as error:
        if error.errno in (98, 48, 10048):  # EADDRINUSE on Linux, macOS, Windows
            raise UserError(f"port {port} is already in use; choose another with --port") from None
        raise UserError(f"cannot listen on {host}:{port} ({error.strerror or error})") from None


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Serve a page to draw digits and see every layer.")
    parser.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT",
                        help="checkpoints written by train.py; the page lets you choose between "
                             "them and an untrained network")
    parser.add_argument("--port", type=port_number, default=8000,
                        help="port to listen on; 0 picks a free one (default: 8000)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on; only this computer can reach 127.0.0.1 "
                             "(default: 127.0.0.1)")
    add_data_and_device_arguments(parser)
    parser.add_argument("--images-dir", metavar="DIR",
                        help="also explore your own labelled pictures, DIR/0/*.png ... "
                             "DIR/9/*.png, as test.py --images-dir reads them (default: none)")
    parser.add_argument("--collect", metavar="DIR",
                        help="let the page save drawings, labelled, into DIR/0 ... DIR/9 for "
                             "train.py --extra-images-dir (with --export: download them as "
                             "DIR.zip); off unless given (default: off)")
    parser.add_argument("--collect-limit", type=positive_int, default=COLLECT_LIMIT, metavar="N",
                        help="with --collect, save at most N pictures of each digit "
                             f"(default: {COLLECT_LIMIT})")
    parser.add_argument("--export", type=output_path, metavar="FILE",
                        help="write the page as one HTML file that computes everything in the "
                             "browser, offline, and start no server (default: serve the page)")
    args = parser.parse_args(argv)
    if args.collect and not args.export:  # the exported page downloads drawings: no folder here
        try:
            collect_folder(args.collect)
        except argparse.ArgumentTypeError as error:
            parser.error(f"argument --collect: {error}")
    return args


def main(argv=None):
    args = parse_args(argv)
    # The same rule as train.py's; each answer is worked out with these threads (see Turns).
    print(device_line(args.device, set_threads(args.threads)))
    networks = load_models(args.checkpoints, args.device)
    if args.export:
        page = Page(networks, args.device, *load_sets(args.data_dir, args.images_dir),
                    collect=args.collect, collect_limit=args.collect_limit)
        size = export_page(page, args.export)
        print(f"Wrote {args.export} ({size / 2**20:.2f} MB): open it in a browser, offline too")
        return
    # Beyond this computer anyone on the network could use the page: as Jupyter does, it then
    # answers only requests that carry a token, given in the address printed for the class.
    token = None if is_loopback(args.host) else secrets.token_urlsafe(16)
    server = make_server(networks, args.host, args.port, args.device,
                         *load_sets(args.data_dir, args.images_dir), collect=args.collect,
                         collect_limit=args.collect_limit, token=token)
    host, port = server.server_address[:2]
    shown = socket.gethostname() if host in ("0.0.0.0", "::") else host
    address = f"http://{f'[{shown}]' if ':' in shown else shown}:{port}/"
    # Ctrl-C may come the moment the address is printed (a script waits for that line), so the
    # lines are printed inside the try that turns it into one line of its own.
    try:
        if token:
            print(f"Listening on {host}: whoever has the address below, token included, can use "
                  "the page")
        print(f"Open {address}{f'?token={token}' if token else ''} (Ctrl-C stops the server)",
              flush=True)
        server.serve_forever()
    except KeyboardInterrupt:
        print("Stopped (Ctrl-C).", file=sys.stderr)
        sys.exit(130)
    finally:
        server.server_close()


if __name__ == "__main__":
    run_main(main)
