#!/usr/bin/env node
// Prints the median table of bench/compare.sh from its results file: one
// run per line, "IMPL<TAB>SCENARIO<TAB>JSON" (JSON as `sockhop bench
// --json` prints it).
"use strict";

const fs = require("fs");

const file = process.argv[2];
if (!file) {
    process.stderr.write("usage: node table.js RESULTS.tsv\n");
    process.exit(2);
}

// go-binary and go-json run with --inline (handlers on the reading
// goroutine); go-dispatched is binary mode with the default, handlers on
// goroutines of their own. grpc, nats and netrpc are bench/others.
const known = ["go-binary", "go-json", "go-dispatched", "node-1.8.4", "raw-go", "grpc", "nats", "netrpc"];
// The ratio columns of go-binary over each of bench/others, shown when it
// ran: [column, implementation].
const others = [["bin/grpc", "grpc"], ["bin/nats", "nats"], ["bin/rpc", "netrpc"]];
const order = ["s1", "s1-c10", "s1-c100", "s1-c1000", "s2seq", "s2seq-unix", "s2par", "s2par-c10", "s2par-c100", "s2par-c1000", "s3", "s4", "s4-c10", "s4-c1000", "s5"];
// Node Sockhop 2.1.0 and raw Go on the reference machine (same kind, 2
// vCPUs), for orientation: this machine's load and speed differ.
const ref = {
    s1: { bin: "188k", json: "400k", raw: "502k map / 644k struct" },
    s2seq: { bin: "8.4k p50 115", json: "9.2k p50 107", raw: "15.5k p50 66" },
    "s2seq-unix": { bin: "", json: "", raw: "30k p50 16" },
    s2par: { bin: "81k", json: "115k", raw: "200k" },
    s3: { bin: "661", json: "204 (base64)", raw: "1367" },
    s4: { bin: "126k", json: "349k", raw: "1.22M" },
    s5: { bin: "24.3", json: "25.6", raw: "14.7" },
};

const runs = {}; // scenario -> impl -> [result]
for (const line of fs.readFileSync(file, "utf8").split("\n")) {
    if (!line.trim()) continue;
    const [impl, sc, json] = line.split("\t");
    let r;
    try { r = JSON.parse(json); } catch { continue; }
    ((runs[sc] = runs[sc] || {})[impl] = runs[sc][impl] || []).push(r);
}

