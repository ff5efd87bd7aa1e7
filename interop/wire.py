"""grid's wire format in Python, written from PROTOCOL.md alone (section numbers are its):
messages, merged frames and checksums (§2), ops and flags (§3, §4), error payloads (§5),
the typed mapping (§8) and the dial rule (§1). No I/O here; `peer.py` speaks it on a
socket.
"""

import struct

import msgpack
import xxhash

# §3 ops
CONNECT, CONNECT_RESPONSE, PING, PONG, REQUEST, RESPONSE = 1, 2, 3, 4, 5, 6
CONNECT_MUX, ACK_MUX, MUX_CONNECT_ERROR, MUX_CLIENT_MSG, MUX_SERVER_MSG = 7, 8, 9, 10, 11
UNBLOCK_SERVER_MUX, UNBLOCK_CLIENT_MUX = 12, 13
DISCONNECT_CLIENT_MUX, DISCONNECT_SERVER_MUX, MERGED = 14, 15, 16
DRAIN = 17  # §1 "Draining": the sender is leaving; mux id 0, the reason in UTF-8
MAX_DRAIN_REASON = 123
# §4 flags
EOF, PAYLOAD_IS_ERROR, ZERO_LENGTH, SUBROUTE, CHECKSUM, MORE = 1, 2, 4, 8, 16, 32
KNOWN_FLAGS = 63
CHUNK = 64 * 1024  # §2: payloads over 64 KiB travel in parts of at most this
# §5 error kinds
REMOTE, UNKNOWN_HANDLER, DEADLINE, CANCELLED, CODEC, PROTOCOL, BUSY, TOO_LARGE = range(1, 9)
DRAINING = 9


class ProtocolError(Exception):
    """The peer broke the protocol (we close with 1002)."""


class RemoteError(Exception):
    """An error payload (§5): kind and message (and, for TooLarge, size and limit)."""

    def __init__(self, kind, message, sizes=None):
        super().__init__(f"kind {kind}: {message}")
        self.kind, self.message, self.sizes = kind, message, sizes


# ---- §2 messages ---------------------------------------------------------------------


class Message:
    def __init__(self, op, mux=0, seq=0, deadline=0, handler=0, flags=0, payload=None,
                 subroute=None):
        self.op, self.mux, self.seq, self.deadline = op, mux, seq, deadline
        self.handler, self.flags, self.payload, self.subroute = handler, flags, payload, subroute

    def __repr__(self):
        size = None if self.payload is None else len(self.payload)
        return f"Message(op={self.op} mux={self.mux} seq={self.seq} flags={self.flags} payload={size})"


def pack_uint(v):
    return msgpack.packb(v)  # the shortest encoding, as §2 asks of encoders


def encode(m, checksum):
    """One message's bytes; the encoder sets ZERO_LENGTH, SUBROUTE and CHECKSUM itself."""
    flags = m.flags & ~(ZERO_LENGTH | SUBROUTE | CHECKSUM)
    if m.payload is not None and len(m.payload) == 0:
        flags |= ZERO_LENGTH
    if m.subroute is not None:
        flags |= SUBROUTE
    if checksum:
        flags |= CHECKSUM
    n = 7 + (m.subroute is not None) + checksum
    out = bytearray([0x90 | n])
    for v in (m.mux, m.seq, m.deadline, m.handler, m.op, flags):
        out += pack_uint(v)
    out += b"\xc0" if m.payload is None else msgpack.packb(bytes(m.payload), use_bin_type=True)
    if m.subroute is not None:
        out += pack_uint(m.subroute)
    if checksum:
        out += b"\xcf" + struct.pack(">Q", xxhash.xxh3_64_intdigest(bytes(out)))
    return bytes(out)


def encode_frame(messages, checksum):
    """A frame: the message itself, or a Merged wrapper (one checksum for all, §2)."""
    if len(messages) == 1:
        return encode(messages[0], checksum)
    inner = b"".join(encode(m, False) for m in messages)
    return encode(Message(MERGED, payload=inner), checksum)


