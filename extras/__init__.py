"""Beyond the tutorial: augmentation, the training recipe, your own pictures, resuming a run,
curves. train.py and test.py import these only when a flag asks (cli.extra).
"""
