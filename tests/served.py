"""Ways the tests of the served page ask a test server: a request as the page sends it, a raw
socket, many clients at once; and the tutorial's stages as the page shows them.

Usage: from tests.served import request, raw_reply, at_once, TUTORIAL_STAGES   (tests only)
"""
import http.client
import json
import socket
import threading

from tests.fixtures import served_shapes

# The tutorial's forward(), as the page shows it: name, shape, kind, activation shown with it.
TUTORIAL_STAGES = [
    ("convolution1", [6, 24, 24], "convolution", "ReLU"), ("pool", [6, 12, 12], "pool", None),
    ("conv_dropout", [6, 12, 12], "dropout", None), ("convolution2", [16, 8, 8], "convolution", "ReLU"),
    ("pool_1", [16, 4, 4], "pool", None), ("flatten", [256], "flatten", None),
    ("fc1", [30], "linear", None), ("fc2", [10], "linear", None), ("softmax", [10], "output", None)]


def request(method, path, body=None, headers=None, server=None, timeout=30):
    """Send one request to a test server (served_shapes()'s page unless another is given; a POST
    as JSON, as the page sends it); return (status, decoded JSON or raw bytes)."""
    port = (server or served_shapes().server).server_address[1]
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        sent = {"Content-Type": "application/json"} if method == "POST" else {}
        connection.request(method, path, body=body, headers={**sent, **(headers or {})})
        response = connection.getresponse()
        content = response.read()
    finally:
        connection.close()
    if response.getheader("Content-Type") == "application/json":
        return response.status, json.loads(content)
    return response.status, content


def raw_reply(server, request_head):
    """Send request_head (and a body) on a raw socket; return all the server answers until it
    closes."""
    with socket.create_connection(server.server_address, timeout=30) as connection:
        connection.sendall(request_head)
        reply = b""
        while chunk := connection.recv(65536):
            reply += chunk
    return reply.decode()


def at_once(client, count, timeout):
    """Run client(0) ... client(count - 1) in threads at once; wait for all, timeout s at most."""
    threads = [threading.Thread(target=client, args=(number,)) for number in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
