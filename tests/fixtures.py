"""What the test modules share: test_smoke's fake MNIST and reference model (re-exported from it),
ways to run the scripts, pictures of digits, ways to start scripts, tools and the page's server
and to ask it, and what the whole run makes once (the shapes set, the networks trained on it and
their servers, the exported files, one headless Chromium).

Usage: from tests.fixtures import make_fake_mnist, run_script, temporary_folder, ...   (tests only)
"""
import atexit
import base64
import contextlib
import functools
import io
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import types
import unittest
import warnings
import zlib

import torch
from PIL import Image, ImageDraw

import torchvision.transforms as transforms

import common
import data
import draw
import train
from data import to_pixels
from extras.pictures import prepare_digit
from page import export, routes
from page.server import make_server
from test_smoke import TutorialModel, make_fake_mnist, run_subprocess, write_idx  # noqa: F401
from tests.networks import EDITED, OpsNet, SoftmaxNet
from tools.benchmark_export import digits_of

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # where the scripts are
# Real MNIST, for the few tests that need it; they skip with this reason without it.
MNIST_ROOT = os.environ.get("MNIST_ROOT", "")
NO_REAL_MNIST = (not os.path.isfile(os.path.join(MNIST_ROOT, "MNIST", "raw", "t10k-images-idx3-ubyte")),
                 "set MNIST_ROOT to a folder holding MNIST/raw/ (real MNIST) to run this test")
# The tutorial's transform, as written.
TUTORIAL_TRANSFORM = transforms.Compose([
    transforms.ToTensor(),
    transforms.Normalize((0.5,), (0.5,)),
])


# What a teacher copies for the tutorial as files (README: What to copy).
COPY_SET = ["model.py", "data.py", "common.py", "train.py", "test.py", "test_smoke.py"]
# Runs each (script, arguments) as its script does, one after another in one process of the folder
# it runs in: exit code, output, and whether the folder is as it was; one JSON line of results.
DRIVER = """
import contextlib, importlib, io, json, os, sys
import common
results = []
for script, argv in json.loads(sys.argv[1]):
    before, out, err, code = sorted(os.listdir(".")), io.StringIO(), io.StringIO(), 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            common.run_main(lambda: importlib.import_module(script).main(argv))
        except SystemExit as exit:
            code = exit.code
            if isinstance(code, str):  # sys.exit("error: ...") prints its text and exits 1
                err.write(code + "\\n")
                code = 1
    results.append([code, out.getvalue(), err.getvalue(), sorted(os.listdir(".")) == before])
print(json.dumps(results))
"""


def run_in(folder, *argv, timeout=300):
    """Run python -E -s with argv in folder: no PYTHONPATH, no user packages, and no MNIST_ROOT
    (which would make test_smoke train a real epoch), so only folder and the installed packages
    can be imported."""
    env = {key: value for key, value in os.environ.items() if key != "MNIST_ROOT"}
    return subprocess.run([sys.executable, "-E", "-s", *argv], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=timeout)


class Payload:
    """Unpickling this runs a shell command that creates a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def temporary_folder():
    """Return a new temporary folder, removed when the test module ends (call in setUpModule)."""
    folder = tempfile.TemporaryDirectory()
    unittest.addModuleCleanup(folder.cleanup)
    return folder.name


def run_script(module, argv):
    """Run module.main(argv) as its script does, in this process: return (exit code, out, err)."""
    out, err, code = io.StringIO(), io.StringIO(), 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            common.run_main(lambda: module.main(argv))
        except SystemExit as exit:
            code = exit.code
            if isinstance(code, str):  # sys.exit("message") prints it and exits 1
                err.write(code + "\n")
                code = 1
    return code, out.getvalue(), err.getvalue()
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"


@contextlib.contextmanager
def working_directory(folder):
    """Run the block in folder, as a command typed there does (Python 3.10 has no
    contextlib.chdir); back where it was afterwards, whatever happens."""
    here = os.getcwd()
    os.chdir(folder)
    try:
        yield folder
    finally:
        os.chdir(here)


@functools.cache
def run_folder():
    """A folder for what the whole run makes once, removed when the run ends."""
    folder = tempfile.mkdtemp(prefix="mnist-tests-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


@functools.cache
def shapes_mnist():
    """make_shapes_mnist's set, made once for every module that reads it: never write into it."""
    return make_shapes_mnist(os.path.join(run_folder(), "shapes"))


