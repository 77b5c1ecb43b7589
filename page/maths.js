// The network's maths in the exported page (python draw.py model.pt --export page.html): each
// operation's forward and backward, the graph walked both ways, and training (cross-entropy, Adam).
// The page's own script (offline.js) and the training worker (trainer.js) both run it.
"use strict";
const maths = (() => {
const f32 = Math.fround;

// ---- Tensors: {shape, data}, the batch first, values in a Float32Array as PyTorch keeps them.
function tensor(shape, data = new Float32Array(shape.reduce((a, b) => a * b, 1))) { return { shape, data }; }

function normalised(mean, std) {
  // The network's input for each grey level 0 ... 255: (level / 255 - mean) / std, in float32
  // steps as the tutorial's ToTensor() and Normalize((mean,), (std,)) compute it.
  return Float32Array.from({ length: 256 }, (_, level) => f32(f32(f32(level / 255) - mean) / std));
}

// ---- Each operation's forward and backward, micrograd's way: backward takes the gradient of
// the output and returns the gradient of the (first) input. Shapes are (B, C, H, W) or (B, N).
function outputSide(size, kernel, stride, before, after, dilation, ceil) {
  const span = (size + before + after - dilation * (kernel - 1) - 1) / stride;
  let side = (ceil ? Math.ceil(span) : Math.floor(span)) + 1;
  // PyTorch: with ceil_mode, the last window must start inside the input or the left padding.
  if (ceil && (side - 1) * stride >= size + before) side -= 1;
  return side;
}

function convolutionShape(x, s, weight) {
  const [B, C, H, W] = x.shape, [O, perGroup, KH, KW] = weight.shape;
  const [[PT, PB], [PL, PR]] = s.padding;
  const OH = outputSide(H, KH, s.stride[0], PT, PB, s.dilation[0]), OW = outputSide(W, KW, s.stride[1], PL, PR, s.dilation[1]);
  return { B, C, H, W, O, perGroup, KH, KW, OH, OW, K: perGroup * KH * KW, outputsPerGroup: O / s.groups };
}

// ---- Matrix products, of which convolutions and linear layers are made: C[M x N] = (C if
// accumulate, else 0) + A B (nn) or + A B^T (nt), every matrix row-major in a Float32Array.
const matmul = {
  nn(C, A, B, M, K, N, accumulate) {
    for (let m = 0; m < M; m++) {
      const row = C.subarray(m * N, (m + 1) * N);
      if (!accumulate) row.fill(0);
      for (let k = 0; k < K; k++) {
        const a = A[m * K + k];
        for (let n = 0, b = k * N; n < N; n++, b++) row[n] += a * B[b];
      }
    }
  },
  nt(C, A, B, M, K, N, accumulate) {
    for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) {
      let sum = 0;
      for (let k = 0, a = m * K, b = n * K; k < K; k++, a++, b++) sum += A[a] * B[b];
      C[m * N + n] = (accumulate ? C[m * N + n] : 0) + sum;
    }
  },
};

function transposed(values, rows, columns) {
  const out = new Float32Array(rows * columns);
  for (let r = 0; r < rows; r++) for (let c = 0; c < columns; c++) out[c * rows + r] = values[r * columns + c];
  return out;
}

const patchCache = new WeakMap();  // per convolution's settings: its patches, by input shape and group
function patchesOf(s, t, group) {
  // im2col's map: indices[k * P + position] is where, in one image of the input, the value is
  // that kernel entry k (map, row, column) multiplies at output position oy * OW + ox; -1 where
  // the kernel overhangs the input (the padding's zeros). runs[k * OH + oy]: where that row's
  // OW values start in the input if they follow one another there (stride 1, no padding in the
  // way), else -1; kernels.wasm copies such rows whole.
  if (!patchCache.has(s)) patchCache.set(s, new Map());
  const key = `${t.C},${t.H},${t.W},${group}`, cached = patchCache.get(s);
  if (cached.has(key)) return cached.get(key);
  const P = t.OH * t.OW, indices = new Int32Array(t.K * P), [SY, SX] = s.stride, [[PT], [PL]] = s.padding, [DY, DX] = s.dilation;
  for (let c = 0, k = 0; c < t.perGroup; c++) for (let ky = 0; ky < t.KH; ky++) for (let kx = 0; kx < t.KW; kx++, k++) {
    for (let oy = 0; oy < t.OH; oy++) for (let ox = 0; ox < t.OW; ox++) {
      const iy = oy * SY - PT + ky * DY, ix = ox * SX - PL + kx * DX;
      indices[k * P + oy * t.OW + ox] = iy >= 0 && iy < t.H && ix >= 0 && ix < t.W ? ((group * t.perGroup + c) * t.H + iy) * t.W + ix : -1;
    }
  }
  const runs = Int32Array.from({ length: t.K * t.OH }, (_, row) => {
    const first = indices[row * t.OW];
    for (let ox = 0; ox < t.OW; ox++) if (first < 0 || indices[row * t.OW + ox] !== first + ox) return -1;
    return first;
  });
  cached.set(key, { indices, runs, width: t.OW });
  return cached.get(key);
}

function gather(columns, image, indices) {  // im2col of one image: its patches, (K, P)
  for (let i = 0; i < indices.length; i++) columns[i] = indices[i] < 0 ? 0 : image[indices[i]];
}

const convolution = {
  // A convolution's three passes over B images, one image at a time: its patches as a matrix
  // (K, P) and the kernels (O, K) of one group. x holds B images of xImage floats; y and g hold
  // B images of yImage floats, the group's O maps first in each. useKernels swaps in kernels.wasm.
  forward(y, x, weight, bias, patches, B, xImage, yImage, O, K, P) {
    const columns = new Float32Array(K * P);
    for (let b = 0; b < B; b++) {
      gather(columns, x.subarray(b * xImage), patches.indices);
      const out = y.subarray(b * yImage, b * yImage + O * P);
      for (let o = 0; o < O; o++) out.fill(bias[o], o * P, (o + 1) * P);
      matmul.nn(out, weight, columns, O, K, P, true);  // (O, K) x (K, P), added to the bias
    }
  },
  // d weight += g (O, P) x patches^T (P, K), over the images.
  weightGradient(weightGradient, g, x, patches, B, xImage, yImage, O, K, P) {
    const columns = new Float32Array(K * P);
    for (let b = 0; b < B; b++) {
      gather(columns, x.subarray(b * xImage), patches.indices);
      matmul.nt(weightGradient, g.subarray(b * yImage), columns, O, P, K, true);
    }
  },
  // The patches' gradients, kernels^T (K, O) x g (O, P); each input value collects those of
  // every patch it is in (col2im).
  inputGradient(dx, g, weightT, patches, B, xImage, yImage, O, K, P) {
    const columns = new Float32Array(K * P), indices = patches.indices;
    for (let b = 0; b < B; b++) {
      matmul.nn(columns, weightT, g.subarray(b * yImage), K, O, P, false);
      const image = dx.subarray(b * xImage);
      for (let i = 0; i < indices.length; i++) if (indices[i] >= 0) image[indices[i]] += columns[i];
    }
  },
};

function mapSums(g) {
  // Each map's (or unit's) sum over the batch and its positions: the bias gradient of a
  // convolution (B, C, H, W) or a linear layer (B, C). Added up in float64: a bias before a batch
  // norm has a gradient of zero, which float32 sums would turn into noise whose sign Adam follows.
  const [B, C] = g.shape, area = g.data.length / B / C, sums = new Float64Array(C), values = g.data;
  for (let b = 0; b < B; b++) for (let c = 0; c < C; c++) {
    let sum = 0;
    for (let i = (b * C + c) * area, end = i + area; i < end; i++) sum += values[i];
    sums[c] += sum;
  }
  return Float32Array.from(sums);
}

const conv2d = {
  // Each output value is the dot product of its kernel with its patch; each group of maps is
  // its own convolution (convolution.forward and the rest) of its share of the input maps.
  groups(x, s, p, visit) {
    const t = convolutionShape(x, s, p.weight), G = t.outputsPerGroup, P = t.OH * t.OW;
    for (let group = 0; group < s.groups; group++) {
      visit({ group, weight: p.weight.data.subarray(group * G * t.K, (group + 1) * G * t.K), patches: patchesOf(s, t, group),
              maps: group * G * P, sizes: [t.B, t.C * t.H * t.W, t.O * P, G, t.K, P] });
    }
    return t;
  },
  forward(x, s, p) {
    const t = convolutionShape(x, s, p.weight), y = tensor([t.B, t.O, t.OH, t.OW]), G = t.outputsPerGroup;
    conv2d.groups(x, s, p, ({ group, weight, patches, maps, sizes }) => {
      const bias = p.bias ? p.bias.data.subarray(group * G, (group + 1) * G) : new Float32Array(G);
      convolution.forward(y.data.subarray(maps), x.data, weight, bias, patches, ...sizes);
    });
    return y;
  },
  backward(g, x, s, p) {
    const dx = tensor(x.shape);
    conv2d.groups(x, s, p, ({ weight, patches, maps, sizes }) => {
      const [, , , G, K] = sizes;
      convolution.inputGradient(dx.data, g.data.subarray(maps), transposed(weight, G, K), patches, ...sizes);
    });
    return dx;
  },
  paramsBackward(g, x, s, p) {
    const weight = new Float32Array(p.weight.data.length);
    conv2d.groups(x, s, p, ({ group, patches, maps, sizes }) => {
      const [, , , G, K] = sizes;
      convolution.weightGradient(weight.subarray(group * G * K), g.data.subarray(maps), x.data, patches, ...sizes);
    });
    return { weight: tensor(p.weight.shape, weight), bias: p.bias && tensor(p.bias.shape, mapSums(g)) };
  },
};

const pooling = { max2x2: null };  // useKernels sets it: 2 x 2 windows, stride 2, in WebAssembly

const plainLoops = { matmul: { ...matmul }, convolution: { ...convolution }, pooling: { ...pooling } };
let kernelsUsed = null;  // the bytes of kernels.wasm while its kernels run, else null

function kernelsInUse() { return kernelsUsed; }  // what a training worker is started with, to compute as the page does

function useKernels(bytes) {
  // From now on the products, convolutions and the tutorial's pooling run in kernels.wasm (the
  // same sums, four floats a step, WebAssembly SIMD) if this browser can; returns whether they
  // do. useKernels(null) goes back to the plain loops (the tests compare both with PyTorch).
  for (const [target, plain] of [[matmul, plainLoops.matmul], [convolution, plainLoops.convolution], [pooling, plainLoops.pooling]]) {
    Object.assign(target, plain);
  }
  kernelsUsed = null;
  if (bytes === null || typeof WebAssembly !== "object" || !WebAssembly.validate(bytes)) return false;
  const { exports } = new WebAssembly.Instance(new WebAssembly.Module(bytes)), call = caller(exports.memory);
  const e = exports;
  matmul.nn = (C, A, B, M, K, N, accumulate) => call(e.matmul_nn, [[C, M * N, accumulate ? "in out" : "out"],
    [A, M * K, "in"], [B, K * N, "in"]], M, K, N, accumulate ? 1 : 0);
  matmul.nt = (C, A, B, M, K, N, accumulate) => call(e.matmul_nt, [[C, M * N, accumulate ? "in out" : "out"],
    [A, M * K, "in"], [B, N * K, "in"]], M, K, N, accumulate ? 1 : 0);
  const images = (B, size, last) => (B - 1) * size + last;  // floats from the first image's start to the last's end
  convolution.forward = (y, x, weight, bias, patches, B, xImage, yImage, O, K, P) => call(e.conv_forward,
    [[y, images(B, yImage, O * P), "in out"], [x, B * xImage, "in"], [weight, O * K, "in"], [bias, O, "in"],
     [patches.indices, K * P, "in"], [patches.runs, K * P / patches.width, "in"], [null, K * P]],
    B, xImage, yImage, O, K, P, patches.width);
  convolution.weightGradient = (weightGradient, g, x, patches, B, xImage, yImage, O, K, P) => call(e.conv_weight_gradient,
    [[weightGradient, O * K, "in out"], [g, images(B, yImage, O * P), "in"], [x, B * xImage, "in"],
     [patches.indices, K * P, "in"], [patches.runs, K * P / patches.width, "in"], [null, K * P]],
    B, xImage, yImage, O, K, P, patches.width);
  convolution.inputGradient = (dx, g, weightT, patches, B, xImage, yImage, O, K, P) => call(e.conv_input_gradient,
    [[dx, B * xImage, "in out"], [g, images(B, yImage, O * P), "in"], [weightT, K * O, "in"], [patches.indices, K * P, "in"],
     [null, K * P]], B, xImage, yImage, O, K, P);
  pooling.max2x2 = (y, kept, x, maps, H, W, OH, OW) => call(e.max_pool_2x2, [[y, maps * OH * OW, "out"],
    [kept, maps * OH * OW, "out"], [x, maps * H * W, "in"]], maps, H, W, OH, OW);
  kernelsUsed = bytes;
  return true;
}

function caller(memory) {
  // call(kernel, [[array, size, "in" | "out" | "in out"], ...], ...numbers): lays each array's
  // first size values out in memory one after another (null: room only), runs the kernel on
  // their byte offsets and the numbers, and copies back those marked "out".
  return (kernel, arrays, ...numbers) => {
    let end = 0;
    const offsets = arrays.map(([, size]) => { const at = end; end += Math.ceil(size / 4) * 4; return at; });  // 16-byte aligned
    if (memory.buffer.byteLength < 4 * end) memory.grow(Math.ceil((4 * end - memory.buffer.byteLength) / 65536));
    const floats = new Float32Array(memory.buffer), whole = new Int32Array(memory.buffer);
    const view = (array) => (array instanceof Int32Array ? whole : floats);  // indices stay whole numbers
    arrays.forEach(([array, size, how = ""], k) => { if (how.includes("in")) view(array).set(array.subarray(0, size), offsets[k]); });
    kernel(...offsets.map((offset) => 4 * offset), ...numbers);
    arrays.forEach(([array, size, how = ""], k) => {
      if (how.includes("out")) array.set(view(array).subarray(offsets[k], offsets[k] + size));
    });
  };
}

function windows(x, s, visit) {
  // Pooling: each output position's window of the input, clipped to it, for every map.
  const [B, C, H, W] = x.shape, [KH, KW] = s.kernel, [SY, SX] = s.stride, [PY, PX] = s.padding;
  const [DY, DX] = s.dilation || [1, 1];
  const OH = outputSide(H, KH, SY, PY, PY, DY, s.ceil), OW = outputSide(W, KW, SX, PX, PX, DX, s.ceil);
  for (let map = 0; map < B * C; map++) for (let oy = 0; oy < OH; oy++) for (let ox = 0; ox < OW; ox++) {
    visit(map * H * W, (map * OH + oy) * OW + ox, oy * SY - PY, ox * SX - PX, DY, DX);
  }
  return [B, C, OH, OW];
}

const maxPool2d = {
  forward(x, s) {
    const [B, C, H, W] = x.shape, [KH, KW] = s.kernel, [SY, SX] = s.stride, [PY, PX] = s.padding, [DY, DX] = s.dilation;
    const OH = outputSide(H, KH, SY, PY, PY, DY, s.ceil), OW = outputSide(W, KW, SX, PX, PX, DX, s.ceil);
    const y = tensor([B, C, OH, OW]), values = x.data, largest = y.data;
    const kept = y.kept = new Int32Array(y.data.length);  // where each maximum came from, for backward
    const plain = [KH, KW, SY, SX, DY, DX].join() === "2,2,2,2,1,1" && PY === 0 && PX === 0 && 2 * OH <= H && 2 * OW <= W;
    if (plain && pooling.max2x2) {  // the tutorial's pooling, in kernels.wasm: the same maxima and places
      pooling.max2x2(largest, kept, values, B * C, H, W, OH, OW);
      return y;
    }
    for (let map = 0, out = 0; map < B * C; map++) for (let oy = 0; oy < OH; oy++) for (let ox = 0; ox < OW; ox++, out++) {
      let best = -Infinity, where = -1;
      for (let ky = 0; ky < KH; ky++) {
        const iy = oy * SY - PY + ky * DY;
        if (iy < 0 || iy >= H) continue;
        for (let kx = 0; kx < KW; kx++) {
          const ix = ox * SX - PX + kx * DX, at = (map * H + iy) * W + ix;
          if (ix < 0 || ix >= W) continue;
          if (values[at] > best || Number.isNaN(values[at])) { best = values[at]; where = at; }  // the first maximum, as PyTorch
        }
      }
      largest[out] = best;
      kept[out] = where;
    }
    return y;
  },
  backward(g, x, s, p, y) {
    const dx = tensor(x.shape), kept = y.kept, gradients = g.data, to = dx.data;
    for (let out = 0; out < kept.length; out++) to[kept[out]] += gradients[out];
    return dx;
  },
};

const avgPool2d = {
  divisors(x, s) {
    const [H, W] = x.shape.slice(2), [KH, KW] = s.kernel, [PY, PX] = s.padding, divisors = [], windowsOf = [];
    const shape = windows(x, s, (base, out, top, left) => {
      // PyTorch divides by the window clipped to the padded input, or to the input alone.
      const y0 = Math.max(top, 0), y1 = Math.min(top + KH, H), x0 = Math.max(left, 0), x1 = Math.min(left + KW, W);
      const padded = (Math.min(top + KH, H + PY) - top) * (Math.min(left + KW, W + PX) - left);
      divisors[out] = s.divisor || (s.count_include_pad ? padded : (y1 - y0) * (x1 - x0));
      windowsOf[out] = [base, y0, y1, x0, x1];
    });
    return [shape, divisors, windowsOf];
  },
  forward(x, s) {
    const [shape, divisors, windowsOf] = avgPool2d.divisors(x, s), W = x.shape[3], y = tensor(shape);
    windowsOf.forEach(([base, y0, y1, x0, x1], out) => {
      let sum = 0;
      for (let iy = y0; iy < y1; iy++) for (let ix = x0; ix < x1; ix++) sum += x.data[base + iy * W + ix];
      y.data[out] = sum / divisors[out];
    });
    return y;
  },
  backward(g, x, s) {
    const [, divisors, windowsOf] = avgPool2d.divisors(x, s), W = x.shape[3], dx = tensor(x.shape);
    windowsOf.forEach(([base, y0, y1, x0, x1], out) => {
      for (let iy = y0; iy < y1; iy++) {
        for (let ix = x0; ix < x1; ix++) dx.data[base + iy * W + ix] += g.data[out] / divisors[out];
      }
    });
    return dx;
  },
};

const linear = {
  // y = x W^T + b, a product (B, I) x (I, O); dx = g W; d weight = g^T x; d bias = the sums of g.
  forward(x, s, p) {
    const [O, I] = p.weight.shape, B = x.data.length / I, y = tensor([B, O]);
    matmul.nt(y.data, x.data, p.weight.data, B, I, O, false);
    if (p.bias) for (let b = 0; b < B; b++) for (let o = 0; o < O; o++) y.data[b * O + o] += p.bias.data[o];
    return y;
  },
  backward(g, x, s, p) {
    const [O, I] = p.weight.shape, B = x.data.length / I, dx = tensor(x.shape);
    matmul.nn(dx.data, g.data, p.weight.data, B, O, I, false);
    return dx;
  },
  paramsBackward(g, x, s, p) {
    const [O, I] = p.weight.shape, B = x.data.length / I, weight = new Float32Array(O * I);
    matmul.nn(weight, transposed(g.data, B, O), x.data, O, B, I, false);
    return { weight: tensor(p.weight.shape, weight), bias: p.bias && tensor(p.bias.shape, mapSums(g)) };
  },
};

function elementwise(value, slope) {
  // value(x) and its derivative slope(x, y), applied to every element.
  return {
    forward(x, s) {
      const y = tensor(x.shape);
      for (let i = 0; i < y.data.length; i++) y.data[i] = value(x.data[i], s);
      return y;
    },
    backward(g, x, s, p, y) {
      const dx = tensor(x.shape);
      for (let i = 0; i < dx.data.length; i++) dx.data[i] = g.data[i] * slope(x.data[i], y.data[i], s);
      return dx;
    },
  };
}

const batchNorm = {
  // Eval mode, as PyTorch's CPU kernel computes it: x * (weight / sqrt(var + eps)) + (bias - mean * that).
  scales(s, p) {
    const scale = p.running_var.data.map((v, c) => (p.weight ? p.weight.data[c] : 1) / Math.sqrt(v + s.eps));
    const shift = scale.map((a, c) => (p.bias ? p.bias.data[c] : 0) - p.running_mean.data[c] * a);
    return [scale, shift];
  },
  forward(x, s, p) {
    const [scale, shift] = batchNorm.scales(s, p), [, C] = x.shape, area = x.data.length / x.shape[0] / C;
    return tensor(x.shape, x.data.map((v, i) => v * scale[Math.floor(i / area) % C] + shift[Math.floor(i / area) % C]));
  },
  backward(g, x, s, p) {
    const [scale] = batchNorm.scales(s, p), [, C] = x.shape, area = x.data.length / x.shape[0] / C;
    return tensor(x.shape, g.data.map((d, i) => d * scale[Math.floor(i / area) % C]));
  },
};

function lines(x, dim) {
  // The positions in x.data of each line of values along dimension dim, which a softmax normalises.
  const size = x.shape[dim], inner = x.shape.slice(dim + 1).reduce((a, b) => a * b, 1), found = [];
  for (let outer = 0; outer < x.data.length / (size * inner); outer++) {
    for (let i = 0; i < inner; i++) found.push(Array.from({ length: size }, (_, k) => (outer * size + k) * inner + i));
  }
  return found;
}

function alongLines(normalise, gradient) {
  // softmax or log_softmax over dimension s.dim: normalise(line of x) gives the line of y, and
  // gradient(line of g, line of y) the line of dx.
  const each = (x, dim, compute) => {
    const out = tensor(x.shape);
    for (const line of lines(x, dim)) compute(line).forEach((v, k) => { out.data[line[k]] = v; });
    return out;
  };
  const values = (t, line) => line.map((i) => t.data[i]);
  return {
    forward: (x, s) => each(x, s.dim, (line) => normalise(values(x, line))),
    backward: (g, x, s, p, y) => each(x, s.dim, (line) => gradient(values(g, line), values(y, line))),
  };
}

function reshape(x, shape) {
  // view/reshape: -1 takes what is left; the values stay as they are.
  const known = shape.reduce((a, b) => (b === -1 ? a : a * b), 1);
  return tensor(shape.map((size) => (size === -1 ? x.data.length / known : size)), x.data);
}

const OPERATIONS = {
  conv2d, max_pool2d: maxPool2d, avg_pool2d: avgPool2d, linear, batch_norm: batchNorm,
  relu: {  // written out: the commonest operation, the pixels picture runs it 64 times and training runs it most
    // Written without an if: half the values are negative at random, and a processor that guesses
    // which way each if goes guesses wrong half the time, which costs more than the arithmetic.
    forward(x) {
      const y = tensor(x.shape), values = x.data, out = y.data;
      for (let i = 0; i < out.length; i++) out[i] = (values[i] + Math.abs(values[i])) * 0.5;  // v if v > 0, else 0
      return y;
    },
    backward(g, x) {
      const dx = tensor(x.shape), values = x.data, gradients = g.data, out = dx.data;
      for (let i = 0; i < out.length; i++) out[i] = gradients[i] * (values[i] > 0);  // true is 1, false 0
      return dx;
    },
  },
  leaky_relu: elementwise((v, s) => (v > 0 ? v : v * s.slope), (v, y, s) => (v > 0 ? 1 : s.slope)),
  tanh: elementwise(Math.tanh, (v, y) => 1 - y * y),
  sigmoid: elementwise((v) => 1 / (1 + Math.exp(-v)), (v, y) => y * (1 - y)),
  identity: { forward: (x) => x, backward: (g) => g },  // dropout in eval mode
  // Both subtract the line's largest value before exp (in softmax and logSoftmax), so that no
  // exp overflows. d softmax: y (g - sum(g y)); d log_softmax: g - exp(y) sum(g).
  softmax: alongLines(softmax, (g, y) => {
    const total = g.reduce((a, d, k) => a + d * y[k], 0);
    return y.map((v, k) => v * (g[k] - total));
  }),
  log_softmax: alongLines(logSoftmax, (g, y) => {
    const total = g.reduce((a, d) => a + d, 0);
    return g.map((d, k) => d - Math.exp(y[k]) * total);
  }),
  flatten: {
    forward(x, s) {
      const end = s.end < 0 ? x.shape.length + s.end : s.end;
      const middle = x.shape.slice(s.start, end + 1).reduce((a, b) => a * b, 1);
      return tensor([...x.shape.slice(0, s.start), middle, ...x.shape.slice(end + 1)], x.data);
    },
    backward: (g, x) => tensor(x.shape, g.data),
  },
  view: { forward: (x, s, p, shape) => reshape(x, shape), backward: (g, x) => tensor(x.shape, g.data) },
  add: {  // x + y of one shape (a residual connection), or x + a number
    forward: (x, s, p, other) => tensor(x.shape, x.data.map((v, i) => v + (typeof other === "number" ? other : other.data[i]))),
    backward: (g) => g,
    both: true,  // the gradient goes to both inputs unchanged
  },
  size: { forward: (x, s, p, dim) => (dim === undefined ? x.shape.slice() : x.shape.at(dim)) },
};


function argumentValue(argument, outputs) {
  if (Array.isArray(argument)) return argument.map((item) => argumentValue(item, outputs));
  return argument !== null && typeof argument === "object" ? outputs[argument.node] : argument;
}

function paramsOf(node, weights) {
  return Object.fromEntries(Object.entries(node.params || {}).map(([name, key]) => [name, weights[key]]));
}

function forward(network, weights, input, operationOf) {
  // input: (B, 1, 28, 28); returns every node's output by name, each computed by operationOf(node).
  const outputs = {};
  for (const node of network.graph) {
    if (node.op === "input") { outputs[node.name] = input; continue; }
    const [first, ...rest] = node.args.map((argument) => argumentValue(argument, outputs));
    outputs[node.name] = operationOf(node).forward(first, node.settings || {}, paramsOf(node, weights), ...rest);
  }
  return outputs;
}

function addGradient(gradients, name, gradient) {
  // A value read twice (a module called twice, x + y) gets the sum of both gradients.
  if (!gradients[name]) gradients[name] = tensor(gradient.shape, Float32Array.from(gradient.data));
  else gradient.data.forEach((d, i) => { gradients[name].data[i] += d; });
}

function backward(network, weights, outputs, outputGradient, operationOf, { input = true, visit } = {}) {
  // Backward through the graph from the logits' gradient (tensor arguments only); returns each
  // node's gradient by name, the image's too unless input is false. visit(node, operation,
  // gradient, x, settings, params) sees each node on the way, for its parameters' gradients.
  const gradients = { [network.output]: outputGradient }, image = network.graph[0].name;
  for (const node of [...network.graph].reverse()) {
    const gradient = gradients[node.name];
    if (!gradient || node.op === "input" || node.op === "size") continue;
    const operation = operationOf(node), [first, ...rest] = node.args, p = paramsOf(node, weights);
    const x = outputs[first.node], settings = node.settings || {};
    if (visit) visit(node, operation, gradient, x, settings, p);
    if (input || first.node !== image) {
      addGradient(gradients, first.node, operation.backward(gradient, x, settings, p, outputs[node.name]));
    }
    if (operation.both && rest[0] && typeof rest[0] === "object") addGradient(gradients, rest[0].node, gradient);
  }
  return gradients;
}

const evalOperation = (node) => OPERATIONS[node.op];

function logSoftmax(row) {
  const top = Math.max(...row), total = Math.log(row.reduce((sum, v) => sum + Math.exp(v - top), 0));
  return Array.from(row, (v) => v - top - total);
}

function softmax(row) {
  const top = Math.max(...row), exps = Array.from(row, (v) => Math.exp(v - top)), total = exps.reduce((a, b) => a + b, 0);
  return exps.map((e) => e / total);
}


// ---- Training: the same maths as PyTorch's train() mode, one batch at a time. An operation with
// parameters has a paramsBackward beside its backward (the gradients of its weight and bias,
// micrograd's way); batch norm and dropout get their training-mode forms here; then cross-entropy,
// and Adam and AdamW as torch.optim computes them.
const batchNormTraining = {
  // train() mode, as torch.nn.BatchNorm2d: each map normalised with its batch's mean and biased
  // variance (over images, rows and columns); the running averages move towards the batch's with
  // the module's momentum, the variance's unbiased (n / (n - 1)), once per forward.
  forward(x, s, p) {
    const [B, C] = x.shape, area = x.data.length / B / C, n = B * area, y = tensor(x.shape);
    const mean = new Float64Array(C), variance = new Float64Array(C), invstd = new Float64Array(C);
    const eachValue = (visit) => {
      for (let b = 0; b < B; b++) for (let c = 0; c < C; c++) for (let i = (b * C + c) * area, end = i + area; i < end; i++) visit(c, i);
    };
    eachValue((c, i) => { mean[c] += x.data[i]; });
    mean.forEach((sum, c) => { mean[c] = sum / n; });
    eachValue((c, i) => { variance[c] += (x.data[i] - mean[c]) ** 2; });
    variance.forEach((sum, c) => { variance[c] = sum / n; invstd[c] = 1 / Math.sqrt(variance[c] + s.eps); });
    eachValue((c, i) => {
      y.data[i] = (x.data[i] - mean[c]) * invstd[c] * (p.weight ? p.weight.data[c] : 1) + (p.bias ? p.bias.data[c] : 0);
    });
    for (let c = 0; c < C; c++) {
      p.running_mean.data[c] = (1 - s.momentum) * p.running_mean.data[c] + s.momentum * mean[c];
      p.running_var.data[c] = (1 - s.momentum) * p.running_var.data[c] + s.momentum * variance[c] * n / (n - 1);
    }
    y.saved = { mean, invstd, area, n };
    return y;
  },
  sums(g, x, y) {
    // Per map: the sum of the gradients, and of the gradients times the normalised input.
    const [B, C] = x.shape, { mean, invstd, area } = y.saved, total = new Float64Array(C), dotted = new Float64Array(C);
    for (let b = 0; b < B; b++) for (let c = 0; c < C; c++) for (let i = (b * C + c) * area, end = i + area; i < end; i++) {
      total[c] += g.data[i];
      dotted[c] += g.data[i] * (x.data[i] - mean[c]) * invstd[c];
    }
    return [total, dotted];
  },
  // dx = weight * invstd / n * (n g - sum(g) - x̂ sum(g x̂)): the mean and variance depend on x too.
  backward(g, x, s, p, y) {
    const [B, C] = x.shape, { mean, invstd, area, n } = y.saved, [total, dotted] = batchNormTraining.sums(g, x, y), dx = tensor(x.shape);
    for (let b = 0; b < B; b++) for (let c = 0; c < C; c++) {
      const scale = (p.weight ? p.weight.data[c] : 1) * invstd[c] / n;
      for (let i = (b * C + c) * area, end = i + area; i < end; i++) {
        dx.data[i] = scale * (n * g.data[i] - total[c] - (x.data[i] - mean[c]) * invstd[c] * dotted[c]);
      }
    }
    return dx;
  },
  paramsBackward(g, x, s, p, y) {
    const [total, dotted] = batchNormTraining.sums(g, x, y);
    return { weight: p.weight && tensor(p.weight.shape, Float32Array.from(dotted)), bias: p.bias && tensor(p.bias.shape, Float32Array.from(total)) };
  },
};

const dropping = (random) => ({
  // Dropout in training: each value kept with probability 1 - p and scaled by 1 / (1 - p), as
  // F.dropout; the mask is kept for backward. random() gives numbers in [0, 1): PyTorch's own
  // random numbers cannot be reproduced here, so the masks differ from train.py's.
  forward(x, s) {
    const y = tensor(x.shape), scale = s.p < 1 ? 1 / (1 - s.p) : 0, values = x.data, out = y.data;
    const mask = y.mask = new Float32Array(values.length);
    for (let i = 0; i < values.length; i++) {
      mask[i] = (random() >= s.p) * scale;  // kept (true, 1) or dropped (false, 0), without an if (see relu)
      out[i] = values[i] * mask[i];
    }
    return y;
  },
  backward(g, x, s, p, y) {
    const dx = tensor(x.shape), mask = y.mask, gradients = g.data, out = dx.data;
    for (let i = 0; i < out.length; i++) out[i] = gradients[i] * mask[i];
    return dx;
  },
});

function trainingOperation(node, random) {
  // The operation as train() computes it: batch norm with the batch's statistics; a dropout (an
  // identity node with its p) drops only when given random numbers (random: a function, or null).
  if (node.op === "batch_norm") return batchNormTraining;
  if (node.op === "identity" && random && node.settings && "p" in node.settings) return dropping(random);
  return OPERATIONS[node.op];
}

function untrainable(network) {
  // The first node that this file cannot train, as a sentence, or null.
  for (const node of network.graph) {
    if (node.op === "input" || node.op === "size") continue;
    const operation = OPERATIONS[node.op] && trainingOperation(node, null);
    if (!operation || !operation.backward || (node.params && ["weight", "bias"].some((role) => node.params[role]) && !operation.paramsBackward)) {
      return `${node.name} (${node.op}) has no gradient in this file`;
    }
    if (node.op === "batch_norm" && typeof node.settings.momentum !== "number") {
      return `${node.name} (batch_norm with momentum=None, a cumulative average) is not trained in this file`;
    }
  }
  return null;
}

function trainingForward(network, weights, input, random) {
  // As run(), with the weights being trained and each operation in its training form.
  return forward(network, weights, input, (node) => trainingOperation(node, random));
}

function parameterGradients(network, weights, outputs, outputGradient, random) {
  // Each parameter's gradient (summed where a module is called twice) by state_dict key; the
  // image's own gradient is not needed.
  const found = {};
  const visit = (node, operation, gradient, x, settings, p) => {
    if (!operation.paramsBackward) return;
    const own = operation.paramsBackward(gradient, x, settings, p, outputs[node.name]);
    for (const role of ["weight", "bias"]) if (own[role]) addGradient(found, node.params[role], own[role]);
  };
  backward(network, weights, outputs, outputGradient, (node) => trainingOperation(node, random),
           { input: false, visit });
  return found;
}

function crossEntropy(logits, labels) {
  // nn.CrossEntropyLoss (the mean over the batch of -log softmax(logits)[label]) and its gradient
  // with respect to the logits: (softmax - one-hot) / batch.
  const B = labels.length, classes = logits.data.length / B, gradient = tensor(logits.shape);
  let total = 0;
  labels.forEach((label, b) => {
    const logs = logSoftmax(logits.data.subarray(b * classes, (b + 1) * classes));
    total -= logs[label];
    logs.forEach((v, k) => { gradient.data[b * classes + k] = (Math.exp(v) - (k === label)) / B; });
  });
  return [total / B, gradient];
}

function adamStep(values, gradient, moments, step, lr, weightDecay) {
  // torch.optim.Adam's update (AdamW's when weightDecay > 0: the weights shrink by lr * decay
  // first, apart from the gradient), in float32 as PyTorch stores it: betas 0.9 and 0.999, eps 1e-8,
  // both averages corrected for starting at zero.
  const [beta1, beta2, eps] = [0.9, 0.999, 1e-8], stepSize = lr / (1 - beta1 ** step);
  const correction2 = f32(Math.sqrt(1 - beta2 ** step)), decay = f32(1 - lr * weightDecay);
  const weight1 = f32(1 - beta1), keep2 = f32(beta2), weight2 = f32(1 - beta2), size = f32(-stepSize);
  for (let i = 0; i < values.length; i++) {
    const g = gradient[i];
    if (weightDecay) values[i] = values[i] * decay;
    moments.first[i] = moments.first[i] + weight1 * f32(g - moments.first[i]);  // lerp towards g
    moments.second[i] = f32(moments.second[i] * keep2) + weight2 * f32(g * g);
    const denominator = f32(f32(f32(Math.sqrt(moments.second[i])) / correction2) + eps);
    values[i] = values[i] + size * f32(moments.first[i] / denominator);
  }
}

function adam(network, weights, lr, weightDecay) {
  // torch.optim.Adam (AdamW when weightDecay > 0) over the weights and biases the graph uses:
  // step(gradients) moves each by one update, in place, and counts the steps for the bias
  // correction. One that no path to the logits reaches has no gradient: PyTorch skips it too.
  const keys = [...new Set(network.graph.flatMap((node) => ["weight", "bias"].map((role) => node.params?.[role]).filter(Boolean)))];
  const moments = Object.fromEntries(keys.map((key) => [key, { first: new Float32Array(weights[key].data.length),
                                                               second: new Float32Array(weights[key].data.length) }]));
  let steps = 0;
  return {
    keys,
    step(gradients) {
      steps += 1;
      for (const key of keys) if (gradients[key]) adamStep(weights[key].data, gradients[key].data, moments[key], steps, lr, weightDecay);
    },
  };
}

function trainingStep(network, weights, input, labels, optimizer, random) {
  // One step of train.py's loop on a batch: forward in train() mode, cross-entropy, backward, the
  // optimizer's update. Returns the loss (before the update), the logits (B, 10) and each
  // parameter's gradient by state_dict key.
  const outputs = trainingForward(network, weights, input, random);
  const logits = outputs[network.output], [loss, outputGradient] = crossEntropy(logits, labels);
  const gradients = parameterGradients(network, weights, outputs, outputGradient, random);
  optimizer.step(gradients);
  return { loss, logits, gradients };
}

return { tensor, normalised, f32, useKernels, kernelsInUse, OPERATIONS, forward, backward, addGradient, paramsOf, evalOperation, logSoftmax, softmax,
         untrainable, adam, trainingStep };
})();
