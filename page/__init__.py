"""The drawing page; draw.py is its command line (python draw.py model.pt), and nothing here
imports draw.py.
"""
