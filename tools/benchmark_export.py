"""Measure the exported page (draw.py --export) in headless Chromium on this machine: its size, how
fast it opens and answers, and how closely its answers follow the server's (PyTorch's).

Usage: python -m tools.benchmark_export model.pt [recipe.pt ...] --data-dir files [--digits 100]
"""
import argparse
import base64
import io
import json
import os
import shutil
import statistics
import tempfile
import time

import torch

from common import (UserError, add_data_and_device_arguments, device_line, positive_int, run_main,
                    set_threads)
from data import load_mnist, raw_folder, to_pixels
from page import export
from page.routes import Page, load_models, load_sets, mnist_missing
from page.server import answer
from tools.benchmark_page import drawing

# In the page: times each route n times (ms), after one call that warms the page's code up.
TIME_ROUTES = """
const [calls, n, done] = arguments;
(async () => {
  const times = {};
  for (const [name, route, body] of calls) {
    await window.routes[route](body);
    times[name] = [];
    for (let k = 0; k < n; k++) {
      const start = performance.now();
      await window.routes[route](body);
      times[name].push(performance.now() - start);
    }
  }
  return times;
})().then(done, (error) => done(String(error)));
"""
# In the page: the page's own answer to the drawing on its canvas (a 7), as a stroke's move or end
# asks it (predictDrawing, page/scripts/drawing.js), until it is shown: answered, every stage drawn
# and the next frame painted; n times (ms), after one that warms the page's code up.
TIME_SHOWN = """
const [picture, ended, n, done] = arguments;
const painted = () => new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));
const answered = () => new Promise((resolve) => {
  (function look() { document.body.dataset.busy === "false" ? resolve() : setTimeout(look, 1); })();
});
(async () => {
  const image = new Image();
  image.src = picture;
  await image.decode();
  document.getElementById("draw").getContext("2d").drawImage(image, 0, 0);
  const times = [];
  for (let k = 0; k <= n; k++) {
    const start = performance.now();
    page.predictDrawing(ended);
    await answered();
    await painted();
    if (k > 0) times.push(performance.now() - start);
  }
  return times;
})().then(done, (error) => done(String(error)));
"""
# In the page: the answers to 28 x 28 digits, each drawn as drawing_of() draws it, with fields.
ANSWER_DIGITS = """
const [digits, fields, done] = arguments;
(async () => {
  const answers = [];
  for (const digit of digits) {
    const pixels = Array.from({ length: 280 }, (_, y) => Array.from({ length: 280 },
      (_, x) => 255 - digit[Math.floor(y / 10)][Math.floor(x / 10)]));
    answers.push(await window.routes.predict({ ...fields, pixels }));
  }
  return answers;
})().then(done, (error) => done(String(error)));
"""


