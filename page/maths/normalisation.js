// Batch normalisation, forward and backward: in eval mode with the running statistics (the page's
// answers), in training with the batch's own (batchNormTraining, which graph.js's trainingOperation
// uses). Part of the exported file's maths (tensors.js says more).
"use strict";
(() => {
const { tensor } = maths;

const batchNorm = {
  // Eval mode, as PyTorch's CPU kernel computes it: x * (weight / sqrt(var + eps)) + (bias - mean * that).
  scales(s, p) {
    const scale = p.running_var.data.map((v, c) => (p.weight ? p.weight.data[c] : 1) / Math.sqrt(v + s.eps));
    const shift = scale.map((a, c) => (p.bias ? p.bias.data[c] : 0) - p.running_mean.data[c] * a);
    return [scale, shift];
  },
  forward(x, s, p) {
    const [scale, shift] = batchNorm.scales(s, p), [, C] = x.shape, area = x.data.length / x.shape[0] / C;
    return tensor(x.shape, x.data.map((v, i) => {
      const c = Math.floor(i / area) % C;
      return v * scale[c] + shift[c];
    }));
  },
  backward(g, x, s, p) {
    const [scale] = batchNorm.scales(s, p), [, C] = x.shape, area = x.data.length / x.shape[0] / C;
    return tensor(x.shape, g.data.map((d, i) => d * scale[Math.floor(i / area) % C]));
  },
};

// Training visits every value map by map within each image, a loop written out in each pass: a
// function called back for every value, another in each pass, made it several times slower.
const batchNormTraining = {
  // train() mode, as torch.nn.BatchNorm2d: each map normalised with its batch's mean and biased
  // variance (over images, rows and columns); the running averages move towards the batch's with
  // the module's momentum, the variance's unbiased (n / (n - 1)), once per forward.
  forward(x, s, p) {
    const [B, C] = x.shape, area = x.data.length / B / C, n = B * area, y = tensor(x.shape);
    const mean = new Float64Array(C), variance = new Float64Array(C), invstd = new Float64Array(C);
    for (let b = 0; b < B; b++) {
      for (let c = 0; c < C; c++) {
        for (let i = (b * C + c) * area, end = i + area; i < end; i++) mean[c] += x.data[i];
      }
    }
    mean.forEach((sum, c) => { mean[c] = sum / n; });
    for (let b = 0; b < B; b++) {
      for (let c = 0; c < C; c++) {
        for (let i = (b * C + c) * area, end = i + area; i < end; i++) {
          variance[c] += (x.data[i] - mean[c]) ** 2;
        }
      }
    }
    variance.forEach((sum, c) => {
      variance[c] = sum / n;
      invstd[c] = 1 / Math.sqrt(variance[c] + s.eps);
    });
    for (let b = 0; b < B; b++) {
      for (let c = 0; c < C; c++) {
        const weight = p.weight ? p.weight.data[c] : 1, bias = p.bias ? p.bias.data[c] : 0;
        for (let i = (b * C + c) * area, end = i + area; i < end; i++) {
          y.data[i] = (x.data[i] - mean[c]) * invstd[c] * weight + bias;
        }
      }
    }
    for (let c = 0; c < C; c++) {
      p.running_mean.data[c] = (1 - s.momentum) * p.running_mean.data[c] + s.momentum * mean[c];
      const moved = s.momentum * variance[c] * n / (n - 1);  // the batch's unbiased variance's share
      p.running_var.data[c] = (1 - s.momentum) * p.running_var.data[c] + moved;
    }
    y.saved = { mean, invstd, area, n };
    return y;
  },
  sums(g, x, y) {
    // Per map: the sum of the gradients, and of the gradients times the normalised input.
    const [B, C] = x.shape, { mean, invstd, area } = y.saved;
    const total = new Float64Array(C), dotted = new Float64Array(C);
    for (let b = 0; b < B; b++) {
      for (let c = 0; c < C; c++) {
        for (let i = (b * C + c) * area, end = i + area; i < end; i++) {
          total[c] += g.data[i];
          dotted[c] += g.data[i] * (x.data[i] - mean[c]) * invstd[c];
        }
      }
    }
    return [total, dotted];
  },
  // dx = weight * invstd / n * (n g - sum(g) - x̂ sum(g x̂)): the mean and variance depend on x too.
  backward(g, x, s, p, y) {
    const { mean, invstd, n, area } = y.saved, [total, dotted] = batchNormTraining.sums(g, x, y);
    const [B, C] = x.shape, dx = tensor(x.shape);
    for (let b = 0; b < B; b++) {
      for (let c = 0; c < C; c++) {
        const scale = (p.weight ? p.weight.data[c] : 1) * invstd[c] / n;
        for (let i = (b * C + c) * area, end = i + area; i < end; i++) {
          dx.data[i] = scale * (n * g.data[i] - total[c] - (x.data[i] - mean[c]) * invstd[c] * dotted[c]);
        }
      }
    }
    return dx;
  },
  paramsBackward(g, x, s, p, y) {
    const [total, dotted] = batchNormTraining.sums(g, x, y);
    return { weight: p.weight && tensor(p.weight.shape, Float32Array.from(dotted)),
             bias: p.bias && tensor(p.bias.shape, Float32Array.from(total)) };
  },
};

maths.operations.batch_norm = batchNorm;
maths.batchNormTraining = batchNormTraining;
})();
