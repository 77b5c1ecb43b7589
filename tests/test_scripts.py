"""Tests that the page's JavaScript sits in its rooms: draw.html loads page/scripts/ by name and
holds no script of its own, the server serves exactly those files (text/javascript, by a fixed
table: no part of a URL reaches the file system), and the export inlines them all, its back end
(page/offline/, page/maths/) before them, into one file that requests nothing. No browser.

Usage: python -m unittest -v tests.test_scripts
"""
import glob
import http.client
import json
import os
import re
import threading
import unittest

from page import export, routes
from page.connections import SECURITY_HEADERS
from page.server import make_server
from tests.fixtures import ROOT

PAGE = os.path.join(ROOT, "page")


def names_in(folder):
    return sorted(os.path.basename(path) for path in glob.glob(os.path.join(PAGE, folder, "*.js")))


def read(path):
    with open(path, encoding="utf-8") as file:
        return file.read()


def setUpModule():
    global SERVER, TOKEN_SERVER, PAGE_OBJECT
    PAGE_OBJECT = routes.Page(routes.load_models([], "cpu"), "cpu")
    SERVER = make_server(routes.load_models([], "cpu"), "127.0.0.1", 0, "cpu")
    TOKEN_SERVER = make_server(routes.load_models([], "cpu"), "127.0.0.1", 0, "cpu", token="class")
    for server in (SERVER, TOKEN_SERVER):
        threading.Thread(target=server.serve_forever, daemon=True).start()
        unittest.addModuleCleanup(server.server_close)
        unittest.addModuleCleanup(server.shutdown)


def get(path, server=None, method="GET"):
    """(status, headers, body) of one request to a test server."""
    connection = http.client.HTTPConnection("127.0.0.1", (server or SERVER).server_address[1], timeout=30)
    try:
        connection.request(method, path, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


class RoomsTest(unittest.TestCase):
    def test_draw_html_loads_every_script_of_page_scripts_once_and_holds_none_of_its_own(self):
        html = read(routes.PAGE)
        self.assertEqual(sorted(routes.SCRIPT_NAMES), names_in("scripts"))
        self.assertEqual(len(set(routes.SCRIPT_NAMES)), len(routes.SCRIPT_NAMES))
        self.assertEqual(re.findall(r"<script(?! src=\"/scripts/[a-z-]+\.js\"></script>)", html), [])
        self.assertEqual(routes.SCRIPT_NAMES[0], "requests.js")  # it makes the namespace page

    def test_the_export_takes_every_file_of_the_back_end_in_its_order(self):
        self.assertEqual(sorted(f"{name}.js" for name in export.MATHS), names_in("maths"))
        self.assertEqual(sorted([*(f"{name}.js" for name in export.BACK_END), "trainer.js"]),
                         names_in("offline"))
        self.assertEqual((export.MATHS[0], export.BACK_END[0]), ("tensors", "checks"))  # the namespaces

    def test_each_script_says_what_it_holds_and_can_be_inlined(self):
        for path in glob.glob(os.path.join(PAGE, "**", "*.js"), recursive=True):
            text = read(path)
            with self.subTest(file=os.path.relpath(path, ROOT)):
                self.assertRegex(text, r"^// \S")  # an opening comment
                self.assertIn('\n"use strict";\n', text)
                # Either would end the inline script early or swallow the scripts after it.
                self.assertNotIn("</script", text.lower())
                self.assertNotIn("<!--", text)


class ServedTest(unittest.TestCase):
    def test_each_script_is_served_as_javascript_with_the_pages_headers(self):
        for name in routes.SCRIPT_NAMES:
            with self.subTest(script=name):
                status, headers, body = get(f"/scripts/{name}")
                self.assertEqual(status, 200)
                self.assertEqual(headers["Content-Type"], "text/javascript; charset=utf-8")
                self.assertEqual(body.decode("utf-8"), read(os.path.join(PAGE, "scripts", name)))
                for header, value in SECURITY_HEADERS.items():
                    self.assertEqual(headers[header], value)
        self.assertIn("script-src 'self'", SECURITY_HEADERS["Content-Security-Policy"])

    def test_no_other_path_reaches_a_file(self):
        for path in ("/scripts/", "/scripts/nothing.js", "/scripts/../routes.py",
                     "/scripts/..%2froutes.py", "/scripts/checks.js", "/scripts/tensors.js",
                     "/scripts/trainer.js", "/page/scripts/start.js", "/draw.html", "/scripts/start.js/",
                     "/scripts//start.js", "/scripts/START.JS", "/scripts/start.js%00"):
            with self.subTest(path=path):
                status, headers, body = get(path)
                self.assertEqual(status, 404)
                self.assertEqual(headers["Content-Type"], "application/json")
                self.assertIn("error", json.loads(body))
        self.assertEqual(get("/scripts/start.js", method="POST")[0], 405)

    def test_with_a_token_the_scripts_are_served_without_it_and_the_page_is_not(self):
        self.assertEqual(get("/scripts/start.js", TOKEN_SERVER)[0], 200)  # a <script src> sends none
        self.assertEqual(get("/scripts/start.js?token=wrong", TOKEN_SERVER)[0], 200)
        for path in ("/", "/models", "/scripts/nothing.js"):
            with self.subTest(path=path):
                self.assertEqual(get(path, TOKEN_SERVER)[0], 403)
        self.assertEqual(get("/?token=class", TOKEN_SERVER)[0], 200)


class ExportedTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.html = export.page_html(PAGE_OBJECT)

    def test_the_file_holds_every_script_inline_in_order_and_requests_nothing(self):
        self.assertIsNone(re.search(r"(src|href)=\"(?!data:)", self.html))
        texts = [read(os.path.join(PAGE, "maths", f"{name}.js")) for name in export.MATHS]
        texts += [read(os.path.join(PAGE, "offline", "trainer.js"))]
        texts += [read(os.path.join(PAGE, "offline", f"{name}.js")) for name in export.BACK_END]
        texts += [read(os.path.join(PAGE, "scripts", name)) for name in routes.SCRIPT_NAMES]
        inline = re.findall(r"<script(?: [^>]*)?>\n(.*?)</script>", self.html, re.S)
        self.assertEqual(inline, texts)
        self.assertEqual(self.html.count("<script"), len(texts) + 1)  # and the export's data

    def test_the_training_worker_is_made_of_the_maths_and_its_loop(self):
        worker = re.findall(r"<script([^>]*) data-worker>\n(.*?)</script>", self.html, re.S)
        self.assertEqual([attributes for attributes, _ in worker],
                         [""] * len(export.MATHS) + [' type="text/plain"'])
        self.assertEqual(worker[-1][1], read(os.path.join(PAGE, "offline", "trainer.js")))
        self.assertIn('querySelectorAll("script[data-worker]")', read(os.path.join(PAGE, "offline",
                                                                                   "training.js")))


if __name__ == "__main__":
    unittest.main()
