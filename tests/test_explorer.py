"""Tests of the explorer of draw.py's page: the test set and a folder of pictures against
test.py --per-class, a confusion cell's images, an image sent through the network with its label,
two networks compared, the training run's snapshots and the slider, and the page without MNIST.

Usage: python -m unittest -v tests.test_explorer
"""
import unittest

import torch

import data
import test
from extras import report
from model import Net
from page import routes
from tests.fixtures import run_script, served_shapes, shapes_mnist, stroke_pixels
from tests.served import request


def setUpModule():
    global MODEL, EARLY, SHAPES, FOLDER, EDITED_SERVER
    shared = served_shapes()
    MODEL, EARLY, SHAPES = shared.model, shared.early, shapes_mnist()
    FOLDER, EDITED_SERVER = shared.class_digits, shared.edited_server


class ExplorerTest(unittest.TestCase):
    """The labelled sets on the page, against test.py and the model itself."""

    def per_class(self, *flags):
        """test.py --per-class on the first network: (accuracy in %, confusion matrix rows)."""
        code, out, err = run_script(test, [MODEL, "--device", "cpu", "--per-class", *flags])
        self.assertEqual(code, 0, err)
        lines = out.splitlines()
        start = lines.index("Confusion matrix: row = true digit, column = predicted digit") + 2
        matrix = [[int(count) for count in line.split()[1:]] for line in lines[start:start + 10]]
        accuracy = next(line for line in lines if line.startswith("Test Accuracy: "))
        return float(accuracy.split(": ")[1].rstrip("%")), matrix

    def test_accuracy_and_confusion_matrix_equal_test_py_per_class(self):
        for set_index, flags in ((0, ["--data-dir", SHAPES]), (1, ["--images-dir", FOLDER])):
            with self.subTest(set=set_index):
                status, answer = request("GET", f"/testset?model=0&set={set_index}")
                self.assertEqual(status, 200, answer)
                accuracy, matrix = self.per_class(*flags)
                self.assertEqual(answer["confusion"], matrix)
                self.assertEqual(round(answer["accuracy"] * 100, 2), accuracy)

    def test_a_cell_lists_its_images_most_confident_first(self):
        images, labels = data.load_mnist(SHAPES, train=False)
        status, answer = request("GET", "/testset?model=1&set=0")  # early.pt makes mistakes
        cells = [(count, true, predicted) for true, row in enumerate(answer["confusion"])
                 for predicted, count in enumerate(row) if true != predicted and count]
        count, true, predicted = max(cells)
        status, cell = request("GET", f"/examples?model=1&set=0&true={true}&predicted={predicted}")
        self.assertEqual((status, cell["count"], len(cell["examples"])), (200, count, count))
        probabilities = [example["probability"] for example in cell["examples"]]
        self.assertEqual(probabilities, sorted(probabilities, reverse=True))
        model = routes.load_models([EARLY], "cpu")[0].model
        for example in cell["examples"]:
            index = example["index"]
            self.assertEqual((example["label"], example["predicted"]), (true, predicted))
            self.assertEqual(int(labels[index]), true)
            with torch.no_grad():
                answer_of_model = model(images[index][None]).softmax(dim=1)[0]
            self.assertEqual(int(answer_of_model.argmax()), predicted)
            self.assertAlmostEqual(answer_of_model[predicted].item(), example["probability"], places=4)
            expected = (data.to_pixels(images[index]) * 255).round().flatten().tolist()
            self.assertEqual(example["pixels"], expected)  # the test image itself

    def test_an_image_of_a_set_goes_through_the_network_with_its_label(self):
        images, labels = data.load_mnist(SHAPES, train=False)
        for index in (0, 57, 199):
            status, answer = request("POST", "/predict", {"model": 0, "set": 0, "index": index})
            self.assertEqual(status, 200, answer)
            self.assertEqual(answer["label"], int(labels[index]))
            torch.testing.assert_close(torch.tensor(answer["input"]["values"]),
                                       data.to_pixels(images[index]).flatten(), atol=1e-5, rtol=0)
            status, step = request("POST", "/step", {"set": 0, "index": index, "stage": "pool",
                                                     "map": 0, "row": 3, "column": 3})
            self.assertEqual(status, 200, step)
        status, answer = request("POST", "/predict", {"set": 1, "index": 29})  # a picture of a 9
        self.assertEqual((status, answer["label"]), (200, 9))

    def test_two_networks_compared_image_by_image(self):
        status, first = request("GET", "/examples?model=0&other=1&set=0")
        status, second = request("GET", "/examples?model=1&other=0&set=0")
        images, labels = data.load_mnist(SHAPES, train=False)
        networks = routes.load_models([MODEL, EARLY], "cpu")
        with torch.no_grad():
            right = [network.model(images).argmax(dim=1) == labels for network in networks[:2]]
        self.assertEqual(first["count"], int((right[0] & ~right[1]).sum()))
        self.assertEqual(second["count"], int((right[1] & ~right[0]).sum()))
        self.assertGreater(first["count"], 0)
        for example in first["examples"]:
            self.assertTrue(right[0][example["index"]] and not right[1][example["index"]])

    def test_the_training_run_and_its_snapshots(self):
        checkpoint = torch.load(MODEL, weights_only=True)
        status, run = request("GET", "/training?model=0")
        self.assertEqual(run["snapshots"], [snapshot["step"] for snapshot in checkpoint["snapshots"]])
        self.assertEqual(len(run["loss"]), len(checkpoint["history"]["loss"]))
        pixels = stroke_pixels(1)
        first = request("POST", "/predict", {"model": 0, "snapshot": 0, "pixels": pixels})[1]
        last = request("POST", "/predict", {"model": 0, "snapshot": len(run["snapshots"]) - 1,
                                            "pixels": pixels})[1]
        final = request("POST", "/predict", {"model": 0, "pixels": pixels})[1]
        untrained = request("POST", "/predict", {"model": 2, "pixels": pixels})[1]
        self.assertEqual(last["probabilities"], final["probabilities"])
        self.assertEqual(first["probabilities"], untrained["probabilities"])  # seed 0 both times
        self.assertNotEqual(first["prediction"], final["prediction"])
        status, kernels = request("GET", "/kernels?model=0&snapshot=0")
        self.assertEqual(kernels["kernels"], request("GET", "/kernels?model=2")[1]["kernels"])
        self.assertEqual(request("GET", "/training?model=2")[1]["snapshots"], [])  # none kept

    def test_the_confusion_matrix_follows_the_training_slider(self):
        images, labels = data.load_mnist(SHAPES, train=False)
        torch.manual_seed(0)  # step 0 of the run is the untrained network of its seed
        untrained = Net().eval()
        with torch.no_grad():
            expected = report.confusion_matrix(labels, untrained(images).argmax(dim=1)).tolist()
        status, first = request("GET", "/testset?model=0&snapshot=0&set=0")
        self.assertEqual((status, first["confusion"]), (200, expected))
        final = request("GET", "/testset?model=0&set=0")[1]
        self.assertGreater(final["accuracy"], first["accuracy"] + 0.3)
        status, cell = request("GET", "/examples?model=0&snapshot=0&set=0&true=1&predicted="
                               f"{max(range(10), key=lambda digit: expected[1][digit])}")
        self.assertEqual(cell["count"], max(expected[1]))

    def test_without_mnist_the_page_says_how_to_get_it(self):
        status, catalogue = request("GET", "/models", server=EDITED_SERVER)
        self.assertEqual(catalogue["sets"], [])
        self.assertIn("No MNIST in", catalogue["missing"])
        self.assertIn("python train.py with the same --data-dir", catalogue["missing"])
        status, answer = request("GET", "/testset?model=0", server=EDITED_SERVER)
        self.assertEqual(status, 404)
        self.assertEqual(answer["error"], catalogue["missing"])


if __name__ == "__main__":
    unittest.main()
