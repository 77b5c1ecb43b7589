// Picture files in the exported file: a picture sent to a route (base64 or a data: URL) read as
// the server reads it (extras.pictures.open_within_limit): its header first (format and size, for
// the formats the server opens), held to the server's limit on pixels, then decoded by the browser
// and turned grey as Pillow's convert("L") does.
"use strict";
(() => {
const { EXPORT, bytesOf, BadRequest, said } = offline;

async function decodePicture(picture) {
  // A data: URL as FileReader and toDataURL give it, or bare base64, decoded from its bytes within
  // the server's limit on pixels, which the size its header declares is held to first, before
  // any pixel is decoded (as extras.pictures.open_within_limit refuses). [levels, height, width].
  if (typeof picture !== "string") throw new BadRequest(400, said("picture_not_text"));
  let bytes;
  try { bytes = bytesOf(picture.slice(picture.indexOf(",") + 1)); } catch {
    throw new BadRequest(400, said("not_base64"));
  }
  const header = pictureHeader(bytes);
  if (!header) {
    const formats = EXPORT.limits.picture_formats.join(", ");
    throw new BadRequest(422, `picture: ${said("unread_format", { formats })}`);
  }
  const jpeg = header.format === "JPEG";
  if (header.width !== undefined) decodedSize(header.width, header.height, jpeg);
  // Its decoded size is held to the limit too: a header may say less.
  const image = await bitmapOf(bytes, header.format);
  return greyOf(image, ...decodedSize(image.width, image.height, jpeg));
}

function decodedSize(width, height, jpeg) {
  // [width, height] that extras.pictures.open_within_limit decodes a picture at for the server: as
  // it is, or a JPEG over the limit (a phone's photo) at the 1/2, 1/4 or 1/8 that Pillow's draft
  // picks for it; the server's 422 if that is still over the limit.
  const most = EXPORT.limits.picture_pixels;
  let scale = 1;
  if (jpeg && width * height > most) {
    const factor = [2, 4, 8].find((f) => (width / f) * (height / f) <= most) ?? 8;
    const fits = Math.min(Math.floor(width / Math.ceil(width / factor)),
                          Math.floor(height / Math.ceil(height / factor)));
    scale = [8, 4, 2, 1].find((s) => fits >= s);
  }
  const size = [Math.ceil(width / scale), Math.ceil(height / scale)];
  if (size[0] * size[1] > most) {
    const why = `${width} x ${height} pixels, at most ${most.toLocaleString("en-US")} are read`;
    throw new BadRequest(422, said("too_many_pixels", { name: "picture", why }));
  }
  return size;
}

function pictureHeader(bytes) {
  // {format, width, height} as Pillow reads them from a picture's first bytes, for the formats the
  // server opens (EXPORT.limits.picture_formats); {format} alone where the size cannot be read
  // there (the browser's decoder then says what it makes of the rest); null for any other file.
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const text = (at, length) => String.fromCharCode(...bytes.subarray(at, at + length));
  const tiffStarts = ["MM\0*", "II*\0", "MM*\0", "II\0*", "MM\0+", "II+\0"];
  const formats = [
    ["PNG", text(0, 8) === "\x89PNG\r\n\x1a\n", () => [view.getUint32(16), view.getUint32(20)]],
    ["JPEG", text(0, 3) === "\xFF\xD8\xFF", () => jpegSize(bytes, view)],
    ["GIF", ["GIF87a", "GIF89a"].includes(text(0, 6)), () => gifSize(bytes, view)],
    ["BMP", text(0, 2) === "BM", () => bmpSize(view)],
    ["WEBP", text(0, 4) === "RIFF" && text(8, 4) === "WEBP", () => webpSize(bytes, view, text(12, 4))],
    ["TIFF", tiffStarts.includes(text(0, 4)), () => tiffSize(view, text(0, 4))],
  ];
  const [format, , sizeOf] = formats.find(([, matches]) => matches) ?? [];
  if (!format) return null;
  let size = null;
  try { size = sizeOf(); } catch (error) {
    if (!(error instanceof RangeError)) throw error;  // fewer bytes than the header needs: damaged
  }
  return size ? { format, width: size[0], height: size[1] } : { format };
}

function jpegSize(bytes, view) {
  // The frame's size, in the first start-of-frame segment (SOF0 ... SOF15 but DHT, JPG, DAC).
  for (let at = 2; at + 9 <= bytes.length;) {
    if (bytes[at] !== 0xFF) return null;
    const marker = bytes[at + 1];
    if (marker === 0xFF) { at += 1; continue; }  // fill bytes before a marker
    if (marker === 0x01 || (marker >= 0xD0 && marker <= 0xD8)) { at += 2; continue; }  // no length
    if (marker >= 0xC0 && marker <= 0xCF && ![0xC4, 0xC8, 0xCC].includes(marker)) {
      return [view.getUint16(at + 7), view.getUint16(at + 5)];
    }
    if (marker === 0xDA || marker === 0xD9) return null;  // the scan, or the end, before any frame
    at += 2 + view.getUint16(at + 2);
  }
  return null;
}

function gifSize(bytes, view) {
  // The logical screen, grown to the first frame where that frame reaches past it (as Pillow does).
  let width = view.getUint16(6, true), height = view.getUint16(8, true), at = 13;
  if (bytes[10] & 0x80) at += 3 * 2 ** ((bytes[10] & 7) + 1);  // the global colour table
  while (at < bytes.length && bytes[at] === 0x21) {  // extensions: a label, sub-blocks up to an empty one
    at += 2;
    while (at < bytes.length && bytes[at] !== 0) at += bytes[at] + 1;
    at += 1;
  }
  if (bytes[at] === 0x2C) {  // the first frame: its left, top, width and height
    width = Math.max(width, view.getUint16(at + 1, true) + view.getUint16(at + 5, true));
    height = Math.max(height, view.getUint16(at + 3, true) + view.getUint16(at + 7, true));
  }
  return [width, height];
}

function bmpSize(view) {
  // OS/2's 12-byte header: 16-bit sizes; Windows' headers: 32-bit, a negative height (rows from
  // the top) as its magnitude.
  const headerSize = view.getUint32(14, true);
  if (headerSize === 12) return [view.getUint16(18, true), view.getUint16(20, true)];
  if (![40, 52, 56, 64, 108, 124].includes(headerSize)) return null;
  return [view.getUint32(18, true), Math.abs(view.getInt32(22, true))];
}

function webpSize(bytes, view, chunk) {
  // The canvas's size in the first chunk, as Pillow's WebPImagePlugin._get_size reads it.
  if (chunk === "VP8 " && bytes[23] === 0x9D && bytes[24] === 0x01 && bytes[25] === 0x2A) {
    return [view.getUint16(26, true) & 0x3FFF, view.getUint16(28, true) & 0x3FFF];
  }
  if (chunk === "VP8X") {
    return [(view.getUint32(24, true) & 0xFFFFFF) + 1, (view.getUint32(27, true) & 0xFFFFFF) + 1];
  }
  if (chunk === "VP8L" && bytes[20] === 0x2F) {
    const bits = view.getUint32(21, true);
    return [(bits & 0x3FFF) + 1, ((bits >>> 14) & 0x3FFF) + 1];
  }
  return null;
}

function tiffSize(view, start) {
  // ImageWidth (256) and ImageLength (257) of the first directory, swapped by an Orientation (274)
  // of 5 to 8 as Pillow swaps them; a BigTIFF's are left to the decoder.
  const little = start[0] === "I", found = {};
  if (start.includes("+")) return null;
  const first = view.getUint32(4, little), count = view.getUint16(first, little);
  for (let k = 0, at = first + 2; k < count; k++, at += 12) {
    const tag = view.getUint16(at, little), type = view.getUint16(at + 2, little);
    if (![256, 257, 274].includes(tag)) continue;
    found[tag] = type === 3 ? view.getUint16(at + 8, little) : view.getUint32(at + 8, little);
  }
  if (found[256] === undefined || found[257] === undefined) return null;
  return [5, 6, 7, 8].includes(found[274]) ? [found[257], found[256]] : [found[256], found[257]];
}

async function bitmapOf(bytes, format) {
  // The picture decoded; a failure is damage, as Pillow's would be, but for TIFF, which the
  // server reads and Chromium does not.
  try { return await createImageBitmap(new Blob([bytes])); } catch {
    if (format !== "TIFF") throw new BadRequest(422, `picture: ${said("damaged")}`);
    throw new BadRequest(422, "picture: not an image file that this browser can read");
  }
}

// The side of the pieces a picture is drawn in: a canvas over a browser's limit stays blank.
const TILE = 4096;

function greyOf(image, width = image.width, height = image.height) {
  // The picture's grey levels, drawn at width x height (smaller: a photo's JPEG, see decodedSize),
  // a piece of at most TILE x TILE at a time, so that a 1 x 1,000,000 picture is read whole too.
  const levels = new Uint8Array(width * height), canvas = document.createElement("canvas");
  const context = canvas.getContext("2d", { willReadFrequently: true });
  const across = image.width / width, down = image.height / height;
  for (let top = 0; top < height; top += TILE) {
    for (let left = 0; left < width; left += TILE) {
      const pieceWidth = Math.min(TILE, width - left), pieceHeight = Math.min(TILE, height - top);
      canvas.width = pieceWidth; canvas.height = pieceHeight;  // which resets the context's settings
      context.imageSmoothingQuality = "high";  // a photo drawn smaller: smoothed, as a decoder scales
      context.drawImage(image, left * across, top * down, pieceWidth * across, pieceHeight * down,
                        0, 0, pieceWidth, pieceHeight);
      const piece = context.getImageData(0, 0, pieceWidth, pieceHeight).data;
      const grey = greyOfRgba(piece, pieceWidth * pieceHeight);
      for (let y = 0; y < pieceHeight; y++) {
        levels.set(grey.subarray(y * pieceWidth, (y + 1) * pieceWidth), (top + y) * width + left);
      }
    }
  }
  return [levels, height, width];
}

function onWhite(value, alpha) {
  // Pillow's alpha_composite of one channel over opaque white, in its integer arithmetic.
  if (alpha === 255) return value;
  const mixed = value * alpha * 128 + 255 * (255 - alpha) * 128 + (0x80 << 7);
  return (((mixed >> 8) + mixed) >> 8) >> 7;
}

function greyOfRgba(data, count) {
  let transparent = false;
  for (let i = 0; i < count && !transparent; i++) transparent = data[4 * i + 3] < 255;
  // Pillow's convert("L") (ITU-R 601-2 luma, integer arithmetic), after laying the picture on white.
  const levels = new Uint8Array(count);
  const channel = (i, k) => (transparent ? onWhite(data[4 * i + k], data[4 * i + 3]) : data[4 * i + k]);
  for (let i = 0; i < count; i++) {
    levels[i] = (channel(i, 0) * 19595 + channel(i, 1) * 38470 + channel(i, 2) * 7471 + 0x8000) >> 16;
  }
  return levels;
}

Object.assign(offline, { decodePicture, bitmapOf, greyOf });
})();
