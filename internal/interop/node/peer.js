#!/usr/bin/env node
// A real Sockhop 1.8.4 peer for the sockhop-go interop tests.
// Driven by JSON lines on stdin, reports JSON lines on stdout. See README.md.
//
//   node peer.js server --port N | --path /unix/sock
//   node peer.js client --port N | --path /unix/sock
"use strict";

const readline = require("readline");
const sockhop = require("sockhop");

// One JSON object per line. Writes to a pipe or file are synchronous on Linux,
// so nothing printed is lost when we process.exit() right after.
const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");
const errFields = (e) => ({ message: e && e.message, code: e && e.code });

// ---- arguments ------------------------------------------------------------
const [role, flag, value] = process.argv.slice(2);
const opts = {};
if (flag === "--port") opts.port = Number(value);
else if (flag === "--path") opts.path = value;
if (!["server", "client"].includes(role) || !(opts.port || opts.path)) {
    process.stderr.write("usage: node peer.js server|client --port N | --path P\n");
    process.exit(2);
}
const isServer = role === "server";

// ---- values ---------------------------------------------------------------

// The bytes of a received value, or null if it is not a Buffer message.
// 1.8.4 has no base64 handling, so it never hands us a Buffer: a "Buffer"
// message arrives as its raw wire data - a base64 string (what 2.x and Go
// write) or Node's {"type":"Buffer","data":[...]} (what 1.x writes).
function bytesOf(data, type) {
    if (Buffer.isBuffer(data)) return data;
    if (type !== "Buffer") return null;
    if (typeof data === "string") return Buffer.from(data, "base64");
    if (data && data.type === "Buffer" && Array.isArray(data.data)) return Buffer.from(data.data);
    return null;
}

// {type, data, base64?} for receive/reply events: data exactly as 1.8.4
// delivered it, plus the decoded bytes as canonical base64 when there are any.
function describe(data, type) {
    const o = { type };
    if (!Buffer.isBuffer(data)) o.data = data; // undefined (no "data" key on the wire) stays absent
    const b = bytesOf(data, type);
    if (b) o.base64 = b.toString("base64");
    return o;
}

// The JS value a send/request command asks for. The wire type is the value's
// constructor name, so "class" builds an instance of a class with that name.
function valueOf(cmd) {
    if ("base64" in cmd) return Buffer.from(cmd.base64, "base64");
    if (cmd.class) {
        const C = { [cmd.class]: class {} }[cmd.class]; // class named after the key
        return Object.assign(new C(), cmd.data);
    }
    return cmd.data;
}

// Run a command step; report sync throws and rejected promises (1.8.4 does
// both, e.g. server send() of a falsy value throws ERR_BAD_DATA).
function guard(cmd, fn) {
    const fail = (e) => out({ event: "cmd_error", cmd: cmd.cmd, ...errFields(e) });
    try {
        Promise.resolve(fn()).catch(fail);
    } catch (e) {
        fail(e);
    }
}

// ---- the peer ---------------------------------------------------------------
let connecting = !isServer; // client connect errors are reported once, at the end of the retry loop
let listening = false;
// Commands wait until we are listening/connected, so a test may write them early.
let setReady;
const ready = new Promise((r) => (setReady = r));
const peer = isServer ? new sockhop.server(opts) : new sockhop.client(opts);

// Always listen for 'error': without a listener a bad line kills the process.
peer.on("error", (e) => {
    if (connecting) return;
    out({ event: "error", ...errFields(e) });
    // 1.8.4's listen() never settles on a bind error (EADDRINUSE): give up.
    if (isServer && !listening) process.exit(1);
});

// 1.8.4 (both ends): receive(data, meta); meta.callback is set on requests.
peer.on("receive", (data, meta) => {
    const request = typeof meta.callback === "function";
    out({ event: "receive", ...describe(data, meta.type), request });
    if (!request) return;
    const b = bytesOf(data, meta.type);
    const reply = b ? Buffer.from(b).reverse() : { echo: data, type: meta.type };
    guard({ cmd: "reply" }, () => {
        meta.callback(reply); // throws ERR_SOCKET_DESTROYED if the peer is gone
        out({ event: "replied" });
    });
});
peer.on("disconnect", () => out({ event: "disconnect" }));

