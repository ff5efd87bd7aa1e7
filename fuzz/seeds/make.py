#!/usr/bin/env python3
"""Writes the hand-made seeds of the frame_decoder and handshake targets, from the test
vectors of PROTOCOL.md (run from anywhere; rewrites fuzz/seeds/<target>/). The engine
target's seeds are its committed corpus (fuzz/corpus/engine), grown by the fuzzer itself."""

import pathlib
import re
import struct

HERE = pathlib.Path(__file__).resolve().parent
PROTOCOL = HERE.parent.parent / "PROTOCOL.md"


def blocks(kind):
    text = PROTOCOL.read_text()
    for body in re.findall(r"```" + kind + r"\n(.*?)```", text, re.S):
        fields = dict(line.split(": ", 1) for line in body.strip().splitlines() if ": " in line)
        yield fields


def hexbytes(s):
    return bytes(int(b, 16) for b in s.split())


def pack(v):
    """The little MessagePack the handshake maps need."""
    if v is True:
        return b"\xc3"
    if v is False:
        return b"\xc2"
    if isinstance(v, int):
        if 0 <= v < 128:
            return bytes([v])
        if 0 <= v < 1 << 32:
            return b"\xce" + struct.pack(">I", v)
        return b"\xcf" + struct.pack(">Q", v)
    if isinstance(v, str):
        b = v.encode()
        return (bytes([0xA0 | len(b)]) if len(b) < 32 else b"\xd9" + bytes([len(b)])) + b
    if isinstance(v, dict):
        return bytes([0x80 | len(v)]) + b"".join(pack(k) + pack(x) for k, x in v.items())
    raise TypeError(v)


def frame(op, payload):
    """A handshake message with a placeholder checksum (the target recomputes it)."""
    assert len(payload) < 256
    head = bytes([0x98, 0, 0, 0, 0, op, 0x10, 0xC4, len(payload)])
    return head + payload + b"\xcf" + bytes(8)


def write(target, name, data):
    d = HERE / target
    d.mkdir(exist_ok=True)
    (d / name).write_bytes(data)


for i, v in enumerate(blocks("vector")):
    data = hexbytes(v["bytes"])
    checksum = v.get("checksum") == "on"
    # Settings: bits 2-3 = 3 (payloads up to 1 MiB), bit 0 = checksums required.
    write("frame_decoder", f"vector-{i:02}", bytes([0x0C | int(checksum)]) + data)
    # The same frame, its checksum left for the target to recompute after mutations.
    write("frame_decoder", f"vector-{i:02}-fix", bytes([0x0E | int(checksum)]) + data)

terms = {
    "version": 1,
    "max_message_size": 1 << 20,
    "checksums": True,
    "max_concurrent": 4,
    "reassembly_window": 4 << 20,
    "max_request_bytes": 4 << 20,
}
instance = "00000000-0000-0000-0000-000000000001"
connect = next(blocks("handshake"))
request = hexbytes(connect["bytes"])
request_terms = pack({"host": "a", "instance": instance, "clock_ms": 1700000000000, "token": "t", **terms})
response = pack({"accepted": True, "reason": "", "host": "b", "instance": instance,
                 "clock_ms": 1700000000000, **terms})
# Settings: bit 0 ConnectResponse, bit 1 a whole frame, bit 2 fix its checksum, bit 3 this
# side asks for checksums, bit 4 run a session on the terms.
write("handshake", "connect-payload", bytes([0x10]) + request)
write("handshake", "connect-terms-payload", bytes([0x18]) + request_terms)
write("handshake", "connect-frame", bytes([0x16]) + frame(1, request_terms))
write("handshake", "response-payload", bytes([0x11]) + response)
write("handshake", "response-frame", bytes([0x1F]) + frame(2, response))