def browser_missing():
    """Why the browser tests cannot run here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    for path in (CHROMEDRIVER, CHROMIUM):
        if not os.path.exists(path):
            return f"{path} is missing (apt-get install chromium chromium-driver)"
    return None


# How long each move of a drawn stroke takes. Selenium's default, 250 ms, made a stroke of 20
# points last 5 s: three quarters of the browser tests' time was strokes. 25 ms is still a
# stroke drawn over time (half a second), as a hand draws it.
POINTER_MOVE_MS = 25


def draw_stroke(driver, points, kind="mouse"):
    """Draw one stroke through points (x, y in canvas pixels, 0..280) on the page's canvas, with
    pointer events of a mouse or a pen."""
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.actions.interaction import POINTER_MOUSE, POINTER_PEN
    from selenium.webdriver.common.actions.pointer_input import PointerInput

    canvas = driver.find_element("id", "draw")
    builder = ActionBuilder(driver, mouse=PointerInput(
        POINTER_PEN if kind == "pen" else POINTER_MOUSE, kind), duration=POINTER_MOVE_MS)
    pointer = builder.pointer_action
    # Offsets count from the element's centre; the canvas shows 280 x 280 pixels.
    pointer.move_to(canvas, points[0][0] - 140, points[0][1] - 140)
    pointer.pointer_down()
    for x, y in points[1:]:
        pointer.move_to(canvas, x - 140, y - 140)
    pointer.pointer_up()
    builder.perform()


def wait_until(driver, condition, what, timeout=30):
    """Wait until condition() is true, looking every 50 ms (Selenium's 0.5 s cost each wait up to
    half a second: 15 s of BrowserTest's); raise a TimeoutException saying what was awaited.
    The page replaces elements as answers come in: one found just before is then stale, which
    only means "not yet"."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.05, ignored_exceptions=(
        StaleElementReferenceException,)).until(lambda _: condition(), message=what)


def downloads_folder():
    """Where the run's Chromium saves what a page downloads."""
    return os.path.join(run_folder(), "downloads")


