// The pooling layers, forward and backward: max pooling (the tutorial's 2 x 2, in kernels.wasm
// where it runs) and average pooling. Part of the exported file's maths (tensors.js says more).
"use strict";
(() => {
const { tensor, written, zeros, outputSide } = maths;
const pooling = {
  max2x2: null,  // kernels.js sets it: 2 x 2 windows, stride 2, in WebAssembly
  // Max pooling's gradient: each output's to the place its maximum came from (none for -1).
  gradient(dx, kept, g) {
    for (let out = 0; out < kept.length; out++) if (kept[out] >= 0) dx[kept[out]] += g[out];
  },
};

function outputSides(x, s) {
  const [, , H, W] = x.shape, [KH, KW] = s.kernel, [SY, SX] = s.stride, [PY, PX] = s.padding;
  const [DY, DX] = s.dilation || [1, 1];
  return [outputSide(H, KH, SY, PY, PY, DY, s.ceil), outputSide(W, KW, SX, PX, PX, DX, s.ceil)];
}

function windows(x, s, visit) {
  // Pooling: each output position's window of the input, clipped to it, for every map.
  const [B, C, H, W] = x.shape, [SY, SX] = s.stride, [PY, PX] = s.padding, [DY, DX] = s.dilation || [1, 1];
  const [OH, OW] = outputSides(x, s);
  for (let map = 0; map < B * C; map++) for (let oy = 0; oy < OH; oy++) for (let ox = 0; ox < OW; ox++) {
    visit(map * H * W, (map * OH + oy) * OW + ox, oy * SY - PY, ox * SX - PX, DY, DX);
  }
  return [B, C, OH, OW];
}

const maxPool2d = {
  forward(x, s) {
    const [B, C, H, W] = x.shape, [OH, OW] = outputSides(x, s), y = written([B, C, OH, OW]);
    // where each maximum came from, for backward
    const kept = y.kept = zeros(y.data.length, Int32Array, false);
    const [KH, KW] = s.kernel, [SY, SX] = s.stride, [PY, PX] = s.padding, [DY, DX] = s.dilation;
    const plain = [KH, KW, SY, SX, DY, DX].join() === "2,2,2,2,1,1" && PY === 0 && PX === 0
      && 2 * OH <= H && 2 * OW <= W;
    if (plain && pooling.max2x2) {  // the tutorial's pooling, in kernels.wasm: the same maxima and places
      pooling.max2x2(y.data, kept, x.data, B * C, H, W, OH, OW);
    } else {
      windows(x, s, (base, out, top, left) => { kept[out] = largestAt(x.data, base, top, left, s, H, W); });
      for (let out = 0; out < kept.length; out++) y.data[out] = kept[out] < 0 ? -Infinity : x.data[kept[out]];
    }
    return y;
  },
  backward(g, x, s, p, y) {
    const dx = tensor(x.shape);
    pooling.gradient(dx.data, y.kept, g.data);
    return dx;
  },
};

function largestAt(values, base, top, left, s, H, W) {
  // Where the largest value of one window is: the first maximum, as PyTorch, or a NaN.
  const [KH, KW] = s.kernel, [DY, DX] = s.dilation;
  let best = -Infinity, where = -1;
  for (let ky = 0; ky < KH; ky++) {
    const iy = top + ky * DY;
    if (iy < 0 || iy >= H) continue;
    for (let kx = 0; kx < KW; kx++) {
      const ix = left + kx * DX, at = base + iy * W + ix;
      if (ix < 0 || ix >= W) continue;
      if (values[at] > best || Number.isNaN(values[at])) { best = values[at]; where = at; }
    }
  }
  return where;
}

function averaged(x, s, visit) {
  // Each output's window clipped to the input, and what PyTorch divides its sum by: the window
  // clipped to the padded input, or to the input alone. Numbers, not arrays: a batch has tens of
  // thousands of windows, and an array for each made average pooling several times slower.
  const [H, W] = x.shape.slice(2), [KH, KW] = s.kernel, [PY, PX] = s.padding;
  return windows(x, s, (base, out, top, left) => {
    const y0 = Math.max(top, 0), y1 = Math.min(top + KH, H);
    const x0 = Math.max(left, 0), x1 = Math.min(left + KW, W);
    const padded = (Math.min(top + KH, H + PY) - top) * (Math.min(left + KW, W + PX) - left);
    visit(base, out, y0, y1, x0, x1, s.divisor || (s.count_include_pad ? padded : (y1 - y0) * (x1 - x0)));
  });
}

const avgPool2d = {
  forward(x, s) {
    const [B, C, , W] = x.shape, [OH, OW] = outputSides(x, s), y = tensor([B, C, OH, OW]);
    averaged(x, s, (base, out, y0, y1, x0, x1, divisor) => {
      let sum = 0;
      for (let iy = y0; iy < y1; iy++) for (let ix = x0; ix < x1; ix++) sum += x.data[base + iy * W + ix];
      y.data[out] = sum / divisor;
    });
    return y;
  },
  backward(g, x, s) {
    const W = x.shape[3], dx = tensor(x.shape);
    averaged(x, s, (base, out, y0, y1, x0, x1, divisor) => {
      const share = g.data[out] / divisor;
      for (let iy = y0; iy < y1; iy++) for (let ix = x0; ix < x1; ix++) dx.data[base + iy * W + ix] += share;
    });
    return dx;
  },
};

Object.assign(maths.operations, { max_pool2d: maxPool2d, avg_pool2d: avgPool2d });
maths.pooling = pooling;  // for kernels.js
})();
