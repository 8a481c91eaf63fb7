#!/usr/bin/env node
// The scenarios of `sockhop bench`, run by two Node processes with Sockhop
// 1.8.4 (the npm package installed in internal/interop/node, or wherever
// SOCKHOP_MODULE points), for bench/compare.sh. 1.8.4 speaks JSON lines
// only. Prints one result, as a JSON line with --json, in the format of
// `sockhop bench --json` plus "impl".
//
//   node bench/node/bench.js --scenario s1 [--transport tcp|unix] [--n N]
//        [--inflight K] [--clients K] [--size BYTES] [--buffer base64|array] [--json]
//
// The server is this script re-run as a child process (`server` as its
// first argument); it exits when its stdin closes. s3's buffers go as 2.x
// and Go write them in JSON mode, {"type":"Buffer","data":"<base64>"},
// unless --buffer array makes 1.8.4 write a Buffer its own way
// ({"type":"Buffer","data":[1,2,...]}, about 3.6 bytes per byte).
"use strict";

const path = require("path");
const fs = require("fs");
const os = require("os");
const { spawn } = require("child_process");
const readline = require("readline");
const sockhop = require(process.env.SOCKHOP_MODULE ||
    path.join(__dirname, "../../internal/interop/node/node_modules/sockhop"));

// 1.8.4 names a message after its constructor: these classes give the
// type names the Go side uses.
class Widget { constructor(seq) { this.seq = seq; this.name = "widget"; this.vals = [1, 2, 3]; } }
class Count { constructor() { this.ask = true; } }
class Broadcast { constructor(n) { this.n = n; } }
class RSS { constructor() { this.ask = true; } }
class Hello { constructor() { this.hi = true; } }

function parseArgs(argv) {
    const o = { scenario: "s1", transport: "tcp", path: "", n: 0, inflight: 64, clients: 0, size: 1 << 20, buffer: "base64", json: false };
    for (let i = 0; i < argv.length; i++) {
        const k = argv[i].replace(/^--?/, "");
        if (k === "json") o.json = true;
        else if (k in o) o[k] = typeof o[k] === "number" ? Number(argv[++i]) : argv[++i];
        else throw new Error("unknown flag " + argv[i]);
    }
    return o;
}

// ---- server ---------------------------------------------------------------

async function runServer(o) {
    const opts = o.transport === "unix" ? { path: o.path } : { address: "127.0.0.1" };
    const server = new sockhop.server(opts);
    if (o.transport !== "unix") server.port = 0; // 1.8.4 turns port 0 into 50000
    let count = 0, bytes = 0;
    server.on("error", () => {});
    server.on("receive", async (data, meta) => {
        switch (meta.type) {
        case "Widget":
            if (meta.callback) meta.callback({ seq: data.seq });
            else count++;
            return;
        case "Buffer": {
            // Decode fully: the bytes, as the Go side gets them.
            const b = typeof data === "string" ? Buffer.from(data, "base64") : Buffer.from(data.data);
            count++; bytes += b.length;
            return;
        }
        case "Count":
            meta.callback({ count, bytes });
            count = 0; bytes = 0;
            return;
        case "Hello":
            meta.callback({ ok: true });
            return;
        case "RSS":
            if (global.gc) global.gc();
            meta.callback({ rss_kb: Math.round(process.memoryUsage().rss / 1024), sessions: server.sockets.length });
            return;
        case "Broadcast": {
            for (let i = 0; i < data.n; i++) {
                const p = server.sendall(new Widget(i));
                // 1.8.4 queues without limit: let the sockets drain now and then.
                if (i % 200 === 199) await p;
            }
            meta.callback({ sessions: server.sockets.length });
            return;
        }
        }
    });
    await server.listen();
    const ready = o.transport === "unix" ? { path: o.path } : { addr: "127.0.0.1:" + server.server.address().port };
    process.stdout.write(JSON.stringify(ready) + "\n");
    process.stdin.resume();
    process.stdin.on("end", () => process.exit(0));
    process.stdin.on("close", () => process.exit(0));
}

// ---- client ---------------------------------------------------------------

function cpuReader(pid) {
    // user+system time of the child, from /proc/PID/stat (10 ms ticks).
    return () => {
        const s = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
        const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
        return (Number(f[11]) + Number(f[12])) * 10000; // µs
    };
}

function selfCPU() {
    const u = process.cpuUsage();
    return u.user + u.system; // µs
}

