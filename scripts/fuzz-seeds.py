#!/usr/bin/env python3
"""Seeds for the fuzz targets, made at fuzz time from captures that are not
the project's (../shared/corpus/captures): never committed.

    fuzz-seeds.py OUT_DIR CAPTURE_DIR...

OUT_DIR/dissect_frame/: each frame (up to 200 per file), prefixed with the
selector byte of its link type (pipeline::wire::dissect::LinkType::CODES).
OUT_DIR/read_capture/: the capture files themselves, up to 64 KiB, and
each compressed with gzip and with zstd (when the zstd tool is there) for
the decompressors flowtap reads them through.
"""

import gzip
import shutil
import struct
import subprocess
import sys
from pathlib import Path

# pipeline::wire::dissect::LinkType::CODES, in its order.
LINKS = [0, 1, 101, 108, 113, 228, 229, 276, 9, 12, 14, 50, 51, 104, 105, 127, 192, 204, 205, 239, 147]
FRAMES_PER_FILE = 200


def pcap_frames(data):
    magic = data[:4]
    endian = {b"\xd4\xc3\xb2\xa1": "<", b"\x4d\x3c\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">", b"\xa1\xb2\x3c\x4d": ">"}.get(magic)
    if endian:
        link = struct.unpack(endian + "I", data[20:24])[0]
        off = 24
        while off + 16 <= len(data):
            caplen = struct.unpack(endian + "I", data[off + 8 : off + 12])[0]
            yield link, data[off + 16 : off + 16 + caplen]
            off += 16 + caplen
        return
    if magic == b"\x0a\x0d\x0d\x0a":
        endian = "<" if data[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
        links, off = [], 0
        while off + 12 <= len(data):
            btype, blen = struct.unpack(endian + "II", data[off : off + 8])
            if blen < 12:
                return
            body = data[off + 8 : off + blen - 4]
            if btype == 0x0A0D0D0A:
                links = []
            elif btype == 1:
                links.append(struct.unpack(endian + "H", body[:2])[0])
            elif btype == 6 and len(body) >= 20:
                iface, _, _, caplen = struct.unpack(endian + "IIII", body[:16])
                if iface < len(links):
                    yield links[iface], body[20 : 20 + caplen]
            off += blen


def main():
    out, dirs = Path(sys.argv[1]), [Path(d) for d in sys.argv[2:]]
    frames_dir, files_dir = out / "dissect_frame", out / "read_capture"
    frames_dir.mkdir(parents=True, exist_ok=True)
    files_dir.mkdir(parents=True, exist_ok=True)
    count = 0
    for path in sorted(p for d in dirs for p in d.iterdir()):
        data = path.read_bytes()
        if len(data) <= 65536:
            (files_dir / path.name).write_bytes(data)
            (files_dir / f"{path.name}.gz").write_bytes(gzip.compress(data, mtime=0))
            if shutil.which("zstd"):
                zst = subprocess.run(["zstd", "-q", "-c"], input=data, capture_output=True, check=True)
                (files_dir / f"{path.name}.zst").write_bytes(zst.stdout)
        for i, (link, frame) in enumerate(pcap_frames(data)):
            if i >= FRAMES_PER_FILE:
                break
            if link in LINKS:
                (frames_dir / f"{path.stem}-{i}").write_bytes(bytes([LINKS.index(link)]) + frame)
                count += 1
    print(f"fuzz seeds: {count} frames, {len(list(files_dir.iterdir()))} files", file=sys.stderr)


main()
