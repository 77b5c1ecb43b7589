"""Tests of who may use draw.py's page and what it refuses to read: requests to its own address
only, POSTs from its own page as JSON, the token beyond loopback, no frames, silent and slow clients
let go, the standard library's refusals in the page's JSON, resets; picture files that would start
a program or take much memory.

Usage: python -m unittest -v tests.test_server_guards
"""
import base64
import contextlib
import http.client
import io
import json
import os
import socket
import struct
import threading
import unittest
from unittest import mock

from PIL import EpsImagePlugin

import draw
from page import routes
from page.connections import SECURITY_HEADERS
from page.server import host_names_this_server
from tests.fixtures import (EPS_SEVEN, draw_digit, fake_ghostscript, png_base64, png_header_only, run_script,
                            served_shapes, start_server, stroke_pixels, temporary_folder)
from tests.served import raw_reply, request


def setUpModule():
    global TEMP, MODEL, SERVER
    shared = served_shapes()
    TEMP, MODEL, SERVER = temporary_folder(), shared.model, shared.server


def trickle(server, head, piece, pause=0.2, count=50):
    """Send head, then piece every pause seconds, count times at most, until the server answers;
    return all it answers until it closes ("" if it never did) and how many pieces were sent."""
    with socket.create_connection(server.server_address, timeout=30) as connection:
        connection.sendall(head)
        reply, sent = None, 0
        while reply is None and sent < count:
            connection.settimeout(pause)
            try:
                reply = connection.recv(65536)  # b"" if it closed without a word
            except TimeoutError:
                connection.sendall(piece)
                sent += 1
        if reply is None:
            return "", sent
        connection.settimeout(30)
        with contextlib.suppress(ConnectionResetError):  # a piece it never read resets it
            while chunk := connection.recv(65536):
                reply += chunk
    return reply.decode(), sent


class HostilePictureTest(unittest.TestCase):
    """Picture files sent to the page that would start a program or take much memory."""

    def test_an_eps_picture_is_refused_by_name_and_starts_no_program(self):
        folder, marker = fake_ghostscript(os.path.join(TEMP, "fake_gs"))
        eps = base64.b64encode(EPS_SEVEN).decode()
        # Pillow looks for gs once a process: forgetting it makes it find the fake one first.
        with mock.patch.dict(os.environ, {"PATH": folder + os.pathsep + os.environ["PATH"]}), \
                mock.patch.object(EpsImagePlugin, "gs_binary", None):
            for route, body, expected in [
                    ("/predict", {"picture": eps}, 422),
                    ("/predict", {"picture": "data:application/postscript;base64," + eps}, 422),
                    ("/collect", {"label": 7, "picture": eps}, 400)]:
                with self.subTest(route=route, body=str(body)[:40]):
                    status, answer = request("POST", route, body)
                    self.assertFalse(os.path.exists(marker), "a program was started")
                    self.assertEqual(status, expected, answer)
                    self.assertEqual(len(answer["error"].splitlines()), 1)
                    if route == "/predict":
                        self.assertIn("picture: EPS files are not read, only PNG", answer["error"])

    def test_a_picture_of_more_pixels_than_a_drawing_is_refused_before_decoding(self):
        path = os.path.join(TEMP, "deep.png")
        png_header_only(path, 4096, 4096, bit_depth=16, colour_type=6)  # 16-bit RGBA
        with open(path, "rb") as file:
            picture = base64.b64encode(file.read()).decode()
        with mock.patch("PIL.ImageFile.ImageFile.load", side_effect=AssertionError("decoded")):
            status, answer = request("POST", "/predict", {"picture": picture})
        self.assertEqual(status, 422, answer)
        self.assertIn("too many pixels for a picture of one digit (4096 x 4096 pixels, at most "
                      "1,000,000 are read)", answer["error"])
        # Pillow's own limit and its decoders' errors are said in words of ours, not its own.
        png_header_only(path, 20_000, 20_000)
        broken = bytearray(base64.b64decode(png_base64(draw_digit((50, 50), (10, 10, 40, 40)))))
        at = broken.index(b"IDAT") + 4
        broken[at:at + 8] = b"\xff" * 8
        with open(path, "rb") as file:
            huge = file.read()
        for content, error in ((huge, "picture: too many pixels for a picture of one digit (more than "
                                "178,956,970 pixels, at most 1,000,000 are read); scale it down"),
                               (bytes(broken), "picture: damaged picture: its bytes could not be decoded")):
            picture = base64.b64encode(content).decode()
            status, answer = request("POST", "/predict", {"picture": picture})
            self.assertEqual((status, answer), (422, {"error": error}))
        # A phone's photo is decoded at a quarter of its size instead, and answered.
        buffer = io.BytesIO()
        draw_digit((4000, 3000), (1500, 500, 2500, 2500), mode="L").save(buffer, format="JPEG")
        status, answer = request("POST", "/predict",
                                 {"picture": base64.b64encode(buffer.getvalue()).decode()})
        self.assertEqual(status, 200, answer)


