"""Measure the drawing page's server on this machine: its start-up with and without MNIST, the
latency of one prediction with every stage and the pixels behind it, of the step-by-step and pixel
views and of opening a confusion-matrix cell, then a bounded load run from 8 threads over
loopback, every answer checked.

Usage: python benchmark_page.py model.pt --data-dir mnist [--requests 400] [--clients 8] [--device cpu]
"""
import argparse
import http.client
import json
import os
import statistics
import threading
import time

import torch
from PIL import Image, ImageDraw
from torchvision.transforms.functional import pil_to_tensor

import draw
from cli import UserError, add_data_and_device_arguments, positive_int, run_main, set_threads


def drawing_request():
    """A 280 x 280 drawing of a 7, as the page sends it (grey levels, 0 is ink)."""
    picture = Image.new("L", (280, 280), 255)
    ImageDraw.Draw(picture).line([(70, 60), (210, 60), (120, 230)], fill=0, width=20, joint="curve")
    return {"model": 0, "pixels": pil_to_tensor(picture)[0].tolist()}  # (280, 280) rows


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


def load_run(port, body, expected, requests, threads):
    """Send requests from threads at once; return (wall seconds, latencies); check every answer."""
    latencies, wrong, lock = [], [], threading.Lock()
    share = [requests // threads + (index < requests % threads) for index in range(threads)]

    def client(count):
        for _ in range(count):
            seconds, answer = send(port, "/predict", body)
            with lock:
                latencies.append(seconds)
                if answer["prediction"] != expected:
                    wrong.append(answer["prediction"])

    workers = [threading.Thread(target=client, args=(count,)) for count in share]
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    wall = time.perf_counter() - start
    if len(latencies) != requests or wrong:
        raise RuntimeError(f"{requests - len(latencies)} lost, {len(wrong)} wrong answers")
    return wall, latencies


def main(argv=None):
    parser = argparse.ArgumentParser(description="Measure the drawing page's server.")
    parser.add_argument("checkpoint", help="checkpoint written by train.py")
    parser.add_argument("--requests", type=positive_int, default=400,
                        help="requests in the load run (default: 400)")
    parser.add_argument("--clients", type=positive_int, default=8,
                        help="clients sending at once (default: 8)")
    add_data_and_device_arguments(parser)
    args = parser.parse_args(argv)
    set_threads(args.threads)  # as draw.py chooses them
    startup = {}
    for name, data_dir in (("without MNIST", os.devnull), ("with MNIST", args.data_dir)):
        start = time.perf_counter()  # what draw.py does before it listens: load, then evaluate
        networks = draw.load_models([args.checkpoint], args.device)
        sets, missing = draw.load_sets(data_dir, None)
        page = draw.Page(networks, args.device, sets, missing)
        startup[name] = time.perf_counter() - start
    if missing:
        raise UserError(missing)
    server = draw.make_server(networks, "127.0.0.1", 0, args.device, sets)  # loopback only
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    request = drawing_request()
    body = json.dumps(request).encode()
    try:
        page = server.RequestHandlerClass.page
        confusion = page.testset("model=0")["confusion"]
        cell = max((count, true, predicted) for true, row in enumerate(confusion)
                   for predicted, count in enumerate(row) if true != predicted)
        cells = [send(port, f"/examples?model=0&true={cell[1]}&predicted={cell[2]}")[0]
                 for _ in range(20)]
        inside = []
        for _ in range(50):  # preparation, forward pass with every layer, JSON: no HTTP
            start = time.perf_counter()
            json.dumps(page.predict(request))
            inside.append(time.perf_counter() - start)
        single = [send(port, "/predict", body)[0] for _ in range(50)]
        expected = send(port, "/predict", body)[1]["prediction"]
        # A click on a value of convolution2, and on another digit's bar, as the page sends them.
        views = {path: json.dumps({**request, **fields}).encode() for path, fields in (
            ("/step", {"stage": "convolution2", "map": 3, "row": 3, "column": 3}),
            ("/attribution", {"digit": (expected + 1) % 10}))}
        clicks = {path: [send(port, path, view)[0] for _ in range(50)] for path, view in views.items()}
        wall, latencies = load_run(port, body, expected, args.requests, args.clients)
    finally:
        server.shutdown()
        server.server_close()
    milliseconds = {name: statistics.median(values) * 1e3 for name, values in (
        ("inside", inside), ("single", single), ("load", latencies), *clicks.items())}
    print(f"Device: {args.device}, torch {torch.__version__}, {torch.get_num_threads()} CPU "
          f"threads, request body {len(body) / 1e6:.2f} MB")
    print(f"start-up, without MNIST / with it (10,000 test images evaluated): "
          f"{startup['without MNIST']:.2f} s / {startup['with MNIST']:.2f} s")
    print(f"opening a confusion-matrix cell ({cell[0]} images, median of 20): "
          f"{statistics.median(cells) * 1e3:7.1f} ms")
    print(f"one prediction, in the server (median of 50):     {milliseconds['inside']:7.1f} ms")
    print(f"one request over HTTP, one client (median of 50): {milliseconds['single']:7.1f} ms")
    print(f"a click on a convolution2 value, POST /step:      {milliseconds['/step']:7.1f} ms")
    print(f"a click on another digit, POST /attribution:      {milliseconds['/attribution']:7.1f} ms")
    print(f"load: {args.requests} requests from {args.clients} clients, all answered, all {expected}:"
          f" {args.requests / wall:.1f} requests/s, median {milliseconds['load']:.1f} ms, "
          f"99th percentile {percentile(latencies, 0.99) * 1e3:.1f} ms")


if __name__ == "__main__":
    run_main(main)
