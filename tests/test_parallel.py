"""Tests of tests/parallel.py: what the second process runs is reported here as if it had run here
(every outcome, subtests, skips, a second process that breaks), and discovery splits the package.

Usage: python -m unittest -v tests.test_parallel
"""
import io
import os
import tempfile
import unittest
from unittest import mock

from tests import parallel
from tests.fixtures import ROOT


class Sample(unittest.TestCase):
    """One test of each outcome; run only by the tests below (no test_ prefix)."""

    def passes(self):
        pass

    def fails(self):
        self.assertEqual(1, 2)

    def breaks(self):
        raise KeyError("x")

    def has_subtests(self):
        for value in (1, 2, 3):
            with self.subTest(value=value):
                if value == 2:
                    self.assertEqual(value, 0)
                if value == 3:
                    raise ValueError("three")

    @unittest.skip("no browser")
    def skips(self):
        pass


def sample_suite():
    return unittest.TestSuite(Sample(name) for name in
                              ("passes", "fails", "breaks", "has_subtests", "skips"))


def counts(result):
    return (result.testsRun, len(result.failures), len(result.errors), len(result.skipped),
            result.wasSuccessful())


class ReplayTest(unittest.TestCase):
    def setUp(self):
        folder = tempfile.TemporaryDirectory()
        self.addCleanup(folder.cleanup)
        self.folder = folder.name

    def test_recorded_then_replayed_is_what_running_here_reports(self):
        here = unittest.TestResult()
        sample_suite().run(here)
        events = os.path.join(self.folder, "events.jsonl")
        with open(events, "w", encoding="utf-8") as file:
            sample_suite().run(parallel.Recording(file))
        replayed = unittest.TextTestRunner(stream=io.StringIO(), verbosity=2)._makeResult()
        parallel.replay(events, replayed, 0)
        self.assertEqual(counts(replayed), counts(here))
        self.assertEqual(counts(here), (5, 2, 2, 1, False))
        texts = "".join(text for _, text in replayed.failures + replayed.errors)
        for words in ("AssertionError: 1 != 2", "KeyError: 'x'", "AssertionError: 2 != 0",
                      "ValueError: three"):
            self.assertIn(words, texts)
        self.assertEqual([str(test) for test, _ in replayed.skipped], [str(Sample("skips"))])

    def test_a_second_process_that_ends_badly_is_an_error_here(self):
        result = unittest.TestResult()
        parallel.replay(os.path.join(self.folder, "never_written.jsonl"), result, -9)
        self.assertEqual(counts(result), (1, 0, 1, 0, False))
        self.assertIn("the second process ended with -9", result.errors[0][1])


class DiscoveryTest(unittest.TestCase):
    def test_the_package_splits_and_the_second_process_runs_its_part(self):
        # As python -m unittest discovers it, from the top folder (tests/__init__.py's hook).
        with mock.patch.object(parallel, "SECOND", {"test_layout"}):
            found = [suite for suite in unittest.TestLoader().discover(ROOT, "test_[lp]a[yr]*.py")
                     if isinstance(suite, parallel.TwoProcesses)]
            self.assertEqual(len(found), 1)
            self.assertEqual({test.split(".")[1] for test in found[0].second}, {"test_layout"})
            self.assertEqual({test.id().split(".")[1] for test in parallel.tests_of(found[0])},
                             {"test_parallel"})
            # The second process's part, run for real, reported here.
            result = unittest.TestResult()
            parallel.TwoProcesses(unittest.TestSuite(), found[0].second).run(result)
        self.assertEqual(result.testsRun, len(found[0].second))
        self.assertTrue(result.wasSuccessful(), result.failures + result.errors)


if __name__ == "__main__":
    unittest.main()
