"""The page's HTTP server: fixed routes, each answered by page.routes' Page, behind guards (the
Host, Origin, Content-Type and token checks); how it takes, reads and lets go of connections
(caps, bounded headers, deadlines, turns address by address) is page/connections.py.

Usage: from page.server import make_server, answer
"""
import functools
import hmac
import io
import ipaddress
import json
import re
import socket
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler

from common import UserError, usable_cpus
from page.collect import COLLECT_LIMIT
from page.connections import (MAX_HEADER_BYTES, SECURITY_HEADERS, DeadlineReader, HeadLines,
                              PageServer, Turns, framing_problem)
from page.routes import MESSAGES, SCRIPT_NAMES, BadRequest, DigitInput, Page

MAX_BODY = 2 * 2**20        # bytes; a 280 x 280 drawing as JSON is about 0.3 MB
INTERNAL_ERROR = "internal error of the server: its terminal says what went wrong"
NOT_NUMBERS = ("the network computed values that are not numbers (NaN or infinite) for this input: "
               "its weights are too large for float32 arithmetic")
IDLE_TIMEOUT = 20  # seconds a connection may stay silent, waiting for its next request
# Seconds from a request's first byte to its last (request line, headers and body), and again for
# its answer to be written: the largest body (MAX_BODY) arrives in time at about 0.6 Mbit/s, a
# crowded classroom network, while a client that sends a byte now and then frees its thread soon.
REQUEST_DEADLINE = 30
def parse_json(body):
    """Return the JSON object in body; NaN and Infinity (Python's json takes them) are refused."""
    def refuse_constant(name):
        raise BadRequest(HTTPStatus.BAD_REQUEST, f"{name} is not a number this page accepts")

    try:
        request = json.loads(body, parse_constant=refuse_constant)
    except (ValueError, RecursionError) as error:  # RecursionError: absurdly deep nesting
        raise BadRequest(HTTPStatus.BAD_REQUEST, f"malformed JSON ({error})") from None
    if not isinstance(request, dict):
        raise BadRequest(HTTPStatus.BAD_REQUEST, MESSAGES["not_an_object"])
    return request


def query_numbers(query):
    """The fields of a query string (?model=0&set=1) as whole numbers; BadRequest otherwise."""
    given = {key: values[0] for key, values in urllib.parse.parse_qs(query).items()}
    try:
        return {key: int(value) for key, value in given.items()}
    except ValueError:
        raise BadRequest(HTTPStatus.BAD_REQUEST, MESSAGES["query_not_whole"]) from None


# The request's field names that are not the Page methods' argument names.
ARGUMENT_NAMES = {"set": "set_index", "map": "map_index", "digit": "target"}


def fields(request, *names):
    """Of a request's fields (a dict), those named that it sends, as a Page method's arguments.
    The others are left out: a route ignores fields it does not take."""
    return {ARGUMENT_NAMES.get(name, name): request[name] for name in names if name in request}


def digit_input(body):
    """The digit a request's body sends to be read, for Page.digit to check."""
    return DigitInput(**fields(body, "pixels", "picture", "index", "set"))


# The page's own scripts, each answered from what the Page read at its start by this fixed table
# of draw.html's names: no part of a URL reaches the file system. They are the project's code, the
# same for everyone, so they are served without the token, which a <script src> cannot send.
SCRIPT_ROUTES = {("GET", f"/scripts/{name}"): lambda page, query, name=name: page.scripts[name]
                 for name in SCRIPT_NAMES}
