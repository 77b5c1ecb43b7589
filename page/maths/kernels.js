// The products, convolutions and the tutorial's pooling in WebAssembly (kernels.wasm, assembled from
// page/kernels.wat: the same sums, four floats a step with SIMD) where the browser has it, in place
// of the plain loops of tensors.js, dot-products.js and pooling.js. Part of the exported file's maths.
"use strict";
(() => {
const { matmul, convolution, pooling } = maths;
const plainLoops = [[matmul, { ...matmul }], [convolution, { ...convolution }], [pooling, { ...pooling }]];
let kernelsUsed = null;  // the bytes of kernels.wasm while its kernels run, else null

// What a training worker is started with, to compute as the page does.
function kernelsInUse() { return kernelsUsed; }

function useKernels(bytes) {
  // From now on the products, convolutions and the tutorial's pooling run in kernels.wasm if this
  // browser can; returns whether they do. useKernels(null) goes back to the plain loops (the
  // tests compare both with PyTorch).
  for (const [target, plain] of plainLoops) Object.assign(target, plain);
  kernelsUsed = null;
  if (bytes === null || typeof WebAssembly !== "object" || !WebAssembly.validate(bytes)) return false;
  const { exports } = new WebAssembly.Instance(new WebAssembly.Module(bytes)), call = caller(exports.memory);
  useProducts(exports, call);
  useConvolutions(exports, call);
  kernelsUsed = bytes;
  return true;
}

function useProducts(e, call) {
  matmul.nn = (C, A, B, M, K, N, accumulate) => call(e.matmul_nn, [[C, M * N, accumulate ? "in out" : "out"],
    [A, M * K, "in"], [B, K * N, "in"]], M, K, N, accumulate ? 1 : 0);
  matmul.nt = (C, A, B, M, K, N, accumulate) => call(e.matmul_nt, [[C, M * N, accumulate ? "in out" : "out"],
    [A, M * K, "in"], [B, N * K, "in"]], M, K, N, accumulate ? 1 : 0);
  pooling.max2x2 = (y, kept, x, maps, H, W, OH, OW) => call(e.max_pool_2x2, [[y, maps * OH * OW, "out"],
    [kept, maps * OH * OW, "out"], [x, maps * H * W, "in"]], maps, H, W, OH, OW);
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
                            [weightT, K * O, "in"], [patches.indices, K * P, "in"], [null, K * P]],
    B, xImage, yImage, O, K, P);
}

function caller(memory) {
  // call(kernel, [[array, size, "in" | "out" | "in out"], ...], ...numbers): lays each array's
  // first size values out in memory one after another (null: room only), runs the kernel on
  // their byte offsets and the numbers, and copies back those marked "out".
  return (kernel, arrays, ...numbers) => {
    let end = 0;
    const offsets = arrays.map(([, size]) => {  // 16-byte aligned
      const at = end;
      end += Math.ceil(size / 4) * 4;
      return at;
    });
    const missing = 4 * end - memory.buffer.byteLength;  // bytes
    if (missing > 0) memory.grow(Math.ceil(missing / 65536));
    const floats = new Float32Array(memory.buffer), whole = new Int32Array(memory.buffer);
    const view = (array) => (array instanceof Int32Array ? whole : floats);  // indices stay whole numbers
    arrays.forEach(([array, size, how = ""], k) => {
      if (how.includes("in")) view(array).set(array.subarray(0, size), offsets[k]);
    });
    kernel(...offsets.map((offset) => 4 * offset), ...numbers);
    arrays.forEach(([array, size, how = ""], k) => {
      if (how.includes("out")) array.set(view(array).subarray(offsets[k], offsets[k] + size));
    });
  };
}

Object.assign(maths, { useKernels, kernelsInUse });
})();
