"""Train in the exported page (its trainRun, in headless Chromium) and with train.py on this machine,
in one run: train.py's epoch on one thread, then the page's on one worker and on as many as the
browser has cores, each while the page answers a drawing every 2 s; their times, ratios, test
accuracy and arithmetic speed, how fast the page answered, and whether test.py reads the page's
checkpoint with the accuracy it showed.

Usage: python -m tools.benchmark_train model.pt --data-dir files [--epochs 1] [--seed 0] [--pause 2000]
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

import torch

from common import UserError, load_model, non_negative_int, positive_int, run_main
from tools import ROOT  # where train.py is
from tools.benchmark_export import chromium, drawing_of, open_file

# In the page: one run of trainRun; routes.predict asked for a drawing again and again while it
# trains, pause ms apart (each answer timed, in ms), as a student draws.
TRAIN_AND_DRAW = """
const [body, pixels, pause, done] = arguments;
(async () => {
  let training = true;
  const run = window.routes.trainRun(body).finally(() => { training = false; });
  const answers = [];
  while (training) {
    const start = performance.now();
    await window.routes.predict({ pixels });
    answers.push(performance.now() - start);
    await new Promise((resolve) => setTimeout(resolve, pause));  // the workers' messages come in meanwhile
  }
  const result = await run;
  return { ...result, answers, kernels: maths.kernelsInUse()?.[0] ?? "plain loops",
           cores: navigator.hardwareConcurrency };
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


def multiply_adds(checkpoint):
    """One training image's multiply-adds in the network's convolutions and linear layers, and
    those of its forward pass: forward, the weights' gradients (as many again) and the inputs'
    gradients (as many again, but for a layer that reads the image itself)."""
    model, image, counted = load_model(checkpoint, "cpu"), torch.zeros(1, 1, 28, 28), []

    def count(module, inputs, output):
        per_output = module.weight[0].numel()  # inputs x kernel's rows x columns, or inputs
        counted.append((output.numel() * per_output, inputs[0] is image))

    hooks = [module.register_forward_hook(count) for module in model.modules()
             if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.no_grad():
        model(image)
    for hook in hooks:
        hook.remove()
    forward = sum(adds for adds, _ in counted)
    return 3 * forward - sum(adds for adds, first in counted if first), forward


def pytorch_run(args, folder):
    """train.py's run with the tutorial's settings on one thread: (Run Time, test accuracy %)."""
    output = run_script("train.py", "--epochs", str(args.epochs), "--threads", "1",
                        "--no-snapshots", "--seed", str(args.seed), "--data-dir", args.data_dir,
                        "--out", os.path.join(folder, "pytorch.pt"))
    return printed(r"Run Time: ([\d.]+) s", output), printed(r"Test Accuracy: ([\d.]+)%", output)


def page_runs(args, folder):
    """The same run in the exported page on one worker and on as many as it takes (the default),
    each with a drawing answered every args.pause ms: their answers (seconds, testAccuracy,
    workers, checkpoint, the predict times), the file's size in bytes and the browser's version."""
    path = os.path.join(folder, "page.html")
    run_script("draw.py", args.checkpoint, "--export", path, "--data-dir", args.data_dir,
               "--train-images", str(args.train_images))
    session = chromium()
    try:
        open_file(session, path)
        body = {"epochs": args.epochs, "batchSize": 64, "lr": 0.01, "seed": args.seed}
        pixels = drawing_of([[255 * (8 <= x <= 11 and 4 <= y <= 23) for x in range(28)]
                             for y in range(28)])  # a "1"
        runs = [session.execute_async_script(TRAIN_AND_DRAW, {**body, **workers}, pixels, args.pause)
                for workers in ({"workers": 1}, {})]
        version = session.capabilities.get("browserVersion", "?")
    finally:
        session.quit()
    for result in runs:
        if "error" in result:
            raise UserError(f"the page refused to train: {result['error']}")
    return runs, os.path.getsize(path), version


def page_line(result, pytorch_seconds, flop):
    workers = f"{result['workers']} worker{'s' if result['workers'] > 1 else ''}"
    answers = sorted(result["answers"])
    return (f"the page's trainRun on {workers}:{' ' * (13 - len(workers))}Run Time "
            f"{result['seconds']:.2f} s, Test Accuracy {100 * result['testAccuracy']:.2f}%, "
            f"{flop / result['seconds'] / 1e9:.1f} GFLOP/s; ratio to train.py "
            f"{result['seconds'] / pytorch_seconds:.2f}; routes.predict: {len(answers)} answers, median "
            f"{statistics.median(answers):.1f} ms, slowest {answers[-1]:.1f} ms")


def main(argv=None):
    parser = argparse.ArgumentParser(description="Train in the exported page and with train.py.")
    parser.add_argument("checkpoint", metavar="CHECKPOINT",
                        help="a checkpoint of the tutorial's network (its weights are not used: "
                             "every run starts from fresh weights of --seed)")
    parser.add_argument("--epochs", type=positive_int, default=1, help="epochs (default: 1)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seed (default: 0)")
    parser.add_argument("--train-images", type=positive_int, default=60000, metavar="N",
                        help="training images the page carries (default: 60000)")
    parser.add_argument("--pause", type=non_negative_int, default=2000, metavar="MS",
                        help="ms between a drawing's answer and the next request while the page "
                             "trains (default: 2000)")
    parser.add_argument("--data-dir", default="./files", help="MNIST folder (default: ./files)")
    args = parser.parse_args(argv)
    images = args.train_images // 64 * 64 * args.epochs  # the last incomplete batch skipped
    adds, forward = multiply_adds(args.checkpoint)
    flop = 2 * adds * images
    load = os.getloadavg()[0]
    folder = tempfile.mkdtemp()
    try:
        pytorch_seconds, pytorch_accuracy = pytorch_run(args, folder)
        (one, every), size, version = page_runs(args, folder)
        checkpoint = os.path.join(folder, "page.pt")
        with open(checkpoint, "wb") as file:
            file.write(base64.b64decode(every["checkpoint"]))
        read_back = printed(r"Test Accuracy: ([\d.]+)%",
                            run_script("test.py", checkpoint, "--data-dir", args.data_dir))
    finally:
        shutil.rmtree(folder)
    print(f"headless Chromium {version} ({every['cores']} cores, the kernels: {every['kernels']}); the file "
          f"with {args.train_images:,} training images: {size / 2**20:.2f} MB; load average "
          f"{load:.2f} before, {os.getloadavg()[0]:.2f} after")
    print(f"one training image: {adds:,} multiply-adds (forward {forward:,}); {flop / 1e9:.1f} GFLOP "
          f"in all; a drawing answered every {args.pause} ms while the page trains")
    print(f"train.py --epochs {args.epochs} --threads 1 --no-snapshots: Run Time {pytorch_seconds:.2f} s, "
          f"Test Accuracy {pytorch_accuracy:.2f}%, {flop / pytorch_seconds / 1e9:.1f} GFLOP/s")
    for result in (one, every):
        print(page_line(result, pytorch_seconds, flop))
    print(f"test.py on the {every['workers']}-worker run's model.pt: Test Accuracy {read_back:.2f}% "
          f"(the page showed {100 * every['testAccuracy']:.2f}%)")


if __name__ == "__main__":
    run_main(main)
