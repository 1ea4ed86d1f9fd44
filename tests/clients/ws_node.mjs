#!/usr/bin/env node
// Real-client check with Node's `ws` package.
//
// Usage: node ws_node.mjs URL TOKEN N [TIMEOUT_SECONDS]
//
// Connects with the token in an `Authorization: Bearer` header (ws offers permessage-deflate by
// default; the gateway strips it), sends one JSON message, and prints one JSON line
// {"echo_has_routing_key": bool, "events": [seq...], "agents": [agentId...], ...} once N events
// arrived. Exits 0 on success, 1 on a timeout or a connection failure (the line is still printed).
let WebSocket;
try {
  ({ default: WebSocket } = await import("ws"));
} catch {
  console.log(JSON.stringify({
    error: "node package `ws` missing: run `npm ci --prefix tests/clients` (make target installs it)",
  }));
  process.exit(3);
}

const [url, token, wantedArg, timeoutArg] = process.argv.slice(2);
if (!url || !token || !wantedArg) {
  console.error("usage: ws_node.mjs URL TOKEN N [TIMEOUT_SECONDS]");
  process.exit(2);
}
const wanted = Number(wantedArg);
const timeoutMs = 1000 * Number(timeoutArg ?? 20);
const summary = { echo_has_routing_key: null, events: [], agents: [], client: "node-ws" };

let done = false;
function finish(code, error) {
  if (done) return;
  done = true;
  if (error) summary.error = String(error);
  summary.echo_has_routing_key = Boolean(summary.echo_has_routing_key);
  process.stdout.write(JSON.stringify(summary) + "\n", () => process.exit(code));
  try { socket.terminate(); } catch { /* already gone */ }
}

const timer = setTimeout(() => finish(1, `timed out after ${timeoutMs / 1000}s`), timeoutMs);
const socket = new WebSocket(url, { headers: { Authorization: `Bearer ${token}` }, handshakeTimeout: 10000 });

socket.on("upgrade", (response) => {
  summary.extensions = response.headers["sec-websocket-extensions"] ?? null;
});
socket.on("open", () => {
  summary.subprotocol = socket.protocol || null;
  socket.send(JSON.stringify({ action: "hello", client: "node-ws" }));
});
socket.on("message", (data, isBinary) => {
  if (isBinary) return;
  let value;
  try { value = JSON.parse(data.toString("utf8")); } catch { return; }
  if (!value || typeof value !== "object") return;
  if (value.client === "node-ws") {
    summary.echo_has_routing_key = typeof value.routing_key === "string";
  } else if (value.metadata && typeof value.metadata === "object" && "seq" in value.metadata) {
    summary.events.push(value.metadata.seq);
    summary.agents.push(value.data?.agentId ?? null);
  }
  if (summary.echo_has_routing_key !== null && summary.events.length >= wanted) {
    clearTimeout(timer);
    finish(0);
  }
});
socket.on("unexpected-response", (_request, response) => {
  clearTimeout(timer);
  finish(1, `handshake refused: HTTP ${response.statusCode}`);
});
socket.on("error", (error) => { clearTimeout(timer); finish(1, error.message); });
socket.on("close", (code, reason) => {
  clearTimeout(timer);
  finish(1, `closed before done: ${code} ${reason}`);
});
