"""Tests that the docs cannot rot: the lesson's blocks train exactly as train.py does, the README's
commands run as written, every relative link resolves, and every `python <script>.py --flag` and
`python -m tools.<name> --flag` written there exists.

Usage: python -m unittest -v tests.test_docs
"""
import glob
import http.client
import importlib.util
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import unittest
import unittest.mock

import torch

import draw
import test
import train
from tests.fixtures import (ROOT, draw_digit, draw_shape, make_fake_mnist, run_script, stroke_pixels,
                            temporary_folder, working_directory)
from tools import (benchmark, benchmark_class, benchmark_export, benchmark_page, benchmark_train, exercises,
                   make_digit_sets, make_kernels, make_notebook)

DOCS = [os.path.join(ROOT, "README.md"), *sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))]
SCRIPTS = {"train.py": train, "test.py": test, "draw.py": draw, "tools.benchmark": benchmark,
           "tools.benchmark_page": benchmark_page, "tools.benchmark_class": benchmark_class,
           "tools.benchmark_export": benchmark_export, "tools.benchmark_train": benchmark_train,
           "tools.make_digit_sets": make_digit_sets, "tools.make_notebook": make_notebook,
           "tools.make_kernels": make_kernels, "tools.exercises": exercises}


def setUpModule():
    global TEMP, DATA_DIR
    TEMP = temporary_folder()
    DATA_DIR = make_fake_mnist(os.path.join(TEMP, "data"))


def read(path):
    with open(path, encoding="utf-8") as file:
        return file.read()


def lesson_blocks():
    """The python blocks of docs/lesson.md, exactly as written there."""
    blocks = re.findall(r"```python\n(.*?)```", read(os.path.join(ROOT, "docs", "lesson.md")), re.S)
    assert len(blocks) == 5, f"docs/lesson.md holds {len(blocks)} python blocks, not 5"
    return blocks


def lesson_code():
    """The lesson's blocks one after another, as one program."""
    return "\n".join(lesson_blocks())


def printed_lines(text):
    """The lines that must equal train.py's: all but the timing, the device and the saved file."""
    return [line for line in text.splitlines() if line.startswith(("Epoch:", "Test Accuracy:"))]


def anchors(markdown):
    """The link targets of a Markdown file's headings, as GitHub makes them."""
    headings = re.findall(r"^#+ (.+)$", re.sub(r"```.*?```", "", markdown, flags=re.S), re.M)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
            for heading in headings}


def commands(markdown):
    """Every `python <script>.py ...` and `python -m tools.<name> ...` command written in
    markdown, up to a pipe, ; or &&: (script or module, its arguments)."""
    found = []
    for line in markdown.splitlines():
        for match in re.finditer(r"python (?:-m (tools\.\w+)|(\w+\.py))([^`|;&\n]*)", line):
            found.append((match.group(1) or match.group(2), match.group(3)))
    return found


def flags_of(module):
    """The flags a script's --help lists."""
    code, out, _ = run_script(module, ["--help"])
    assert code == 0
    return set(re.findall(r"(--[a-z][a-z0-9-]*)", out))


class LessonTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # The lesson reads ./files, as the tutorial does: it runs where ./files is the synthetic set.
        cls.folder = os.path.join(TEMP, "lesson")
        os.makedirs(cls.folder)
        os.symlink(DATA_DIR, os.path.join(cls.folder, "files"))
        out = os.path.join(TEMP, "train.pt")
        # One thread, as the lesson's own process and kernel get with OMP_NUM_THREADS=1 below:
        # the same threads give the same sums, bit for bit.
        status, cls.printed, err = run_script(train, ["--data-dir", DATA_DIR, "--device", "cpu",
                                                      "--threads", "1", "--out", out])
        assert status == 0, err
        cls.weights = torch.load(out, weights_only=True)["model"]
        cls.environment = {**os.environ, "OMP_NUM_THREADS": "1"}

    def test_the_blocks_print_and_train_exactly_as_train_py(self):
        code = lesson_code() + "\ntorch.save(model.state_dict(), 'lesson.pt')\n"
        result = subprocess.run([sys.executable, "-c", code], cwd=self.folder, capture_output=True,
                                text=True, timeout=300, env=self.environment)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(len(printed_lines(result.stdout)), 3 + 1)  # a line per epoch on 1,000 images
        self.assertEqual(printed_lines(result.stdout), printed_lines(self.printed))
        block = torch.load(os.path.join(self.folder, "lesson.pt"), weights_only=True)
        self.assertEqual(block.keys(), self.weights.keys())
        for key in block:
            self.assertTrue(torch.equal(block[key], self.weights[key]), key)  # bit for bit

    def test_the_lesson_needs_only_torch_and_torchvision(self):
        imported = set(re.findall(r"^(?:import|from) (\w+)", lesson_code(), re.M))
        self.assertEqual(imported, {"time", "torch", "torchvision"})

    def test_the_notebook_is_made_from_the_lesson_and_holds_no_outputs(self):
        code, out, err = run_script(make_notebook, ["--check"])
        self.assertEqual((code, err), (0, ""), "lesson.ipynb is stale: run python -m tools.make_notebook")
        with open(make_notebook.NOTEBOOK, encoding="utf-8") as file:
            notebook = json.load(file)
        kinds = [cell["cell_type"] for cell in notebook["cells"]]
        self.assertEqual(kinds, ["markdown", "code"] * 5 + ["markdown"])  # prose, then its code
        self.assertEqual(["".join(cell["source"]) for cell in notebook["cells"]
                          if cell["cell_type"] == "code"],
                         [block.strip("\n") for block in lesson_blocks()])
        self.assertTrue(all(cell["outputs"] == [] and cell["execution_count"] is None
                            for cell in notebook["cells"] if cell["cell_type"] == "code"))
        stale = make_notebook.notebook_of(read(make_notebook.LESSON).replace("lr=learning_rate",
                                                                              "lr=0.1"))
        self.assertNotEqual(stale, make_notebook.notebook_of(read(make_notebook.LESSON)))

    @unittest.skipIf(importlib.util.find_spec("nbclient") is None
                     or importlib.util.find_spec("ipykernel") is None,
                     "needs nbclient and ipykernel (test-only: pip install nbclient ipykernel)")
    def test_the_notebook_runs_in_a_jupyter_kernel_and_prints_what_train_py_prints(self):
        import nbclient
        import nbformat

        notebook = nbformat.read(make_notebook.NOTEBOOK, as_version=4)
        # The kernel takes PyTorch's threads, as a student's does; the notebook's last cell says
        # what makes its lines train.py's (one thread here), and the test runs just that.
        instruction = "torch.set_num_threads(1)"
        self.assertIn(f"`{instruction}`", notebook.cells[-1].source)
        notebook.cells.insert(7, nbformat.v4.new_code_cell(instruction))  # before block 4
        environment = {key: value for key, value in os.environ.items() if key != "OMP_NUM_THREADS"}
        with unittest.mock.patch.dict(os.environ, environment, clear=True):  # for the kernel
            nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                    resources={"metadata": {"path": self.folder}}).execute()
        printed = "".join(output.get("text", "") for cell in notebook.cells
                          for output in cell.get("outputs", []) if output.get("name") == "stdout")
        self.assertEqual(len(printed_lines(printed)), 3 + 1)
        self.assertEqual(printed_lines(printed), printed_lines(self.printed))


def readme_commands():
    """The `python <script>.py ...` and `python -m tools.<name> ...` lines of the README's command
    blocks, in order, without their comments (the tests' own `python -m unittest` aside)."""
    blocks = re.findall(r"^```\n(.*?)^```", read(os.path.join(ROOT, "README.md")), re.S | re.M)
    return [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()
            if re.match(r"python (\w+\.py|-m tools\.)", line)]


