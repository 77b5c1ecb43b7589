"""Tests that the layout shows the architecture: at most 20 entries at the top, the tutorial's
files short, and imports that point one way only (read with ast, nothing imported).

Usage: python -m unittest -v tests.test_layout
"""
import ast
import glob
import os
import subprocess
import unittest

from tests.fixtures import ROOT

# What the project's modules may import: a module imports only from its own layer or below.
LAYERS = {"model": 0, "data": 0, "common": 1, "extras": 2, "page": 3,
          "train": 4, "test": 4, "draw": 4, "test_smoke": 4, "tools": 5, "tests": 6}
COPY_SET = {"model", "data", "common", "train", "test", "test_smoke"}  # what a teacher copies
# The copy set is read in one sitting: its six files together, and its one helper.
COPY_SET_LINES, HELPER_LINES = 800, 250
# Every product file, Python, JavaScript, HTML or WebAssembly text, is read in one sitting too;
# so is every test file.
PRODUCT_LINES, TEST_LINES = 500, 800
LINE_LIMITS = {"draw.py": 150, "README.md": 280}


def line_count(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as file:
        return len(file.read().splitlines())


def module_files():
    """Every module of the project: {dotted name: path}."""
    paths = glob.glob(os.path.join(ROOT, "*.py"))
    for package in ("extras", "page", "tools", "tests"):
        paths += glob.glob(os.path.join(ROOT, package, "*.py"))
    return {os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".").removesuffix(".__init__"): path
            for path in paths}


def imported(path, top_level_only=False):
    """The project modules a file imports (at module level only, if asked), as dotted names."""
    with open(path, encoding="utf-8") as file:
        return imports_in(file.read(), top_level_only)


def imports_in(source, top_level_only=False):
    """The project modules source imports: for `from package import name`, the package's name,
    since both sit in the same layer."""
    tree = ast.parse(source)
    names = set()
    for node in tree.body if top_level_only else ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module)
    return {name for name in names if name.split(".")[0] in LAYERS}


def layer(name):
    return LAYERS[name.split(".")[0]]


class TopLevelTest(unittest.TestCase):
    @unittest.skipUnless(os.path.exists(os.path.join(ROOT, ".git")), "needs the git checkout")
    def test_at_most_20_entries_at_the_top(self):
        files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                               check=True).stdout.split()
        entries = {path.split("/")[0] for path in files}
        self.assertLessEqual(len(entries), 20, sorted(entries))

    def test_the_tutorials_files_stay_short(self):
        for name, limit in LINE_LIMITS.items():
            with self.subTest(file=name):
                self.assertLessEqual(line_count(name), limit)
        copied = {name: line_count(f"{name}.py") for name in COPY_SET}
        self.assertLessEqual(sum(copied.values()), COPY_SET_LINES, copied)
        self.assertLessEqual(copied["common"], HELPER_LINES)

    @unittest.skipUnless(os.path.exists(os.path.join(ROOT, ".git")), "needs the git checkout")
    def test_every_product_and_test_file_stays_within_its_limit(self):
        files = subprocess.run(["git", "ls-files", "*.py", "*.js", "*.html", "*.wat"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.split()
        self.assertGreater(len(files), 40)
        for path in files:
            is_test = path.startswith("tests/") or path == "test_smoke.py"
            with self.subTest(file=path):
                self.assertLessEqual(line_count(path), TEST_LINES if is_test else PRODUCT_LINES)


class ImportTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.imports = {name: imported(path) for name, path in module_files().items()}

    def test_every_import_points_down_the_layers(self):
        for name, targets in self.imports.items():
            for target in targets:
                with self.subTest(module=name, imports=target):
                    self.assertLessEqual(layer(target), layer(name))

    def test_the_scripts_import_only_cli_data_and_model_when_loaded(self):
        for script in ("train", "test"):
            with self.subTest(script=script):
                found = imported(module_files()[script], top_level_only=True)
                self.assertLessEqual(found, {"common", "data", "model"})

    def test_the_copy_set_imports_nothing_outside_itself_when_loaded(self):
        files = module_files()
        for name in COPY_SET:
            with self.subTest(module=name):
                self.assertLessEqual(imported(files[name], top_level_only=True), COPY_SET)

    def test_only_the_tools_that_time_train_py_and_the_tests_import_a_script(self):
        for name, targets in self.imports.items():
            scripts = targets & {"train", "test", "draw"}
            # tools.benchmark and tools.exercises run train.py's own epoch in their process.
            if scripts and name not in ("tools.benchmark", "tools.exercises", "test_smoke"):
                with self.subTest(module=name):
                    self.assertEqual(name.split(".")[0], "tests", sorted(scripts))

    def test_nothing_in_page_imports_draw(self):
        for name, targets in self.imports.items():
            if name.startswith("page"):
                with self.subTest(module=name):
                    self.assertNotIn("draw", targets)

    def test_the_checks_would_catch_a_slip(self):
        source = "import torch\nfrom page.routes import Page\n\ndef f():\n    import draw\n"
        self.assertEqual(imports_in(source), {"page.routes", "draw"})
        self.assertEqual(imports_in(source, top_level_only=True), {"page.routes"})
        self.assertGreater(layer("draw"), layer("page.routes"))  # page/ importing draw fails


if __name__ == "__main__":
    unittest.main()
