"""Runs the Python peer against a grid `node` and checks every step; exits non-zero on the
first failure. Also checks the encoder and decoder against PROTOCOL.md §9, byte for byte.

    python interop.py --pick-name NODE          # a name for this peer that dials NODE
    python interop.py --node NAME --url ws://HOST:PORT/grid/v1 --token TOKEN --name PY \
        [--node-pid PID]

With --node-pid, the last step stops the node (SIGINT) and checks its graceful drain.
"""

import argparse
import asyncio
import os
import pathlib
import re
import signal
import sys

import xxhash

import peer as grid_peer
import wire
from wire import Message

KV = 10  # the node's key-value service id (examples/examples/common/kv.rs)


def step(what):
    print(f"interop: ok  {what}", flush=True)


# ---- §9 vectors --------------------------------------------------------------------------


def check_vectors(protocol):
    text = protocol.read_text()
    blocks = re.findall(r"```vector\n(.*?)```", text, re.S)
    assert blocks, "no vectors found in PROTOCOL.md"
    for block in blocks:
        lines = [l for l in block.strip().splitlines() if l]
        fields = dict(l.split(": ", 1) for l in lines if not l.startswith("message: "))
        messages = []
        for line in (l for l in lines if l.startswith("message: ")):
            kv = dict(item.split("=", 1) for item in line[len("message: "):].split())
            payload = kv["payload"]
            m = Message(int(kv["op"]), int(kv["mux"]), int(kv["seq"]), int(kv["deadline"]),
                        int(kv["handler"]), int(kv["flags"]),
                        None if payload == "-" else bytes.fromhex(payload),
                        xxhash.xxh3_64_intdigest(kv["subroute"].encode()) if "subroute" in kv else None)
            messages.append(m)
        checksum = fields["checksum"] == "on"
        expected = bytes.fromhex(fields["bytes"].replace(" ", ""))
        got = wire.encode_frame(messages, checksum)
        assert got == expected, f"vector {fields['name']!r}: {got.hex(' ')} != {expected.hex(' ')}"
        decoded = wire.decode_frame(expected, checksum)
        for d, m in zip(decoded, messages, strict=True):
            assert (d.op, d.mux, d.seq, d.deadline, d.handler, d.flags, d.payload, d.subroute) == \
                (m.op, m.mux, m.seq, m.deadline, m.handler, m.flags, m.payload, m.subroute), \
                f"vector {fields['name']!r} decodes differently"
    hs = re.search(r"```handshake\nbytes: (.*?)\n```", text, re.S).group(1)
    connect = {"host": "a", "instance": "00000000-0000-0000-0000-000000000001",
               "clock_ms": 1700000000000, "token": "t"}
    assert wire.msgpack.packb(connect) == bytes.fromhex(hs.replace(" ", "")), "handshake vector"
    step(f"{len(blocks)} frame vectors and the handshake vector of PROTOCOL.md §9, byte for byte")


# ---- against the node ----------------------------------------------------------------------