@functools.cache
def shared_browser():
    """One headless Chromium for the run, quit when it ends: 1280 x 2600, every host unresolvable
    but 127.0.0.1, where the test servers are (the exported file must request nothing), downloads into
    downloads_folder(), the browser's log and every request logged."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,2600",
                     "--disable-dev-shm-usage", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):
        options.add_argument(argument)
    os.makedirs(downloads_folder())
    options.add_experimental_option("prefs", {"download.default_directory": downloads_folder(),
                                              "download.prompt_for_download": False})
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_script_timeout(120)
    atexit.register(driver.quit)
    return driver


def browser():
    """The run's Chromium (call in setUpClass), on a blank page with its logs read empty, so that
    a class sees only what its own tests did."""
    driver = shared_browser()
    driver.get("about:blank")
    for log in ("browser", "performance"):
        driver.get_log(log)
    return driver


def run_module(name, *argv, **kwargs):
    """Run a module of the project (python -m tools.NAME) as a user would; the CompletedProcess."""
    return subprocess.run([sys.executable, "-m", name, *argv], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, **kwargs)


def start_script(script, *argv):
    """Start one of our scripts as a user does in a terminal, to send it Ctrl-C; return the Popen.

    A shell that runs the suite in the background starts it with Ctrl-C (SIGINT) ignored, and
    children inherit that, so the script would never see it: the child gets the default back.
    """
    return subprocess.Popen([sys.executable, os.path.join(ROOT, script), *argv], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def draw_digit(size, box, ink="black", paper="white", mode="RGB"):
    """A picture of a thick 'L': a bar down the left of box and one along its bottom."""
    picture = Image.new(mode, size, paper)
    draw = ImageDraw.Draw(picture)
    left, top, right, bottom = box
    thickness = (right - left) // 4
    draw.rectangle((left, top, left + thickness, bottom), fill=ink)
    draw.rectangle((left, bottom - thickness, right, bottom), fill=ink)
    return picture


def draw_shape(label, generator):
    """A picture (dark ink on white, 140 x 140) of a simple shape standing for digit label.

    A 1 is a near-vertical stroke and a 0 an ellipse, as people draw them; the other digits get
    other shapes, so that a network trained on these in a second tells 1 from 0 from the rest.
    """
    def jitter(limit):
        return (torch.rand(1, generator=generator).item() * 2 - 1) * limit

    picture = Image.new("L", (140, 140), 255)
    pen = ImageDraw.Draw(picture)
    width = int(8 + jitter(3))
    x, y = 70 + jitter(15), 70 + jitter(15)  # the centre
    high, wide = 45 + jitter(10), 28 + jitter(8)  # half the height and half the width
    slant = jitter(12)
    strokes = {
        1: [((x + slant, y - high), (x - slant, y + high))],
        2: [((x - wide, y), (x + wide, y))],
        3: [((x - wide, y - high), (x + wide, y + high))],
        4: [((x + wide, y - high), (x - wide, y + high))],
        5: [((x - wide, y - high), (x + wide, y - high)), ((x - wide, y - high), (x - wide, y + high))],
        6: [((x - wide, y + high), (x + wide, y + high)), ((x + wide, y - high), (x + wide, y + high))],
        7: [((x - wide, y - high), (x + wide, y - high)), ((x + wide, y - high), (x, y + high))],
        8: [((x - wide, y), (x + wide, y)), ((x, y - high), (x, y + high))],
        9: [((x - wide, y - high), (x + wide, y + high)), ((x + wide, y - high), (x - wide, y + high))],
    }
    if label == 0:
        pen.ellipse((x - wide, y - high, x + wide, y + high), outline=0, width=width)
    for start, end in strokes.get(label, []):
        pen.line((start, end), fill=0, width=width)
    return picture


def make_shapes_mnist(root, train_size=1500, test_size=200):
    """Write shape pictures, prepared as the page prepares drawings, as MNIST's raw IDX files."""
    generator = torch.Generator().manual_seed(0)
    raw_dir = os.path.join(root, "MNIST", "raw")
    os.makedirs(raw_dir, exist_ok=True)
    for prefix, size in (("train", train_size), ("t10k", test_size)):
        labels = torch.arange(size) % 10
        digits = torch.stack([prepare_digit(draw_shape(label, generator))
                              for label in labels.tolist()])  # (N, 1, 28, 28)
        pixels = (to_pixels(digits[:, 0]) * 255).round().to(torch.uint8)
        write_idx(os.path.join(raw_dir, f"{prefix}-images-idx3-ubyte"), pixels)
        write_idx(os.path.join(raw_dir, f"{prefix}-labels-idx1-ubyte"), labels.to(torch.uint8))
    return root


def stroke_pixels(label):
    """A 280 x 280 drawing of label's shape as rows of grey levels, as the page sends it."""
    picture = draw_shape(label, torch.Generator().manual_seed(label)).resize((280, 280))
    return [[picture.getpixel((x, y)) for x in range(280)] for y in range(280)]


def png_base64(picture):
    """The picture as a PNG file, base64-encoded, as the page uploads it."""
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def png_header_only(path, width, height, bit_depth=8, colour_type=0):
    """A PNG whose header claims width x height pixels (grey unless colour_type says otherwise: 6
    is RGBA), with a few bytes of pixel data."""
    def chunk(kind, content):
        return (struct.pack(">I", len(content)) + kind + content
                + struct.pack(">I", zlib.crc32(kind + content)))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    with open(path, "wb") as file:
        file.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                   + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b""))


# An EPS picture of a 7. Pillow would read it by running its PostScript in Ghostscript.
EPS_SEVEN = b"""%!PS-Adobe-3.0 EPSF-3.0
%%BoundingBox: 0 0 28 28
1 setgray 0 0 28 28 rectfill 0 setgray 3 setlinewidth
5 24 moveto 22 24 lineto 12 3 lineto stroke
showpage
"""


def fake_ghostscript(folder):
    """Make folder/gs, a program that leaves the file folder/gs_started when anything starts it;
    return (folder, that file's path). With folder first on PATH it is the gs that Pillow would
    start, even where a real Ghostscript is installed."""
    os.makedirs(folder, exist_ok=True)
    marker = os.path.join(folder, "gs_started")
    program = os.path.join(folder, "gs")
    with open(program, "w") as file:
        file.write(f"#!/bin/sh\ntouch '{marker}'\n")
    os.chmod(program, 0o755)
    return folder, marker


