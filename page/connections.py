"""How the page's server takes, reads and lets go of connections: caps per address and in all
(refused at once with a 429 a client can read), bounded header lines, one way to tell a body's
end, deadlines, turns for the CPUs address by address, and connections kept a moment as they end.

Usage: from page.connections import PageServer, Turns   (page/server.py serves its routes with them)
"""
import collections
import contextlib
import io
import json
import re
import selectors
import socket
import sys
import threading
import time
from http import HTTPStatus
from http.server import ThreadingHTTPServer

# Only this machine's own files and answers: nothing may come from other hosts (classrooms are
# often offline, and a page that fetches nothing can leak nothing).
# No other site may show the page in a frame (clickjacking: a click there would be a click here).
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; "
                               "style-src 'self' 'unsafe-inline'; "
                               "script-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}
# A browser opens at most 6 connections to one server, so a class of 30 behind one address (a
# school's NAT) holds up to 180 at once; one address cannot hold more threads than this.
CONNECTIONS_PER_ADDRESS = 200
# All addresses together: a class of 30 holds up to 180 connections. Each connection's memory is
# bounded (MAX_HEADER_BYTES, MAX_BODY), so the server's is too, and its threads are.
CONNECTIONS_IN_ALL = 256
RETRY_AFTER = 5  # seconds a refused client is asked to wait (429): places free as connections end
# A browser's request headers, cookies included, take a few kB. The header lines are read up to
# this many bytes in all, before any check runs: hundreds of connections sending headers that never
# end then hold little memory (the standard library alone reads 100 lines of 64 kB each).
MAX_HEADER_BYTES = 32 * 1024
# A field line of RFC 9112: a name of token characters, a colon, then a value without control
# characters (a tab aside). Anything else (a space before the colon, a folded line, a bare CR)
# could be read as another header, or as none, by the standard library's parser: refused.
FIELD_LINE = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+:[^\x00-\x08\x0a-\x1f\x7f]*\r?\n")
# Seconds a connection the server ends is kept, reading and dropping what its client still sends:
# closed with bytes unread, a connection is reset, and the client may lose the answer it was sent.
LINGER = 2
# Connections kept so at once, the oldest let go first: with CONNECTIONS_IN_ALL they hold about 512
# file descriptors, within the 1,024 a process is often allowed.
LINGERING_AT_MOST = 256


class Turns:
    """Lets count threads in at once; the others wait their turns, address by address (round
    robin: each client's address in turn, and one address's own threads in the order they came).
    A tab, script or broken client that sends many requests at once then waits behind its own,
    while another client's request is served next."""

    def __init__(self, count):
        self.lock, self.free, self.queued = threading.Lock(), count, 0
        # address -> the Events of its waiting threads, oldest first; the dict's order is the
        # addresses' order of turns.
        self.waiting = {}

    @contextlib.contextmanager
    def turn(self, address):
        """Hold one of the places, for a request from address, within the with block."""
        with self.lock:
            turn = None
            if self.free and not self.waiting:
                self.free -= 1
            else:
                turn = threading.Event()
                self.waiting.setdefault(address, collections.deque()).append(turn)
                self.queued += 1
        if turn is not None:
            turn.wait()  # the place is handed over by the thread that leaves it
        try:
            yield
        finally:
            self.hand_over()

    def hand_over(self):
        """Give the place that is left to the next address's longest waiting thread; that
        address, if it has more waiting, goes to the end of the turns."""
        with self.lock:
            if not self.waiting:
                self.free += 1
                return
            address = next(iter(self.waiting))
            threads = self.waiting.pop(address)
            threads.popleft().set()
            self.queued -= 1
            if threads:
                self.waiting[address] = threads


class HeadLines:
    """A request's header lines, read from a connection's buffered reader for the standard
    library's parser: at most budget bytes in all, each a field line (FIELD_LINE). Past the
    budget, or at a line that is not one, the head ends there for the parser, and problem says
    why (an HTTP status and a message), so that the request is refused before any of it is used."""

    def __init__(self, rfile, budget):
        self.rfile, self.left, self.problem = rfile, budget, None

    def readline(self, limit=-1):
        if self.problem:
            return b"\r\n"
        bound = self.left + 1 if limit < 0 else min(limit, self.left + 1)
        line = self.rfile.readline(bound)  # never more than the budget, plus one byte
        self.left -= len(line)
        if self.left < 0:
            self.problem = (HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                            f"the request's headers take more than {MAX_HEADER_BYTES:,} bytes "
                            "(a browser sends a few thousand)")
        elif line in (b"\r\n", b"\n", b""):
            return line  # the end of the head (b"": the client closed)
        elif not FIELD_LINE.fullmatch(line):
            self.problem = (HTTPStatus.BAD_REQUEST, "a header line is not of the form "
                                                    "Name: value (RFC 9112)")
        return b"\r\n" if self.problem else line