async def against(node, url, token, name, node_pid=None):
    # §1: a field this version does not define is ignored.
    p = await grid_peer.dial(url, name, node, token, extra={"x_later": [1, "two"]})
    assert p.checksum, "a plain ws:// connection uses checksums"
    assert p.terms.get("version") == 2, p.terms
    step(f"handshake with {node}: accepted (an unknown field ignored), checksums on, "
         f"terms {sorted(p.terms)}")

    put, get = wire.handler_id(KV, "put"), wire.handler_id(KV, "get")
    stored = wire.untyped(await p.call(put, wire.typed({"key": "py/a", "value": "1"})))
    assert stored == f"{node} stored it for {name}", stored
    assert wire.untyped(await p.call(get, wire.typed("py/a"))) == "1"
    assert wire.untyped(await p.call(get, wire.typed("py/missing"))) is None
    step("typed calls: put, get, an Option's None (nil)")

    try:
        await p.call(put, wire.typed({"key": "", "value": "x"}))
        raise AssertionError("an empty key was accepted")
    except wire.RemoteError as e:
        assert e.kind == wire.REMOTE and "empty" in e.message, e
    try:
        await p.call(put, wire.typed({"value": "no key"}))
        raise AssertionError("a request without its key was accepted")
    except wire.RemoteError as e:
        assert e.kind == wire.CODEC, e
    try:
        await p.call(wire.handler_id(KV, "nope"), wire.typed(1))
        raise AssertionError("an unknown handler answered")
    except wire.RemoteError as e:
        assert e.kind == wire.UNKNOWN_HANDLER, e
    step("error answers: Remote, Codec, UnknownHandler")

    big = "x" * 300_000
    await p.call(put, wire.typed({"key": "py/big", "value": big}))
    assert wire.untyped(await p.call(get, wire.typed("py/big"))) == big
    step("a 300 KB value both ways: chunked by this peer, chunked back by the node")

    for i in range(10):
        await p.call(put, wire.typed({"key": f"py/scan/{i:02}", "value": str(i)}))
    # A window of 250 bytes: about two of these items (each costs its size and 64 bytes), so
    # the node waits for our credit several times.
    s = await p.open_stream(wire.handler_id(KV, "scan"), wire.typed("py/scan/"), window=250)
    got = []
    while (item := await s.recv()) is not None:
        got.append(wire.untyped(item))
    assert [e["key"] for e in got] == [f"py/scan/{i:02}" for i in range(10)], got
    step(f"a handler stream of 10 items through a window of {s.window} bytes, credit returned")

    s = await p.open_stream(wire.handler_id(KV, "bulk_put"), wire.typed(name), window=64 << 10)
    in_window = s.credit
    await s.ping()
    counts = []

    async def read_counts():
        while (item := await s.recv()) is not None:
            counts.append(wire.untyped(item))

    reading = asyncio.create_task(read_counts())
    for i in range(40):
        await s.send(wire.typed({"key": f"py/bulk/{i:02}", "value": str(i)}))
    await s.finish()
    await asyncio.wait_for(reading, 10)
    assert counts == list(range(1, 41)), counts
    step(f"a two-way stream: 40 items up through a window of {in_window} bytes, 40 counts back, "
         "EOF both ways, a stream ping answered")

    await p.ping()
    step("a connection ping answered with its payload")

    await protocol_details(p)

    for _ in range(200):
        if p.served_calls["put"] and p.served_calls["scan"]:
            break
        await asyncio.sleep(0.1)
    assert p.served_calls["put"] and p.served_calls["scan"], p.served_calls
    step(f"the node's own calls served here: {p.served_calls}")
    await p.close()
    step("closed with a close frame")

    await refusals(node, url, token, name)
    if node_pid:
        await drained(node, url, token, name, node_pid)


async def protocol_details(p):
    """The rules an independent implementation had to guess before PROTOCOL.md said them."""
    bulk_put = wire.handler_id(KV, "bulk_put")

    # §1: a message for a mux id not in flight is ignored, not a violation.
    await p.send(Message(wire.RESPONSE, 999_999, handler=bulk_put, payload=wire.typed("stray")))
    await p.ping()
    step("a Response for a mux id not in flight is ignored: the connection carries on")

    # §3, §6.1: a refusal is a MuxConnectError flagged PAYLOAD_IS_ERROR (checked on receipt).
    try:
        await p.open_stream(wire.handler_id(KV, "nope"), wire.typed(1), window=1024)
        raise AssertionError("a stream to an unknown handler was acknowledged")
    except wire.RemoteError as e:
        assert e.kind == wire.UNKNOWN_HANDLER, e
    step("a stream to an unknown handler: MuxConnectError, flagged PAYLOAD_IS_ERROR")

    # §6.1: a caller message in the same frame as its ConnectMux arrives before the ack:
    # DisconnectClientMux with a Protocol error, and no ack ever.
    s = grid_peer.Stream(p, p.mux(), 1024)
    p.streams[s.mux] = s
    await p.send(Message(wire.CONNECT_MUX, s.mux, seq=1024, deadline=10_000, handler=bulk_put,
                         payload=wire.typed("early")),
                 Message(wire.MUX_CLIENT_MSG, s.mux, seq=1, payload=wire.typed("too soon")))
    try:
        await asyncio.wait_for(s.recv(), 10)
        raise AssertionError("a message before the ack was accepted")
    except wire.RemoteError as e:
        assert e.kind == wire.PROTOCOL and s.ended_by == "disconnect", (e, s.ended_by)
    assert not s.ack.done(), "an ack after the stream was refused"
    step("a caller message before the ack: DisconnectClientMux (Protocol), no ack")

    # §6.7: at its deadline the handler side ends the stream as a failed handler does: a
    # MuxServerMsg with EOF and PAYLOAD_IS_ERROR, numbered after what it sent (the
    # sequence is checked on receipt). This side does not enforce the deadline itself.
    s = await p.open_stream(bulk_put, wire.typed("slow"), window=1024, deadline_ms=300)
    try:
        await asyncio.wait_for(s.recv(), 10)
        raise AssertionError("the stream outlived its deadline")
    except wire.RemoteError as e:
        assert e.kind == wire.DEADLINE and s.ended_by == "eof", (e, s.ended_by)
    step("a stream's deadline on the handler side: MuxServerMsg EOF with DeadlineExceeded")