# What is hard to read on a phone, each as a line: anything past the screen's edge, a count of
# the confusion matrix on more than one line (its corner on more than two), a word of a stage's
# title cut across two lines, a label of the training curves under 10 CSS pixels.
PHONE_PROBLEMS = """
const problems = [], width = document.documentElement.clientWidth, range = document.createRange();
const lines = (target) => new Set([...target.getClientRects()].map((box) => Math.round(box.top))).size;
for (const element of document.querySelectorAll("body *")) {
  const box = element.getBoundingClientRect();
  if (box.width > 0 && (box.left < -0.5 || box.right > width + 0.5)) {
    problems.push(`${element.tagName}#${element.id}.${element.className} spans ${box.left} to ${box.right}`);
  }
}
for (const cell of document.querySelectorAll("#confusion td")) {
  range.selectNodeContents(cell);
  if (lines(range) > 1) problems.push(`the count ${cell.textContent} takes ${lines(range)} lines`);
}
const corner = document.querySelector("#confusion th");
range.selectNodeContents(corner);
if (lines(range) > 2) problems.push(`the corner ${corner.textContent} takes ${lines(range)} lines`);
const titles = document.createTreeWalker(document.getElementById("stages"), NodeFilter.SHOW_TEXT);
for (let text = titles.nextNode(); text; text = titles.nextNode()) {
  if (!text.parentElement.closest("h2")) continue;
  for (const word of text.textContent.matchAll(/\\S+/g)) {
    range.setStart(text, word.index);
    range.setEnd(text, word.index + word[0].length);
    if (lines(range) > 1) problems.push(`${word[0]} is cut across lines`);
  }
}
const sizes = [], fillText = CanvasRenderingContext2D.prototype.fillText;
CanvasRenderingContext2D.prototype.fillText = function (...text) {  // the size each label is shown at
  const shown = this.canvas.getBoundingClientRect().width / this.canvas.width;
  if (this.canvas.id === "curves") sizes.push(parseFloat(this.font) * this.getTransform().a * shown);
  return fillText.apply(this, text);
};
page.showTrainingStep();
CanvasRenderingContext2D.prototype.fillText = fillText;
if (sizes.length === 0 || Math.min(...sizes) < 10) problems.push(`curve labels of ${sizes} pixels`);
return problems;
"""


def thousands_set(root):
    """The shapes' test set of root 50 times over, 10,000 images as MNIST's test set: the
    confusion matrix then holds counts of four digits."""
    images, labels = data.load_mnist(root, train=False)
    return routes.Images("MNIST-sized set", images.repeat(50, 1, 1, 1), labels.repeat(50))


def serve(networks, sets=(), missing=None, collect=None, **settings):
    """Serve the page for networks on a free port of 127.0.0.1, in a thread of its own."""
    server = make_server(networks, "127.0.0.1", 0, "cpu", sets, missing, collect, **settings)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def start_server(networks, sets=(), missing=None, collect=None, **settings):
    """Serve the page for networks on a free port of 127.0.0.1 until the module's tests end."""
    server = serve(networks, sets, missing, collect, **settings)
    unittest.addModuleCleanup(server.server_close)
    unittest.addModuleCleanup(server.shutdown)  # cleanups run last first: shut down, then close
    return server


def trained_on_shapes(path, *argv):
    """Train model.py's Net on the shapes with train.py's flags argv; return the checkpoint's path."""
    code, _, err = run_script(train, ["--data-dir", shapes_mnist(), "--device", "cpu", *argv,
                                      "--out", path])
    assert code == 0, err
    return path