def framing_problem(command, headers):
    """Why a request's head cannot be trusted (RFC 9112), as an HTTP status and a message; None
    if it can. It names one host, and its body can be told apart from the next request on its
    connection (section 6): a body is read only by its Content-Length, and only a POST has one.
    Anything else could let a request hide another inside its body (request smuggling), so it is
    refused and its connection closed."""
    lengths = [value.strip(" \t") for value in headers.get_all("Content-Length") or []]
    chunked = "Transfer-Encoding" in headers
    if len(headers.get_all("Host") or []) > 1:
        return HTTPStatus.BAD_REQUEST, "more than one Host header: send one"
    if len(lengths) > 1:
        return HTTPStatus.BAD_REQUEST, "more than one Content-Length header: send one"
    if chunked and lengths:
        return HTTPStatus.BAD_REQUEST, "both Transfer-Encoding and Content-Length: send one"
    if lengths and not (lengths[0].isascii() and lengths[0].isdigit()):  # "²".isdigit() too
        return HTTPStatus.BAD_REQUEST, "Content-Length must be a whole number of bytes"
    if command == "GET" and (chunked or lengths and int(lengths[0])):
        return HTTPStatus.BAD_REQUEST, "a GET request carries no body"
    if chunked:  # a length the client could have sent: 411 says so (chunked bodies are not read)
        return HTTPStatus.LENGTH_REQUIRED, ("Transfer-Encoding is not read here: send the body "
                                            "with a Content-Length header")
    return None


class DeadlineReader(io.RawIOBase):
    """A connection's bytes, read so that each request arrives whole within its deadline: the
    wait for its first byte is bounded by idle_timeout, the rest by request_deadline from then.
    A timeout on each read alone lets a client that sends a line now and then keep its thread."""

    def __init__(self, connection, idle_timeout, request_deadline):
        self.connection, self.idle_timeout = connection, idle_timeout
        self.request_deadline = request_deadline
        self.next_request()

    def next_request(self):
        self.deadline = None  # the time.monotonic() the request must be in by, from its first byte
        self.timed_out = False

    def readable(self):
        return True

    def readinto(self, buffer):
        if self.deadline is None:
            left = self.idle_timeout
        else:
            left = self.deadline - time.monotonic()
        try:
            if left <= 0:  # a timeout of 0 would make the socket non-blocking instead
                raise TimeoutError("the request missed its deadline")
            self.connection.settimeout(left)
            count = self.connection.recv_into(buffer)
        except TimeoutError:
            self.timed_out = True
            raise
        if count and self.deadline is None:
            self.deadline = time.monotonic() + self.request_deadline
        return count


def refusal(message):
    """A whole 429 answer, JSON with the page's headers, for a connection refused unread."""
    body = json.dumps({"error": message}).encode()
    status = HTTPStatus.TOO_MANY_REQUESTS
    head = [f"HTTP/1.1 {status.value} {status.phrase}", "Content-Type: application/json",
            f"Content-Length: {len(body)}", "Cache-Control: no-store", "Connection: close",
            f"Retry-After: {RETRY_AFTER}",
            *(f"{header}: {value}" for header, value in SECURITY_HEADERS.items())]
    return "\r\n".join(head).encode() + b"\r\n\r\n" + body