async def refusals(node, url, token, name):
    """How the node refuses (§1) and where its limits end a connection (§2, §7)."""
    # §1: a maximum message size under 512 bytes is refused; the close frame says who was
    # refused and why.
    ws, _, answer = await grid_peer.handshake(url, name, token, extra={"max_message_size": 100})
    assert not answer["accepted"] and "512" in answer["reason"], answer
    code, reason = await grid_peer.close_of(ws)
    assert code == 1008 and reason == f"{name} refused: {answer['reason']}"[:123], (code, reason)
    step(f"a maximum message size of 100 refused: 1008 \"{reason[:60]}...\"")

    # §2: more than 64 chunked payloads in progress at once is past a limit: 1008.
    p = await grid_peer.dial(url, name, node, token)
    parts = [Message(wire.REQUEST, mux, handler=wire.handler_id(KV, "put"), flags=wire.MORE,
                     payload=b"x") for mux in range(1, 66)]
    # The close frame is read here, not by the peer's reader.
    p.reader.cancel()
    await asyncio.gather(p.reader, return_exceptions=True)
    await p.send(*parts)
    code, reason = await grid_peer.close_of(p.ws)
    assert code == 1008 and "64 chunked payloads" in reason, (code, reason)
    step("65 chunked payloads in progress: closed with 1008")


async def drained(node, url, token, name, pid):
    """§1 "Draining": the node, told to stop, says it is leaving; a call that crossed that
    message is refused with kind 9 (not executed); this peer starts nothing new there; a
    stream in flight runs to its end; then the node closes with 1001."""
    p = await grid_peer.dial(url, name, node, token)
    put = wire.handler_id(KV, "put")
    # A stream in flight holds the node's drain open until it ends.
    s = await p.open_stream(wire.handler_id(KV, "bulk_put"), wire.typed(name), window=64 << 10)
    os.kill(pid, signal.SIGINT)
    reason = await asyncio.wait_for(p.drained, 10)
    assert reason == f"{node} is shutting down", reason
    step(f"the node, stopped, said it is leaving: Drain \"{reason}\"")

    try:
        await p.call(put, wire.typed({"key": "py/late", "value": "x"}))
        raise AssertionError("a call was started on a leaving node")
    except wire.RemoteError as e:
        assert e.kind == wire.DRAINING, e
    # As a call that crossed the Drain on the way: sent anyway, refused by the node.
    mux = p.mux()
    fut = asyncio.get_running_loop().create_future()
    p.calls[mux] = fut
    await p.send(Message(wire.REQUEST, mux, deadline=10_000, handler=put,
                         payload=wire.typed({"key": "py/crossed", "value": "x"})))
    answer = await asyncio.wait_for(fut, 10)
    assert answer.flags & wire.PAYLOAD_IS_ERROR, answer
    err = wire.decode_error(answer.payload)
    assert err.kind == wire.DRAINING and node in err.message, err
    step("a call that crossed the Drain: refused with kind 9 (Draining), not executed")

    await s.send(wire.typed({"key": "py/drain", "value": "1"}))
    await s.finish()
    counts = []
    while (item := await asyncio.wait_for(s.recv(), 10)) is not None:
        counts.append(wire.untyped(item))
    assert counts == [1], counts
    await asyncio.wait_for(p.reader, 10)
    code = p.ws.close_code
    assert code == 1001, (code, p.ws.close_reason)
    step(f"the stream in flight ran to its end, then the node closed: {code} "
         f"\"{p.ws.close_reason}\"")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pick-name")
    ap.add_argument("--node")
    ap.add_argument("--url")
    ap.add_argument("--token")
    ap.add_argument("--name")
    ap.add_argument("--node-pid", type=int)
    args = ap.parse_args()
    if args.pick_name:
        # §1: this peer has no listener, so it takes a name with which it dials.
        print(next(f"py-{i}" for i in range(1000) if wire.dials(f"py-{i}", args.pick_name)))
        return
    check_vectors(pathlib.Path(__file__).resolve().parent.parent / "PROTOCOL.md")
    asyncio.run(against(args.node, args.url, args.token, args.name, args.node_pid))
    print("interop: all steps passed")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # report and fail
        print(f"interop: FAILED: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
