"""Tests of the page server's guards against floods and tricks: bounded headers, caps on
connections, refusals a client can read, turns address by address, one way to tell a body's end
(RFC 9112), /models while a folder comes and goes, and answers that never hold an exception's text.

Usage: python -m unittest -v tests.test_server_limits
"""
import contextlib
import io
import json
import os
import socket
import threading
import unittest
from unittest import mock

from page import routes
from page.collect import Collector, collect_folder
from page.export import export_data
from page.connections import MAX_HEADER_BYTES, RETRY_AFTER, SECURITY_HEADERS, Turns
from page.server import INTERNAL_ERROR
from tests.fixtures import start_server, stroke_pixels, temporary_folder
from tests.served import request

OTHER = "127.0.0.2"  # another address of this machine: a second client


def setUpModule():
    global TEMP, NETWORKS, SERVER
    TEMP = temporary_folder()
    NETWORKS = routes.load_models([], "cpu")  # the untrained network: no training needed
    SERVER = start_server(NETWORKS)


def wait_until(condition, timeout=30):
    """Wait for condition(), checking every few milliseconds, timeout seconds at most."""
    done = threading.Event()
    for _ in range(int(timeout / 0.005)):
        if condition():
            return
        done.wait(0.005)
    raise AssertionError("the condition did not come true in time")


def connect(server, source="127.0.0.1"):
    return socket.create_connection(server.server_address, timeout=30, source_address=(source, 0))


def reply_to(server, data, source="127.0.0.1"):
    """Send data from source while reading what the server answers, until it closes; the sending
    goes on in a thread of its own, and stops without a word once the server has closed."""
    with connect(server, source) as connection:
        def send():
            with contextlib.suppress(OSError):  # the server answered and closed before the end
                connection.sendall(data)

        sender = threading.Thread(target=send)
        sender.start()
        reply = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := connection.recv(65536):
                reply += chunk
        sender.join(timeout=30)
    return reply.decode("latin-1")


def head(server, method="GET", path="/models", lines=()):
    """A request head for server, with its Host and these header lines."""
    port = server.server_address[1]
    return "".join([f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n",
                    *(line + "\r\n" for line in lines), "\r\n"]).encode()


def status_of(reply):
    return reply.split(" ", 2)[1] if reply.startswith("HTTP/1.1 ") else reply[:100]


