// The checkpoint writer of the exported file: values written as torch.save writes them (a zip of a
// pickle, protocol 2, and each tensor's bytes), so that torch.load(path, weights_only=True) reads
// them back; checkpoint.js gives it train.py's fields.
"use strict";
(() => {
const { BadRequest, zipOf } = offline;

class Real {  // a Python float that happens to be whole (a batch's accuracy of 1.0), not an int
  constructor(value) { this.value = value; }
}

class Ordered {  // collections.OrderedDict, as a state_dict is: [[key, value], ...] in order
  constructor(entries) { this.entries = entries; }
}

class Stored {  // a tensor: its dtype, its shape and a typed array that holds its values (little-endian)
  constructor(dtype, shape, values) { Object.assign(this, { dtype, shape, values }); }
}

// PyTorch's storage class and the bytes of one value, by dtype.
const STORAGES = { float32: ["FloatStorage", 4], float64: ["DoubleStorage", 8], float16: ["HalfStorage", 2],
                   bfloat16: ["BFloat16Storage", 2], int64: ["LongStorage", 8], int32: ["IntStorage", 4],
                   int16: ["ShortStorage", 2], int8: ["CharStorage", 1], uint8: ["ByteStorage", 1],
                   bool: ["BoolStorage", 1] };

class Pickler {
  // The opcodes of pickle protocol 2 that torch.save's pickle uses and weights_only reads back:
  // dicts, lists, tuples, str, int, float, bool, None, and tensors as _rebuild_tensor_v2 of a
  // persistent id ("storage", class, key, "cpu", numel) whose bytes go to data/<key>.
  constructor() { this.out = [0x80, 2]; this.storages = []; }

  op(code, ...more) { this.out.push(typeof code === "string" ? code.charCodeAt(0) : code, ...more); }

  little(n, size) { for (let i = 0; i < size; i++) this.out.push((n >>> (8 * i)) & 255); }

  global(module, name) { this.op("c", ...new TextEncoder().encode(`${module}\n${name}\n`)); }

  tuple(items) {
    if (items.length === 0) return this.op(")");
    this.op("(");
    items.forEach((item) => this.value(item));
    this.op("t");
  }

  text(value) {
    const encoded = new TextEncoder().encode(value);
    this.op("X");
    this.little(encoded.length, 4);
    this.out.push(...encoded);
  }

  number(value, whole) {
    if (whole && value >= -(2 ** 31) && value < 2 ** 31) { this.op("J"); this.little(value, 4); return; }
    const view = new DataView(new ArrayBuffer(8));
    if (whole) {  // LONG1: a larger int, 8 bytes of two's complement, lowest first
      view.setBigInt64(0, BigInt(value), true);
      return this.op(0x8a, 8, ...new Uint8Array(view.buffer));
    }
    view.setFloat64(0, value);  // BINFLOAT: a double, big-endian
    this.op("G", ...new Uint8Array(view.buffer));
  }

  items(open, entries, close) {
    this.op(open);
    if (entries.length === 0) return;
    this.op("(");
    entries.forEach(([key, item]) => { if (key !== undefined) this.value(key); this.value(item); });
    this.op(close);
  }

  tensor(t) {
    if (!Object.hasOwn(STORAGES, t.dtype)) {
      throw new BadRequest(400, `a tensor of dtype ${t.dtype} cannot be written`);
    }
    const [storage, size] = STORAGES[t.dtype], count = t.shape.reduce((a, b) => a * b, 1);
    if (t.values.byteLength !== count * size) {
      throw new BadRequest(400, `a tensor of shape [${t.shape}] needs ${count} values`);
    }
    const key = String(this.storages.length);
    this.storages.push(new Uint8Array(t.values.buffer, t.values.byteOffset, t.values.byteLength));
    const strides = t.shape.map((_, axis) => t.shape.slice(axis + 1).reduce((a, b) => a * b, 1));
    this.global("torch._utils", "_rebuild_tensor_v2");
    this.op("(");
    this.op("(");
    this.text("storage"); this.global("torch", storage); this.text(key); this.text("cpu");
    this.number(count, true);
    this.op("t"); this.op("Q");  // the persistent id, then offset, size, stride, requires_grad, hooks
    this.number(0, true); this.tuple(t.shape); this.tuple(strides); this.op(0x89);
    this.global("collections", "OrderedDict"); this.op(")"); this.op("R");
    this.op("t"); this.op("R");
  }

  ordered(entries) {
    this.global("collections", "OrderedDict"); this.op(")"); this.op("R");
    if (!entries.length) return;
    this.op("(");
    entries.forEach(([key, item]) => { this.value(key); this.value(item); });
    this.op("u");
  }

  value(v) {
    if (v === null || v === undefined) this.op("N");
    else if (typeof v === "boolean") this.op(v ? 0x88 : 0x89);
    else if (typeof v === "number") this.number(v, Number.isInteger(v));
    else if (v instanceof Real) this.number(v.value, false);
    else if (typeof v === "string") this.text(v);
    else if (v instanceof Stored) this.tensor(v);
    else if (v instanceof Ordered) this.ordered(v.entries);
    else if (Array.isArray(v)) this.items("]", v.map((item) => [undefined, item]), "e");
    else this.items("}", Object.entries(v), "u");
  }
}

function torchSaved(value, name = "model") {
  // torch.save(value) as a Blob: the records in torch.save's order under "<name>/", each tensor's
  // bytes 64-byte aligned.
  const pickler = new Pickler(), text = (t) => new TextEncoder().encode(t);
  pickler.value(value);
  pickler.op(".");
  return zipOf([[`${name}/data.pkl`, Uint8Array.from(pickler.out)], [`${name}/.format_version`, text("1")],
                [`${name}/.storage_alignment`, text("64")], [`${name}/byteorder`, text("little")],
                ...pickler.storages.map((bytes, key) => [`${name}/data/${key}`, bytes]),
                [`${name}/version`, text("3\n")]], 64);
}

Object.assign(offline, { Real, Ordered, Stored, STORAGES, torchSaved });
})();