def use_page(port, argv):
    """What the README's draw.py commands serve the page for: save two drawings of each digit
    when it collects, and ask for its networks."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for label in range(10) if "--collect" in argv else ():
        for _ in range(2):
            connection.request("POST", "/collect", json.dumps(
                {"label": label, "pixels": stroke_pixels(label)}),
                {"Content-Type": "application/json"})
            response = connection.getresponse()
            assert response.status == 200, response.read()
            response.read()
    connection.request("GET", "/models")
    assert json.loads(connection.getresponse().read())["models"]
    connection.close()


def run_served(folder, argv):
    """Start a draw.py command of the README as its own process on a free port, use the page,
    and stop it with Ctrl-C from outside; return its exit code."""
    process = subprocess.Popen([sys.executable, os.path.join(ROOT, "draw.py"), *argv, "--port", "0"],
                               cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, preexec_fn=lambda: signal.signal(signal.SIGINT,
                                                                           signal.SIG_DFL))
    try:
        for line in process.stdout:
            if line.startswith("Open http://"):
                break
        use_page(int(re.search(r":(\d+)/", line).group(1)), argv)
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=60)
    return process.returncode


def serve_in_process(folder, argv):
    """The same command as draw.main(argv) in this process, in folder: the page is used from a
    thread, which then sends the main thread Ctrl-C (SIGINT) as the terminal would; return the
    exit code."""
    failures = []

    def use_then_stop(port):
        try:
            use_page(port, argv)
        except Exception as error:  # re-raised below, in the test's own thread
            failures.append(error)
        finally:
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    def make_server(*args, **kwargs):  # draw.py's own server, used once it listens
        server = serve(*args, **kwargs)
        threading.Thread(target=use_then_stop, args=(server.server_address[1],)).start()
        return server

    serve = draw.make_server
    # Python's own Ctrl-C handler, also where the suite runs in the background with SIGINT ignored.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with working_directory(folder), unittest.mock.patch.object(draw, "make_server", make_server):
            code, _, err = run_script(draw, [*argv, "--port", "0"])
    finally:
        signal.signal(signal.SIGINT, previous)
    if failures:
        raise failures[0]
    assert "Stopped (Ctrl-C)." in err, err
    return code


class ReadmeCommandsTest(unittest.TestCase):
    def test_the_readmes_commands_run_in_order_as_written(self):
        """Every command of the README, top to bottom, in a folder where ./files is the synthetic
        MNIST and the reader's own pictures (my_seven.jpg, my_digits/) are at hand.

        They run in this process, as `python <script>` runs main(), to save an interpreter and
        torch's import each; the first served draw.py command runs as a process of its own,
        stopped by Ctrl-C from outside. Running each script as a process is tested by test_smoke,
        tests.test_alone and tests.test_server.CommandLineTest.
        """
        folder = os.path.join(TEMP, "readme")
        os.makedirs(folder)
        os.symlink(DATA_DIR, os.path.join(folder, "files"))
        draw_digit((120, 160), (30, 20, 90, 140)).save(os.path.join(folder, "my_seven.jpg"))
        for digit in range(10):
            os.makedirs(os.path.join(folder, "my_digits", str(digit)))
            draw_shape(digit, torch.Generator().manual_seed(digit)).save(
                os.path.join(folder, "my_digits", str(digit), "0.png"))
        commands = readme_commands()
        self.assertGreater(len(commands), 12)
        serve = run_served  # then serve_in_process
        for command in commands:
            argv = shlex.split(command)[1:]
            script, arguments = (argv[1], argv[2:]) if argv[0] == "-m" else (argv[0], argv[1:])
            with self.subTest(command=command):
                if "--plot" in argv and importlib.util.find_spec("matplotlib") is None:
                    self.skipTest("--plot needs matplotlib, which is optional and not installed")
                if script == "draw.py" and "--export" not in argv:
                    self.assertEqual(serve(folder, arguments), 130)
                    serve = serve_in_process
                    continue
                with working_directory(folder):
                    code, _, err = run_script(SCRIPTS[script], arguments)
                self.assertEqual(code, 0, err)
        self.assertEqual(len(os.listdir(os.path.join(folder, "class_digits", "7"))), 2)
        written = ["model.pt", "seed1.pt", "recipe.pt", "class.pt", "tuned.pt", "errors.png",
                   "class_page.html"]
        written += ["curves.png"] if importlib.util.find_spec("matplotlib") else []
        for name in written:
            self.assertTrue(os.path.isfile(os.path.join(folder, name)), name)


class DocsTest(unittest.TestCase):
    def test_every_relative_link_resolves(self):
        checked = 0
        with open(make_notebook.NOTEBOOK, encoding="utf-8") as file:
            cells = json.load(file)["cells"]
        notebook = "".join("".join(cell["source"]) for cell in cells
                           if cell["cell_type"] == "markdown")
        for path, text in [*((path, read(path)) for path in DOCS), (make_notebook.NOTEBOOK, notebook)]:
            for target in re.findall(r"\]\(([^)\s]+)\)", text):
                if re.match(r"[a-z]+:", target):  # http:, https:, mailto: are not ours to check
                    continue
                file, _, anchor = target.partition("#")
                linked = os.path.normpath(os.path.join(os.path.dirname(path), file)) if file else path
                with self.subTest(doc=os.path.relpath(path, ROOT), link=target):
                    self.assertTrue(os.path.exists(linked), f"{linked} does not exist")
                    if anchor:
                        self.assertIn(anchor, anchors(read(linked)))
                checked += 1
        self.assertGreater(checked, 20)

    def test_every_script_command_names_flags_that_exist(self):
        flags = {name: flags_of(module) for name, module in SCRIPTS.items()}
        checked = 0
        for path in DOCS:
            for script, arguments in commands(read(path)):
                with self.subTest(doc=os.path.relpath(path, ROOT), command=f"{script}{arguments}"):
                    self.assertIn(script, flags, f"{script} is not one of our scripts")
                    unknown = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", arguments))
                    self.assertEqual(unknown - flags[script], set())
                checked += 1
        self.assertGreater(checked, 20)

    def test_the_checks_above_would_catch_a_slip(self):
        self.assertEqual(commands("run `python train.py --epoch 3 | tail`"),
                         [("train.py", " --epoch 3 ")])
        self.assertNotIn("--epoch", flags_of(train))
        self.assertEqual(commands("`python -m tools.benchmark --bogus`"),
                         [("tools.benchmark", " --bogus")])
        self.assertNotIn("--bogus", flags_of(benchmark))
        self.assertEqual(anchors("# Tested versions\n## Your own handwriting (UCI, 1,797)"),
                         {"tested-versions", "your-own-handwriting-uci-1797"})


if __name__ == "__main__":
    unittest.main()
