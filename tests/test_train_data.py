"""Tests of draw.py --export --train-images: MNIST's training images and whole test set in the
exported file, decoded in headless Chromium (file://) to the IDX files' bytes exactly, and the
size of the file with all of real MNIST's.

Usage: python -m unittest -v tests.test_train_data   (MNIST_ROOT=... adds the 16 MB check)
"""
import base64
import json
import os
import re
import string
import unittest

import torch

import draw
import train
from model import Net
from page import export, mnist_sets, routes
from tests.fixtures import (MNIST_ROOT, NO_REAL_MNIST, browser, browser_missing, run_script,
                            shapes_mnist, temporary_folder, working_directory, write_idx)

# In the page: window.exportedData.mnistImages(), each array as base64 (null: none carried).
DECODED = """
const done = arguments[0];
const base64 = (bytes) => {
  let text = "";
  for (let k = 0; k < bytes.length; k += 8192) {
    text += String.fromCharCode(...bytes.subarray(k, k + 8192));
  }
  return btoa(text);
};
const asBase64 = (set) => ({ images: base64(set.images), labels: base64(set.labels) });
window.exportedData.mnistImages().then(
  (sets) => done(sets && { train: asBase64(sets.train), test: asBase64(sets.test) }),
  (error) => done({ error: String(error) }));
"""


def setUpModule():
    global TEMP, MODEL, SHAPES, EDGES
    TEMP = temporary_folder()
    MODEL = os.path.join(TEMP, "untrained.pt")
    torch.manual_seed(0)
    torch.save({"model": Net().state_dict()}, MODEL)
    SHAPES = shapes_mnist()
    EDGES = edge_mnist(os.path.join(TEMP, "edges"))


def edge_mnist(root):
    """A small MNIST whose pixels make every kind of run: ink in the first and last pixel, images
    all ink and all black (runs of 784 and longer, across images), noise with zeros in it, and
    runs of exactly 255 and 256."""
    generator = torch.Generator().manual_seed(0)
    noise = torch.randint(0, 256, (4, 784), generator=generator)
    noise[noise < 100] = 0
    sized = torch.zeros(2, 784, dtype=torch.long)
    sized[0, 10:265], sized[1, 300:556] = 7, 200  # 255 and 256 pixels of ink
    train = torch.cat([torch.full((1, 784), 255), torch.zeros(3, 784, dtype=torch.long), noise,
                       sized, torch.full((1, 784), 1)])
    train[4, 0] = 9  # after three black images: ink at an image's first pixel
    test = torch.cat([noise.flip(0), torch.zeros(1, 784, dtype=torch.long)])
    test[0, 0], test[-1, -1] = 3, 255  # ink first and last in the file
    raw_dir = os.path.join(root, "MNIST", "raw")
    os.makedirs(raw_dir)
    for prefix, images in (("train", train), ("t10k", test)):
        write_idx(os.path.join(raw_dir, f"{prefix}-images-idx3-ubyte"),
                  images.reshape(-1, 28, 28).to(torch.uint8))
        write_idx(os.path.join(raw_dir, f"{prefix}-labels-idx1-ubyte"),
                  (torch.arange(len(images)) * 7 % 10).to(torch.uint8))
    return root


def idx_bytes(data_dir, name):
    """An IDX file's items as bytes, without its header."""
    with open(os.path.join(data_dir, "MNIST", "raw", name), "rb") as file:
        content = file.read()
    return content[4 + 4 * content[3]:]


def export_file(name, data_dir, *argv):
    """draw.py MODEL --data-dir data_dir --export TEMP/name argv: (exit code, out, err, path)."""
    path = os.path.join(TEMP, name)
    code, out, err = run_script(draw, [MODEL, "--data-dir", data_dir, "--device", "cpu",
                                       "--export", path, *argv])
    return code, out, err, path


def exported(path):
    """The file's text and its EXPORT."""
    with open(path, encoding="utf-8") as file:
        html = file.read()
    return html, json.loads(re.search(r'id="export-data">(.*?)</script>', html, re.S).group(1))


