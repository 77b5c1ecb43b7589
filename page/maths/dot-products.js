// The layers that are dot products of the input with learned weights, forward and backward: the
// convolution (conv2d, im2col and one matrix product a group) and the fully connected layer
// (linear). Part of the exported file's maths (tensors.js says more).
"use strict";
(() => {
const { tensor, written, zeros, outputSide, matmul, transposed, mapSums } = maths;

function convolutionShape(x, s, weight) {
  const [B, C, H, W] = x.shape, [O, perGroup, KH, KW] = weight.shape;
  const [[PT, PB], [PL, PR]] = s.padding;
  const OH = outputSide(H, KH, s.stride[0], PT, PB, s.dilation[0]);
  const OW = outputSide(W, KW, s.stride[1], PL, PR, s.dilation[1]);
  return { B, C, H, W, O, perGroup, KH, KW, OH, OW, K: perGroup * KH * KW, outputsPerGroup: O / s.groups };
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
  if (!cached.has(key)) {
    const indices = patchIndices(s, t, group);
    cached.set(key, { indices, runs: patchRuns(indices, t), width: t.OW });
  }
  return cached.get(key);
}

function patchIndices(s, t, group) {
  const P = t.OH * t.OW, indices = new Int32Array(t.K * P), [SY, SX] = s.stride, [[PT], [PL]] = s.padding;
  const [DY, DX] = s.dilation;
  for (let k = 0; k < t.K; k++) {  // kernel entry k: map c, row ky, column kx
    const c = Math.floor(k / (t.KH * t.KW)), ky = Math.floor(k / t.KW) % t.KH, kx = k % t.KW;
    for (let oy = 0; oy < t.OH; oy++) for (let ox = 0; ox < t.OW; ox++) {
      const iy = oy * SY - PT + ky * DY, ix = ox * SX - PL + kx * DX;
      const inside = iy >= 0 && iy < t.H && ix >= 0 && ix < t.W;
      indices[k * P + oy * t.OW + ox] = inside ? ((group * t.perGroup + c) * t.H + iy) * t.W + ix : -1;
    }
  }
  return indices;
}

function patchRuns(indices, t) {
  return Int32Array.from({ length: t.K * t.OH }, (_, row) => {
    const first = indices[row * t.OW];
    for (let ox = 0; ox < t.OW; ox++) if (first < 0 || indices[row * t.OW + ox] !== first + ox) return -1;
    return first;
  });
}

function gather(columns, image, indices) {  // im2col of one image: its patches, (K, P)
  for (let i = 0; i < indices.length; i++) columns[i] = indices[i] < 0 ? 0 : image[indices[i]];
}

const convolution = {
  // A convolution's three passes over B images, one image at a time: its patches as a matrix
  // (K, P) and the kernels (O, K) of one group. x holds B images of xImage floats; y and g hold
  // B images of yImage floats, the group's O maps first in each. kernels.js swaps in kernels.wasm.
  forward(y, x, weight, bias, patches, B, xImage, yImage, O, K, P) {
    const columns = zeros(K * P);
    for (let b = 0; b < B; b++) {
      gather(columns, x.subarray(b * xImage), patches.indices);
      const out = y.subarray(b * yImage, b * yImage + O * P);
      for (let o = 0; o < O; o++) out.fill(bias[o], o * P, (o + 1) * P);
      matmul.nn(out, weight, columns, O, K, P, true);  // (O, K) x (K, P), added to the bias
    }
  },
  // d weight += g (O, P) x patches^T (P, K), over the images.
  weightGradient(weightGradient, g, x, patches, B, xImage, yImage, O, K, P) {
    const columns = zeros(K * P);
    for (let b = 0; b < B; b++) {
      gather(columns, x.subarray(b * xImage), patches.indices);
      matmul.nt(weightGradient, g.subarray(b * yImage), columns, O, P, K, true);
    }
  },
  // The patches' gradients, kernels^T (K, O) x g (O, P); each input value collects those of
  // every patch it is in (col2im).
  inputGradient(dx, g, weightT, patches, B, xImage, yImage, O, K, P) {
    const columns = zeros(K * P), indices = patches.indices;
    for (let b = 0; b < B; b++) {
      matmul.nn(columns, weightT, g.subarray(b * yImage), K, O, P, false);
      const image = dx.subarray(b * xImage);
      for (let i = 0; i < indices.length; i++) if (indices[i] >= 0) image[indices[i]] += columns[i];
    }
  },
};

const conv2d = {
  // Each output value is the dot product of its kernel with its patch; each group of maps is
  // its own convolution (convolution.forward and the rest) of its share of the input maps.
  groups(x, s, p, visit) {
    const t = convolutionShape(x, s, p.weight), G = t.outputsPerGroup, P = t.OH * t.OW;
    for (let group = 0; group < s.groups; group++) {
      visit({ group, weight: p.weight.data.subarray(group * G * t.K, (group + 1) * G * t.K),
              patches: patchesOf(s, t, group), maps: group * G * P,
              sizes: [t.B, t.C * t.H * t.W, t.O * P, G, t.K, P] });
    }
    return t;
  },
  forward(x, s, p) {
    const t = convolutionShape(x, s, p.weight), y = written([t.B, t.O, t.OH, t.OW]), G = t.outputsPerGroup;
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
      const gradient = weight.subarray(group * G * K);
      convolution.weightGradient(gradient, g.data.subarray(maps), x.data, patches, ...sizes);
    });
    return { weight: tensor(p.weight.shape, weight), bias: p.bias && tensor(p.bias.shape, mapSums(g)) };
  },
};

const linear = {
  // y = x W^T + b, a product (B, I) x (I, O); dx = g W; d weight = g^T x; d bias = the sums of g.
  forward(x, s, p) {
    const [O, I] = p.weight.shape, B = x.data.length / I, y = written([B, O]);
    matmul.nt(y.data, x.data, p.weight.data, B, I, O, false);
    if (p.bias) for (let b = 0; b < B; b++) for (let o = 0; o < O; o++) y.data[b * O + o] += p.bias.data[o];
    return y;
  },
  backward(g, x, s, p) {
    const [O, I] = p.weight.shape, B = x.data.length / I, dx = written(x.shape);
    matmul.nn(dx.data, g.data, p.weight.data, B, O, I, false);
    return dx;
  },
  paramsBackward(g, x, s, p) {
    const [O, I] = p.weight.shape, B = x.data.length / I, weight = new Float32Array(O * I);
    matmul.nn(weight, transposed(g.data, B, O), x.data, O, B, I, false);
    return { weight: tensor(p.weight.shape, weight), bias: p.bias && tensor(p.bias.shape, mapSums(g)) };
  },
};

Object.assign(maths.operations, { conv2d, linear });
maths.convolution = convolution;  // for kernels.js
})();
