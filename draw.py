"""Draw a digit in the browser and watch it flow through the network you trained, stage by stage:
how each value was computed, which pixels decided the answer, and how sure the network is.

Usage: python draw.py model.pt [recipe.pt ...] [--port 8000] [--host 127.0.0.1] [--device auto]
       then open http://127.0.0.1:8000/
"""
import argparse
import base64
import binascii
import io
import json
import os
import sys
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import torch
import torch.nn as nn
from PIL import Image

from cli import UserError, add_device_argument, checked, run_main
from data import prepare_digit, read_picture, to_pixels
from evaluation import load_model
from explain import Explainer, confidence
from model import Net

PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "draw.html")
MAX_BODY = 2 * 2**20        # bytes; a 280 x 280 drawing as JSON is about 0.3 MB
MAX_SIDE = 1000             # pixels per side of a drawing sent as numbers
UNTRAINED = "untrained (random weights)"
# Only this machine's own files and answers: nothing may come from other hosts (classrooms are
# often offline, and a page that fetches nothing can leak nothing).
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; "
                               "style-src 'self' 'unsafe-inline'; "
                               "script-src 'self' 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
}

port_number = checked(int, lambda value: 0 <= value <= 65535, "a port number from 0 to 65535")


class BadRequest(Exception):
    """A request the page or a script got wrong: answered with its status and a one-line message."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def load_models(paths, device):
    """Return [(name, model)] for each checkpoint, then the untrained network (seed 0)."""
    models = [(os.path.basename(path), load_model(path, device)) for path in paths]
    torch.manual_seed(0)  # the same random weights every time the page starts
    return models + [(UNTRAINED, Net().to(device).eval())]


def describe(tensor, digits=5):
    """A tensor (batch 1) as JSON: its shape without the batch, and its values rounded."""
    values = tensor[0].detach().cpu()
    return {"shape": list(values.shape),
            "values": [round(value, digits) for value in values.flatten().tolist()]}


def learned_kernels(model):
    """The learned convolution kernels of model, by layer name, with their shapes."""
    return [{"name": name, **describe(module.weight[None])}
            for name, module in model.named_modules() if isinstance(module, nn.Conv2d)]


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


def picture_from_pixels(pixels):
    """A drawing sent as rows of grey levels 0 (black) to 255 (white), as a PIL picture."""
    if not (isinstance(pixels, list) and 0 < len(pixels) <= MAX_SIDE
            and all(isinstance(row, list) and len(row) == len(pixels[0]) for row in pixels)
            and 0 < len(pixels[0]) <= MAX_SIDE):
        raise BadRequest(HTTPStatus.BAD_REQUEST, "pixels must be a list of equally long rows, "
                                                 f"at most {MAX_SIDE} x {MAX_SIDE}")
    flat = [value for row in pixels for value in row]
    if not all(type(value) in (int, float) and 0 <= value <= 255 for value in flat):
        raise BadRequest(HTTPStatus.BAD_REQUEST, "pixels must be numbers from 0 to 255")
    grey = torch.tensor(flat, dtype=torch.float32).round().to(torch.uint8)
    return Image.fromarray(grey.view(len(pixels), len(pixels[0])).numpy(), mode="L")


def digit_from_request(request):
    """Prepare the digit in a request holding 'pixels' (a drawing) or 'picture' (a file, base64)."""
    if ("pixels" in request) == ("picture" in request):
        raise BadRequest(HTTPStatus.BAD_REQUEST, "send either pixels (a drawing) or picture "
                                                 "(an image file, base64), not both or neither")
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
        return read_picture(io.BytesIO(content), "picture")
    except UserError as error:  # no digit in it, a damaged file, ...
        raise BadRequest(HTTPStatus.UNPROCESSABLE_ENTITY, str(error)) from None


class Page:
    """What the server answers: the page, the models, and each answer with its explanations."""

    def __init__(self, models, device):
        with open(PAGE, "rb") as file:
            self.html = file.read()
        self.device = device
        self.models = []
        for name, model in models:
            try:
                self.models.append((name, Explainer(model)))
            except UserError as error:
                raise UserError(f"{name}: {error}") from None

    def model_list(self, query=""):
        return {"models": [name for name, _ in self.models]}

    def chosen(self, request):
        """The (name, explainer) a request's 'model' names (0, the first, when it names none)."""
        return self.models[whole_number({"model": 0, **request}, "model", 0, len(self.models) - 1)]

    def kernels(self, query):
        request = {key: values[0] for key, values in urllib.parse.parse_qs(query).items()}
        if "model" in request:
            try:
                request["model"] = int(request["model"])
            except ValueError:
                raise BadRequest(HTTPStatus.BAD_REQUEST, "model must be a whole number") from None
        name, explainer = self.chosen(request)
        return {"model": name, "kernels": learned_kernels(explainer.model)}

    def predict(self, request):
        name, explainer = self.chosen(request)
        digit = digit_from_request(request).to(self.device)  # (1, 28, 28)
        layers = explainer.layers(explainer.run(digit))
        probabilities = layers[-1]["output"][0].cpu()  # (10,)
        prediction = int(probabilities.argmax())
        return {"model": name, "prediction": prediction,
                "probabilities": [round(value, 6) for value in probabilities.tolist()],
                "confidence": confidence(probabilities, digit.cpu()),
                "input": describe(to_pixels(digit[None])),  # brightness 0..1
                "layers": [{**{key: value for key, value in layer.items() if key != "output"},
                            **describe(layer["output"])} for layer in layers],
                "attribution": self.attribution_of(explainer, digit, prediction)}

    def step(self, request):
        _, explainer = self.chosen(request)
        stage = request.get("stage")
        if not isinstance(stage, str):
            raise BadRequest(HTTPStatus.BAD_REQUEST, "stage must be the name of a stage")
        position = [whole_number(request, key, 0, 10_000) for key in ("map", "row", "column")]
        digit = digit_from_request(request).to(self.device)
        try:
            return explainer.step(explainer.run(digit), stage, *position)
        except UserError as error:
            raise BadRequest(HTTPStatus.BAD_REQUEST, str(error)) from None

    def attribution(self, request):
        _, explainer = self.chosen(request)
        target = whole_number(request, "digit", 0, 9)
        return self.attribution_of(explainer, digit_from_request(request).to(self.device), target)

    @staticmethod
    def attribution_of(explainer, digit, target):
        values, total = explainer.attribution(digit, target)
        return {"digit": target, **describe(values[None]), "total": total}


