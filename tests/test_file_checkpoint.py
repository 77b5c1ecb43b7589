"""Tests of the checkpoint the exported file writes, in headless Chromium: train.py's format, a
torch.save zip that torch.load reads with weights_only=True (mmap too), and test.py, draw.py and
--init-from read; the untrained network, an edited one's batch norm statistics and int64 count,
bad bodies, the Download model.pt button.

Usage: python -m unittest -v tests.test_file_checkpoint
"""
import base64
import collections
import glob
import os
import re
import struct
import unittest
import zipfile

import torch

import draw
import train
from tests.exported import CALL, exported_data
from tests.fixtures import (browser, browser_missing, downloads_folder, exported_shapes, run_script,
                            shapes_mnist, temporary_folder, wait_until)
from tests.networks import BatchNormNet, in_model_py


def setUpModule():
    global TEMP, SHAPES, MODEL, PAGE, FILE
    shared = exported_shapes()
    TEMP, SHAPES, MODEL, PAGE = temporary_folder(), shapes_mnist(), shared.model, shared.page
    FILE = shared.file


def test_accuracy_line(checkpoint, *argv):
    """The Test Accuracy line that python test.py checkpoint prints on the shapes' test set."""
    import test as test_script

    code, out, err = run_script(test_script, [checkpoint, "--data-dir", SHAPES, "--device", "cpu", *argv])
    assert code == 0, err
    return re.search(r"Test Accuracy: .*", out).group(0)