const median = (xs) => {
    const s = xs.filter((x) => typeof x === "number").sort((a, b) => a - b);
    if (!s.length) return undefined;
    const m = Math.floor(s.length / 2);
    return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const fmt = (v) => {
    if (v === undefined) return "-";
    if (v >= 1e6) return (v / 1e6).toFixed(2) + "M";
    if (v >= 1e4) return (v / 1e3).toFixed(0) + "k";
    if (v >= 1e3) return (v / 1e3).toFixed(1) + "k";
    return v.toFixed(v < 100 ? 1 : 0);
};
const ratio = (a, b) => (a === undefined || b === undefined || b === 0) ? "-" : (a / b).toFixed(2) + "x";

const med = {}; // scenario -> impl -> {value, p50, p99, cpuC, cpuS, n}
for (const sc of Object.keys(runs)) {
    med[sc] = {};
    for (const impl of Object.keys(runs[sc])) {
        const rs = runs[sc][impl];
        med[sc][impl] = {
            value: median(rs.map((r) => r.value)),
            p50: median(rs.map((r) => r.p50_us)),
            p99: median(rs.map((r) => r.p99_us)),
            cpuC: median(rs.map((r) => r.client_cpu_us_per_unit)),
            cpuS: median(rs.map((r) => r.server_cpu_us_per_unit)),
            unit: rs[0].unit,
            reps: rs.length,
        };
    }
}

const pad = (s, n) => String(s).padEnd(n);
const lpad = (s, n) => String(s).padStart(n);
const cell = (m) => {
    if (!m) return "-";
    let s = fmt(m.value);
    if (m.p50 !== undefined) s += ` p50 ${fmt(m.p50)}`;
    return s;
};

const scs = order.filter((s) => med[s]).concat(Object.keys(med).filter((s) => !order.includes(s)));
const impls = known.filter((i) => scs.some((s) => med[s][i]));
const reps = Math.max(...scs.flatMap((s) => Object.values(med[s]).map((m) => m.reps)));
console.log(`\nMedians of ${reps} runs (p50 latency in µs). Ratios: Go JSON mode / Node 1.8.4, Go / raw Go.`);
const disp = impls.includes("go-dispatched");
const other = others.filter(([, i]) => impls.includes(i));
if (other.length) {
    console.log(`${other.map(([c]) => c).join(", ")}: go-binary's value / theirs, s5 too ` +
        "(KB/conn, lower is better: under 1x, go-binary holds less per connection).");
}
const head = [pad("scenario", 11), pad("unit", 8), ...impls.map((i) => lpad(i, 16)), lpad("json/node", 10), lpad("bin/raw", 8), lpad("json/raw", 9)];
if (disp) head.push(lpad("disp/raw", 9));
for (const [c] of other) head.push(lpad(c, 9));
console.log(head.join(" "));
for (const sc of scs) {
    const m = med[sc];
    const any = Object.values(m)[0];
    const row = [pad(sc, 11), pad(any.unit, 8), ...impls.map((i) => lpad(cell(m[i]), 16))];
    const v = (i) => m[i] && m[i].value;
    row.push(lpad(ratio(v("go-json"), v("node-1.8.4")), 10), lpad(ratio(v("go-binary"), v("raw-go")), 8), lpad(ratio(v("go-json"), v("raw-go")), 9));
    if (disp) row.push(lpad(ratio(v("go-dispatched"), v("raw-go")), 9));
    for (const [, i] of other) row.push(lpad(ratio(v("go-binary"), v(i)), 9));
    console.log(row.join(" "));
}

console.log("\nCPU per unit (µs, client side / server), medians:");
for (const sc of scs) {
    const m = med[sc];
    console.log(pad(sc, 11) + impls.map((i) => lpad(m[i] ? `${fmt(m[i].cpuC)}/${fmt(m[i].cpuS)}` : "-", 16)).join(" "));
}

console.log("\nReference points (Node 2.1.0 binary / JSON mode, raw Go; reference machine):");
for (const sc of scs) {
    if (ref[sc]) console.log(`  ${pad(sc, 11)} ${ref[sc].bin || "-"} / ${ref[sc].json || "-"} / ${ref[sc].raw}`);
}

// The targets, against what was measured here where possible.
const g = (sc, i, k = "value") => med[sc] && med[sc][i] && med[sc][i][k];
const targets = [
    ["S1 binary >= 2.5x Node 2.1.0 binary (188k, reference machine)", g("s1", "go-binary") / 188000, 2.5, ">="],
    ["S1 binary >= 0.9x raw Go (map decode)", g("s1", "go-binary") / g("s1", "raw-go"), 0.9, ">="],
    ["S1 JSON >= 1.25x Node (1.8.4 here)", g("s1", "go-json") / g("s1", "node-1.8.4"), 1.25, ">="],
    ["S2a p50 <= 1.3x raw Go, TCP", g("s2seq", "go-binary", "p50") / g("s2seq", "raw-go", "p50"), 1.3, "<="],
    ["S2a p50 <= 2x raw Go, Unix", g("s2seq-unix", "go-binary", "p50") / g("s2seq-unix", "raw-go", "p50"), 2, "<="],
    ["S2b >= 0.75x raw Go", g("s2par", "go-binary") / g("s2par", "raw-go"), 0.75, ">="],
    ["S3 binary >= 0.9x raw Go", g("s3", "go-binary") / g("s3", "raw-go"), 0.9, ">="],
    ["S3 base64 JSON >= 3x Node (1.8.4 base64 here)", g("s3", "go-json") / g("s3", "node-1.8.4"), 3, ">="],
    ["S4 binary >= 0.8x raw Go", g("s4", "go-binary") / g("s4", "raw-go"), 0.8, ">="],
    ["S5 binary <= 1.2x raw Go", g("s5", "go-binary") / g("s5", "raw-go"), 1.2, "<="],
];
console.log("\nTargets:");
for (const [what, r, want, op] of targets) {
    if (!(r > 0) || !isFinite(r)) continue;
    const ok = op === ">=" ? r >= want : r <= want;
    console.log(`  ${ok ? "met   " : "missed"} ${pad(what, 52)} ${r.toFixed(2)}x`);
}
