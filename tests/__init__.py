"""The tests but test_smoke.py and what they share (fixtures.py); python -m unittest -v from the
top folder runs them all.
"""
