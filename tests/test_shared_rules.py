"""Tests that every rule the server (Python) and the exported file (JavaScript) share is written once,
in Python, and reaches the file through the export: no message and no number of the shared list is
typed again in a .js file, and what the export sends is what the Python rules say. No browser.

Usage: python -m unittest -v tests.test_shared_rules
"""
import argparse
import ast
import glob
import os
import re
import string
import unittest

import common
import train
from extras import flags, pictures
from page import collect, explain, export, routes
from tests.fixtures import ROOT

SHINGLE = 25  # a message: this many characters or more of one string literal, typed in both languages
JS_FILES = sorted(glob.glob(os.path.join(ROOT, "page", "**", "*.js"), recursive=True))
PY_FILES = sorted(path for path in glob.glob(os.path.join(ROOT, "**", "*.py"), recursive=True)
                  if os.path.relpath(path, ROOT).split(os.sep)[0] not in ("tests", ".ci"))


def read(path):
    with open(path, encoding="utf-8") as file:
        return file.read()


def python_strings(source):
    """Every string constant of Python source but the docstrings, f-strings' constant parts included."""
    tree = ast.parse(source)
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)}
    return [node.value for node in ast.walk(tree) if isinstance(node, ast.Constant)
            and isinstance(node.value, str) and id(node) not in docstrings]


class JavaScript:
    """A small scanner of JavaScript source: its string literals (each template literal's text
    between its ${...} parts) and its numeric literals, comments and regular expressions skipped."""

    # After these (or at the start) a / starts a regular expression, not a division.
    BEFORE_REGEX = set("(,=:[!&|?{};+-*%<>~^") | {"return", "typeof", "case", "of", "in"}

    def __init__(self, source):
        self.source, self.at, self.strings, self.numbers, self.last = source, 0, [], [], ""
        self.scan(closing=None)

    def scan(self, closing):
        """Read code up to the closing brace of a ${...} (closing "}") or the end."""
        depth, text = 0, self.source
        while self.at < len(text):
            char, pair = text[self.at], text[self.at:self.at + 2]
            if pair == "//":
                self.at = text.find("\n", self.at) % (len(text) + 1)
            elif pair == "/*":
                self.at = text.index("*/", self.at) + 2
            elif char in "'\"":
                self.quoted(char)
            elif char == "`":
                self.template()
            elif char == "/" and (self.last in self.BEFORE_REGEX or not self.last):
                self.regex()
            elif char.isdigit() or (char == "." and text[self.at + 1:self.at + 2].isdigit()):
                self.number()
            elif char.isalpha() or char in "_$":
                word = re.match(r"[\w$]+", text[self.at:]).group()
                self.at, self.last = self.at + len(word), word
            elif char == "}" and closing and depth == 0:
                self.at += 1
                return
            else:
                depth += {"{": 1, "}": -1}.get(char, 0)
                self.last = char if not char.isspace() else self.last
                self.at += 1

    def quoted(self, quote):
        match = re.compile(rf"{quote}((?:[^{quote}\\\n]|\\.)*){quote}").match(self.source, self.at)
        self.strings.append(match.group(1))
        self.at, self.last = match.end(), "string"

    def template(self):
        self.at += 1
        piece = ""
        while self.source[self.at] != "`":
            if self.source.startswith("${", self.at):
                self.strings.append(piece)
                piece, self.at, self.last = "", self.at + 2, "{"
                self.scan(closing="}")
            else:
                step = 2 if self.source[self.at] == "\\" else 1
                piece, self.at = piece + self.source[self.at:self.at + step], self.at + step
        self.strings.append(piece)
        self.at, self.last = self.at + 1, "string"

    def regex(self):
        match = re.compile(r"/(?:[^/\\\[\n]|\\.|\[(?:[^\]\\]|\\.)*\])+/[a-z]*").match(self.source, self.at)
        self.at, self.last = match.end(), "regex"

    def number(self):
        match = re.compile(r"0[xX][0-9a-fA-F_]+n?|(?:\d[\d_]*)?\.?\d[\d_]*(?:[eE][+-]?\d+)?n?").match(
            self.source, self.at)
        literal = match.group().replace("_", "")
        if not literal.endswith("n"):
            self.numbers.append((float(int(literal, 16)) if literal[:2].lower() == "0x" else float(literal),
                                 match.start()))
        self.at, self.last = match.end(), "number"