class TrainImagesFlagTest(unittest.TestCase):
    """--train-images, checked without a browser."""

    def assert_refused(self, code, err, message):
        """Exit 2; the last line of err (argparse's usage before it) says message of the flag."""
        self.assertEqual(code, 2, err)
        self.assertNotIn("Traceback", err)
        last_line = err.strip().splitlines()[-1]
        self.assertRegex(last_line, r" error: argument --train-images: " + message)

    def test_bad_values_are_one_line_exit_2_and_write_no_file(self):
        requirement = "must be a whole number of at least 0, not "
        for value, message in (("-1", requirement + "'-1'$"), ("ten", requirement + "'ten'$"),
                               ("1.5", requirement + r"'1\.5'$"),
                               ("1501", "must be at most 1,500, the training images in shapes, "
                                        "not 1501$")):
            code, _, err, path = export_file("bad.html", SHAPES, "--train-images", value)
            self.assert_refused(code, err, message)
            self.assertFalse(os.path.exists(path))
        # Without MNIST in the default folder (a --data-dir given without it is refused first).
        os.makedirs(os.path.join(TEMP, "no_mnist"), exist_ok=True)
        path = os.path.join(TEMP, "none.html")
        with working_directory(os.path.join(TEMP, "no_mnist")):
            code, _, err = run_script(draw, [MODEL, "--export", path, "--train-images", "5"])
        self.assert_refused(code, err, r"needs MNIST's four raw files in files/MNIST/raw, which "
                                       r"are not all there \(python train.py")
        self.assertFalse(os.path.exists(path))
        code, _, err = run_script(draw, [MODEL, "--data-dir", SHAPES, "--train-images", "5"])
        self.assert_refused(code, err, r"only with --export \(the served page trains nothing\)$")

    def test_0_leaves_them_out_and_the_file_as_it_was(self):
        code, out, err, path = export_file("zero.html", SHAPES, "--train-images", "0")
        self.assertEqual(code, 0, err)
        self.assertRegex(out, r"Wrote .*zero\.html \(\d+\.\d\d MB\): open it")
        html, data = exported(path)
        self.assertNotIn("mnist", data)
        self.assertNotIn('id="mnist-', html)
        page = routes.Page(routes.load_models([MODEL], "cpu"), "cpu",
                           *routes.load_sets(SHAPES, None))
        self.assertEqual(html, export.page_html(page))  # as before the file could carry them

    def test_by_default_all_of_them_and_the_size_line_says_what_they_take(self):
        code, out, err, path = export_file("all.html", SHAPES)
        self.assertEqual(code, 0, err)
        self.assertRegex(out, r"Wrote .*all\.html \(\d+\.\d\d MB; MNIST's 1,500 training and 200 "
                              r"test images take \d+\.\d\d MB of it\): open it in a browser")
        html, data = exported(path)
        self.assertEqual([data["mnist"][name]["count"] for name in ("train", "test")], [1500, 200])
        labels = idx_bytes(SHAPES, "train-labels-idx1-ubyte")
        self.assertEqual(data["mnist"]["train"]["labels"], "".join(map(str, labels)))
        for element in ("mnist-train", "mnist-test"):  # their own elements, of their alphabet only
            text = re.search(f'<script type="text/plain" id="{element}">(.*?)</script>',
                             html).group(1)
            self.assertLessEqual(set(text), set(data["mnist"]["alphabet"]))

    def test_base85_is_ascii85s_arithmetic_in_an_alphabet_without_htmls_characters(self):
        alphabet = mnist_sets.ALPHABET
        self.assertEqual(len(set(alphabet)), 85)
        self.assertLessEqual(set(alphabet), set(string.printable) - set(string.whitespace))
        self.assertFalse(set(alphabet) & set("<>&\"'\\`"))
        # Python's base85 (RFC 1924) works the same way in another alphabet; a last group of
        # n bytes is n + 1 digits.
        standard = (string.digits + string.ascii_uppercase + string.ascii_lowercase
                    + "!#$%&()*+-;<=>?@^_`{|}~")
        to_standard = str.maketrans(alphabet, standard)
        data = bytes(range(256)) + b"\xff\xff\xff\xff\x00"
        for length in range(10):
            for start in (0, 100, 252):
                text = mnist_sets.base85(data[start:start + length])
                self.assertEqual(text.translate(to_standard),
                                 base64.b85encode(data[start:start + length]).decode())


