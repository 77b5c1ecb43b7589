"""Tests of POST /collect (draw.py --collect DIR): a class's drawings saved as labelled pictures
under new names, never overwriting (without hard links too), bad labels, pictures and folders
refused, a digit's limit, bounded pictures, a class saving at once, folders named by their own name.

Usage: python -m unittest -v tests.test_collect
"""
import contextlib
import io
import json
import os
import threading
import unittest
from unittest import mock

import torch
from PIL import Image

import draw
from extras import pictures
from page import routes
from page.collect import collect_folder
from tests.fixtures import (draw_shape, png_base64, run_folder, run_script, served_shapes,
                            start_server, stroke_pixels, temporary_folder)
from tests.served import at_once, request


def setUpModule():
    global TEMP, MODEL, FOLDER, EDITED_SERVER
    shared = served_shapes()
    TEMP, MODEL, FOLDER, EDITED_SERVER = (temporary_folder(), shared.model, shared.class_digits,
                                          shared.edited_server)


class CollectTest(unittest.TestCase):
    """POST /collect: the class's drawings saved as labelled pictures, never overwriting; each
    test with a server and a folder of its own."""

    def collect_server(self, name, **settings):
        folder = collect_folder(os.path.join(TEMP, name))  # made, as --collect makes it
        return start_server(routes.load_models([MODEL], "cpu"), collect=folder, **settings), folder

    def test_a_drawing_is_saved_as_drawn_under_its_label_with_a_new_name_each_time(self):
        server, collected = self.collect_server("collect_new_names")
        folder = os.path.join(collected, "4")
        pixels = stroke_pixels(4)
        status, first = request("POST", "/collect", {"label": 4, "pixels": pixels}, server=server)
        self.assertEqual((status, first["saved"]), (200, os.path.join("4", "0000.png")), first)
        with Image.open(os.path.join(folder, "0000.png")) as saved:  # as drawn, not prepared
            self.assertEqual((saved.size, saved.mode), ((280, 280), "L"))
            self.assertEqual(torch.tensor(list(saved.tobytes())).view(280, 280).tolist(), pixels)
        with open(os.path.join(folder, "0001.png"), "wb") as file:
            file.write(b"put here by hand")
        status, second = request("POST", "/collect", {"label": 4, "pixels": stroke_pixels(0)},
                                 server=server)
        self.assertEqual(second["saved"], os.path.join("4", "0002.png"))  # 0001 is taken
        with open(os.path.join(folder, "0001.png"), "rb") as file:
            self.assertEqual(file.read(), b"put here by hand")  # never overwritten
        self.assertEqual(second["counts"], [0, 0, 0, 0, 3, 0, 0, 0, 0, 0])  # the hand-made one too
        self.assertEqual(request("GET", "/models", server=server)[1]["collect"]["counts"],
                         second["counts"])
        self.assertEqual([name for name in os.listdir(folder) if name.endswith(".tmp")], [])

    def test_bad_labels_pictures_and_folders_are_refused(self):
        server, collected = self.collect_server("collect_refusals")
        one, white = stroke_pixels(1), [[255] * 40 for _ in range(40)]
        for body, expected in [({"label": 10, "pixels": one}, 400), ({"label": -1, "pixels": one}, 400),
                               ({"label": "3", "pixels": one}, 400), ({"label": True, "pixels": one}, 400),
                               ({"pixels": one}, 400), ({"label": 3}, 400),
                               ({"label": 3, "picture": png_base64(draw_shape(3, torch.Generator()))}, 400),
                               ({"label": 3, "pixels": [[0, 999]]}, 400),
                               ({"label": 3, "pixels": white}, 422)]:
            with self.subTest(body=str(body)[:50]):
                status, answer = request("POST", "/collect", body, server=server)
                self.assertEqual(status, expected, answer)
                self.assertEqual(len(answer["error"].splitlines()), 1)
        # A digit's folder that cannot be made (a file in its place): 403, and nothing written.
        with open(os.path.join(collected, "7"), "w") as file:
            file.write("not a folder")
        status, answer = request("POST", "/collect", {"label": 7, "pixels": one}, server=server)
        self.assertEqual(status, 403, answer)
        self.assertIn("cannot save into", answer["error"])
        self.assertEqual(sorted(os.listdir(collected)), ["7"])
        status, answer = request("POST", "/collect", {"label": 1, "pixels": one}, server=EDITED_SERVER)
        self.assertEqual(status, 404)  # off unless draw.py --collect DIR
        self.assertIn("--collect DIR", answer["error"])
        self.assertIsNone(request("GET", "/models", server=EDITED_SERVER)[1]["collect"])

    def test_without_hard_links_saves_still_never_overwrite(self):
        server, collected = self.collect_server("collect_on_a_usb_stick")
        with mock.patch("os.link", side_effect=PermissionError(1, "Operation not permitted")):
            names = [request("POST", "/collect", {"label": 2, "pixels": stroke_pixels(2)},
                             server=server)[1]["saved"] for _ in range(3)]
        self.assertEqual(names, [os.path.join("2", f"{number:04d}.png") for number in range(3)])
        self.assertEqual(sorted(os.listdir(os.path.join(collected, "2"))),
                         ["0000.png", "0001.png", "0002.png"])

    def test_a_digit_takes_at_most_the_limit(self):
        server, collected = self.collect_server("collect_limit", collect_limit=2)
        statuses = [request("POST", "/collect", {"label": 5, "pixels": stroke_pixels(5)},
                            server=server)[0] for _ in range(3)]
        self.assertEqual(statuses, [200, 200, 409])
        status, answer = request("POST", "/collect", {"label": 5, "pixels": stroke_pixels(5)},
                                 server=server)
        self.assertIn("holds 2 pictures already, the most this page saves of one digit", answer["error"])
        self.assertEqual(len(os.listdir(os.path.join(collected, "5"))), 2)
        self.assertEqual(request("POST", "/collect", {"label": 6, "pixels": stroke_pixels(6)},
                                 server=server)[0], 200)  # another digit has room
        self.assertEqual(request("GET", "/models", server=server)[1]["collect"]["limit"], 2)

    def test_a_saved_drawing_is_at_most_the_canvas_and_a_bounded_png(self):
        server, collected = self.collect_server("collect_bounded")
        one = stroke_pixels(1)  # 280 x 280, as the page's canvas sends it
        noise = torch.randint(0, 256, (280, 280), generator=torch.Generator().manual_seed(0))
        for pixels, expected, message in [
                ([row + row[:1] for row in one], 400, "at most 280 x 280"),
                (one + one[:1], 400, "at most 280 x 280"),
                (noise.tolist(), 413, "bytes as a PNG, at most 16,384 are saved")]:
            with self.subTest(shape=(len(pixels), len(pixels[0])), expected=expected):
                status, answer = request("POST", "/collect", {"label": 8, "pixels": pixels},
                                         server=server)
                self.assertEqual(status, expected, answer)
                self.assertIn(message, answer["error"])
        self.assertEqual(os.listdir(collected), [])  # nothing written
        status, answer = request("POST", "/collect", {"label": 8, "pixels": one}, server=server)
        self.assertEqual(status, 200, answer)
        with contextlib.redirect_stdout(io.StringIO()):  # read as train.py --extra-images-dir does
            _, labels = pictures.read_labelled_folder(collected)
        self.assertEqual(labels.tolist(), [8])

    def test_a_class_saving_at_once_loses_and_shares_no_name(self):
        server, collected = self.collect_server("collect_class")
        drawings = {label: [row[::2] for row in stroke_pixels(label)[::2]] for label in range(10)}
        results, lock = [], threading.Lock()

        def student(number):  # 20 saves, one after another, as fast as answers come
            for save in range(20):
                label = (number + save) % 10
                status, answer = request("POST", "/collect", {"label": label,
                                                              "pixels": drawings[label]},
                                         server=server)
                with lock:
                    results.append((status, answer.get("saved")))

        at_once(student, 30, timeout=300)
        self.assertEqual(len(results), 600)
        self.assertEqual({status for status, _ in results}, {200})
        names = [name for _, name in results]
        self.assertEqual(len(set(names)), 600)  # no name given twice
        on_disk = [os.path.join(digit, name) for digit in sorted(os.listdir(collected))
                   for name in os.listdir(os.path.join(collected, digit))]
        self.assertEqual(sorted(on_disk), sorted(names))  # and no file lost or extra
        for path in on_disk:
            with Image.open(os.path.join(collected, path)) as picture:
                picture.load()  # every one a whole, readable picture
                self.assertEqual(picture.size, (140, 140))
        counts = request("GET", "/models", server=server)[1]["collect"]["counts"]
        self.assertEqual(counts, [len(os.listdir(os.path.join(collected, str(digit))))
                                  for digit in range(10)])

    def test_the_page_names_folders_by_their_own_name_never_a_path_of_this_machine(self):
        # --collect and --data-dir as paths of this machine, the folder given as "collect_named/..".
        # The path ends in a separator, as a shell's completion writes it.
        collected = collect_folder(os.path.join(TEMP, "collect_named", "class", "..", ""))
        with contextlib.redirect_stdout(io.StringIO()):
            sets = routes.load_sets(os.path.join(TEMP, "no_mnist_here"), FOLDER)
        server = start_server(routes.load_models([MODEL], "cpu"), *sets, collect=collected,
                              collect_limit=1)
        body = {"label": 5, "pixels": stroke_pixels(5)}
        answers = [request("GET", "/models", server=server)]
        answers += [request("POST", "/collect", body, server=server) for _ in range(2)]  # 200, 409
        with open(os.path.join(collected, "7"), "w") as file:
            file.write("not a folder")  # 403: cannot be made
        answers.append(request("POST", "/collect", {**body, "label": 7}, server=server))
        with mock.patch("os.fsync", side_effect=OSError(28, "No space left on device")):
            answers.append(request("POST", "/collect", {**body, "label": 3}, server=server))  # 403
        self.assertEqual([status for status, _ in answers], [200, 200, 409, 403, 403])
        for path in {TEMP, os.path.realpath(TEMP), run_folder(), os.path.realpath(run_folder())}:
            self.assertNotIn(path, json.dumps(answers))  # class_digits is in the run's folder
        catalogue = answers[0][1]
        self.assertEqual(catalogue["collect"]["folder"], "collect_named")
        self.assertEqual([s["name"] for s in catalogue["sets"]], ["class_digits"])
        self.assertTrue(catalogue["missing"].startswith("No MNIST in no_mnist_here/MNIST/raw: "))
        self.assertTrue(answers[2][1]["error"].startswith("collect_named/5 holds 1 picture already"))
        self.assertEqual(answers[4][1]["error"], "cannot save: collect_named/3/0000.png: could "
                                                 "not be written (No space left on device)")

    def test_a_collect_folder_that_cannot_be_made_is_one_line(self):
        blocker = os.path.join(TEMP, "a_file")
        with open(blocker, "w") as file:
            file.write("x")
        code, _, err = run_script(draw, [MODEL, "--collect", os.path.join(blocker, "digits")])
        self.assertEqual(code, 2)
        self.assertNotIn("Traceback", err)
        self.assertIn(": error: argument --collect: cannot make folder",  # usage, then one line
                      err.strip().splitlines()[-1])
        self.assertTrue(err.strip().splitlines()[-1].endswith("(Not a directory)"), err)


if __name__ == "__main__":
    unittest.main()
