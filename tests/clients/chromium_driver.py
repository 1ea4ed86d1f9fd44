#!/usr/bin/env python3
"""Drives headless Chromium through examples/agent-desktop/index.html against a gateway.

Usage: chromium_driver.py GATEWAY_WS_URL TOKEN N [--http-port P] [--timeout S] [--chromium PATH]

Serves examples/agent-desktop/ from 127.0.0.1 (port P, or one the OS picks), launches Chromium
headless with the page URL (`?gateway=...&token=...`), and polls the page through the DevTools
protocol (`--remote-debugging-port=0`, a websocket client from the Python `websockets` package)
until its `#events` list has N items, or the timeout passes. Virtual time (`--dump-dom
--virtual-time-budget`) is not used: it does not wait for real socket traffic.

Prints one JSON line: {"state", "count", "events": [seq...], "agents": [...], "protocol",
"echo_routing_key", "origin"}; exits 0 when N events were listed, 1 otherwise, 3 when a tool is
missing.
"""
import argparse
import functools
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[2]
PAGE_DIR = ROOT / "examples" / "agent-desktop"

PROBE = r"""(() => {
  const list = document.getElementById("events");
  const state = document.getElementById("state");
  if (!list || !state) return JSON.stringify({loaded: false});
  const items = Array.from(list.querySelectorAll("li.event"));
  return JSON.stringify({
    loaded: true,
    state: state.dataset.state,
    state_text: state.textContent,
    count: Number(list.dataset.count || 0),
    events: items.map(li => Number(li.dataset.seq)),
    agents: items.map(li => li.dataset.agent),
    protocol: list.dataset.protocol || null,
    echo_routing_key: list.dataset.echoRoutingKey || null,
    origin: location.origin,
  });
})()"""


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output to the one summary line
        pass


def serve(port: int) -> http.server.ThreadingHTTPServer:
    handler = functools.partial(QuietHandler, directory=str(PAGE_DIR))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def devtools_port(profile: Path, process: subprocess.Popen, deadline: float) -> int:
    marker = profile / "DevToolsActivePort"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"chromium exited early with {process.returncode}")
        try:
            first = marker.read_text().splitlines()[0]
            return int(first)
        except (OSError, IndexError, ValueError):
            time.sleep(0.05)
    raise TimeoutError("chromium did not open its DevTools port")


def page_socket_url(port: int, deadline: float) -> str:
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as r:
                targets = json.load(r)
            for target in targets:
                if target.get("type") == "page":
                    return target["webSocketDebuggerUrl"]
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError("no page target in chromium")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("gateway")
    parser.add_argument("token")
    parser.add_argument("wanted", type=int)
    parser.add_argument("--http-port", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=40.0)
    parser.add_argument("--chromium", default=os.environ.get("SWITCHBOARD_CHROMIUM", "chromium"))
    args = parser.parse_args()

    summary = {"state": None, "count": 0, "events": [], "agents": []}
    chromium = shutil.which(args.chromium)
    if chromium is None:
        summary["error"] = f"{args.chromium} not found (apt-get install -y chromium)"
        print(json.dumps(summary), flush=True)
        return 3
    try:
        from websockets.sync.client import connect
    except ImportError:
        summary["error"] = "python package `websockets` missing from this interpreter"
        print(json.dumps(summary), flush=True)
        return 3

    deadline = time.monotonic() + args.timeout
    server = serve(args.http_port)
    http_port = server.server_address[1]
    page = f"http://127.0.0.1:{http_port}/index.html?" + urlencode(
        {"gateway": args.gateway, "token": args.token})
    profile = Path(tempfile.mkdtemp(prefix="sb-chromium-"))
    command = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-extensions",
        "--disable-dev-shm-usage", "--remote-debugging-address=127.0.0.1",
        "--remote-debugging-port=0", f"--user-data-dir={profile}", page,
    ]
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, start_new_session=True)
    stderr_tail = []

    def drain():
        for line in process.stderr:
            stderr_tail.append(line.decode("utf-8", "replace").rstrip())
            del stderr_tail[:-30]
    threading.Thread(target=drain, daemon=True).start()

    code = 1
    try:
        port = devtools_port(profile, process, deadline)
        with connect(page_socket_url(port, deadline), open_timeout=10, max_size=2**24) as cdp:
            ids = iter(range(1, 1 << 30))
            while True:
                request = next(ids)
                cdp.send(json.dumps({"id": request, "method": "Runtime.evaluate",
                                     "params": {"expression": PROBE, "returnByValue": True}}))
                while True:
                    reply = json.loads(cdp.recv(timeout=max(0.1, deadline - time.monotonic())))
                    if reply.get("id") == request:
                        break
                value = reply.get("result", {}).get("result", {}).get("value")
                if value:
                    summary.update(json.loads(value))
                if summary.get("count", 0) >= args.wanted and summary.get("echo_routing_key"):
                    code = 0
                    break
                if summary.get("state") in ("closed", "error"):
                    summary["error"] = f"page connection {summary.get('state_text')}"
                    break
                if time.monotonic() > deadline:
                    summary["error"] = f"timed out after {args.timeout}s"
                    break
                time.sleep(0.2)
    except Exception as error:  # noqa: BLE001 - reported in the summary line
        summary["error"] = f"{type(error).__name__}: {error}"
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        server.shutdown()
        shutil.rmtree(profile, ignore_errors=True)
    if code != 0:
        summary["chromium_stderr"] = stderr_tail[-10:]
    print(json.dumps(summary), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