# (method, path): the Page call that answers it, given the query string (GET) or the JSON body
# (POST): which fields the route takes, and their names.
ROUTES = {
    **SCRIPT_ROUTES,
    ("GET", "/"): lambda page, query: page.html,
    ("GET", "/models"): lambda page, query: page.model_list(),
    ("GET", "/kernels"): lambda page, query: page.kernels(
        **fields(query_numbers(query), "model", "snapshot")),
    ("GET", "/training"): lambda page, query: page.training(
        **fields(query_numbers(query), "model", "snapshot")),
    ("GET", "/testset"): lambda page, query: page.testset(
        **fields(query_numbers(query), "model", "snapshot", "set")),
    ("GET", "/examples"): lambda page, query: page.examples(
        **fields(query_numbers(query), "model", "snapshot", "set", "true", "predicted", "other")),
    ("POST", "/predict"): lambda page, body: page.predict(
        digit_input(body), **fields(body, "model", "snapshot", "attribution")),
    ("POST", "/step"): lambda page, body: page.step(
        digit_input(body), **fields(body, "model", "snapshot", "stage", "map", "row", "column")),
    ("POST", "/attribution"): lambda page, body: page.attribution(
        digit_input(body), **fields(body, "model", "snapshot", "digit")),
    # Collect's other fields are refused by Page.collect itself, after its own checks (their order).
    ("POST", "/collect"): lambda page, body: page.collect(
        **fields(body, "label", "pixels"),
        unexpected=sorted(set(body) - {"label", "pixels", "model", "snapshot"})),
}
# Routes that only read what the page holds, with no network run and no picture read: they
# take turns of their own (quick), so that opening the page never waits behind pictures.
QUICK_ROUTES = {("GET", "/"), ("GET", "/models"), ("GET", "/kernels"), ("GET", "/training"),
                *SCRIPT_ROUTES}


def route_of(method, path):
    """What answers a request for path by method (a function of the page and the request's query
    string or JSON body); BadRequest 404 for an unknown path, 405 for a known one's other method."""
    route = ROUTES.get((method, path))
    if route is None:
        known = any(known_path == path for _, known_path in ROUTES)
        status = HTTPStatus.METHOD_NOT_ALLOWED if known else HTTPStatus.NOT_FOUND
        raise BadRequest(status, f"no {method} {path[:100]} here")
    return route


def answer(page, method, path, argument):
    """The server's answer without a socket or its guards, for tools and tests: argument is the
    query string of a GET, the JSON object (a dict) of a POST. BadRequest as the server's."""
    return route_of(method, path)(page, argument)


def json_body(content, status=HTTPStatus.OK):
    """(status, content as JSON bytes): compact, as an answer holds thousands of numbers and every
    byte is written and read."""
    try:  # JSON has no NaN or infinity; weights that are numbers can still overflow to them
        return status, json.dumps(content, separators=(",", ":"), allow_nan=False).encode()
    except ValueError:
        return HTTPStatus.UNPROCESSABLE_ENTITY, json.dumps({"error": NOT_NUMBERS}).encode()


