"""Beyond the tutorial: augmentation, curves, your own pictures, resuming a run. train.py and
test.py use these modules for the flags that ask for them.
"""