async function startChild(o) {
    const args = ["--expose-gc", __filename, "server", "--transport", o.transport];
    let dir = null;
    if (o.transport === "unix") {
        dir = fs.mkdtempSync(path.join(os.tmpdir(), "shnode"));
        o.path = path.join(dir, "s.sock");
        args.push("--path", o.path);
    }
    const child = spawn(process.execPath, args, { stdio: ["pipe", "pipe", "inherit"] });
    const line = await new Promise((res, rej) => {
        readline.createInterface({ input: child.stdout }).once("line", res);
        child.once("exit", (code) => rej(new Error("server exited " + code)));
    });
    const r = JSON.parse(line);
    return {
        child,
        cpu: cpuReader(child.pid),
        opts: o.transport === "unix" ? { path: r.path } : { address: "127.0.0.1", port: Number(r.addr.split(":")[1]) },
        stop: () => { child.stdin.end(); if (dir) fs.rmSync(dir, { recursive: true, force: true }); },
    };
}

async function dial(srv) {
    const c = new sockhop.client(srv.opts);
    c.on("error", () => {});
    await c.connect();
    return c;
}

// request sends o with a callback and resolves with the reply's data.
const request = (c, o) => new Promise((res) => c.send(o, (data) => res(data)));

// drain waits until the client's socket buffer is back under its mark.
function drain(c) {
    const s = c.socket;
    if (!s || !s.writableNeedDrain) return null;
    return new Promise((res) => s.once("drain", res));
}

async function checkCount(c, n, size) {
    const got = await request(c, new Count());
    if (got.count !== n || got.bytes !== n * size) throw new Error(`server counted ${got.count} (${got.bytes} bytes), sent ${n}`);
}

const scenarios = {
    async s1(o, srv) {
        const c = await dial(srv);
        return {
            work: o.n,
            async pass(n) {
                for (let i = 0; i < n; i++) {
                    c.send(new Widget(i));
                    const d = drain(c);
                    if (d) await d;
                }
                await checkCount(c, n, 0);
            },
            close: () => c.disconnect(),
        };
    },
    async s2seq(o, srv) { return scenarios.s2par({ ...o, inflight: 1 }, srv); },
    async s2par(o, srv) {
        const c = await dial(srv);
        const res = {
            work: o.n, lat: null,
            async pass(n) {
                const lat = new Float64Array(n);
                let next = 0;
                const worker = async () => {
                    for (;;) {
                        const i = next++;
                        if (i >= n) return;
                        const t0 = process.hrtime.bigint();
                        const r = await request(c, new Widget(i));
                        if (r.seq !== i) throw new Error(`request ${i} answered with ${r.seq}`);
                        lat[i] = Number(process.hrtime.bigint() - t0) / 1000;
                    }
                };
                await Promise.all(Array.from({ length: o.inflight }, worker));
                res.lat = lat;
            },
            close: () => c.disconnect(),
        };
        return res;
    },
    async s3(o, srv) {
        const c = await dial(srv);
        const buf = Buffer.alloc(o.size);
        for (let i = 0; i < buf.length; i++) buf[i] = (i * 7) & 255;
        return {
            work: o.n * o.size / (1 << 20),
            async pass(n) {
                for (let i = 0; i < n; i++) {
                    if (o.buffer === "array") c.send(buf);
                    else c._send_message({ type: "Buffer", data: buf.toString("base64") });
                    const d = drain(c);
                    if (d) await d;
                }
                await checkCount(c, n, o.size);
            },
            close: () => c.disconnect(),
        };
    },
    async s4(o, srv) {
        const clients = [];
        let got = 0, target = -1, done = null;
        for (let i = 0; i < o.clients; i++) {
            const c = await dial(srv);
            await request(c, new Hello()); // the server has registered it
            c.on("receive", (data, meta) => {
                if (meta.type === "Widget" && ++got === target) done();
            });
            clients.push(c);
        }
        return {
            work: o.n * o.clients,
            async pass(n) {
                got = 0; target = n * clients.length;
                const all = new Promise((res) => { done = res; });
                const r = await request(clients[0], new Broadcast(n));
                if (r.sessions !== clients.length) throw new Error(`broadcast to ${r.sessions} sessions`);
                await all;
            },
            close: () => clients.forEach((c) => c.disconnect()),
        };
    },
};