@functools.cache
def served_shapes():
    """What the tests of the served page share, made once for the run (never write into it):
    model, shapes.pt (4 epochs on the shapes), and early.pt, trained less, to compare with;
    class_digits, a folder of drawn shapes standing for a class's own; server, the page of both
    networks with the shapes' test set and that folder, saving drawings into collected; and
    edited_server, the page of the edited networks, without MNIST. The servers stop as the run ends."""
    # BatchNormNet's 'same' padding with an even kernel is on purpose; PyTorch's note that it
    # costs a padded copy of the input would only clutter the test output.
    warnings.filterwarnings("ignore", message="Using padding='same' with even kernel")
    folder = os.path.join(run_folder(), "served")
    os.makedirs(folder)
    model = trained_on_shapes(os.path.join(folder, "shapes.pt"), "--epochs", "4")
    class_digits = os.path.join(folder, "class_digits")
    for label in range(10):
        os.makedirs(os.path.join(class_digits, str(label)))
        for copy in range(3):
            draw_shape(label, torch.Generator().manual_seed(100 * label + copy)).save(
                os.path.join(class_digits, str(label), f"{copy}.png"))
    with contextlib.redirect_stdout(io.StringIO()):  # "Pictures: 30 read, 0 skipped"
        sets = routes.load_sets(shapes_mnist(), class_digits)
    early = trained_on_shapes(os.path.join(folder, "early.pt"), "--epochs", "1", "--seed", "1",
                              "--batch-size", "256")
    collected = os.path.join(folder, "collected")
    server = serve(routes.load_models([model, early], "cpu"), *sets, collect=collected)
    torch.manual_seed(0)
    edited_server = serve([routes.Network(name, network().eval()) for name, (network, _) in EDITED.items()],
                          *routes.load_sets(os.path.join(folder, "no_mnist_here"), None))
    for running in (server, edited_server):
        atexit.register(running.server_close)
        atexit.register(running.shutdown)  # atexit runs last first: shut down, then close
    return types.SimpleNamespace(folder=folder, model=model, early=early, class_digits=class_digits,
                                 collected=collected, server=server, edited_server=edited_server)


def digits_to_draw(count, folder):
    """count digits as 28 x 28 grey levels: MNIST's test set with MNIST_ROOT, else noisy bars
    (written into folder).

    Not the shapes: drawn perfectly symmetric, their centre of mass falls exactly halfway between
    two pixels, where float32 sums in another order round the other way (docs/page.md).
    """
    root = os.environ.get("MNIST_ROOT")
    if not (root and data.raw_folder(root)[1]):
        root = make_fake_mnist(os.path.join(folder, "bars"))
    return digits_of(data.load_mnist(root, train=False)[0], count)


@functools.cache
def exported_shapes():
    """What the tests of the exported file share, made once for the run (never write into it):
    model, shapes.pt (2 epochs on the shapes); file, page.html, its export with the shapes' test
    set (its drawings kept for class_digits, a folder never made); page, the server's Page of the
    same; edited_page and edited_file, the edited networks with OpsNet and SoftmaxNet (batch norms
    with learned-looking statistics) served and exported; digits, 100 digits to draw."""
    warnings.filterwarnings("ignore", message="Using padding='same' with even kernel")
    warnings.filterwarnings("ignore", message="Implicit dimension choice")  # SoftmaxNet's, on purpose
    folder = os.path.join(run_folder(), "exported")
    os.makedirs(folder)
    shapes = shapes_mnist()
    model = trained_on_shapes(os.path.join(folder, "shapes.pt"), "--epochs", "2")
    file = os.path.join(folder, "page.html")
    code, _, err = run_script(draw, [model, "--data-dir", shapes, "--export", file,
                                     "--collect", os.path.join(folder, "class_digits")])
    assert code == 0, err
    page = routes.Page(routes.load_models([model], "cpu"), "cpu", *routes.load_sets(shapes, None),
                       collect=os.path.join(folder, "unused"))
    torch.manual_seed(0)
    edited = [routes.Network(name, network().eval()) for name, (network, _) in EDITED.items()]
    edited.append(routes.Network("ops", OpsNet().eval()))
    edited.append(routes.Network("softmax", SoftmaxNet().eval()))
    for network in edited:  # batch norm with learned-looking statistics, not the identity
        for module in network.model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.data.uniform_(0.5, 1.5)
                module.bias.data.uniform_(-0.3, 0.3)
    edited_page = routes.Page(edited, "cpu")
    edited_file = os.path.join(folder, "edited.html")
    export.export_page(edited_page, edited_file)
    return types.SimpleNamespace(folder=folder, model=model, file=file, page=page, edited_page=edited_page,
                                 edited_file=edited_file, digits=digits_to_draw(100, folder))
