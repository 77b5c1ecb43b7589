"""Beyond the tutorial: the flags beyond it (flags.py) and what runs them, and what the tutorial's
files use whenever it is here: checkpoints checked in detail, a container's CPU quota.
"""
