// Zip archives written in the exported file, without compression: the collected drawings' download
// (FOLDER.zip) and the checkpoint (checkpoint.js: torch.save's format is a zip whose records start
// at multiples of 64 bytes).
"use strict";
(() => {
const littleEndian = (n, size) => Array.from({ length: size }, (_, i) => (n >>> (8 * i)) & 255);

function zipOf(files, align = 1) {
  // A zip of [[name, bytes], ...] (PNGs are compressed already): each file's header, its bytes, then
  // the central directory that lists them. With align, each file's bytes start at a multiple of
  // align in the archive (torch.save's 64, which lets torch.load map them), padded by an extra
  // field in the file's header as PyTorch's own writer pads them.
  const parts = [], directory = [], bytes = littleEndian;
  let offset = 0;
  for (const [name, content] of files) {
    const nameBytes = new TextEncoder().encode(name), crc = crc32(content);
    // version 2.0, names in UTF-8 (a folder may be called "chiffres_é"), stored, 1980-01-01 00:00,
    // CRC-32, sizes, name length
    const common = [...bytes(20, 2), ...bytes(0x800, 2), ...bytes(0, 2), ...bytes(0, 2), ...bytes(33, 2),
                    ...bytes(crc, 4), ...bytes(content.length, 4), ...bytes(content.length, 4),
                    ...bytes(nameBytes.length, 2)];
    const padding = align > 1 ? (align - ((offset + 30 + nameBytes.length + 4) % align)) % align : null;
    const extra = padding === null ? []
      : [...bytes(0x4246, 2), ...bytes(padding, 2), ...new Array(padding).fill(0x5a)];
    const local = Uint8Array.from([...bytes(0x04034b50, 4), ...common, ...bytes(extra.length, 2),
                                   ...nameBytes, ...extra]);
    // + no extra field, no comment, disk 0, no attributes, where the file's header starts
    directory.push(Uint8Array.from([...bytes(0x02014b50, 4), ...bytes(20, 2), ...common, ...bytes(0, 2),
                                    ...bytes(0, 2), ...bytes(0, 2), ...bytes(0, 2), ...bytes(0, 4),
                                    ...bytes(offset, 4), ...nameBytes]));
    parts.push(local, content);
    offset += local.length + content.length;
  }
  const size = directory.reduce((total, entry) => total + entry.length, 0);
  const end = Uint8Array.from([...bytes(0x06054b50, 4), ...bytes(0, 4), ...bytes(files.length, 2),
                               ...bytes(files.length, 2), ...bytes(size, 4), ...bytes(offset, 4),
                               ...bytes(0, 2)]);
  return new Blob([...parts, ...directory, end], { type: "application/zip" });
}

function crc32(content) {
  let crc = -1;
  for (const byte of content) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = (crc >>> 1) ^ (0xEDB88320 & -(crc & 1));
  }
  return (crc ^ -1) >>> 0;
}

function downloaded(blob, name) {
  // The browser's download of blob as a file called name.
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = name;
  link.click();
}

Object.assign(offline, { zipOf, downloaded });
})();
