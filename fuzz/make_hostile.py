#!/usr/bin/env python3
"""Writes the hand-made hostile inputs of fuzz/regressions/<target>/hostile-*: files that claim
more than they hold (huge dims, decompression bombs, truncated images, bad labels), each of which
must end in a clear error. The first byte of idx and image inputs picks the file kind, as in
fuzz/targets.rs. Needs numpy and onnx (the light tools venv):

  PY=$(tools/venv.sh light) && $PY fuzz/make_hostile.py
"""
import gzip
import io
import pathlib
import struct
import zipfile
import zlib

import numpy as np
from onnx import TensorProto, helper

OUT = pathlib.Path(__file__).resolve().parent / "regressions"


def idx_header(dims):
    return bytes([0, 0, 8, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims)


def npy_bytes(descr: str, shape: tuple, body: bytes) -> bytes:
    header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}"
    header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + body


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def model_with(init: TensorProto) -> bytes:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    node = helper.make_node("Add", ["x", init.name], ["y"])
    graph = helper.make_graph([node], "g", [x], [y], [init])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def raw_tensor(name: str, dims: list, raw: bytes) -> TensorProto:
    """A float tensor whose dims claim more than its raw data holds (make_tensor refuses that)."""
    t = TensorProto(name=name, data_type=TensorProto.FLOAT, raw_data=raw)
    t.dims.extend(dims)
    return t


def npz(arrays: dict) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def main() -> None:
    files = {
        # idx: 64 MiB of zeros behind a header for one 28x28 image (a gzip bomb, 64 KiB packed).
        "idx/hostile-gzip-bomb": b"\x00" + gzip.compress(idx_header([1, 28, 28]) + bytes(64 << 20), mtime=0),
        "idx/hostile-huge-dims": b"\x00" + idx_header([4_000_000_000, 65535, 65535]) + bytes(16),
        "idx/hostile-labels-short": b"\x01" + idx_header([2]) + b"\x01",
        "idx/hostile-zero-size-images": b"\x00" + idx_header([2, 0, 0]),
        "npy/hostile-huge-shape": npy_bytes("<f4", (1_000_000_000_000,), bytes(8)),
        "npy/hostile-overflowing-shape": npy_bytes("<f4", (2**62, 2**62), bytes(8)),
        "npy/hostile-complex": npy_bytes("<c8", (1,), bytes(8)),
        "onnx_import/hostile-huge-initializer": model_with(raw_tensor("w", [1 << 40], b"")),
        "onnx_import/hostile-overflowing-dims": model_with(raw_tensor("w", [1 << 62, 1 << 62], bytes(16))),
        "onnx_import/hostile-garbage": bytes(range(256)) * 4,
        "cifar/hostile-bad-label": bytes([200]) + bytes(3072),
        "cifar/hostile-partial-record": bytes(100),
        "image/hostile-png-huge": b"\x00" + b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)) + png_chunk(b"IEND", b""),
        "image/hostile-jpeg-truncated": b"\x01" + b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
        + b"\xff\xc0\x00\x11\x08\xff\xff\xff\xff\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01",
        "checkpoint/hostile-not-a-zip": b"PK\x03\x04 truncated",
        "checkpoint/hostile-wrong-meta": npz({"meta": np.frombuffer(b'{"step": 1}', np.uint8).astype(np.float32)}),
        "checkpoint/hostile-huge-array": zip_with("meta.npy", npy_bytes("<f4", (1 << 40,), bytes(8))),
        # A version-3 .npy inside the archive whose header length field says 2 GB.
        "checkpoint/hostile-lying-header": zip_with("meta.npy", b"\x93NUMPY\x03\x00" + struct.pack("<I", 2 << 30) + b"{}"),
        "npy/hostile-npz-lying-header": zip_with("x.npy", b"\x93NUMPY\x03\x00" + struct.pack("<I", 2 << 30) + b"{}"),
    }
    for name, data in files.items():
        path = OUT / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        print(f"{path.relative_to(OUT.parent)}: {len(data)} bytes")


def zip_with(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
        z.writestr(info, data)
    return buf.getvalue()


if __name__ == "__main__":
    main()
