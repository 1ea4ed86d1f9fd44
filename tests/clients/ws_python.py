#!/usr/bin/env python3
"""Real-client check with the Python `websockets` package.

Usage: ws_python.py URL TOKEN N [TIMEOUT_SECONDS]

Connects with the token in `?access_token=` (the library's default permessage-deflate offer is
left on: the gateway strips it), sends one JSON message, and prints one JSON line
{"echo_has_routing_key": bool, "events": [seq...], "agents": [agentId...], ...} once N events
arrived. Exits 0 on success, 1 on a timeout or a connection failure (the line is still printed).
"""
import asyncio
import json
import sys
from urllib.parse import urlencode, urlsplit, urlunsplit

try:
    import websockets
except ImportError:  # pragma: no cover - reported by the Rust test
    print(json.dumps({"error": "python package `websockets` missing (make envoy installs it in .venv)"}))
    sys.exit(3)


def with_token(url: str, token: str) -> str:
    parts = urlsplit(url)
    query = (parts.query + "&" if parts.query else "") + urlencode({"access_token": token})
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


async def run(url: str, token: str, wanted: int, summary: dict) -> None:
    async with websockets.connect(
        with_token(url, token), open_timeout=10, close_timeout=2, max_size=2**22
    ) as ws:
        summary["subprotocol"] = ws.subprotocol
        summary["extensions"] = ws.response.headers.get("Sec-WebSocket-Extensions")
        await ws.send(json.dumps({"action": "hello", "client": "python-websockets"}))
        while summary["echo_has_routing_key"] is None or len(summary["events"]) < wanted:
            message = await ws.recv()
            try:
                value = json.loads(message)
            except (TypeError, ValueError):
                continue
            if not isinstance(value, dict):
                continue
            if value.get("client") == "python-websockets":
                summary["echo_has_routing_key"] = isinstance(value.get("routing_key"), str)
            elif isinstance(value.get("metadata"), dict) and "seq" in value["metadata"]:
                summary["events"].append(value["metadata"]["seq"])
                summary["agents"].append((value.get("data") or {}).get("agentId"))


def main() -> int:
    if len(sys.argv) < 4:
        print("usage: ws_python.py URL TOKEN N [TIMEOUT_SECONDS]", file=sys.stderr)
        return 2
    url, token, wanted = sys.argv[1], sys.argv[2], int(sys.argv[3])
    timeout = float(sys.argv[4]) if len(sys.argv) > 4 else 20.0
    summary = {"echo_has_routing_key": None, "events": [], "agents": [],
               "client": "python-websockets " + websockets.__version__}
    code = 0
    try:
        asyncio.run(asyncio.wait_for(run(url, token, wanted, summary), timeout))
    except asyncio.TimeoutError:
        summary["error"] = f"timed out after {timeout}s"
        code = 1
    except Exception as error:  # noqa: BLE001 - reported in the summary line
        summary["error"] = f"{type(error).__name__}: {error}"
        code = 1
    summary["echo_has_routing_key"] = bool(summary["echo_has_routing_key"])
    print(json.dumps(summary), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
