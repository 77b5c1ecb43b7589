"""Draw a digit in the browser and watch it flow through the network you trained, stage by stage:
how each value was computed, which pixels decided the answer, and how sure the network is.

Usage: python draw.py model.pt [recipe.pt ...] [--port 8000] [--host 127.0.0.1] [--device auto]
       then open http://127.0.0.1:8000/;  or  python draw.py model.pt --export page.html (no server)
"""
import argparse
import secrets
import socket
import sys

from common import (add_data_and_device_arguments, checked, device_line, non_negative_int,
                    output_path, positive_int, run_main, set_threads)
from data import raw_folder
from page.collect import COLLECT_LIMIT, collect_folder
from page.export import export_page
from page.mnist_sets import mnist_sets, train_images_to_carry
from page.routes import Page, load_models, load_sets
from page.server import is_loopback, make_server

port_number = checked(int, lambda value: 0 <= value <= 65535, "a port number from 0 to 65535")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Serve a page to draw digits and see every layer.")
    parser.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT",
                        help="checkpoints written by train.py; the page lets you choose between "
                             "them and an untrained network")
    parser.add_argument("--port", type=port_number, default=8000,
                        help="port to listen on; 0 picks a free one (default: 8000)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on; only this computer can reach 127.0.0.1 "
                             "(default: 127.0.0.1)")
    add_data_and_device_arguments(parser, downloads=False)
    parser.add_argument("--images-dir", metavar="DIR",
                        help="also explore your own labelled pictures, DIR/0/*.png ... "
                             "DIR/9/*.png, as test.py --images-dir reads them (default: none)")
    parser.add_argument("--collect", metavar="DIR",
                        help="let the page save drawings, labelled, into DIR/0 ... DIR/9 for "
                             "train.py --extra-images-dir (with --export: download them as "
                             "DIR.zip); off unless given (default: off)")
    parser.add_argument("--collect-limit", type=positive_int, default=COLLECT_LIMIT, metavar="N",
                        help="with --collect, save at most N pictures of each digit "
                             f"(default: {COLLECT_LIMIT})")
    parser.add_argument("--export", type=output_path, metavar="FILE",
                        help="write the page as one HTML file that computes everything in the "
                             "browser, offline, and start no server (default: serve the page)")
    parser.add_argument("--train-images", type=non_negative_int, metavar="N",
                        help="with --export: the file carries MNIST's first N training images, "
                             "and then its whole test set, for training in the browser; 0 "
                             "leaves them out (default: all, when --data-dir has MNIST)")
    args = parser.parse_args(argv)
    if args.train_images is not None and not args.export:
        parser.error("argument --train-images: only with --export (the served page trains "
                     "nothing)")
    if args.export and args.data_dir != parser.get_default("data_dir") \
            and not raw_folder(args.data_dir)[1]:  # given, so meant to be there: train.py's rule
        parser.error(f"argument --data-dir: no MNIST in {args.data_dir} (its four raw files are not "
                     f"all in MNIST/raw); python train.py --data-dir {args.data_dir} downloads it")
    if args.export:
        try:
            args.train_images = train_images_to_carry(args.data_dir, args.train_images)
        except argparse.ArgumentTypeError as error:
            parser.error(f"argument --train-images: {error}")
    if args.collect and not args.export:  # the exported page downloads drawings: no folder here
        try:
            collect_folder(args.collect)
        except argparse.ArgumentTypeError as error:
            parser.error(f"argument --collect: {error}")
    return args


def carried(mnist):
    """What the size line says of the MNIST images in the file: nothing if none."""
    if not mnist:
        return ""
    sets, texts = mnist
    train, test = sets["train"], sets["test"]
    size = sum(map(len, texts.values())) + len(train["labels"]) + len(test["labels"])
    return (f"; MNIST's {train['count']:,} training and {test['count']:,} test images take "
            f"{size / 2**20:.2f} MB of it")


def main(argv=None):
    args = parse_args(argv)
    # The same rule as train.py's; each answer is worked out with these threads (see Turns).
    print(device_line(args.device, set_threads(args.threads)))
    networks = load_models(args.checkpoints, args.device)
    sets, missing = load_sets(args.data_dir, args.images_dir)
    if missing:  # the page says it too; the default folder's absence is no mistake
        print(missing)
    if args.export:
        page = Page(networks, args.device, sets, missing, collect=args.collect,
                    collect_limit=args.collect_limit)
        mnist = mnist_sets(args.data_dir, args.train_images)
        size = export_page(page, args.export, mnist)
        print(f"Wrote {args.export} ({size / 2**20:.2f} MB{carried(mnist)}): open it in a "
              "browser, offline too")
        return
    # Beyond this computer anyone on the network could use the page: as Jupyter does, it then
    # answers only requests that carry a token, given in the address printed for the class.
    token = None if is_loopback(args.host) else secrets.token_urlsafe(16)
    server = make_server(networks, args.host, args.port, args.device, sets, missing,
                         collect=args.collect, collect_limit=args.collect_limit, token=token)
    host, port = server.server_address[:2]
    shown = socket.gethostname() if host in ("0.0.0.0", "::") else host
    address = f"http://{f'[{shown}]' if ':' in shown else shown}:{port}/"
    # Ctrl-C may come the moment the address is printed (a script waits for that line), so the
    # lines are printed inside the try that turns it into one line of its own.
    try:
        if token:
            print(f"Listening on {host}: whoever has the address below, token included, can use "
                  "the page")
        print(f"Open {address}{f'?token={token}' if token else ''} (Ctrl-C stops the server)",
              flush=True)
        server.serve_forever()
    except KeyboardInterrupt:
        print("Stopped (Ctrl-C).", file=sys.stderr)
        sys.exit(130)
    finally:
        server.server_close()


if __name__ == "__main__":
    run_main(main)