if (isServer) {
    peer.on("connect", () => out({ event: "connect" }));
    peer.listen().then(() => {
        listening = true;
        out({ event: "listening" });
        setReady();
    });
} else {
    // The Go server may not be listening yet: retry refused connects for 5 s.
    (async () => {
        const deadline = Date.now() + 5000;
        for (;;) {
            try {
                await peer.connect();
                connecting = false;
                out({ event: "connected" });
                return setReady();
            } catch (e) {
                if (Date.now() >= deadline) {
                    out({ event: "error", ...errFields(e) });
                    process.exit(1);
                }
                await new Promise((r) => setTimeout(r, 100));
            }
        }
    })();
}

// ---- commands -------------------------------------------------------------
function run(cmd) {
    switch (cmd.cmd) {
    case "send":
        if ("type" in cmd) {
            // Raw envelope {type, data} through 1.8.4's private _send_message:
            // any type name, no constructor involved.
            const msg = { type: cmd.type, data: valueOf(cmd) };
            return guard(cmd, () => isServer
                ? Promise.all(peer.sockets.map((s) => peer._send_message(s, msg)))
                : peer._send_message(msg));
        }
        return guard(cmd, () => isServer ? peer.sendall(valueOf(cmd)) : peer.send(valueOf(cmd)));
    case "request": {
        // 1.8.4 calls the remote callback as cb(data, {type}).
        const cb = (data, meta) => out({ event: "reply", id: cmd.id, ...describe(data, meta.type) });
        if (!isServer) return guard(cmd, () => peer.send(valueOf(cmd), cb));
        // The server has no "request all": one request per connected socket.
        return peer.sockets.forEach((s) => guard(cmd, () => peer.send(s, valueOf(cmd), cb)));
    }
    case "ping":
        return peer.ping(cmd.ms || 0); // 0 stops pinging
    case "exit":
        return shutdown(0);
    default:
        out({ event: "cmd_error", cmd: cmd.cmd, message: "unknown command" });
    }
}

readline.createInterface({ input: process.stdin })
    .on("line", (line) => {
        if (!line.trim()) return;
        let cmd;
        try {
            cmd = JSON.parse(line);
            if (!cmd || typeof cmd !== "object") throw new Error("not an object");
        } catch (e) {
            return out({ event: "cmd_error", message: "bad command line: " + e.message });
        }
        // In arrival order; a broken command must not look like a library crash.
        ready.then(() => run(cmd))
            .catch((e) => out({ event: "cmd_error", cmd: cmd.cmd, ...errFields(e) }));
    })
    // stdin closed (e.g. the Go test died): never linger.
    .on("close", () => shutdown(0));

let shuttingDown = false;
function shutdown(code) {
    if (shuttingDown) return; // "exit" and then stdin EOF
    shuttingDown = true;
    // The 1.8.4 client keeps an auto-reconnect setInterval alive forever (even
    // after disconnect()), so exit explicitly; don't wait long for close().
    setTimeout(() => process.exit(code), 1000).unref();
    const closing = isServer ? peer.close() : peer.disconnect();
    Promise.resolve(closing).then(() => process.exit(code), () => process.exit(code));
}

// 1.8.4 throws from its socket 'data' handler on some input (a response with
// an unknown callback_id, a `null` line) - that kills a real 1.8.4 app too.
// Say so on stdout, then die the same way.
process.on("uncaughtException", (e) => {
    out({ event: "fatal", ...errFields(e) });
    process.stderr.write(String(e && e.stack) + "\n");
    process.exit(1);
});
// Parent gone: nobody to report to.
process.stdout.on("error", () => process.exit(0));