class Handler(BaseHTTPRequestHandler):
    """Fixed routes only: no part of a URL ever reaches the file system."""

    page = None  # a Page, set by make_server()
    server_version = "draw.py"
    # (method, path): what answers it, with the query string (GET) or the JSON body (POST).
    ROUTES = {("GET", "/"): lambda page, query: page.html,
              ("GET", "/models"): Page.model_list,
              ("GET", "/kernels"): Page.kernels,
              ("POST", "/predict"): Page.predict,
              ("POST", "/step"): Page.step,
              ("POST", "/attribution"): Page.attribution}

    def do_GET(self):
        self.answer()

    def do_POST(self):
        self.answer()

    def answer(self):
        path, _, query = self.path.partition("?")
        try:
            route = self.ROUTES.get((self.command, path))
            if route is None:
                known = any(known_path == path for _, known_path in self.ROUTES)
                status = HTTPStatus.METHOD_NOT_ALLOWED if known else HTTPStatus.NOT_FOUND
                raise BadRequest(status, f"no {self.command} {path[:100]} here")
            argument = query if self.command == "GET" else parse_json(self.read_body())
            content = route(self.page, argument)
        except BadRequest as error:
            self.send_json({"error": str(error)}, error.status)
        except Exception as error:  # noqa: BLE001  (a bug must not kill the server; say what)
            self.send_json({"error": f"internal error ({type(error).__name__}: {error})"},
                           HTTPStatus.INTERNAL_SERVER_ERROR)
        else:
            if isinstance(content, bytes):
                self.send(HTTPStatus.OK, content, "text/html; charset=utf-8")
            else:
                self.send_json(content)

    def read_body(self):
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.close_connection = True
            raise BadRequest(HTTPStatus.LENGTH_REQUIRED, "a Content-Length header is needed")
        if int(length) > MAX_BODY:
            self.close_connection = True  # the body is not read, so the connection cannot go on
            raise BadRequest(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                             f"request of {int(length):,} bytes; at most {MAX_BODY:,} are accepted")
        return self.rfile.read(int(length))

    def send_json(self, content, status=HTTPStatus.OK):
        self.send(status, json.dumps(content).encode(), "application/json")

    def send(self, status, body, content_type):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for header, value in SECURITY_HEADERS.items():
            self.send_header(header, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):  # noqa: A002  (quiet: one line per request is noise)
        pass


def make_server(models, host, port, device):
    """Return a threading HTTP server for the page; UserError if the address cannot be used."""
    handler = type("PageHandler", (Handler,), {"page": Page(models, device)})
    try:
        return ThreadingHTTPServer((host, port), handler)
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
    add_device_argument(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    server = make_server(load_models(args.checkpoints, args.device), args.host, args.port,
                         args.device)
    host, port = server.server_address[:2]
    # Ctrl-C may come the moment the address is printed (a script waits for that line), so the
    # lines are printed inside the try that turns it into one line of its own.
    try:
        if host not in ("127.0.0.1", "::1", "localhost"):
            print(f"Listening on {host}: anyone who can reach this address can use the page")
        print(f"Open http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}/ "
              "(Ctrl-C stops the server)", flush=True)
        server.serve_forever()
    except KeyboardInterrupt:
        print("Stopped (Ctrl-C).", file=sys.stderr)
        sys.exit(130)
    finally:
        server.server_close()


if __name__ == "__main__":
    run_main(main)
