"""Train in the exported page (its trainRun, in headless Chromium) and with train.py on this machine,
in one run: time, test accuracy and their ratio; then again while the page answers drawings, how
fast it answers; and whether test.py reads the page's checkpoint with the accuracy it showed.

Usage: python -m tools.benchmark_train model.pt --data-dir files [--epochs 1] [--seed 0]
"""
import argparse
import base64
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

from common import UserError, non_negative_int, positive_int, run_main
from tools import ROOT  # where train.py is
from tools.benchmark_export import chromium, drawing_of, open_file

# In the page: one run of trainRun; with pause (ms), routes.predict also asked for a drawing
# again and again while it trains, pause ms apart (each answer timed, in ms), as a student draws.
TRAIN_AND_DRAW = """
const [body, pixels, pause, done] = arguments;
(async () => {
  let training = true;
  const run = window.routes.trainRun(body).finally(() => { training = false; });
  const answers = [];
  while (training && pause !== null) {
    const start = performance.now();
    await window.routes.predict({ pixels });
    answers.push(performance.now() - start);
    await new Promise((resolve) => setTimeout(resolve, pause));  // the worker's messages come in meanwhile
  }
  const result = await run;
  return { ...result, answers };
})().then(done, (error) => done({ error: error.message }));
"""


def run_script(*argv):
    """A script of this project run as a user runs it; its printed lines, or UserError."""
    result = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True)
    if result.returncode:
        raise UserError(f"python {' '.join(argv)} failed: {result.stderr.strip()[-300:]}")
    return result.stdout


def printed(pattern, output):
    """The number a printed line gives, as train.py and test.py print it."""
    found = re.search(pattern, output)
    if not found:
        raise UserError(f"no line matching {pattern!r} in:\n{output}")
    return float(found.group(1))


def pytorch_run(args, folder):
    """train.py's run with the tutorial's settings on one thread: (Run Time, test accuracy %)."""
    output = run_script("train.py", "--epochs", str(args.epochs), "--threads", "1",
                        "--no-snapshots", "--seed", str(args.seed), "--data-dir", args.data_dir,
                        "--out", os.path.join(folder, "pytorch.pt"))
    return printed(r"Run Time: ([\d.]+) s", output), printed(r"Test Accuracy: ([\d.]+)%", output)


def page_run(args, folder):
    """The same run in the exported page: its answer (seconds, testAccuracy, checkpoint, the
    predict times while it trained) and the file's size in bytes."""
    path = os.path.join(folder, "page.html")
    run_script("draw.py", args.checkpoint, "--export", path, "--data-dir", args.data_dir,
               "--train-images", str(args.train_images))
    session = chromium()
    try:
        open_file(session, path)
        body = {"epochs": args.epochs, "batchSize": 64, "lr": 0.01, "seed": args.seed}
        pixels = drawing_of([[255 * (8 <= x <= 11 and 4 <= y <= 23) for x in range(28)]
                             for y in range(28)])  # a "1"
        alone = session.execute_async_script(TRAIN_AND_DRAW, body, pixels, None)
        drawn = session.execute_async_script(TRAIN_AND_DRAW, body, pixels, args.pause)
        version = session.capabilities.get("browserVersion", "?")
    finally:
        session.quit()
    for result in (alone, drawn):
        if "error" in result:
            raise UserError(f"the page refused to train: {result['error']}")
    return alone, drawn, os.path.getsize(path), version


def main(argv=None):
    parser = argparse.ArgumentParser(description="Train in the exported page and with train.py.")
    parser.add_argument("checkpoint", metavar="CHECKPOINT",
                        help="a checkpoint of the network to train (its weights are not used: "
                             "both runs start from fresh weights of --seed)")
    parser.add_argument("--epochs", type=positive_int, default=1, help="epochs (default: 1)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seed (default: 0)")
    parser.add_argument("--train-images", type=non_negative_int, default=60000, metavar="N",
                        help="training images the page carries (default: 60000)")
    parser.add_argument("--pause", type=non_negative_int, default=100, metavar="MS",
                        help="in the second run, ms between a drawing's answer and the next "
                             "request (default: 100)")
    parser.add_argument("--data-dir", default="./files", help="MNIST folder (default: ./files)")
    args = parser.parse_args(argv)
    folder = tempfile.mkdtemp()
    try:
        pytorch_seconds, pytorch_accuracy = pytorch_run(args, folder)
        result, drawn, size, version = page_run(args, folder)
        checkpoint = os.path.join(folder, "page.pt")
        with open(checkpoint, "wb") as file:
            file.write(base64.b64decode(result["checkpoint"]))
        read_back = printed(r"Test Accuracy: ([\d.]+)%",
                            run_script("test.py", checkpoint, "--data-dir", args.data_dir))
    finally:
        shutil.rmtree(folder)
    answers = sorted(drawn["answers"])
    print(f"headless Chromium {version}; the file with {args.train_images:,} training images: "
          f"{size / 2**20:.2f} MB")
    print(f"train.py --epochs {args.epochs} --threads 1 --no-snapshots: Run Time "
          f"{pytorch_seconds:.2f} s, Test Accuracy {pytorch_accuracy:.2f}%")
    print(f"the page's trainRun, same settings:            Run Time {result['seconds']:.2f} s, "
          f"Test Accuracy {100 * result['testAccuracy']:.2f}%")
    print(f"ratio, the page's time to train.py's: {result['seconds'] / pytorch_seconds:.2f}")
    print(f"trainRun again, with a drawing answered every {args.pause} ms meanwhile: Run Time "
          f"{drawn['seconds']:.2f} s; routes.predict: {len(answers)} answers, median "
          f"{statistics.median(answers):.1f} ms, slowest {answers[-1]:.1f} ms")
    print(f"test.py on the first run's model.pt: Test Accuracy {read_back:.2f}% (the page showed "
          f"{100 * result['testAccuracy']:.2f}%)")

if __name__ == "__main__":
    run_main(main)
