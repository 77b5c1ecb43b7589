"""python -m unittest's discovery of this package, on both of the machine's cores: the modules that
drive headless Chromium run in a second process beside the others, and its results join the run's.

Usage: python -m unittest -v   (tests/__init__.py's load_tests; a module named alone runs as usual)
"""
import json
import os
import subprocess
import sys
import tempfile
import unittest

# The second process's modules: those that drive Chromium, which waits on the browser's own
# processes, while the first runs the others, which wait on the scripts' processes. Each side
# makes its own fixtures (tests/fixtures.py caches them per process): the modules that share one
# stay on one side.
SECOND = {"test_design", "test_design_panel", "test_exercises", "test_export", "test_file_checkpoint",
          "test_file_guards", "test_file_in_browser", "test_nodes", "test_page_in_browser",
          "test_train_data", "test_train_panel", "test_train_run", "test_train_steps", "test_tools",
          "test_resume"}
SECOND_PROCESS = "MNIST_TESTS_SECOND_PROCESS"  # set in the second process: it splits nothing


def in_two_processes(loader, pattern):
    """This package's tests, found as discovery finds them (with -k and the like), in two parts."""
    here = os.path.dirname(os.path.abspath(__file__))
    found = loader.discover(here, pattern or "test*.py")
    if os.environ.get(SECOND_PROCESS):
        return found
    first, second = unittest.TestSuite(), []
    for test in tests_of(found):
        module = test.id().split(".")[1]
        if module in SECOND:
            second.append(test.id())
        else:
            first.addTest(test)
    return TwoProcesses(first, second)


def tests_of(suite):
    """Every test of suite, nested suites opened, in their order."""
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from tests_of(item)
        else:
            yield item


class TwoProcesses(unittest.TestSuite):
    """Runs its tests here while a second process runs the tests named second; then reports the
    second's results to the same result, as if they had run here."""

    def __init__(self, first, second):
        super().__init__([first])
        self.second = second

    def run(self, result, debug=False):
        if not self.second:
            return super().run(result, debug)
        with tempfile.TemporaryDirectory() as folder:
            events = os.path.join(folder, "events.jsonl")
            process = subprocess.Popen([sys.executable, "-m", "tests.parallel", events, *self.second],
                                       env={**os.environ, SECOND_PROCESS: "1"})
            try:
                super().run(result, debug)
                process.wait()
            finally:
                process.kill()  # Ctrl-C, or a run stopped otherwise: the second stops too
                process.wait()
            replay(events, result, process.returncode)
        return result


class Failed(AssertionError):
    """A failure in the second process: its text is the traceback printed there."""


class Broke(Exception):
    """An error in the second process: its text is the traceback printed there."""


class Reported:
    """A test (or subtest) the second process ran, as the result here names it."""
    failureException = Failed

    def __init__(self, event):
        self.event = event

    def id(self):
        return self.event["id"]

    def __str__(self):
        return self.event["name"]

    def shortDescription(self):
        return self.event["description"]


def replay(path, result, returncode):
    """Report each event the second process recorded in path to result."""
    with open(path, encoding="utf-8") if os.path.exists(path) else open(os.devnull) as file:
        events = [json.loads(line) for line in file]
    started = None
    for event in events:
        test = Reported(event)
        if event["test"] != started:
            result.startTest(Reported({**event, "id": event["test"], "name": event["test_name"]}))
            started = event["test"]
        outcome, text = event["outcome"], event["text"]
        kind = Failed if outcome in ("fail", "subfail") else Broke
        if outcome == "ok":
            result.addSuccess(test)
        elif outcome == "skip":
            result.addSkip(test, text)
        elif outcome in ("subfail", "suberror"):
            result.addSubTest(test, test, (kind, kind(text), None))
        else:
            (result.addFailure if outcome == "fail" else result.addError)(test, (kind, kind(text), None))
    if returncode != 0 or not events:
        broken = Reported({"id": "tests.parallel", "name": "tests.parallel (the second process)",
                           "description": None})
        result.startTest(broken)
        result.addError(broken, (Broke, Broke(f"the second process ended with {returncode}"), None))


class Recording(unittest.TestResult):
    """The second process's result: every outcome written to a file, one JSON line each."""

    def __init__(self, file):
        super().__init__()
        self.file = file

    def record(self, test, outcome, text="", within=None):
        within = within or test
        self.file.write(json.dumps({"test": within.id(), "test_name": str(within), "id": test.id(),
                                    "name": str(test), "description": test.shortDescription(),
                                    "outcome": outcome, "text": text}) + "\n")
        self.file.flush()

    def addSuccess(self, test):
        super().addSuccess(test)
        self.record(test, "ok")

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self.record(test, "skip", reason)

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self.record(test, "fail", self.failures[-1][1])

    def addError(self, test, err):
        super().addError(test, err)
        self.record(test, "error", self.errors[-1][1])

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            failed = issubclass(err[0], test.failureException)
            text = (self.failures if failed else self.errors)[-1][1]
            self.record(subtest, "subfail" if failed else "suberror", text, within=test)


def second_process(events, names):
    """Run the tests named, recording their outcomes in the file events."""
    suite = unittest.defaultTestLoader.loadTestsFromNames(names)
    with open(events, "w", encoding="utf-8") as file:
        suite.run(Recording(file))


if __name__ == "__main__":
    second_process(sys.argv[1], sys.argv[2:])
