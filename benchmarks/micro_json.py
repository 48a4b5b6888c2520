"""JSON libraries on hubbub's own frames: encode (server frames) and decode (client frames).

    .venv/bin/python benchmarks/micro_json.py [--seconds 0.3]

Encoding candidates turn the server's frame dicts into bytes (what `protocol.encode`
does); decoding candidates turn a client frame's text into something the gateway can
act on. A plain `loads` gives an unchecked dict, so the decode table also has the typed
path the gateway needs (`msgspec` decoding straight into the validated structs of
`hubbub.protocol.frames`) and a dict decode followed by `msgspec.convert` into the same structs.
Each cell is the best of five timed loops, in nanoseconds per frame (lower is better).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import msgspec
import orjson

from hubbub.protocol.frames import ClientFrame, parse_frame

BODY = "x" * 150

SERVER_FRAMES: dict[str, dict[str, Any]] = {
    "message": {
        "type": "message",
        "room": "general",
        "seq": 123456,
        "id": "c1a2b3c4d5e6f708",
        "from": "alice",
        "body": BODY,
        "ts": 1764400000000,
    },
    "ack": {
        "type": "ack",
        "room": "general",
        "id": "c1a2b3c4d5e6f708",
        "seq": 123456,
        "ts": 1764400000000,
        "ref": "r42",
    },
    "presence": {"type": "presence", "room": "general", "user": "alice", "status": "online"},
    "joined": {
        "type": "joined",
        "room": "general",
        "seq": 123456,
        "presence": [f"user{i}" for i in range(100)],
        "recovered": True,
        "ref": "j1",
    },
}

CLIENT_FRAMES: dict[str, bytes] = {
    "send": orjson.dumps(
        {"type": "send", "room": "general", "id": "c1a2b3c4d5e6f708", "body": BODY, "ref": "r42"}
    ),
    "join": orjson.dumps({"type": "join", "room": "general", "since": 123400, "ref": "j1"}),
    "typing": orjson.dumps({"type": "typing", "room": "general"}),
    "ping": orjson.dumps({"type": "ping", "ref": "p1"}),
}

_typed = msgspec.json.Decoder(ClientFrame)
_untyped = msgspec.json.Decoder()
_enc = msgspec.json.Encoder()


def _stdlib_dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


ENCODERS: dict[str, Callable[[Any], bytes]] = {
    "orjson.dumps": orjson.dumps,
    "msgspec Encoder.encode": _enc.encode,
    "json.dumps (compact)": _stdlib_dumps,
}

# Frames reach the gateway as text (aiohttp has already checked the UTF-8), so the
# decoders are given str, as in the server.
DECODERS: dict[str, Callable[[str], Any]] = {
    "orjson.loads (dict)": orjson.loads,
    "msgspec Decoder (dict)": _untyped.decode,
    "json.loads (dict)": json.loads,
    "msgspec typed Decoder": _typed.decode,
    "orjson.loads + convert": lambda s: msgspec.convert(orjson.loads(s), ClientFrame),
    "hubbub parse_frame": lambda s: parse_frame(s, 4000),
}


def best_ns(fn: Callable[[Any], Any], arg: Any, seconds: float) -> float:
    n = 1000
    while True:  # size a loop to ~seconds/5
        t = time.perf_counter()
        for _ in range(n):
            fn(arg)
        took = time.perf_counter() - t
        if took > seconds / 10:
            break
        n *= 4
    loops = max(int(n * (seconds / 5) / took), 1)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter_ns()
        for _ in range(loops):
            fn(arg)
        best = min(best, (time.perf_counter_ns() - t) / loops)
    return best


def table(
    title: str, fns: dict[str, Callable[[Any], Any]], inputs: dict[str, Any], seconds: float
) -> dict[str, dict[str, float]]:
    names = list(inputs)
    print(f"\n{title} (ns per frame, best of 5)")
    print(f"| {'library':<24} | " + " | ".join(f"{n:>8}" for n in names) + " |")
    print(f"| {'-' * 24} | " + " | ".join("-" * 8 for _ in names) + " |")
    results: dict[str, dict[str, float]] = {}
    for label, fn in fns.items():
        row = {n: best_ns(fn, inputs[n], seconds) for n in names}
        results[label] = row
        print(f"| {label:<24} | " + " | ".join(f"{row[n]:>8.0f}" for n in names) + " |")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.3, help="time per cell")
    args = parser.parse_args()
    print(f"orjson {orjson.__version__}, msgspec {msgspec.__version__}")
    for frame in SERVER_FRAMES.values():  # all encoders agree on the bytes' meaning
        assert all(json.loads(enc(frame)) == frame for enc in ENCODERS.values())
    enc = table("encode: server frames", ENCODERS, SERVER_FRAMES, args.seconds)
    texts = {k: v.decode() for k, v in CLIENT_FRAMES.items()}
    dec = table("decode: client frames (text)", DECODERS, texts, args.seconds)
    fastest_enc = min(enc, key=lambda k: sum(enc[k].values()))
    typed = {k: v for k, v in dec.items() if k != "hubbub parse_frame" and "(dict)" not in k}
    fastest_dec = min(typed, key=lambda k: sum(typed[k].values()))
    print(f"\nfastest encoder: {fastest_enc}; fastest validating decoder: {fastest_dec}")


if __name__ == "__main__":
    main()
