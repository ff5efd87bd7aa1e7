"""One grid connection in Python, from PROTOCOL.md alone: the handshake (§1), calls both
ways (§5), chunked payloads (§2), streams with credit both ways (§6), pings (§1, §6) and
the closing handshake (§1). It dials (the dial rule picks its name so that it does) and
serves a small key-value service to the node, as the node serves one to it.
"""

import asyncio
import time
import uuid

import msgpack
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

import wire
from wire import Message, ProtocolError


def way(op):
    """§2: the messages of a call's caller and of its handler side are two ways."""
    return "to_handler" if op in (
        wire.REQUEST, wire.CONNECT_MUX, wire.MUX_CLIENT_MSG, wire.UNBLOCK_SERVER_MUX,
        wire.DISCONNECT_SERVER_MUX, wire.PING) else "to_caller"


def cost(payload):
    """§6.2: what a data message costs against its window: its payload and 64 bytes."""
    return len(payload or b"") + 64


class Stream:
    """A stream this side opened (§6): items from the handler side, and credit for ours."""

    def __init__(self, peer, mux, window):
        self.peer, self.mux = peer, mux
        self.ack = asyncio.get_running_loop().create_future()
        self.items = asyncio.Queue()
        self.next_in = 1   # the sequence number of the handler's next message
        self.next_out = 1  # ours
        self.credit = 0    # bytes we may still send (below zero by less than a message)
        self.credit_changed = asyncio.Event()
        self.window = window  # what we granted for the handler's messages, in the open
        self.unspent = window  # of what we granted, what the handler side has not used
        self.owed = 0      # credit we owe the handler side (bytes read, not yet returned)
        self.pong = None
        self.ended_by = None  # how the handler side ended it: "eof" or "disconnect"

    async def opened(self):
        """The window the ack grants for our messages (0: the handler takes none)."""
        return await self.ack

    async def recv(self):
        """The next item, None at the end; raises RemoteError if the stream failed."""
        kind, value = await self.items.get()
        if kind == "end":
            if value is not None:
                raise value
            return None
        self.owed += cost(value)
        if self.owed >= max(1, self.window // 8):
            self.unspent += self.owed
            await self.peer.send(Message(wire.UNBLOCK_SERVER_MUX, self.mux,
                                         payload=wire.pack_uint(self.owed)))
            self.owed = 0
        return value

    async def send(self, payload):
        while self.credit <= 0:
            self.credit_changed.clear()
            await self.credit_changed.wait()
        self.credit -= cost(payload)
        seq, self.next_out = self.next_out, self.next_out + 1
        await self.peer.send(Message(wire.MUX_CLIENT_MSG, self.mux, seq=seq, payload=payload))

    async def finish(self):
        """§6.4: EOF with sequence number n + 1 and no payload."""
        await self.peer.send(Message(wire.MUX_CLIENT_MSG, self.mux, seq=self.next_out,
                                     flags=wire.EOF))

    async def ping(self):
        """§6.6: a stream ping, answered with a Pong carrying the mux id."""
        self.pong = asyncio.get_running_loop().create_future()
        await self.peer.send(Message(wire.PING, self.mux))
        await asyncio.wait_for(self.pong, 10)


class Peer:
    def __init__(self, ws, name, remote, checksum, terms):
        self.ws, self.name, self.remote = ws, name, remote
        self.checksum, self.terms = checksum, terms
        self.next_mux = 1
        self.calls = {}      # mux -> future of the Response
        self.streams = {}    # mux -> Stream (opened here)
        self.served = {}     # mux -> [credit in bytes, event] (streams served here)
        self.partials = {}   # (way, mux) -> [op, seq, bytearray]
        self.store = {}
        self.served_calls = {"put": 0, "scan": 0}
        self.pings = {}
        # §1 "Draining": the node's reason once it said it is leaving.
        self.drained = asyncio.get_running_loop().create_future()
        self.send_lock = asyncio.Lock()
        # §1, §6.2: the node's credit to us stays within the largest window it announced.
        self.max_credit = terms.get("max_stream_window", 16 << 20)
        self.reader = asyncio.create_task(self.read_loop())

    # ---- sending ------------------------------------------------------------------------

    async def send(self, *messages):
        """Sends messages, merged into one frame (§2); a payload over 64 KiB goes in parts,
        each a frame of its own, with MORE on all but the last."""
        async with self.send_lock:
            small = [m for m in messages if m.payload is None or len(m.payload) <= wire.CHUNK]
            if small:
                await self.ws.send(wire.encode_frame(small, self.checksum))
            for m in messages:
                if m.payload is None or len(m.payload) <= wire.CHUNK:
                    continue
                parts = [m.payload[i:i + wire.CHUNK] for i in range(0, len(m.payload), wire.CHUNK)]
                for i, part in enumerate(parts):
                    flags = m.flags | (wire.MORE if i < len(parts) - 1 else 0)
                    chunk = Message(m.op, m.mux, m.seq, m.deadline, m.handler, flags, part,
                                    m.subroute)
                    await self.ws.send(wire.encode_frame([chunk], self.checksum))

    def mux(self):
        mux, self.next_mux = self.next_mux, self.next_mux + 1
        return mux

    def refuse_if_leaving(self):
        """§1 "Draining": nothing new starts on a peer that said it is leaving."""
        if self.drained.done():
            raise wire.RemoteError(wire.DRAINING, self.drained.result())

    async def call(self, handler, payload, deadline_ms=10_000):
        """§5: a single call; its answer's payload, or RemoteError."""
        self.refuse_if_leaving()
        mux = self.mux()
        fut = asyncio.get_running_loop().create_future()
        self.calls[mux] = fut
        await self.send(Message(wire.REQUEST, mux, deadline=deadline_ms, handler=handler,
                                payload=payload))
        answer = await asyncio.wait_for(fut, deadline_ms / 1000)
        if answer.flags & wire.PAYLOAD_IS_ERROR:
            raise wire.decode_error(answer.payload)
        return answer.payload

    async def open_stream(self, handler, payload, window, deadline_ms=30_000):
        """§6.1: opens a stream granting `window` bytes for the handler's messages (in the
        open's sequence field) and waits for its ack."""
        self.refuse_if_leaving()
        s = Stream(self, self.mux(), window)
        self.streams[s.mux] = s
        await self.send(Message(wire.CONNECT_MUX, s.mux, seq=window, deadline=deadline_ms,
                                handler=handler, payload=payload))
        s.credit = await asyncio.wait_for(s.opened(), 10)
        return s

    async def ping(self):
        """§1: a connection ping; the pong echoes its 8 bytes."""
        payload = time.monotonic_ns().to_bytes(8, "big")
        fut = asyncio.get_running_loop().create_future()
        self.pings[payload] = fut
        await self.send(Message(wire.PING, 0, payload=payload))
        await asyncio.wait_for(fut, 10)

    async def close(self):
        await self.ws.close(1000, "done")
        self.reader.cancel()

    # ---- receiving ----------------------------------------------------------------------

    async def read_loop(self):
        try:
            async for frame in self.ws:
                if isinstance(frame, str):
                    raise ProtocolError("a text frame")
                for m in wire.decode_frame(frame, self.checksum):
                    whole = self.reassemble(m)
                    if whole is not None:
                        await self.dispatch(whole)
        except ProtocolError as e:
            await self.ws.close(1002, str(e)[:120])
            raise
        except ConnectionClosed:
            pass

    def reassemble(self, m):
        """§2: parts of one payload, per mux and way, joined at the last one."""
        key = (way(m.op), m.mux)
        partial = self.partials.get(key)
        if partial is None:
            if not m.flags & wire.MORE:
                return m
            self.partials[key] = [m.op, m.seq, bytearray(m.payload or b"")]
            return None
        op, seq, data = partial
        if m.op != op:
            if m.flags & wire.MORE or m.op in (wire.REQUEST, wire.CONNECT_MUX, wire.MUX_CLIENT_MSG,
                                                wire.RESPONSE, wire.MUX_SERVER_MSG):
                raise ProtocolError(f"op {m.op} inside a chunked op {op} on mux {m.mux}")
            return m
        if m.seq != seq:
            raise ProtocolError("a part of another message of the same mux")
        data += m.payload or b""
        if m.flags & wire.MORE:
            return None
        del self.partials[key]
        m.payload, m.flags = bytes(data), m.flags & ~wire.MORE
        return m

    async def dispatch(self, m):
        op = m.op
        if op == wire.PING and m.mux == 0:
            await self.send(Message(wire.PONG, 0, payload=m.payload))
        elif op == wire.PING:
            await self.send(Message(wire.PONG, m.mux))
        elif op == wire.PONG and m.mux == 0:
            fut = self.pings.pop(m.payload, None)
            if fut and not fut.done():
                fut.set_result(None)
        elif op == wire.PONG:
            s = self.streams.get(m.mux)
            if s and s.pong and not s.pong.done():
                s.pong.set_result(None)
        elif op == wire.RESPONSE:
            fut = self.calls.pop(m.mux, None)
            if fut and not fut.done():
                fut.set_result(m)
        elif op in (wire.ACK_MUX, wire.MUX_CONNECT_ERROR):
            s = self.streams[m.mux]
            if op == wire.ACK_MUX:
                window = msgpack.unpackb(m.payload)[0]
                self.check_credit(window, m.mux)
                s.ack.set_result(window)
            else:
                # §3, §6.1: a refusal always carries an error payload, flagged.
                if not m.flags & wire.PAYLOAD_IS_ERROR:
                    raise ProtocolError(f"MuxConnectError on mux {m.mux} without PAYLOAD_IS_ERROR")
                s.ack.set_exception(wire.decode_error(m.payload))
        elif op == wire.MUX_SERVER_MSG:
            self.on_stream_item(m)
        elif op == wire.UNBLOCK_CLIENT_MUX:
            s = self.streams[m.mux]
            s.credit += wire.Reader(m.payload).uint()
            self.check_credit(s.credit, m.mux)
            s.credit_changed.set()
        elif op == wire.DISCONNECT_CLIENT_MUX:
            s = self.streams.pop(m.mux, None)
            if s:
                err = (wire.decode_error(m.payload) if m.flags & wire.PAYLOAD_IS_ERROR
                       else wire.RemoteError(wire.CANCELLED, "cancelled"))
                s.ended_by = "disconnect"
                s.items.put_nowait(("end", err))
        elif op == wire.REQUEST:
            asyncio.create_task(self.serve_call(m))
        elif op == wire.CONNECT_MUX:
            # The caller's window for our messages comes in the open's sequence field.
            self.served[m.mux] = [m.seq, asyncio.Event()]
            asyncio.create_task(self.serve_stream(m))
        elif op == wire.UNBLOCK_SERVER_MUX:
            credit = self.served.get(m.mux)
            if credit:
                credit[0] += wire.Reader(m.payload).uint()
                self.check_credit(credit[0], m.mux)
                credit[1].set()
        elif op == wire.DISCONNECT_SERVER_MUX:
            self.served.pop(m.mux, None)
        elif op == wire.DRAIN:
            reason = m.payload or b""
            if m.mux != 0 or len(reason) > wire.MAX_DRAIN_REASON:
                raise ProtocolError(f"Drain on mux {m.mux} with {len(reason)} bytes of reason")
            try:
                text = reason.decode("utf-8")
            except UnicodeDecodeError:
                raise ProtocolError("Drain with a reason that is not UTF-8") from None
            if not self.drained.done():  # a second Drain is ignored
                self.drained.set_result(text)
        else:
            raise ProtocolError(f"unexpected op {op}")

    def check_credit(self, credit, mux):
        """§1, §6.2: credit beyond the granting side's max_stream_window is its violation."""
        if credit > self.max_credit:
            raise ProtocolError(f"credit of {credit} bytes on mux {mux}, over the "
                                f"max_stream_window of {self.max_credit}")

    def on_stream_item(self, m):
        s = self.streams[m.mux]
        if m.seq != s.next_in:
            raise ProtocolError(f"stream message {m.seq} where {s.next_in} was expected")
        s.next_in += 1
        if not m.flags & wire.EOF:
            # §6.2: a message may go only while the sender's credit is above zero.
            if s.unspent <= 0:
                raise ProtocolError(f"stream message {m.seq} on mux {m.mux} without credit")
            s.unspent -= cost(m.payload)
            s.items.put_nowait(("item", m.payload))
            return
        err = wire.decode_error(m.payload) if m.flags & wire.PAYLOAD_IS_ERROR else None
        s.ended_by = "eof"
        s.items.put_nowait(("end", err))
        del self.streams[m.mux]

    # ---- serving the node's calls (the same key-value service, §8) ----------------------

    async def serve_call(self, m):
        reply = Message(wire.RESPONSE, m.mux, handler=m.handler)
        if m.handler == wire.handler_id(10, "put"):
            entry = wire.untyped(m.payload)
            self.store[entry["key"]] = entry["value"]
            self.served_calls["put"] += 1
            reply.payload = wire.typed(f"{self.name} stored it for {self.remote}")
        elif m.handler == wire.handler_id(10, "get"):
            reply.payload = wire.typed(self.store.get(wire.untyped(m.payload)))
        else:
            reply.flags = wire.PAYLOAD_IS_ERROR
            reply.payload = wire.encode_error(wire.UNKNOWN_HANDLER, "no such handler")
        await self.send(reply)

    async def serve_stream(self, m):
        """§6 as the handler side: scan streams our entries under a prefix, within credit."""
        if m.handler != wire.handler_id(10, "scan"):
            self.served.pop(m.mux, None)
            await self.send(Message(wire.MUX_CONNECT_ERROR, m.mux, handler=m.handler,
                                    flags=wire.PAYLOAD_IS_ERROR,
                                    payload=wire.encode_error(wire.UNKNOWN_HANDLER, "no such handler")))
            return
        self.served_calls["scan"] += 1
        credit = self.served[m.mux]
        # No input: the ack grants the caller a window of 0.
        await self.send(Message(wire.ACK_MUX, m.mux, handler=m.handler,
                                payload=msgpack.packb([0])))
        prefix = wire.untyped(m.payload)
        seq = 0
        for key, value in sorted(self.store.items()):
            if not key.startswith(prefix):
                continue
            while credit[0] <= 0:
                if m.mux not in self.served:
                    return  # cancelled
                credit[1].clear()
                await credit[1].wait()
            item = wire.typed({"key": key, "value": value})
            credit[0] -= cost(item)
            seq += 1
            await self.send(Message(wire.MUX_SERVER_MSG, m.mux, seq=seq, handler=m.handler,
                                    payload=item))
        self.served.pop(m.mux, None)
        await self.send(Message(wire.MUX_SERVER_MSG, m.mux, seq=seq + 1, handler=m.handler,
                                flags=wire.EOF))


async def handshake(url, name, token, extra=None):
    """§1: upgrade with the bearer token, send Connect (with the `extra` fields), read the
    ConnectResponse. Returns the socket, whether this side asks for checksums, and the
    answer's map."""
    ws = await ws_connect(url, additional_headers={"Authorization": f"Bearer {token}"},
                          compression=None, max_size=None, ping_interval=None)
    asks_checksums = not url.startswith("wss://")
    connect = {"host": name, "instance": str(uuid.uuid4()),
               "clock_ms": int(time.time() * 1000), "token": token, "version": 2,
               "max_message_size": 16 << 20, "checksums": asks_checksums, **(extra or {})}
    # Handshake messages always carry a checksum.
    await ws.send(wire.encode(Message(wire.CONNECT, payload=msgpack.packb(connect)), True))
    answer = wire.decode_frame(await ws.recv(), True)[0]
    if answer.op != wire.CONNECT_RESPONSE:
        raise ProtocolError(f"expected ConnectResponse, got op {answer.op}")
    return ws, asks_checksums, msgpack.unpackb(answer.payload)


async def close_of(ws):
    """§1: the close frame that ends the socket, as (code, reason), reading past anything
    else the other side still sends."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), 10)
    except ConnectionClosed as e:
        return e.rcvd.code, e.rcvd.reason


async def dial(url, name, remote, token, extra=None):
    """§1: the handshake, accepted by `remote`; a connection on the terms agreed."""
    ws, asks_checksums, terms = await handshake(url, name, token, extra)
    if not terms["accepted"]:
        raise RuntimeError(f"refused: {terms['reason']}")
    if terms["host"] != remote:
        raise RuntimeError(f"reached {terms['host']}, not {remote}")
    checksum = asks_checksums or terms.get("checksums", True)
    return Peer(ws, name, remote, checksum, terms)