@unittest.skipIf(browser_missing(), browser_missing())
class DecodedInBrowserTest(unittest.TestCase):
    """The file opened as file:// in headless Chromium: mnistImages() gives the IDX files' bytes."""

    @classmethod
    def setUpClass(cls):
        cls.driver = browser()

    def decoded(self, path):
        self.driver.get("file://" + path)
        found = self.driver.execute_async_script(DECODED)
        self.assertEqual([entry["message"] for entry in self.driver.get_log("browser")
                          if entry["level"] == "SEVERE"], [])
        self.assertEqual(self.driver.execute_script(
            "return performance.getEntriesByType('resource').length"), 0)  # nothing requested
        self.assertNotIn("error", found or {}, found)
        return found and {name: {key: base64.b64decode(text) for key, text in arrays.items()}
                          for name, arrays in found.items()}

    def assert_exact(self, decoded, data_dir, train_count):
        for name, prefix, count in (("train", "train", train_count), ("test", "t10k", None)):
            images = idx_bytes(data_dir, f"{prefix}-images-idx3-ubyte")
            labels = idx_bytes(data_dir, f"{prefix}-labels-idx1-ubyte")
            if count is not None:  # the first count
                images, labels = images[:count * 784], labels[:count]
            self.assertEqual(decoded[name]["labels"], labels)
            self.assertTrue(decoded[name]["images"] == images, name)  # not a diff of 156,800 bytes

    def test_100_shapes_and_the_whole_test_set_decode_to_the_idx_files_bytes(self):
        code, out, err, path = export_file("hundred.html", SHAPES, "--train-images", "100")
        self.assertEqual(code, 0, err)
        self.assertIn("MNIST's 100 training and 200 test images", out)
        self.assert_exact(self.decoded(path), SHAPES, 100)

    def test_runs_of_every_kind_decode_exactly(self):
        code, _, err, path = export_file("edges.html", EDGES)
        self.assertEqual(code, 0, err)
        self.assert_exact(self.decoded(path), EDGES, None)

    def test_a_file_without_them_answers_null(self):
        code, _, err, path = export_file("without.html", SHAPES, "--train-images", "0")
        self.assertEqual(code, 0, err)
        self.assertIsNone(self.decoded(path))


def tutorial_checkpoint(path):
    """A checkpoint shaped as python train.py writes it: the tutorial's network, 13 snapshots of
    weights that move between them, and the curves of 3 epochs."""
    torch.manual_seed(0)
    model, steps, snapshots = Net(), train.snapshot_steps(3 * 937), []
    for step in steps:
        snapshots.append({"step": step, "model": {key: value.clone()
                                                  for key, value in model.state_dict().items()}})
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(torch.randn_like(parameter), alpha=0.01)
    torch.save({"model": snapshots[-1]["model"], "snapshots": snapshots,
                "history": {"loss": [1.0] * steps[-1], "accuracy": [0.5] * steps[-1]}}, path)
    return path


@unittest.skipIf(*NO_REAL_MNIST)
class RealMnistSizeTest(unittest.TestCase):
    def test_the_tutorials_file_with_all_of_mnist_is_at_most_16_mb(self):
        path = os.path.join(TEMP, "tutorial.html")
        self.addCleanup(torch.set_num_threads, torch.get_num_threads())  # draw.main sets them for the process
        code, out, err = run_script(draw, [tutorial_checkpoint(os.path.join(TEMP, "tutorial.pt")),
                                           "--data-dir", MNIST_ROOT, "--device", "cpu",
                                           "--threads", "2", "--export", path])  # 2: sooner, same file
        self.assertEqual(code, 0, err)
        self.assertIn("MNIST's 60,000 training and 10,000 test images take", out)
        self.assertLessEqual(os.path.getsize(path), 16 * 2**20)


if __name__ == "__main__":
    unittest.main()