class Handler(BaseHTTPRequestHandler):
    """Fixed routes only: no part of a URL ever reaches the file system."""

    page = None  # a Page, set by make_server()
    server_version = "draw.py"
    # A request line without a version (HTTP/0.9) or with one that cannot be read would be
    # answered as HTTP/0.9, without a status line or any header: as HTTP/1.0 instead, so that
    # every answer carries SECURITY_HEADERS.
    default_request_version = "HTTP/1.0"
    # HTTP/1.1 keeps a connection open for the next request, as browsers expect: a drawing's
    # updates then skip a new connection (and a new thread here) each time.
    protocol_version = "HTTP/1.1"
    # The standard library writes an answer's head, then its body. Buffered, both leave in one
    # write when the answer is complete (handle_one_request flushes after each, finish() after a
    # refusal): one system call and one packet instead of two, which a class's answers a second
    # show (docs/classroom.md).
    wbufsize = 64 * 1024
    # A write that is not the last of an answer (a body larger than the buffer) goes at once:
    # with Nagle's algorithm it would wait for the client to acknowledge the one before, which a
    # connection kept open does only after its delayed-ACK timer (tens of ms).
    disable_nagle_algorithm = True
    token = None  # with a token, every request must carry it (set by make_server())
    # Answers are worked out one more at a time than there are CPUs, the others in turns, address
    # by address (Turns). Thirty threads working at once take turns for Python's interpreter lock so often
    # that a class gets fewer answers a second than ten would, and the unlucky wait longest
    # (measured: docs/classroom.md).
    working = None  # Turns(...), set by make_server()
    quick = None    # Turns(...) for QUICK_ROUTES, set by make_server()
    # A slow or silent client cannot hold a thread for ever; settable per server (the tests).
    idle_timeout, request_deadline = IDLE_TIMEOUT, REQUEST_DEADLINE

    def setup(self):
        super().setup()
        self.rfile.close()  # the standard library's reader times each read alone: replaced
        self.reader = DeadlineReader(self.connection, self.idle_timeout, self.request_deadline)
        self.rfile = io.BufferedReader(self.reader)

    def handle_one_request(self):
        """Read and answer one request within its deadline. One that misses it is answered 408
        and its connection closed; a connection that stays silent is closed without a word."""
        self.reader.next_request()
        super().handle_one_request()  # a read or a write past its time closes the connection
        if self.reader.timed_out and self.reader.deadline is not None:
            # As the standard library sets them for its own refusals before a request is read.
            self.requestline, self.request_version, self.command = "", "", ""
            self.send_json({"error": f"the request did not arrive whole within "
                                     f"{self.request_deadline} s"}, HTTPStatus.REQUEST_TIMEOUT)

    def parse_request(self):
        """The standard library's reading of the request line and headers, with the header lines
        bounded and checked (HeadLines) and the body's framing checked (framing_problem): a
        request refused here is answered before its route, Host or token is looked at."""
        buffered = self.rfile
        self.rfile = lines = HeadLines(buffered, MAX_HEADER_BYTES)
        try:
            parsed = super().parse_request()
        finally:
            self.rfile = buffered
        problem = lines.problem or (parsed and framing_problem(self.command, self.headers))
        if parsed and problem:
            self.send_error(*problem)
            return False
        return parsed

    def send_error(self, code, message=None, explain=None):
        """The standard library's own refusals (a request line or header too long, a method
        without a route, a malformed request) in the page's form: JSON with its headers. The
        rest of such a request cannot be trusted, so its connection ends."""
        self.close_connection = True
        self.send_json({"error": (message or HTTPStatus(code).phrase)[:200]}, code)

    def do_GET(self):
        self.answer()

    def do_POST(self):
        self.answer()

    def answer(self):
        path, _, query = self.path.partition("?")
        self.body_read = False
        try:
            query = self.admitted(query)
            route = route_of(self.command, path)
            argument = query if self.command == "GET" else parse_json(self.read_body())
            turns = self.quick if (self.command, path) in QUICK_ROUTES else self.working
            with turns.turn(self.client_address[0]):
                # Written as JSON within the turn: encoding is work for the interpreter like the
                # network's, so it takes one of the same few places.
                status, body, kind = self.written(route(self.page, argument), path)
        except TimeoutError:
            raise  # the body missed its deadline: handle_one_request answers 408
        except BadRequest as error:
            if self.command == "POST" and not self.body_read:
                # Refused before its body was read (no length, too large, not ours): the unread
                # bytes would be taken for the next request, so the connection ends.
                self.close_connection = True
            self.send_json({"error": str(error)}, error.status)
        except Exception:  # noqa: BLE001  (a bug must not kill the server)
            # Its traceback goes to the server's terminal; an exception's text may hold a path of
            # this machine, so the answer says nothing of it.
            self.server.handle_error(self.request, self.client_address)
            self.send_json({"error": INTERNAL_ERROR}, HTTPStatus.INTERNAL_SERVER_ERROR)
        else:
            self.send(status, body, kind)

    def written(self, content, path):
        """A route's answer as (status, body, content type)."""
        if isinstance(content, bytes):  # the page, or one of its scripts
            kind = "text/javascript" if (self.command, path) in SCRIPT_ROUTES else "text/html"
            return HTTPStatus.OK, content, f"{kind}; charset=utf-8"
        return (*json_body(content), "application/json")

    def admitted(self, query):
        """Refuse a request that is not this page's own; return the query without the token.

        Host must name this server: a site that points its own name at 127.0.0.1 (DNS
        rebinding) sends that name. A POST must come from this page or a script, never from a
        page of another site (its Origin), and be JSON: a form or a text/plain body, which a
        browser sends to any address without asking, is refused.
        """
        if not host_names_this_server(self.headers.get("Host"), *self.server.server_address[:2]):
            raise BadRequest(HTTPStatus.FORBIDDEN, "this server answers requests to its own "
                                                   "address only (the Host header)")
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
        if self.token is not None and (self.command, self.path.partition("?")[0]) not in SCRIPT_ROUTES:
            given = [value for key, value in pairs if key == "token"]
            authorization = self.headers.get("Authorization", "")
            given += [authorization[len("Bearer "):]] if authorization.startswith("Bearer ") else []
            if not any(hmac.compare_digest(value.encode(), self.token.encode()) for value in given):
                raise BadRequest(HTTPStatus.FORBIDDEN, "this page needs its token: open the "
                                                       "address draw.py printed, ?token=... included")
        if self.command == "POST":
            origin = self.headers.get("Origin")
            if origin is not None and origin != f"http://{self.headers.get('Host')}":
                raise BadRequest(HTTPStatus.FORBIDDEN, f"requests from {origin[:100]} are "
                                                       "refused: only this page may send them")
            kind = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            if kind != "application/json":
                raise BadRequest(HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                                 "send the body as JSON, with Content-Type: application/json")
        return urllib.parse.urlencode([(key, value) for key, value in pairs if key != "token"])

    def read_body(self):
        length = self.headers.get("Content-Length")  # one, a whole number: framing_problem
        if length is None:
            raise BadRequest(HTTPStatus.LENGTH_REQUIRED, "a Content-Length header is needed")
        if int(length) > MAX_BODY:
            raise BadRequest(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                             f"request of {int(length):,} bytes; at most {MAX_BODY:,} are accepted")
        self.body_read = True
        return self.rfile.read(int(length))

    def send_json(self, content, status=HTTPStatus.OK):
        self.send(*json_body(content, status), "application/json")

    def send(self, status, body, content_type):
        # The answer gets a deadline of its own (sendall's timeout bounds the whole write): a
        # client that reads it a byte at a time cannot hold the thread either.
        self.connection.settimeout(self.request_deadline)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        if self.close_connection:
            self.send_header("Connection", "close")
        for header, value in SECURITY_HEADERS.items():
            self.send_header(header, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):  # noqa: A002  (quiet: one line per request is noise)
        pass