class Reader:
    def __init__(self, data, pos=0):
        self.data, self.pos = data, pos

    def byte(self):
        if self.pos >= len(self.data):
            raise ProtocolError("truncated message")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def take(self, n):
        if self.pos + n > len(self.data):
            raise ProtocolError("truncated message")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def uint(self):
        b = self.byte()
        if b <= 0x7F:
            return b
        sizes = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}
        if b not in sizes:
            raise ProtocolError(f"expected a uint, got marker {b:#x}")
        return int.from_bytes(self.take(sizes[b]), "big")

    def nil_or_bin(self):
        b = self.byte()
        if b == 0xC0:
            return None
        sizes = {0xC4: 1, 0xC5: 2, 0xC6: 4}
        if b not in sizes:
            raise ProtocolError(f"expected nil or bin, got marker {b:#x}")
        return bytes(self.take(int.from_bytes(self.take(sizes[b]), "big")))


def decode_one(r, require_checksum):
    """One message from the reader's position, and whether it carried a checksum."""
    start = r.pos
    marker = r.byte()
    if marker & 0xF0 != 0x90:
        raise ProtocolError("a message is a fixarray")
    n = marker & 0x0F
    mux, seq, deadline, handler, op, flags = (r.uint() for _ in range(6))
    if flags & ~KNOWN_FLAGS:
        raise ProtocolError(f"unknown flag bits {flags}")
    if n != 7 + bool(flags & SUBROUTE) + bool(flags & CHECKSUM):
        raise ProtocolError("array length does not match the flags")
    if require_checksum and op != MERGED and not flags & CHECKSUM:
        raise ProtocolError("message without a checksum")
    payload = r.nil_or_bin()
    if (payload is not None and len(payload) == 0) != bool(flags & ZERO_LENGTH):
        raise ProtocolError("ZERO_LENGTH does not match the payload")
    subroute = r.uint() if flags & SUBROUTE else None
    if flags & CHECKSUM:
        covered = bytes(r.data[start:r.pos])
        if r.byte() != 0xCF:
            raise ProtocolError("checksum must be a uint 64")
        if int.from_bytes(r.take(8), "big") != xxhash.xxh3_64_intdigest(covered):
            raise ProtocolError("bad checksum")
    m = Message(op, mux, seq, deadline, handler, flags & ~(ZERO_LENGTH | SUBROUTE | CHECKSUM),
                payload, subroute)
    return m, bool(flags & CHECKSUM)


def decode_frame(data, require_checksum):
    r = Reader(data)
    m, summed = decode_one(r, require_checksum)
    if r.pos != len(data):
        raise ProtocolError("trailing bytes after the message")
    if m.op != MERGED:
        return [m]
    if not m.payload:
        raise ProtocolError("empty merged frame")
    inner, out = Reader(m.payload), []
    while inner.pos < len(m.payload):
        im, _ = decode_one(inner, require_checksum and not summed)
        if im.op == MERGED:
            raise ProtocolError("merged frame inside a merged frame")
        out.append(im)
    return out


# ---- §5 error payloads, §8 typed mapping --------------------------------------------


def encode_error(kind, message):
    return msgpack.packb([kind, message])


def decode_error(payload):
    items = msgpack.unpackb(payload)
    kind, message = items[0], items[1]
    sizes = (items[2], items[3]) if kind == TOO_LARGE and len(items) >= 4 else None
    return RemoteError(kind, message, sizes)


def method_id(name):
    """§8: FNV-1a 32-bit over the name, folded to 16 bits, 0 replaced by 1."""
    h = 0x811C9DC5
    for b in name.encode():
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    folded = (h >> 16) ^ (h & 0xFFFF)
    return folded or 1


def handler_id(service, method):
    return (service << 16) | method_id(method)


def typed(value):
    return msgpack.packb(value, use_bin_type=True)


def untyped(payload):
    return msgpack.unpackb(payload, raw=False)


# ---- §1 dial rule ---------------------------------------------------------------------


def dials(local, remote):
    lo, hi = sorted([local.encode(), remote.encode()])
    smaller_dials = xxhash.xxh3_64_intdigest(lo + b"\0" + hi) & 1 == 0
    return (local.encode() == lo) == smaller_dials