async function s5(o, srv) {
    const open = async (k) => {
        const cs = [];
        for (let i = 0; i < k; i++) {
            const c = await dial(srv);
            await request(c, new Hello());
            cs.push(c);
        }
        return cs;
    };
    const warm = await open(Math.max(1, Math.floor(o.clients / 10)) + 1);
    const before = await request(warm[0], new RSS());
    const c0 = selfCPU(), s0 = srv.cpu(), t0 = process.hrtime.bigint();
    const conns = await open(o.clients);
    const secs = Number(process.hrtime.bigint() - t0) / 1e9;
    const c1 = selfCPU(), s1 = srv.cpu();
    await new Promise((r) => setTimeout(r, 200));
    const after = await request(warm[0], new RSS());
    warm.concat(conns).forEach((c) => c.disconnect());
    return {
        value: round((after.rss_kb - before.rss_kb) / o.clients, 2), n: o.clients, secs,
        client: (c1 - c0) / o.clients, server: (s1 - s0) / o.clients,
    };
}

const round = (v, p) => Math.round(v * 10 ** p) / 10 ** p;

async function runClient(o) {
    const defs = { s1: 500000, s2seq: 20000, s2par: 200000, s3: 256, s4: 10000, s5: 1000 };
    const units = { s1: "msg/s", s2seq: "rt/s", s2par: "rt/s", s3: "MiB/s", s4: "deliv/s", s5: "KB/conn" };
    if (!(o.scenario in defs)) throw new Error("unknown scenario " + o.scenario);
    o.n = o.n || defs[o.scenario];
    o.clients = o.clients || ({ s4: 100, s5: 1000 }[o.scenario] || 0);
    const srv = await startChild(o);
    const r = { impl: "node-" + require(path.join(path.dirname(require.resolve(process.env.SOCKHOP_MODULE ||
        path.join(__dirname, "../../internal/interop/node/node_modules/sockhop"))), "package.json")).version,
    scenario: o.scenario, mode: "json", transport: o.transport, value: 0, unit: units[o.scenario], n: o.n, secs: 0 };
    try {
        if (o.scenario === "s5") {
            const m = await s5(o, srv);
            Object.assign(r, { value: m.value, n: m.n, secs: round(m.secs, 4),
                client_cpu_us_per_unit: round(m.client, 3), server_cpu_us_per_unit: round(m.server, 3) });
        } else {
            const sc = await scenarios[o.scenario](o, srv);
            await sc.pass(Math.max(1, Math.floor(o.n / 10)));
            const c0 = selfCPU(), s0 = srv.cpu(), t0 = process.hrtime.bigint();
            await sc.pass(o.n);
            const secs = Number(process.hrtime.bigint() - t0) / 1e9;
            const c1 = selfCPU(), s1 = srv.cpu();
            r.value = round(sc.work / secs, 1);
            r.secs = round(secs, 4);
            if (sc.lat) {
                const lat = Array.from(sc.lat).sort((a, b) => a - b);
                r.p50_us = round(lat[Math.floor(lat.length / 2)], 1);
                r.p99_us = round(lat[Math.floor(lat.length * 99 / 100)], 1);
            }
            r.client_cpu_us_per_unit = round((c1 - c0) / sc.work, 3);
            r.server_cpu_us_per_unit = round((s1 - s0) / sc.work, 3);
            sc.close();
        }
    } finally {
        srv.stop();
    }
    if (o.json) {
        process.stdout.write(JSON.stringify(r) + "\n");
    } else {
        let s = `Node Sockhop ${r.impl} ${r.scenario} over ${r.transport}: ${r.value} ${r.unit} (n ${r.n} in ${r.secs} s;` +
            ` cpu/unit client ${r.client_cpu_us_per_unit} µs, server ${r.server_cpu_us_per_unit} µs)`;
        if (r.p50_us !== undefined) s += `, p50 ${r.p50_us} µs, p99 ${r.p99_us} µs`;
        process.stdout.write(s + "\n");
    }
    // 1.8.4 clients keep a reconnect timer alive: exit explicitly.
    process.exit(0);
}

const argv = process.argv.slice(2);
const main = argv[0] === "server" ? () => runServer(parseArgs(argv.slice(1))) : () => runClient(parseArgs(argv));
main().catch((e) => {
    process.stderr.write("bench.js: " + (e && e.stack || e) + "\n");
    process.exit(1);
});
