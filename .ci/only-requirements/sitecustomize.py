"""Hide every package beyond requirements.txt, as on a machine where only it was installed.

.ci/run puts this folder on PYTHONPATH for a second run of the suite, so a test that needs an
optional or test-only package must skip with its reason there, never fail. A None in sys.modules
makes `import name` raise ModuleNotFoundError and importlib.util.find_spec(name) return None, as
for a package that is absent; child processes inherit PYTHONPATH and so hide the same packages.
"""
import sys

OPTIONAL = ("matplotlib", "selenium", "nbclient", "nbformat", "ipykernel", "jupyter_client", "ruff",
            "wasmtime")

for name in OPTIONAL:
    sys.modules[name] = None