class HeaderTest(unittest.TestCase):
    """The header lines are read up to MAX_HEADER_BYTES, each a field line of RFC 9112, before
    the Host or the token is looked at."""

    def assert_refused(self, reply, status, words):
        answer_head, _, body = reply.partition("\r\n\r\n")
        self.assertEqual(status_of(reply), status, reply[:300])
        self.assertIn("\r\nConnection: close\r\n", answer_head)
        for name, value in SECURITY_HEADERS.items():
            self.assertIn(f"\r\n{name}: {value}\r\n", answer_head + "\r\n")
        self.assertIn(words, json.loads(body)["error"])
        self.assertEqual(reply.count("HTTP/1.1 "), 1)

    def test_headers_over_the_bound_are_431_before_any_check(self):
        cookie = "Cookie: " + "a" * 4000  # each line far below the standard library's 64 kB
        fits = [cookie] * (MAX_HEADER_BYTES // 4100)
        self.assertEqual(status_of(reply_to(SERVER, head(SERVER, lines=fits + ["Connection: close"]))),
                         "200")
        over = [cookie] * (MAX_HEADER_BYTES // 4000 + 1)
        for name, data in [("fields of a few kB", head(SERVER, lines=over)),
                           # no Host: refused for its size, before the Host check
                           ("no Host", b"GET / HTTP/1.1\r\n" + b"\r\n".join([cookie.encode()] * 9)),
                           # a flood that never ends: 99 lines of 64 kB, no blank line
                           ("a flood", b"GET / HTTP/1.1\r\n" + 99 * (b"X: " + b"a" * 65531 + b"\r\n"))]:
            with self.subTest(name):
                self.assert_refused(reply_to(SERVER, data), "431",
                                    f"more than {MAX_HEADER_BYTES:,} bytes")
        self.assertEqual(request("GET", "/models", server=SERVER)[0], 200)  # still serving

    def test_a_line_that_is_not_a_field_is_400(self):
        for line in ("Content-Length : 5", " folded: line", "Na me: x", "X: a\rContent-Length: 5",
                     "X: a\0b", "no colon", ": no name"):
            with self.subTest(line=line):
                self.assert_refused(reply_to(SERVER, head(SERVER, lines=[line])), "400",
                                    "Name: value")
        tab = head(SERVER, lines=["X-Tab: a\tb", "Connection: close"])  # a tab is allowed
        self.assertEqual(status_of(reply_to(SERVER, tab)), "200")

    def test_two_host_headers_are_400(self):
        port = SERVER.server_address[1]  # each after the server's own, which the check reads
        for host in ("evil.example", f"127.0.0.1:{port}"):
            with self.subTest(host=host):
                self.assert_refused(reply_to(SERVER, head(SERVER, lines=[f"Host: {host}"])),
                                    "400", "more than one Host header")


class FramingTest(unittest.TestCase):
    """A body is told from the next request by its Content-Length alone, and only a POST has
    one (RFC 9112, section 6): anything else is refused and its connection closed, so that no
    request hidden in a body is ever run."""

    def setUp(self):
        self.folder = collect_folder(os.path.join(TEMP, f"collect_{self._testMethodName}"))
        self.server = start_server(NETWORKS, collect=self.folder)
        body = json.dumps({"label": 1, "pixels": stroke_pixels(1)}).encode()
        self.hidden = head(self.server, "POST", "/collect", [
            "Content-Type: application/json", f"Content-Length: {len(body)}"]) + body

    def tearDown(self):
        self.assertEqual(os.listdir(self.folder), [])  # the hidden POST /collect never ran

    def refused(self, method, path, lines, body, status):
        reply = reply_to(self.server, head(self.server, method, path, lines) + body)
        self.assertEqual(status_of(reply), status, reply[:300])
        self.assertIn("\r\nConnection: close\r\n", reply)
        self.assertEqual(reply.count("HTTP/1.1 "), 1)  # nothing after it was read as a request
        return json.loads(reply.partition("\r\n\r\n")[2])["error"]

    def test_a_get_with_a_body_is_refused_and_the_body_never_run(self):
        hidden, chunked = self.hidden, f"{len(self.hidden):x}\r\n".encode() + self.hidden + b"\r\n0\r\n\r\n"
        for lines, body in [([f"Content-Length: {len(hidden)}"], hidden),
                            (["Transfer-Encoding: chunked"], chunked)]:
            with self.subTest(lines=lines):
                self.assertEqual(self.refused("GET", "/models", lines, body, "400"),
                                 "a GET request carries no body")
        served = reply_to(self.server, head(self.server, lines=["Content-Length: 0", "Connection: close"]))
        self.assertEqual(status_of(served), "200")  # a length of 0 is no body

    def test_two_lengths_or_a_length_and_a_transfer_encoding_are_400(self):
        json_type = "Content-Type: application/json"
        for lines, words in [([json_type, "Content-Length: 2", "Content-Length: 2"], "more than one"),
                             ([json_type, "Content-Length: 2", "Content-Length: 5000"], "more than one"),
                             ([json_type, "Transfer-Encoding: chunked", "Content-Length: 2"], "both"),
                             ([json_type, "Content-Length: 2, 2"], "whole number"),
                             ([json_type, "Content-Length: -2"], "whole number")]:
            with self.subTest(lines=lines):
                error = self.refused("POST", "/predict", lines, b"{}0\r\n\r\n" + self.hidden, "400")
                self.assertIn(words, error)

    def test_a_chunked_body_is_411(self):
        chunked = b"2\r\n{}\r\n0\r\n\r\n" + self.hidden
        error = self.refused("POST", "/predict", ["Content-Type: application/json",
                                                  "Transfer-Encoding: chunked"], chunked, "411")
        self.assertIn("send the body with a Content-Length header", error)


class ConnectionCapTest(unittest.TestCase):
    def test_all_addresses_together_hold_at_most_their_share_and_are_told_when_to_come_back(self):
        server = start_server(NETWORKS)
        server.connections_in_all = 3  # instead of page.server's CONNECTIONS_IN_ALL
        held = [connect(server), connect(server), connect(server, OTHER)]
        try:
            wait_until(lambda: server.connections.total() == 3)
            for source in ("127.0.0.1", OTHER):
                with self.subTest(source=source):
                    reply = reply_to(server, head(server), source)
                    self.assertEqual(status_of(reply), "429", reply[:300])
                    self.assertIn(f"\r\nRetry-After: {RETRY_AFTER}\r\n", reply)
                    self.assertIn("at most 3 at once in all", reply)
            held.pop().close()
            wait_until(lambda: server.connections.total() == 2)
            reply = reply_to(server, head(server, lines=["Connection: close"]), OTHER)
            self.assertEqual(status_of(reply), "200", reply[:300])
        finally:
            for connection in held:
                connection.close()

    def test_a_refused_client_that_sent_its_whole_request_reads_the_429(self):
        """Refused unread, a connection closed at once is reset when the request arrives, and a
        client still sending its body never reads the answer: the server reads and drops it."""
        server = start_server(NETWORKS)
        server.connections_per_address = 1
        body = json.dumps({"pixels": [[255] * 280] * 280} | {"padding": "a" * 2**20}).encode()
        post = head(server, "POST", "/predict", ["Content-Type: application/json",
                                                 f"Content-Length: {len(body)}"]) + body
        with connect(server) as held:
            wait_until(lambda: server.connections["127.0.0.1"] == 1)
            for attempt in range(3):
                with self.subTest(attempt=attempt), connect(server) as connection:
                    connection.sendall(post)  # whole, while the server has answered already
                    reply = b""
                    while chunk := connection.recv(65536):
                        reply += chunk
                    self.assertTrue(reply.startswith(b"HTTP/1.1 429 "), reply[:300])
            held.sendall(head(server, lines=["Connection: close"]))
            self.assertTrue(held.recv(65536).startswith(b"HTTP/1.1 200 "))


class TurnsTest(unittest.TestCase):
    """Turns lets a few in at once, the others address by address, each address's own in the
    order they came."""

    def entries(self, room, addresses):
        """Let room threads of address "first" into a Turns(room) and hold them there while
        one more of each of addresses (in this order) queues; then let all go. The addresses in
        the order they got in after the first ones, or, with room for more than one, how many got
        in while the first ones were held."""
        turns, inside, order, lock = Turns(room), set(), [], threading.Lock()
        let_go = threading.Event()

        def worker(number, address):
            with turns.turn(address):
                with lock:
                    inside.add(number)
                    order.append(address)
                if number < room:
                    let_go.wait(timeout=30)  # the first ones stay in until let go
                with lock:
                    inside.discard(number)

        threads = []
        for number, address in enumerate(["first"] * room + addresses):
            threads.append(threading.Thread(target=worker, args=(number, address)))
            threads[-1].start()
            if number < room:
                wait_until(lambda number=number: number in inside)
            else:  # each later one queues, in this order
                wait_until(lambda queued=number - room + 1: turns.queued == queued)
        self.assertEqual(inside, set(range(room)))  # no more than room got in
        held = len(order)
        let_go.set()
        for thread in threads:
            thread.join(timeout=30)
        self.assertEqual((turns.free, turns.queued, turns.waiting, inside), (room, 0, {}, set()))
        return order[room:] if room == 1 else held

    def test_a_few_at_a_time_in_the_order_they_came_from_one_address(self):
        self.assertEqual(self.entries(2, ["a"] * 4), 2)  # two at a time: no third got in
        self.assertEqual(self.entries(1, ["a", "b", "c", "d"]), ["a", "b", "c", "d"])

    def test_each_address_in_its_turn(self):
        # b came last, behind a's four, and gets in second; then a's others, in their order.
        self.assertEqual(self.entries(1, ["a"] * 4 + ["b"]), ["a", "b", "a", "a", "a"])
        self.assertEqual(self.entries(1, ["a", "a", "b", "b", "c"]), ["a", "b", "c", "a", "b"])

    def test_one_address_with_many_predictions_does_not_stall_another(self):
        server = start_server(NETWORKS)
        working, let_go = server.RequestHandlerClass.working, threading.Event()
        answered, lock = [], threading.Lock()
        body = json.dumps({"pixels": stroke_pixels(1), "attribution": False}).encode()
        post = head(server, "POST", "/predict", ["Content-Type: application/json",
                                                 f"Content-Length: {len(body)}", "Connection: close"]) + body

        def client(source):
            reply = reply_to(server, post, source)
            with lock:
                answered.append((source, status_of(reply)))

        def hold():  # a picture being worked out, so that all that come next wait
            with working.turn("holder"):
                let_go.wait(timeout=30)

        holders = [threading.Thread(target=hold) for _ in range(working.free)]
        for thread in holders:
            thread.start()
        wait_until(lambda: working.free == 0)
        crowd = [threading.Thread(target=client, args=("127.0.0.1",)) for _ in range(20)]
        for thread in crowd:
            thread.start()
        wait_until(lambda: working.queued == 20)  # one address's twenty, all waiting
        other = threading.Thread(target=client, args=(OTHER,))
        other.start()
        wait_until(lambda: working.queued == 21)
        let_go.set()
        for thread in [*holders, *crowd, other]:
            thread.join(timeout=60)
        self.assertEqual(len(answered), 21)
        self.assertEqual({status for _, status in answered}, {"200"})
        # The other address came last and is served among the first, not after the twenty.
        self.assertLess([source for source, _ in answered].index(OTHER), 10, answered)


class ModelsTest(unittest.TestCase):
    """/models counts the pictures collected while other programs change the folder, and an
    answer never holds an exception's text."""

    def test_a_digit_folder_that_comes_and_goes_never_fails_models(self):
        folder = collect_folder(os.path.join(TEMP, "collect_coming_and_going"))
        server = start_server(NETWORKS, collect=folder)
        digit, stop = os.path.join(folder, "4"), threading.Event()

        def come_and_go():
            for _ in range(200_000):  # bounded; stopped once the polls are done
                if stop.is_set():
                    return
                os.mkdir(digit)
                os.rmdir(digit)

        changer = threading.Thread(target=come_and_go)
        changer.start()
        try:
            statuses = [request("GET", "/models", server=server)[0] for _ in range(100)]
        finally:
            stop.set()
            changer.join(timeout=30)
        self.assertEqual(set(statuses), {200})
        for error in (FileNotFoundError, PermissionError, NotADirectoryError):  # between two calls
            with self.subTest(error=error.__name__), mock.patch("os.listdir", side_effect=error):
                status, answer = request("GET", "/models", server=server)
                self.assertEqual((status, answer["collect"]["counts"]), (200, [0] * 10))

    def test_an_internal_error_says_nothing_of_its_exception_and_prints_its_traceback(self):
        server = start_server(NETWORKS)
        secret = FileNotFoundError(2, "No such file or directory", "/home/teacher/secret/4")
        with mock.patch.object(server.RequestHandlerClass.page, "model_list", side_effect=secret), \
                contextlib.redirect_stderr(io.StringIO()) as err:
            status, answer = request("GET", "/models", server=server)
        self.assertEqual((status, answer), (500, {"error": INTERNAL_ERROR}))
        self.assertIn("Traceback", err.getvalue())  # for the teacher, in the server's terminal
        self.assertIn("/home/teacher/secret/4", err.getvalue())

    def test_the_root_folder_is_named_as_itself(self):
        page = routes.Page(NETWORKS, "cpu", collect=os.sep)  # draw.py --collect /
        self.assertEqual(page.model_list()["collect"]["folder"], os.sep)
        self.assertEqual(Collector(os.path.join("..", "digits")).name, "digits")
        # The exported file downloads the drawings as a zip: no folder in it for the root.
        self.assertEqual(export_data(page)["collect"]["folder"], "")


if __name__ == "__main__":
    unittest.main()
