// The products, convolutions, the tutorial's pooling and the pointwise loops in WebAssembly
// (kernels-fma.wasm or kernels.wasm, assembled from page/kernels/: the same sums, four floats a
// step with SIMD, the first with fused multiply-adds) where the browser has it, in place of the
// plain loops of tensors.js, dot-products.js and pooling.js. Part of the exported file's maths.
"use strict";
(() => {
const { matmul, convolution, pooling, pointwise } = maths;
const plainLoops = [matmul, convolution, pooling, pointwise].map((loops) => [loops, { ...loops }]);
let kernelsUsed = null;  // [name, bytes] of the module whose kernels run, else null

// What a training worker is started with, to compute as the page does.
function kernelsInUse() { return kernelsUsed; }

function useKernels(modules) {
  // From now on the products, convolutions, pooling and pointwise loops run in the first of modules
  // ([name, bytes], best first: "fma", then "simd") that this browser validates, which is how it
  // says whether it has relaxed SIMD, or SIMD at all; returns its name, or null for the plain
  // loops (useKernels([]) goes back to them: the tests compare each with PyTorch).
  for (const [target, plain] of plainLoops) Object.assign(target, plain);
  kernelsUsed = maths.scratch.home = null;
  const found = typeof WebAssembly === "object" && modules.find(([, bytes]) => WebAssembly.validate(bytes));
  if (!found) return null;
  const { exports } = new WebAssembly.Instance(new WebAssembly.Module(found[1]));
  const room = { start: 0, largest: 0, homed: null }, call = caller(exports.memory, room);
  maths.scratch.home = home(exports.memory, room);
  useProducts(exports, call);
  useConvolutions(exports, call);
  kernelsUsed = found;
  return found[0];
}

function useProducts(e, call) {
  matmul.nn = (C, A, B, M, K, N, accumulate) => call(e.matmul_nn, [[C, M * N, accumulate ? "in out" : "out"],
    [A, M * K, "in"], [B, K * N, "in"]], M, K, N, accumulate ? 1 : 0);
  matmul.nt = (C, A, B, M, K, N, accumulate) => call(e.matmul_nt, [[C, M * N, accumulate ? "in out" : "out"],
    [A, M * K, "in"], [B, N * K, "in"]], M, K, N, accumulate ? 1 : 0);
  pooling.max2x2 = (y, kept, x, maps, H, W, OH, OW) => call(e.max_pool_2x2, [[y, maps * OH * OW, "out"],
    [kept, maps * OH * OW, "out"], [x, maps * H * W, "in"]], maps, H, W, OH, OW);
  pooling.gradient = (dx, kept, g) => call(e.max_pool_gradient, [[dx, dx.length, "in out"],
    [kept, kept.length, "in"], [g, g.length, "in"]], kept.length);
  pointwise.relu = (y, x) => call(e.relu, [[y, y.length, "out"], [x, y.length, "in"]], y.length);
  pointwise.reluGradient = (dx, g, x) => call(e.relu_gradient, [[dx, dx.length, "out"], [g, dx.length, "in"],
    [x, dx.length, "in"]], dx.length);
  pointwise.times = (out, a, b) => call(e.times, [[out, out.length, "out"], [a, out.length, "in"],
    [b, out.length, "in"]], out.length);
  pointwise.dropout = (y, mask, x, random, p, scale) => {
    // kept where the number's 32 bits reach p * 2 ** 32 (none reach 2 ** 32, when scale is 0)
    const threshold = Math.min(Math.max(Math.ceil(p * 2 ** 32), 0), 2 ** 32 - 1);
    call(e.dropout, [[y, y.length, "out"], [mask, y.length, "out"], [x, y.length, "in"]], y.length,
         random.state(), threshold, Math.fround(scale));
    random.skip(y.length);
  };
  pointwise.mapSums = (sums, values, B, C, area) => call(e.map_sums, [[sums, C, "out"],
    [values, B * C * area, "in"]], B, C, area);
}

function useConvolutions(e, call) {
  // The floats from the first image's start to the last's end; the patches' indices and runs.
  const images = (B, size, last) => (B - 1) * size + last;
  const patchesIn = (patches, K, P) => [[patches.indices, K * P, "in"],
                                        [patches.runs, K * P / patches.width, "in"]];
  convolution.forward = (y, x, weight, bias, patches, B, xImage, yImage, O, K, P) => call(e.conv_forward,
    [[y, images(B, yImage, O * P), "in out"], [x, B * xImage, "in"], [weight, O * K, "in"],
     [bias, O, "in"], ...patchesIn(patches, K, P), [null, K * P]], B, xImage, yImage, O, K, P, patches.width);
  convolution.weightGradient = (weightGradient, g, x, patches, B, xImage, yImage, O, K, P) => call(
    e.conv_weight_gradient, [[weightGradient, O * K, "in out"], [g, images(B, yImage, O * P), "in"],
                             [x, B * xImage, "in"], ...patchesIn(patches, K, P), [null, K * P]],
    B, xImage, yImage, O, K, P, patches.width);
  convolution.inputGradient = (dx, g, weightT, patches, B, xImage, yImage, O, K, P) => call(
    e.conv_input_gradient, [[dx, B * xImage, "in out"], [g, images(B, yImage, O * P), "in"],
                            [weightT, K * O, "in"], ...patchesIn(patches, K, P), [null, K * P]],
    B, xImage, yImage, O, K, P, patches.width);
}

function grown(memory, bytes) {  // memory with at least bytes (its old buffer's arrays emptied)
  const missing = bytes - memory.buffer.byteLength;
  if (missing > 0) memory.grow(Math.ceil(missing / 65536));
}

function home(memory, room) {
  // A scratchpad's arrays (tensors.js) laid out in memory from its start, as new arrays of the same
  // types and lengths there; the caller's copies go after them. An earlier scratchpad laid out
  // there loses its arrays, and makes new ones. Room is made for the largest copies seen so far.
  return (pad) => {
    if (room.homed && room.homed !== pad) room.homed.arrays = [];
    let end = 0;  // bytes, each array 16-byte aligned
    const offsets = pad.arrays.map((array) => {
      const at = end;
      end += Math.ceil(array.byteLength / 16) * 16;
      return at;
    });
    grown(memory, end + 4 * room.largest);
    Object.assign(room, { start: end / 4, homed: pad });
    return pad.arrays.map((array, k) => new array.constructor(memory.buffer, offsets[k], array.length));
  };
}

function caller(memory, room) {
  // call(kernel, [[array, size, "in" | "out" | "in out"], ...], ...numbers): runs the kernel on
  // the arrays' byte offsets in memory and the numbers. An array that lies in memory already (a
  // scratchpad's, see home) is used where it is; the first size values of any other are copied
  // in after the scratchpad's (null: room only), and back out if marked "out".
  return (kernel, arrays, ...numbers) => {
    let end = room.start;  // floats
    const inside = arrays.map(([array]) => array !== null && array.buffer === memory.buffer);
    const offsets = arrays.map(([array, size], k) => {
      if (inside[k]) return array.byteOffset / 4;
      const at = end;  // 16-byte aligned
      end += Math.ceil(size / 4) * 4;
      return at;
    });
    room.largest = Math.max(room.largest, end - room.start);
    if (4 * end > memory.buffer.byteLength) {
      // Growing empties the arrays on the old buffer: only between a scratchpad's steps.
      if (room.homed && maths.scratch.pad === room.homed) throw new Error("the kernels' memory is full");
      grown(memory, 4 * end);
    }
    const floats = new Float32Array(memory.buffer), whole = new Int32Array(memory.buffer);
    const view = (array) => (array instanceof Int32Array ? whole : floats);  // indices stay whole numbers
    arrays.forEach(([array, size, how = ""], k) => {
      if (!inside[k] && how.includes("in")) view(array).set(array.subarray(0, size), offsets[k]);
    });
    kernel(...offsets.map((offset) => 4 * offset), ...numbers);
    arrays.forEach(([array, size, how = ""], k) => {
      if (!inside[k] && how.includes("out")) array.set(view(array).subarray(offsets[k], offsets[k] + size));
    });
  };
}

Object.assign(maths, { useKernels, kernelsInUse });
})();