def digits_of(images, count):
    """count images (N, 1, 28, 28) spread over a set, as 28 x 28 lists of grey levels 0..255."""
    chosen = images[::len(images) // count][:count]
    return [digit[0].tolist() for digit in (to_pixels(chosen) * 255).round().to(torch.uint8)]


def drawing_of(digit):
    """A 28 x 28 digit as dark ink on a 280 x 280 white drawing, each pixel a 10 x 10 block."""
    return [[255 - value for value in row for _ in range(10)] for row in digit for _ in range(10)]


def chromium():
    """Headless Chromium with every host unresolvable (the file must need none); UserError if
    selenium or the browser is missing."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        raise UserError("this benchmark drives Chromium: pip install selenium") from None
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (browser and driver):
        raise UserError("this benchmark needs Chromium and its driver: apt-get install chromium "
                        "chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,2600", "--host-resolver-rules=MAP * ~NOTFOUND"):
        options.add_argument(argument)
    session = webdriver.Chrome(service=Service(driver), options=options)
    session.set_script_timeout(600)
    return session


def open_file(session, path):
    """Open the file; return the milliseconds from the start of navigation to its first answer."""
    session.get("file://" + os.path.abspath(path))
    deadline = time.time() + 60
    while session.execute_script("return document.body.dataset.ready") != "true":
        if time.time() > deadline:
            raise UserError(f"{path} did not open: {session.find_element('id', 'error').text}")
        time.sleep(0.01)
    return session.execute_script("return performance.now()")


def largest_difference(first, second):
    """The largest difference between the numbers of two answers' stages and probabilities."""
    pairs = [(a, b) for one, other in zip(first["layers"], second["layers"])
             for a, b in zip(one["values"], other["values"])]
    pairs += list(zip(first["probabilities"], second["probabilities"]))
    return max(abs(a - b) for a, b in pairs)


def agreement(session, page, digits):
    """Compare the file's answers with the server's for digits: (same predictions, identical
    inputs, within one grey level, largest stage difference, largest attribution difference)."""
    answers = []
    for start in range(0, len(digits), 10):
        answers += session.execute_async_script(ANSWER_DIGITS, digits[start:start + 10], {})
    same = identical = close = 0
    stages = pixels = 0.0
    for digit, offline in zip(digits, answers):
        request = {"pixels": drawing_of(digit)}
        server = json.loads(json.dumps(answer(page, "POST", "/predict", request)))
        same += offline["prediction"] == server["prediction"]
        gap = max(abs(a - b) for a, b in zip(offline["input"]["values"], server["input"]["values"]))
        close += gap <= 1 / 255 + 1e-5
        if gap <= 1e-5:
            identical += 1
            stages = max(stages, largest_difference(offline, server))
            pixels = max(pixels, max(abs(a - b) for a, b in zip(offline["attribution"]["values"],
                                                                 server["attribution"]["values"])))
    return same, identical, close, stages, pixels


def main(argv=None):
    parser = argparse.ArgumentParser(description="Measure the exported drawing page in Chromium.")
    parser.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT",
                        help="checkpoints written by train.py; the first is timed")
    parser.add_argument("--digits", type=positive_int, default=100,
                        help="MNIST test digits whose answers are compared (default: 100)")
    add_data_and_device_arguments(parser, downloads=False)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    if not raw_folder(args.data_dir)[1]:
        raise UserError(mnist_missing(args.data_dir, "then run this benchmark again"))
    sets, _ = load_sets(args.data_dir, None)
    folder = tempfile.mkdtemp()
    session = None
    try:
        sizes, pages = {}, {}
        for name, checkpoints in (("one", args.checkpoints[:1]), ("all", args.checkpoints)):
            pages[name] = Page(load_models(checkpoints, args.device), args.device, sets)
            sizes[name] = export.export_page(pages[name], os.path.join(folder, f"{name}.html"))
        session = chromium()
        version = session.capabilities.get("browserVersion", "?")
        opened = [open_file(session, os.path.join(folder, "one.html")) for _ in range(5)]
        buffer = io.BytesIO()
        drawing().save(buffer, format="PNG")
        body = {"picture": "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()}
        layers = answer(pages["one"], "POST", "/predict", dict(body))["layers"]
        stage = [layer["name"] for layer in layers
                 if layer["kind"] == "convolution"][-1]  # convolution2 in the tutorial's network
        step = {**body, "stage": stage, "map": 3, "row": 3, "column": 3}
        times = session.execute_async_script(TIME_ROUTES, [
            ("answer", "predict", body), ("pen", "predict", {**body, "attribution": False}),
            ("step", "step", step)], 20)
        shown = {ended: session.execute_async_script(TIME_SHOWN, body["picture"], ended, 10)
                 for ended in (False, True)}
        if any(isinstance(times, str) for times in shown.values()):  # the page's own error
            raise UserError(f"the page did not show its answer: {shown}")
        server = []
        for _ in range(20):
            start = time.perf_counter()
            json.dumps(answer(pages["one"], "POST", "/predict", dict(body)))
            server.append((time.perf_counter() - start) * 1e3)
        digits = digits_of(load_mnist(args.data_dir, train=False)[0], args.digits)
        same, identical, close, stages, pixels = agreement(session, pages["one"], digits)
        resources = session.execute_script(
            "return performance.getEntriesByType('resource').length")
        note = session.execute_script("return window.routes.training('model=0').note")
    finally:
        if session is not None:
            session.quit()
        shutil.rmtree(folder)
    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"{device_line(args.device, torch.get_num_threads())}, torch {torch.__version__}; "
          f"headless Chromium {version}")
    print(f"size: {os.path.basename(args.checkpoints[0])} with its snapshots, the untrained "
          f"network and the explorer {sizes['one'] / 2**20:.2f} MB; all {len(args.checkpoints)} "
          f"checkpoint(s) {sizes['all'] / 2**20:.2f} MB")
    print(f"open and ready, file:// (median of 5):                 "
          f"{statistics.median(opened):7.1f} ms")
    print(f"a drawing's answer, every stage and the pixels picture: {median['answer']:7.1f} ms "
          f"(the server computes it in {statistics.median(server):.1f} ms)")
    print(f"the same while the pen moves, without the picture:     {median['pen']:7.1f} ms")
    print(f"{f'a click on a {stage} value (routes.step):':55}{median['step']:7.1f} ms")
    print(f"the page's own answer shown (answered, drawn, painted; median of 10): "
          f"{statistics.median(shown[False]):.1f} ms while the pen moves, "
          f"{statistics.median(shown[True]):.1f} ms when the stroke ends")
    print(f"resources requested: {resources}")
    print(f"{len(digits)} MNIST test digits drawn as dark ink on 280 x 280: the same prediction "
          f"for {same}; the prepared input identical for {identical} and within one grey level for "
          f"{close}; where identical, stages and probabilities within {stages:.1e}, the pixels "
          f"picture within {pixels:.1e}")
    if note:  # the file rounds this network's snapshots
        print(f"the training slider says: {note}")


if __name__ == "__main__":
    run_main(main)
