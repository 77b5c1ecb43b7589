// The JavaScript linter's small configuration: eslint:recommended (no unused variables, no
// undeclared globals, ...), no globals declared but the page's three namespaces, and lines of at
// most 110 characters, comments too, as ruff's for Python.
// Usage, from the repository's root (.ci/run runs it; docs/working.md, "The linter"):
//   npm ci --prefix .ci/eslint
//   .ci/eslint/node_modules/.bin/eslint -c .ci/eslint/eslint.config.js --max-warnings 0 .
const js = require("@eslint/js");
const globals = require("globals");

// The namespaces the page's classic scripts share: each is made by the first file of its folder,
// which alone declares it, and read by the others as a global.
const NAMESPACES = { page: "page/scripts/requests.js", offline: "page/offline/checks.js",
                     maths: "page/maths/tensors.js" };
const shared = Object.fromEntries(Object.keys(NAMESPACES).map((name) => [name, "readonly"]));

module.exports = [
  js.configs.recommended,
  { linterOptions: { reportUnusedDisableDirectives: "error" },
    rules: { "max-len": ["error", { code: 110 }] } },
  // Classic scripts that share one global scope: each declares nothing there but its namespace.
  { files: ["page/**/*.js"],
    languageOptions: { sourceType: "script", globals: { ...globals.browser, ...shared } },
    rules: { "no-implicit-globals": ["error", { lexicalBindings: true }] } },
  // The training worker's own loop: a worker's globals, and the maths its blob: URL puts before it.
  { files: ["page/offline/trainer.js"],
    languageOptions: { globals: { ...globals.worker, maths: "readonly" } } },
  ...Object.entries(NAMESPACES).map(([name, file]) => ({ files: [file],
                                                         languageOptions: { globals: { [name]: "off" } } })),
  { files: [".ci/eslint/eslint.config.js"],
    languageOptions: { sourceType: "commonjs", globals: globals.node } },
];