def is_loopback(host):
    """Whether host, a name or an address, is this computer alone."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_names_this_server(header, host, port):
    """Whether a request's Host header ("name:port") names this server, listening on host:port.

    On a loopback address only loopback names count. On another address (a classroom's), any IP
    address names it (the machine may have several), and so does its own name; a DNS name of
    another site, which DNS rebinding would send, does not.
    """
    match = re.fullmatch(r"(?:\[([0-9A-Fa-f:.]+)\]|([^:\[\]]+))(?::(\d{1,5}))?", header or "")
    if match is None or int(match.group(3) or 80) != port:
        return False
    name = (match.group(1) or match.group(2)).lower()
    if is_loopback(host):
        return is_loopback(name)
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return name in {host.lower(), "localhost", *own_names()}


@functools.cache
def own_names():
    """This machine's own names, looked up once: getfqdn() may ask DNS, which on a classroom's
    offline network can take seconds, and a request must not wait for it every time."""
    return socket.gethostname().lower(), socket.getfqdn().lower()


def make_server(networks, host, port, device, sets=(), missing=None, collect=None,
                collect_limit=COLLECT_LIMIT, token=None):
    """Return a threading HTTP server for the page; UserError if the address cannot be used.
    With a token, every request must carry it (?token=... or Authorization: Bearer ...)."""
    page = Page(networks, device, sets, missing, collect, collect_limit)
    handler = type("PageHandler", (Handler,), {"page": page, "token": token,
                                               "working": Turns(usable_cpus() + 1),
                                               "quick": Turns(usable_cpus() + 1)})
    try:
        return PageServer((host, port), handler)
    except OSError as error:
        if error.errno in (98, 48, 10048):  # EADDRINUSE on Linux, macOS, Windows
            raise UserError(f"port {port} is already in use; choose another with --port") from None
        raise UserError(f"cannot listen on {host}:{port} ({error.strerror or error})") from None
