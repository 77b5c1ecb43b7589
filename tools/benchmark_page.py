"""Measure the drawing page's server on this machine: start-up, one prediction with every stage,
each click, then a class of 30 drawing at once over loopback for 30 s, every answer checked.

Usage: python -m tools.benchmark_page model.pt --data-dir files [--clients 30] [--seconds 30]
"""
import argparse
import base64
import http.client
import io
import json
import multiprocessing
import os
import statistics
import threading
import time

import torch
from PIL import Image, ImageDraw
from torchvision.transforms.functional import pil_to_tensor

from common import UserError, add_data_and_device_arguments, positive_int, run_main, set_threads
from data import raw_folder
from page.routes import Page, load_models, load_sets, mnist_missing
from page.server import answer, make_server


def drawing():
    """A 280 x 280 drawing of a 7, black ink on white, as the page's canvas holds it."""
    picture = Image.new("RGBA", (280, 280), "white")
    ImageDraw.Draw(picture).line([(70, 60), (210, 60), (120, 230)], fill="black", width=20,
                                 joint="curve")
    return picture


def page_request():
    """The drawing as the page sends it when a stroke ends: the canvas as a PNG data URL (a few
    kB); while the pen moves it adds "attribution": false."""
    buffer = io.BytesIO()
    drawing().save(buffer, format="PNG")
    return {"model": 0, "picture": "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()}


def numbers_request():
    """The same drawing as rows of grey levels (0 is ink), the body scripts may also send."""
    return {"model": 0, "pixels": pil_to_tensor(drawing().convert("L"))[0].tolist()}  # (280, 280)


def send(port, path, body=None):
    """One request on a fresh connection, as a browser sends it: a POST of body (bytes of JSON),
    or a GET without one; return (seconds, the answer's JSON)."""
    start = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        if body is None:
            connection.request("GET", path)
        else:
            connection.request("POST", path, body=body,
                               headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        answer = json.loads(response.read())
    finally:
        connection.close()
    if response.status != 200:
        raise RuntimeError(f"status {response.status} for {path}: {answer}")
    return time.perf_counter() - start, answer


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def class_drawing(port, body, expected, clients, seconds):
    """clients that each send body to /predict again as soon as its answer is in, as the page does
    while a stroke is drawn, for seconds; return (answers, latencies); check every answer.

    The clients run in a process of their own, as a class's browsers run on machines of their
    own: in the server's process they would take turns with it for Python's interpreter lock.
    """
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        latencies, wrong = pool.apply(drawing_clients, (port, body, expected, clients, seconds))
    if wrong:
        raise RuntimeError(f"{wrong} answers were not 200 with the prediction {expected}")
    return len(latencies), latencies


def drawing_clients(port, body, expected, clients, seconds):
    """The clients of class_drawing, as threads: (latencies, how many answers were wrong)."""
    latencies, wrong, lock = [], [], threading.Lock()
    end = time.perf_counter() + seconds
    right = f'"prediction":{expected},'.encode()

    def client():
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while time.perf_counter() < end:
            start = time.perf_counter()
            # One connection kept open, as a browser keeps one to an HTTP/1.1 server.
            connection.request("POST", "/predict", body=body,
                               headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            answer = response.read()
            with lock:
                latencies.append(time.perf_counter() - start)
                if response.status != 200 or right not in answer:
                    wrong.append(response.status)
        connection.close()

    workers = [threading.Thread(target=client) for _ in range(clients)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=seconds + 120)
    return latencies, len(wrong) + sum(worker.is_alive() for worker in workers)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Measure the drawing page's server.")
    parser.add_argument("checkpoint", help="checkpoint written by train.py")
    parser.add_argument("--clients", type=positive_int, default=30,
                        help="students drawing at once in the load run (default: 30)")
    parser.add_argument("--seconds", type=positive_int, default=30,
                        help="how long they draw (default: 30)")
    add_data_and_device_arguments(parser, downloads=False)
    args = parser.parse_args(argv)
    set_threads(args.threads)  # as draw.py chooses them
    if not raw_folder(args.data_dir)[1]:
        raise UserError(mnist_missing(args.data_dir, "then run this benchmark again"))
    startup = {}
    for name, data_dir in (("without MNIST", os.devnull), ("with MNIST", args.data_dir)):
        start = time.perf_counter()  # what draw.py does before it listens: load, then evaluate
        networks = load_models([args.checkpoint], args.device)
        sets, missing = load_sets(data_dir, None)
        page = Page(networks, args.device, sets, missing)
        startup[name] = time.perf_counter() - start
    server = make_server(networks, "127.0.0.1", 0, args.device, sets)  # loopback only
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    request, numbers = page_request(), numbers_request()
    body, numbers_body = json.dumps(request).encode(), json.dumps(numbers).encode()
    try:
        page = server.RequestHandlerClass.page
        confusion = answer(page, "GET", "/testset", "model=0")["confusion"]
        cell = max((count, true, predicted) for true, row in enumerate(confusion)
                   for predicted, count in enumerate(row) if true != predicted)
        cells = [send(port, f"/examples?model=0&true={cell[1]}&predicted={cell[2]}")[0]
                 for _ in range(20)]
        inside = []
        for _ in range(50):  # preparation, forward pass with every layer, JSON: no HTTP
            start = time.perf_counter()
            json.dumps(answer(page, "POST", "/predict", json.loads(body)))
            inside.append(time.perf_counter() - start)
        single = [send(port, "/predict", body)[0] for _ in range(50)]
        single_numbers = [send(port, "/predict", numbers_body)[0] for _ in range(50)]
        expected = send(port, "/predict", body)[1]["prediction"]
        # A click on a value of convolution2, and on another digit's bar, as the page sends them.
        views = {path: json.dumps({**request, **fields}).encode() for path, fields in (
            ("/step", {"stage": "convolution2", "map": 3, "row": 3, "column": 3}),
            ("/attribution", {"digit": (expected + 1) % 10}))}
        clicks = {path: [send(port, path, view)[0] for _ in range(50)] for path, view in views.items()}
        drawing_body = json.dumps({**request, "attribution": False}).encode()  # the pen moving
        answers, latencies = class_drawing(port, drawing_body, expected, args.clients, args.seconds)
        # The same class with what the page sent before: numbers, and the pixels picture each time.
        old_answers, old_latencies = class_drawing(port, numbers_body, expected, args.clients,
                                                   args.seconds)
    finally:
        server.shutdown()
        server.server_close()
    milliseconds = {name: statistics.median(values) * 1e3 for name, values in (
        ("inside", inside), ("single", single), ("numbers", single_numbers), *clicks.items())}
    print(f"Device: {args.device}, torch {torch.__version__}, {torch.get_num_threads()} CPU "
          f"thread(s); the page's request body {len(body) / 1e3:.1f} kB (a PNG), as numbers "
          f"{len(numbers_body) / 1e3:.0f} kB")
    print(f"start-up, without MNIST / with it (10,000 test images evaluated): "
          f"{startup['without MNIST']:.2f} s / {startup['with MNIST']:.2f} s")
    print(f"opening a confusion-matrix cell ({cell[0]} images, median of 20): "
          f"{statistics.median(cells) * 1e3:7.1f} ms")
    print(f"one prediction, in the server (median of 50):     {milliseconds['inside']:7.1f} ms")
    print(f"one request over HTTP, one client (median of 50): {milliseconds['single']:7.1f} ms")
    print(f"the same, the drawing sent as numbers:            {milliseconds['numbers']:7.1f} ms")
    print(f"a click on a convolution2 value, POST /step:      {milliseconds['/step']:7.1f} ms")
    print(f"a click on another digit, POST /attribution:      {milliseconds['/attribution']:7.1f} ms")
    print(f"a class: {args.clients} clients drawing for {args.seconds} s, each sending the next "
          f"drawing when its answer is in, every answer 200 and {expected}:")
    for name, count, times in (("as the page sends it while the pen moves", answers, latencies),
                               ("as numbers, with the pixels picture", old_answers, old_latencies)):
        print(f"  {name:<42}{count / args.seconds:6.1f} answers/s, median "
              f"{statistics.median(times) * 1e3:5.0f} ms, 95th percentile "
              f"{percentile(times, 0.95) * 1e3:5.0f} ms")


if __name__ == "__main__":
    run_main(main)