def shared_messages(python_sources, js_sources):
    """(JavaScript text, Python text) for each string of JavaScript that has SHINGLE characters or
    more in common with a Python string."""
    shingles = {}
    for source in python_sources:
        for text in python_strings(source):
            for start in range(len(text) - SHINGLE + 1):
                shingles.setdefault(text[start:start + SHINGLE], text)
    found = []
    for source in js_sources:
        for text in JavaScript(source).strings:
            common_part = next((text[start:start + SHINGLE] for start in range(len(text) - SHINGLE + 1)
                                if text[start:start + SHINGLE] in shingles), None)
            if common_part:
                found.append((text, shingles[common_part]))
    return found


def shared_numbers():
    """{value: where the export sends it}: every number of the rules the file takes from Python."""
    data = export.export_data(routes.Page(routes.load_models([], "cpu"), "cpu"))
    found = {}

    def walk(where, value):
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{where}.{key}", item)
        elif isinstance(value, (list, tuple)):
            for index, item in enumerate(value):
                walk(f"{where}[{index}]", item)
        elif type(value) in (int, float):
            found.setdefault(float(value), where)

    for key in ("limits", "training_run", "attribution_steps", "unsure_below", "ink_range",
                "sprite_columns", "mean", "std"):
        walk(key, data[key])
    return found


# A number typed as a rule: bound to a name (NAME = 100, key: 100, a default argument) but an
# array's length, a slice's end, or a bound given to wholeNumber.
BOUND = re.compile(r"(?:(?<![\w$.])(?!length\b)[A-Za-z_$][\w$]*\s*(?::|(?<![=!<>+\-*/%&|^])=(?![=>]))\s*"
                   r"|\.slice\(0,\s*|wholeNumber\([^()]*,\s*)-?$")


def typed_numbers(source, shared):
    """(value, the line) for each number of shared typed in JavaScript source: anywhere for one
    no program needs for itself (a fraction but a half, or above 1,000), as a rule for the rest
    from 10 on (smaller ones and halves are every program's): the whole value BOUND to a name."""
    found = []
    for value, start in JavaScript(source).numbers:
        if value not in shared:
            continue
        line_start, line_end = source.rfind("\n", 0, start) + 1, source.find("\n", start) % (len(source) + 1)
        after = source[start:line_end]
        whole = re.match(r"[\w.+\-]+\s*(?:[,;})\]]|//|$)", after)
        distinctive = value * 2 != int(value * 2) or value > 1000
        if distinctive or (value >= 10 and whole and BOUND.search(source[line_start:start])):
            found.append((value, source[line_start:line_end].strip()))
    return found


class MessagesTest(unittest.TestCase):
    def test_no_message_is_typed_in_both_a_py_and_a_js_file(self):
        found = shared_messages([read(path) for path in PY_FILES], [read(path) for path in JS_FILES])
        self.assertEqual(found, [])

    def test_each_template_the_file_fills_in_is_one_it_uses_and_formats_in_python(self):
        used = set(re.findall(r'said\("(\w+)"', "".join(read(path) for path in JS_FILES)))
        self.assertEqual(used, set(export.FILE_MESSAGES))
        for key, template in export.FILE_MESSAGES.items():
            with self.subTest(message=key):
                parts = list(string.Formatter().parse(template))
                fields = [name for _, name, _, _ in parts if name]
                self.assertTrue(all(re.fullmatch(r"[a-z]+", name) for name in fields), fields)
                self.assertEqual([spec for _, _, spec, _ in parts if spec], [])  # no {name:spec}
                template.format(**dict.fromkeys(fields, "x"))  # only {name} fields, as said() fills them

    def test_the_server_words_them_from_the_same_templates(self):
        self.assertEqual(routes.MESSAGES["whole_number"].format(name="set", low=0, high=1),
                         "set must be a whole number from 0 to 1")
        with self.assertRaises(routes.BadRequest) as caught:
            routes.whole_number(7, "digit", 0, 5)
        self.assertEqual(str(caught.exception), "digit must be a whole number from 0 to 5")
        self.assertEqual(export.FILE_MESSAGES["no_digit"], pictures.NO_DIGIT)
        self.assertEqual(export.FILE_MESSAGES["folder_full"], collect.FOLDER_FULL)
        self.assertEqual(export.FILE_MESSAGES["no_value"], explain.NO_VALUE)

    def test_the_check_would_catch_a_slip(self):
        python = 'raise BadRequest(400, f"{name} must be a whole number from {low} to {high}")'
        for javascript in ("throw new BadRequest(400, `${key} must be a whole number from ${low} to "
                           "${high}`);", "const message = 'x must be a whole number from ' + low;"):
            with self.subTest(javascript=javascript):
                self.assertEqual(len(shared_messages([python], [javascript])), 1)
        comments = "// must be a whole number from 0\n/* must be a whole number from */ const re = /a'b/;"
        self.assertEqual(shared_messages([python, '"""must be a whole number from 0 to 1"""'],
                                         [comments]), [])


class NumbersTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.shared = shared_numbers()

    def test_the_shared_numbers_are_the_ones_the_issue_names(self):
        for value in (train.DIVERGED_LOSS, 100, 200, pictures.EXTRA_PER_EPOCH, pictures.EXTRA_MOST,
                      routes.SHOWN_EXAMPLES, routes.MAX_POSITION, common.MAX_LR, common.MAX_SEED, 0.01):
            self.assertIn(value, self.shared)

    def test_no_number_of_the_shared_list_is_typed_in_a_js_file(self):
        for path in JS_FILES:
            with self.subTest(file=os.path.relpath(path, ROOT)):
                self.assertEqual(typed_numbers(read(path), self.shared), [])

    def test_the_train_panels_fields_take_theirs_from_the_file(self):
        fields = re.findall(r'<input id="train-[a-z]+" type="number"[^>]*>', read(routes.PAGE))
        self.assertEqual(len(fields), 4)
        self.assertEqual([field for field in fields if re.search(r"\b(value|max)=", field)], [])

    def test_the_check_would_catch_a_slip(self):
        slips = ["const LOG_INTERVAL = 100, REDRAW_INTERVAL = 200, DIVERGED_LOSS = 100;",
                 "const EXTRA_PER_EPOCH = 8000, EXTRA_MOST = 30;",
                 "const shown = indices.sort(order).slice(0, 60);",
                 "wholeNumber(request, key, 0, 10000);",
                 "const RUN_DEFAULTS = { model: 0, epochs: 3, batchSize: 64, lr: 0.01, seed: 0 };",
                 "if (lr > 1000000) throw new Error();"]
        for slip in slips:
            with self.subTest(slip=slip):
                self.assertNotEqual(typed_numbers(slip, self.shared), [])
        fine = ("const members = Array.from({ length: 100 }, () => []); const percent = 100 * p;"
                "// LOG_INTERVAL = 100\nconst text = '= 100'; const seconds = (now - start) / 1000;")
        self.assertEqual(typed_numbers(fine, self.shared), [])


class ExportTest(unittest.TestCase):
    """What the export sends is what the Python rules say."""

    def test_a_run_in_the_file_takes_train_pys_defaults_interval_and_divergence(self):
        parser, run = train.build_parser(), export.tutorial_run()
        self.assertEqual(run["defaults"], {"epochs": parser.get_default("epochs"),
                                           "batchSize": parser.get_default("batch_size"),
                                           "lr": parser.get_default("lr"),
                                           "weightDecay": train.TUTORIAL_VALUES["weight_decay"],
                                           "seed": parser.get_default("seed")})
        self.assertEqual((run["log_interval"], run["diverged_loss"]),
                         (parser.get_default("log_interval"), train.DIVERGED_LOSS))
        self.assertEqual((run["extra_per_epoch"], run["extra_most"]),
                         (pictures.EXTRA_PER_EPOCH, pictures.EXTRA_MOST))

    def test_the_files_training_bounds_are_train_pys(self):
        bounds = export.FILE_TRAINING
        self.assertEqual((bounds["lr"], bounds["weightDecay"], bounds["seed"]),
                         (common.MAX_LR, flags.MAX_WEIGHT_DECAY, 2**32 - 1))
        self.assertEqual(common.learning_rate("1e6"), 1e6)
        self.assertEqual(common.seed_value(str(2**32 - 1)), 2**32 - 1)
        for parse, text in ((common.learning_rate, "1.000001e6"), (common.seed_value, str(2**32)),
                            (flags.weight_decay, "1.01")):
            with self.subTest(text=text), self.assertRaises(argparse.ArgumentTypeError):
                parse(text)

    def test_the_explorers_and_the_step_views_bounds_are_the_servers(self):
        limits = shared_numbers()
        for value in (routes.SHOWN_EXAMPLES, routes.MAX_POSITION, explain.SHOWN_CONTRIBUTIONS):
            self.assertIn(value, limits)
        self.assertEqual(routes.Explorer.examples.__defaults__[-1], routes.SHOWN_EXAMPLES)
        self.assertEqual(explain.linear_step.__defaults__[-1], explain.SHOWN_CONTRIBUTIONS)


if __name__ == "__main__":
    unittest.main()
