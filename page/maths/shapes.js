// The layers that change only a tensor's shape, or add: flatten, view (reshape), x + y and size(),
// forward and backward. Part of the exported file's maths (tensors.js says more).
"use strict";
(() => {
const { tensor } = maths;

function reshape(x, shape) {
  // view/reshape: -1 takes what is left; the values stay as they are.
  const known = shape.reduce((a, b) => (b === -1 ? a : a * b), 1);
  return tensor(shape.map((size) => (size === -1 ? x.data.length / known : size)), x.data);
}

const flatten = {
  forward(x, s) {
    const end = s.end < 0 ? x.shape.length + s.end : s.end;
    const middle = x.shape.slice(s.start, end + 1).reduce((a, b) => a * b, 1);
    return tensor([...x.shape.slice(0, s.start), middle, ...x.shape.slice(end + 1)], x.data);
  },
  backward: (g, x) => tensor(x.shape, g.data),
};

const add = {  // x + y of one shape (a residual connection), or x + a number
  forward(x, s, p, other) {
    const value = typeof other === "number" ? () => other : (i) => other.data[i];
    return tensor(x.shape, x.data.map((v, i) => v + value(i)));
  },
  backward: (g) => g,
  both: true,  // the gradient goes to both inputs unchanged
};

Object.assign(maths.operations, {
  flatten,
  view: { forward: (x, s, p, shape) => reshape(x, shape), backward: (g, x) => tensor(x.shape, g.data) },
  add,
  size: { forward: (x, s, p, dim) => (dim === undefined ? x.shape.slice() : x.shape.at(dim)) },
});
})();
