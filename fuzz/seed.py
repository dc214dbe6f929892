#!/usr/bin/env python3
"""Seed each fuzz target's corpus (fuzz/corpus/TARGET/) from the test corpora.

Gunicorn's request corpus (tests/conformance/corpus/gunicorn/, in its own
text form: literal \\r\\n, one line per line) gives the heads and, behind
them, the chunked bodies and request-targets; the PROXY seeds are the
headers the integration tests send, v1 text and v2 binary.
"""

import hashlib
import os
import pathlib
import struct
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "conformance" / "corpus" / "gunicorn"
OUT = ROOT / "fuzz" / "corpus"


def wire(text: bytes) -> bytes:
    """Gunicorn's corpus file as the bytes its test sends (tests/treq.py)."""
    return text.replace(b"\n", b"").replace(b"\\r\\n", b"\r\n").replace(b"\\0", b"\0")


def put(target: str, data: bytes) -> None:
    d = OUT / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()).write_bytes(data)


def v2(command: int, family: int, addresses: bytes) -> bytes:
    sig = b"\r\n\r\n\0\r\nQUIT\n"
    return sig + bytes([0x20 | command, family]) + struct.pack("!H", len(addresses)) + addresses


def main() -> int:
    requests = [wire(p.read_bytes()) for p in sorted(CORPUS.glob("*/*.http"))]
    if not requests:
        print(f"no corpus under {CORPUS}", file=sys.stderr)
        return 1
    for req in requests:
        put("head", req)
        head, sep, body = req.partition(b"\r\n\r\n")
        if sep and b"chunked" in head.lower():
            for split, most in ((0, 255), (128, 3), (255, 1)):
                put("chunked", bytes([split, most]) + body)
        line = head.split(b"\r\n", 1)[0].split(b" ")
        if len(line) >= 2:
            for mount in (b"", line[1][: line[1].find(b"/", 1) + 1 or 0].rstrip(b"/")):
                put("path_info", mount + b"\n" + line[1])
    for target in (b"/a%20b/%2Fc?q=%41", b"/%zz%4", b"/mount/%E2%82%AC", b"http://h/p%2e?x"):
        put("path_info", b"/mount\n" + target)
    ipv4 = struct.pack("!4s4sHH", bytes([192, 0, 2, 1]), bytes([127, 0, 0, 1]), 51000, 8000)
    ipv6 = struct.pack("!16s16sHH", bytes(15) + b"\1", bytes(15) + b"\1", 51000, 8000)
    for header in (
        b"PROXY TCP4 192.0.2.1 127.0.0.1 51000 8000\r\n",
        b"PROXY TCP6 2001:db8::1 ::1 51000 8000\r\n",
        b"PROXY UNKNOWN\r\n",
        v2(0x1, 0x11, ipv4),
        v2(0x1, 0x21, ipv6),
        v2(0x0, 0x00, b""),
        v2(0x1, 0x11, ipv4 + b"\x04\x00\x01x"),
    ):
        put("proxy", header + b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