@unittest.skipIf(browser_missing(), browser_missing())
class CheckpointInBrowserTest(unittest.TestCase):
    """Back to Python (issue 30's first step): the file writes a checkpoint of train.py's format,
    a torch.save zip that torch.load reads with weights_only=True, and test.py and draw.py read."""

    @classmethod
    def setUpClass(cls):
        cls.driver, cls.downloads = browser(), downloads_folder()
        # An edited network with batch norm as a run leaves it: statistics, and a count of batches
        # (num_batches_tracked, int64, which no operation of the file reads).
        torch.manual_seed(3)
        model = BatchNormNet()
        model.norm1.running_mean.uniform_(-0.5, 0.5)
        model.norm1.running_var.uniform_(0.5, 2.0)
        model.norm1.num_batches_tracked.fill_(937)
        cls.norm_model, cls.norm_file = os.path.join(TEMP, "norm.pt"), os.path.join(TEMP, "norm.html")
        torch.save({"model": model.state_dict(), "epoch": 1}, cls.norm_model)
        with in_model_py(BatchNormNet):
            code, _, err = run_script(draw, [cls.norm_model, "--data-dir", SHAPES, "--export", cls.norm_file])
        assert code == 0, err

    def open(self, page):
        self.driver.get("file://" + page)
        wait_until(self.driver, lambda: self.driver.execute_script(
            "return document.body.dataset.ready === 'true'"), "the file to be ready")

    def written(self, page, body, name):
        """Open page, ask routes.checkpoint(body), write its bytes to TEMP/name; the path."""
        self.open(page)
        reply = self.driver.execute_async_script(CALL, "checkpoint", body)
        self.assertNotIn("error", reply)
        path = os.path.join(TEMP, name)
        with open(path, "wb") as file:
            file.write(base64.b64decode(reply["answer"]))
        return path

    def assert_same_weights(self, written, original):
        self.assertEqual(list(written), list(original))  # every key, in the state_dict's order
        for key, tensor in original.items():
            self.assertEqual(written[key].dtype, tensor.dtype, key)
            self.assertTrue(torch.equal(written[key], tensor), key)  # bit for bit

    def assert_aligned_as_torch_save(self, path):
        """Each tensor's bytes start at a multiple of 64 in the archive, as torch.save puts them
        (torch.load's mmap=True maps them so)."""
        with open(path, "rb") as file:
            raw = file.read()
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            for info in archive.infolist():
                start = info.header_offset
                name_length, extra_length = struct.unpack("<HH", raw[start + 26:start + 30])
                if "/data/" in info.filename:
                    self.assertEqual((start + 30 + name_length + extra_length) % 64, 0, info.filename)
        self.assertEqual([name for name in names if "/data/" not in name],
                         ["model/data.pkl", "model/.format_version", "model/.storage_alignment",
                          "model/byteorder", "model/version"])

    def test_the_tutorials_checkpoint_is_read_by_torch_test_py_and_draw_py(self):
        path = self.written(FILE, {"model": 0}, "from_the_file.pt")
        written, original = torch.load(path, weights_only=True), torch.load(MODEL, weights_only=True)
        self.assert_same_weights(written["model"], original["model"])
        self.assertIs(type(written["model"]), collections.OrderedDict)
        self.assertEqual([snapshot["step"] for snapshot in written["snapshots"]],
                         [snapshot["step"] for snapshot in original["snapshots"]])
        for mine, theirs in zip(written["snapshots"], original["snapshots"]):
            self.assert_same_weights(mine["model"], theirs["model"])  # the tutorial's are exact
        for key in ("loss", "accuracy"):  # as the page has them: rounded to 5 digits
            self.assertEqual(written["history"][key], [round(v, 5) for v in original["history"][key]])
            self.assertTrue(all(type(v) is float for v in written["history"][key]))
        self.assertEqual(written["test_accuracy"], original["test_accuracy"])
        self.assertEqual(test_accuracy_line(path), test_accuracy_line(MODEL))
        target = os.path.join(TEMP, "from_the_file.html")
        code, _, err = run_script(draw, [path, "--data-dir", SHAPES, "--export", target])
        self.assertEqual(code, 0, err)
        read, first = (exported_data(path)["networks"][0]["training"] for path in (target, FILE))
        self.assertEqual({**read, "model": first["model"]}, first)  # the same run, by another name
        code, _, err = run_script(train, ["--data-dir", SHAPES, "--device", "cpu", "--epochs", "1",
                                          "--init-from", path, "--out", os.path.join(TEMP, "further.pt")])
        self.assertEqual(code, 0, err)
        self.assert_aligned_as_torch_save(path)
        mapped = torch.load(path, weights_only=True, mmap=True)
        self.assert_same_weights(mapped["model"], original["model"])

    def test_the_untrained_network_too(self):
        written = torch.load(self.written(FILE, {"model": 1}, "untrained.pt"), weights_only=True)
        self.assert_same_weights(written["model"], PAGE.networks[1].model.state_dict())
        self.assertEqual((written["snapshots"], written["history"]), ([], {"loss": [], "accuracy": []}))

    def test_an_edited_network_keeps_its_batch_norm_statistics_and_int64_count(self):
        path = self.written(self.norm_file, {"model": 0}, "norm_from_the_file.pt")
        written = torch.load(path, weights_only=True)
        original = torch.load(self.norm_model, weights_only=True)
        self.assert_same_weights(written["model"], original["model"])
        self.assertEqual(written["model"]["norm1.num_batches_tracked"].item(), 937)
        with in_model_py(BatchNormNet):
            line = test_accuracy_line(path)
            self.assertEqual(line, test_accuracy_line(self.norm_model))
            # the accuracy the page showed, which it wrote as test_accuracy
            self.assertEqual(line, f"Test Accuracy: {written['test_accuracy'] * 100:.2f}%")
            code, _, err = run_script(draw, [path, "--data-dir", SHAPES, "--export",
                                             os.path.join(TEMP, "norm_again.html")])
        self.assertEqual(code, 0, err)

    def test_a_bad_body_is_refused_in_one_line(self):
        self.open(FILE)
        for body, message in (({"model": 7}, "model must be a whole number from 0 to 1"),
                              ({"model": 0, "snapshot": 1}, "send model (the number of a network) only"),
                              ("model", "send model (the number of a network) only")):
            reply = self.driver.execute_async_script(CALL, "checkpoint", body)
            self.assertEqual((reply.get("status"), reply.get("error")), (400, message), body)

    def test_the_button_downloads_model_pt(self):
        from selenium.webdriver.support.ui import Select

        self.open(FILE)
        target = os.path.join(self.downloads, "model.pt")
        for stale in glob.glob(os.path.join(self.downloads, "model*.pt")):
            os.remove(stale)
        Select(self.driver.find_element("id", "model")).select_by_index(1)  # the untrained network
        button = self.driver.find_element("id", "checkpoint-download")
        self.assertEqual(button.text, "Download model.pt")
        button.click()
        wait_until(self.driver, lambda: os.path.exists(target) and not glob.glob(target + ".crdownload"),
                   "model.pt")
        reply = self.driver.execute_async_script(CALL, "checkpoint", {"model": 1})
        expected = base64.b64decode(reply["answer"])
        with open(target, "rb") as file:
            self.assertEqual(file.read(), expected)
        written = torch.load(target, weights_only=True)
        self.assert_same_weights(written["model"], PAGE.networks[1].model.state_dict())


if __name__ == "__main__":
    unittest.main()
