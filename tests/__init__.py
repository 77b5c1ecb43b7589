"""The tests but test_smoke.py and what they share (fixtures.py); python -m unittest -v from the
top folder runs them all, this package's on both cores (parallel.py).
"""


def load_tests(loader, standard_tests, pattern):
    """Discovery's hook for this package (imported here only then: python -m tests.parallel runs
    that module as a script in the second process)."""
    from tests.parallel import in_two_processes
    return in_two_processes(loader, pattern)