class GuardTest(unittest.TestCase):
    """Who may use the page: requests to its own address, POSTs from its own page as JSON, and
    the token when it has one; no frames, no silent clients."""

    def test_a_request_naming_another_host_is_refused(self):
        port = SERVER.server_address[1]
        for host, expected in ((f"127.0.0.1:{port}", "200"), (f"localhost:{port}", "200"),
                               (f"evil.example:{port}", "403"), ("127.0.0.1", "403"),
                               (f"127.0.0.1:{port + 1}", "403"), ("", "403")):
            with self.subTest(host=host):
                reply = raw_reply(SERVER, f"GET /models HTTP/1.1\r\nHost: {host}\r\n"
                                          "Connection: close\r\n\r\n".encode())
                self.assertEqual(reply.split()[1], expected, reply[:300])
        self.assertTrue(host_names_this_server("192.168.1.20:8000", "0.0.0.0", 8000))
        self.assertTrue(host_names_this_server(f"{socket.gethostname()}:8000", "0.0.0.0", 8000))
        self.assertFalse(host_names_this_server("rebound.example:8000", "0.0.0.0", 8000))
        self.assertFalse(host_names_this_server("192.168.1.20:8000", "127.0.0.1", 8000))

    def test_a_post_from_another_site_or_not_json_is_refused_and_nothing_written(self):
        server = start_server(routes.load_models([MODEL], "cpu"),
                              collect=os.path.join(TEMP, "collect_guarded"))
        port = server.server_address[1]
        body = json.dumps({"label": 1, "pixels": stroke_pixels(1)})
        for headers, expected in [({"Origin": "http://evil.example", "Content-Type": "text/plain"}, 403),
                                  ({"Origin": "null", "Content-Type": "application/json"}, 403),
                                  ({"Origin": f"http://localhost:{port + 1}",
                                    "Content-Type": "application/json"}, 403),
                                  ({"Content-Type": "text/plain"}, 415),
                                  ({"Content-Type": "application/x-www-form-urlencoded"}, 415),
                                  ({"Content-Type": ""}, 415)]:
            with self.subTest(headers=headers):
                status, answer = request("POST", "/collect", body, headers=headers, server=server)
                self.assertEqual(status, expected, answer)
                self.assertEqual(len(answer["error"].splitlines()), 1)
        self.assertFalse(os.path.exists(os.path.join(TEMP, "collect_guarded", "1")))  # nothing
        status, answer = request("POST", "/collect", body, server=server, headers={
            "Origin": f"http://127.0.0.1:{port}", "Content-Type": "application/json; charset=utf-8"})
        self.assertEqual(status, 200, answer)  # the page itself

    def test_with_a_token_every_route_needs_it(self):
        server = start_server(routes.load_models([MODEL], "cpu"), token="s3cret-token")
        for path in ("/", "/models", "/kernels?model=0", "/?token=wrong", "/models?token="):
            with self.subTest(path=path):
                status, answer = request("GET", path, server=server)
                self.assertEqual(status, 403)
                self.assertIn("needs its token", answer["error"])
        status, _ = request("POST", "/predict", {"pixels": stroke_pixels(1)}, server=server)
        self.assertEqual(status, 403)
        self.assertEqual(request("GET", "/?token=s3cret-token", server=server)[0], 200)
        status, answer = request("GET", "/kernels?model=0&token=s3cret-token", server=server)
        self.assertEqual((status, answer["model"]), (200, "shapes.pt"))
        bearer = {"Authorization": "Bearer s3cret-token"}
        self.assertEqual(request("GET", "/models", headers=bearer, server=server)[0], 200)
        status, answer = request("POST", "/predict", {"pixels": stroke_pixels(1)}, headers=bearer,
                                 server=server)
        self.assertEqual(status, 200, answer)

    def test_beyond_loopback_the_address_printed_carries_a_token(self):
        served = []

        class Stopped:  # stands in for the server: listens nowhere, stops at once
            server_address = ("192.0.2.7", 8000)

            def serve_forever(self):
                raise KeyboardInterrupt

            def server_close(self):
                pass

        def fake_server(*arguments, token=None, **settings):
            served.append(token)
            return Stopped()

        with mock.patch.object(draw, "make_server", side_effect=fake_server):
            code, out, _ = run_script(draw, [MODEL, "--host", "192.0.2.7", "--device", "cpu"])
            self.assertEqual(code, 130)
            self.assertIn(f"Open http://192.0.2.7:8000/?token={served[0]} (Ctrl-C", out)
            self.assertGreaterEqual(len(served[0]), 20)
            code, out, _ = run_script(draw, [MODEL, "--host", "127.0.0.1", "--device", "cpu"])
        self.assertIsNone(served[1])  # loopback: this computer only, no token
        self.assertNotIn("token", out)

    def test_the_page_cannot_be_framed_and_a_silent_client_is_let_go(self):
        status, _ = request("GET", "/")
        connection = http.client.HTTPConnection("127.0.0.1", SERVER.server_address[1], timeout=30)
        connection.request("GET", "/")
        response = connection.getresponse()
        response.read()
        connection.close()
        self.assertIn("frame-ancestors 'none'", response.getheader("Content-Security-Policy"))
        self.assertEqual(response.getheader("X-Frame-Options"), "DENY")
        server = start_server(routes.load_models([MODEL], "cpu"))
        server.RequestHandlerClass.idle_timeout = 0.5  # instead of page.server's IDLE_TIMEOUT, 20 s
        reply = raw_reply(server, f"GET /models HTTP/1.1\r\nHost: 127.0.0.1:"
                                  f"{server.server_address[1]}\r\n\r\n".encode())  # kept open
        # Answered, then closed by the server (raw_reply reads until then) without a word more.
        self.assertTrue(reply.startswith("HTTP/1.1 200"), reply[:300])
        self.assertEqual(reply.count("HTTP/1.1"), 1)

    def test_a_request_slower_than_its_deadline_is_answered_408_and_let_go(self):
        server = start_server(routes.load_models([MODEL], "cpu"))
        server.RequestHandlerClass.request_deadline = 1  # instead of page.server's REQUEST_DEADLINE, 30 s
        post = (f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{server.server_address[1]}\r\n"
                "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{").encode()
        for what, head, piece in (("header lines", b"GET /models HTTP/1.1\r\n", b"X-Slow: 1\r\n"),
                                  ("a body", post, b" "), ("a body that stops", post, b"")):
            with self.subTest(what):
                reply, sent = trickle(server, head, piece)
                self.assertLess(sent, 50)  # cut off, not served for as long as it likes
                self.assertTrue(reply.startswith("HTTP/1.1 408"), reply[:300])
                self.assertIn("\r\nConnection: close\r\n", reply)
                self.assertIn("did not arrive whole within 1 s", reply)

    def test_the_standard_librarys_own_refusals_are_the_pages_json_with_its_headers(self):
        port = SERVER.server_address[1]
        for status, head in (("414", b"GET /" + b"a" * 65532),  # a request line over 65,536 bytes
                             ("431", b"GET / HTTP/1.1\r\nX: " + b"a" * 65534),  # a header line so
                             ("501", f"PUT / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()),
                             ("400", b"GARBAGE\r\n"), ("400", b"GET / HTTP/x\r\n"),
                             ("403", b"GET /\r\n\r\n")):  # HTTP/0.9, whose answers have no headers
            with self.subTest(head=head[:20]):
                answer_head, _, body = raw_reply(SERVER, head).partition("\r\n\r\n")
                status_line, *lines = answer_head.split("\r\n")
                self.assertEqual(status_line.split()[1], status, answer_head)
                headers = dict(line.split(": ", 1) for line in lines)
                self.assertEqual({name: headers.get(name) for name in SECURITY_HEADERS},
                                 SECURITY_HEADERS)
                self.assertEqual((headers["Content-Type"], headers["Connection"]),
                                 ("application/json", "close"))
                self.assertEqual(len(json.loads(body)["error"].splitlines()), 1)

    def test_a_client_that_resets_its_connection_leaves_no_traceback(self):
        server = start_server(routes.load_models([MODEL], "cpu"))
        served, shutdown_request = threading.Event(), server.shutdown_request

        def shut_down_and_tell(connection):  # the server's last step with a connection
            shutdown_request(connection)
            served.set()

        server.shutdown_request = shut_down_and_tell
        body = json.dumps({"pixels": stroke_pixels(1)})
        head = (f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{server.server_address[1]}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
        with contextlib.redirect_stderr(io.StringIO()) as err:
            connection = socket.create_connection(server.server_address, timeout=30)
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            connection.sendall((head + body).encode())
            connection.close()  # unread, with a reset: as a tab closed mid-answer does
            self.assertTrue(served.wait(timeout=30))
        self.assertEqual(err.getvalue(), "")
        self.assertEqual(request("GET", "/models", server=server)[0], 200)  # still serving


if __name__ == "__main__":
    unittest.main()