class Lingering:
    """Connections the server has ended, their answers sent and their writing side shut, each kept
    LINGER seconds at most (LINGERING_AT_MOST at once, the oldest let go first) while what their
    clients still send is read and dropped; each is closed as soon as its client closes it. One
    thread keeps them all, so no connection holds a thread of its own meanwhile."""

    def __init__(self):
        self.selector = selectors.DefaultSelector()
        self.waker, self.woken = socket.socketpair()  # wakes the thread for a new connection
        self.waker.setblocking(False)
        self.selector.register(self.woken, selectors.EVENT_READ)
        self.lock, self.added, self.until = threading.Lock(), [], {}  # until: in order of adding
        self.running = True
        self.thread = threading.Thread(target=self.run, name="lingering", daemon=True)
        self.thread.start()

    def add(self, connection):
        with self.lock:
            if not self.running:  # the server is closed: nothing keeps connections now
                connection.close()
                return
            self.added.append(connection)
        with contextlib.suppress(OSError):  # BlockingIOError: the thread is woken already
            self.waker.send(b"\0")

    def close(self):
        """Close every connection kept, and end the thread."""
        with self.lock:
            self.running = False
        with contextlib.suppress(OSError):
            self.waker.send(b"\0")
        self.thread.join(timeout=10)

    def run(self):
        unread = bytearray(65536)
        while self.running:
            oldest = next(iter(self.until.values()), None)
            wait = None if oldest is None else max(0, oldest - time.monotonic())
            for key, _ in self.selector.select(wait):
                try:
                    ended = key.fileobj.recv_into(unread) == 0  # dropped; 0: the client closed
                except BlockingIOError:
                    continue
                except OSError:
                    ended = True
                if key.fileobj is self.woken:
                    continue
                if ended:
                    self.let_go(key.fileobj)
            self.keep_added()
            now = time.monotonic()
            while self.until and next(iter(self.until.values())) <= now:
                self.let_go(next(iter(self.until)))
        with self.lock:
            for connection in [*self.until, *self.added]:
                self.let_go(connection)
        self.selector.close()
        self.waker.close()
        self.woken.close()

    def keep_added(self):
        with self.lock:
            added, self.added = self.added, []
        for connection in added:
            try:
                connection.setblocking(False)
                self.selector.register(connection, selectors.EVENT_READ)
            except (OSError, ValueError):  # closed or reset already
                connection.close()
                continue
            self.until[connection] = time.monotonic() + LINGER
            if len(self.until) > LINGERING_AT_MOST:
                self.let_go(next(iter(self.until)))

    def let_go(self, connection):
        if self.until.pop(connection, None) is not None:
            self.selector.unregister(connection)
        connection.close()


class PageServer(ThreadingHTTPServer):
    # The standard library's queue of 5 waiting connections resets some of a class's saves
    # when 30 arrive at once; the system caps this at its own limit (often 4096).
    request_queue_size = 128
    # Settable per server (the tests).
    connections_per_address, connections_in_all = CONNECTIONS_PER_ADDRESS, CONNECTIONS_IN_ALL

    def __init__(self, *arguments, **settings):
        self.lingering = Lingering()  # first: a port in use calls server_close() at once
        self.connections, self.connections_lock = collections.Counter(), threading.Lock()
        super().__init__(*arguments, **settings)

    def process_request(self, request, client_address):
        """Serve a connection in a thread of its own, unless its address holds its share of
        connections already, or all addresses together hold theirs: that one is refused here, at
        once, and holds no thread."""
        address = client_address[0]
        with self.connections_lock:
            refused = None
            if self.connections[address] >= self.connections_per_address:
                refused = (f"too many connections from this address (at most "
                           f"{self.connections_per_address} at once)")
            elif self.connections.total() >= self.connections_in_all:
                refused = f"too many connections (at most {self.connections_in_all} at once in all)"
            else:
                self.connections[address] += 1
        if refused:
            request.settimeout(0)  # a short answer into an empty buffer; never wait for it
            with contextlib.suppress(OSError):
                request.send(refusal(f"{refused}; try again in {RETRY_AFTER} s"))
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:  # no thread started: nothing will let its place go
            self.let_go(address)
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.let_go(client_address[0])

    def let_go(self, address):
        with self.connections_lock:
            self.connections[address] -= 1
            if not self.connections[address]:
                del self.connections[address]  # the table holds only addresses connected now

    def shutdown_request(self, request):
        """End a connection, its answer sent: the writing side is shut at once (the client reads
        the answer to its end), the connection kept a moment by Lingering."""
        try:
            request.shutdown(socket.SHUT_WR)
        except OSError:  # reset or closed already: nothing to keep
            request.close()
            return
        self.lingering.add(request)

    def server_close(self):
        super().server_close()
        self.lingering.close()

    def handle_error(self, request, client_address):
        """Print nothing for a client that went away mid-request (a closed tab, a reload, a
        phone leaving the network) or missed its deadline: the page goes on serving, nothing is
        to be done, and a class's reloads would bury a real report. Anything else is a bug of
        the server: the standard library's report, traceback included."""
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)
