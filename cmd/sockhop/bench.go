package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	sockhop "github.com/sockhop/sockhop-go"
)

var benchUsage = usage{
	synopsis: "sockhop bench [--scenario s1|s2seq|s2par|s3|s4|s5] [--mode binary|json] [--transport tcp|unix]\n" +
		"              [--n N] [--inflight K] [--clients K] [--size BYTES] [--decode struct|map] [--inline] [--no-release] [--port N] [--json]",
	about: `Measures this library between two processes: the server is this binary
re-executed as a child process, the client side runs here. Each run makes a
warm-up pass (a tenth of the work) and then the timed pass, and reports one
figure, the CPU both processes used per unit of it (getrusage here,
/proc/PID/stat for the server) and, for request/reply, the latency
percentiles. With --json the result is one JSON line:
  {"scenario":"s1","mode":"binary","transport":"tcp","value":512345.6,
   "unit":"msg/s","n":500000,"secs":0.976,"client_cpu_us_per_unit":1.52,
   "server_cpu_us_per_unit":1.73}

Scenarios (every receiver decodes each message fully, into a struct or,
with --decode map, a map):
  s1     one-way {"seq":i,"name":"widget","vals":[1,2,3]} objects, pipelined,
         then a request whose reply carries the server's count (must be N);
         with --clients K, K connections share the N at once
  s2seq  request/reply, one request in flight: rt/s, p50/p99 latency
  s2par  request/reply, --inflight requests in flight (default 64); with
         --clients K (s2seq too), that many on each of K connections
  s3     N typed buffers of --size bytes (default 256 x 1 MiB); in JSON mode
         they go as Buffers, base64 on the wire: MiB/s. The receiving
         handler calls Message.Release (buffer reuse) unless --no-release
  s4     the server broadcasts N objects (default 10,000) to --clients
         clients (default 100) in this process: deliveries/s
  s5     server memory (RSS) per idle handshaked connection, for --clients
         connections (default 1,000), after a GC in the server: KB/conn

Mode json turns binary mode off on both sides (the handshake still runs).
With --inline both sides run their handlers on the reading goroutine
(ConnOptions.InlineHandlers; the bench's handlers never block).
With SOCKHOP_BENCH_PROFILE=DIR in the environment, both processes write
a CPU profile there (client.pprof, server.pprof) for go tool pprof.
Figures on a shared machine are noisy: run each a few times and compare
medians. A progress line is shown on stderr when it is a terminal.`,
	examples: `sockhop bench
sockhop bench --scenario s2seq --transport unix
sockhop bench --scenario s1 --mode json --n 200000 --json
sockhop bench --scenario s3 --size 65536 --n 4096
sockhop bench --scenario s4 --clients 10 --n 100000
for i in 1 2 3; do sockhop bench --scenario s2par --json; done`,
}

// benchFlags are bench's command line.
type benchFlags struct {
	scenario, mode, transport, decode string
	n, inflight, clients, size, port  int
	json, noProgress, noRelease       bool
	inline, pipelined                 bool
}

// benchScenario is one thing bench can measure.
type benchScenario struct {
	name  string
	what  string // for the readable result
	unit  string // of the figure
	per   string // what one unit of CPU cost is counted per
	defN  int
	run   func(ctx context.Context, b *bench) (*benchResult, error)
	queue func(f *benchFlags) int // server MaxQueueBytes, 0 for the default
}

func benchScenarios() []benchScenario {
	return []benchScenario{
		{name: "s1", what: "one-way messages", unit: "msg/s", per: "msg", defN: 500_000, run: benchOneWay},
		{name: "s2seq", what: "sequential request/reply", unit: "rt/s", per: "round trip", defN: 20_000, run: benchRequests},
		{name: "s2par", what: "parallel request/reply", unit: "rt/s", per: "round trip", defN: 200_000, run: benchRequests},
		{name: "s3", what: "typed buffers", unit: "MiB/s", per: "MiB", defN: 256, run: benchBuffers},
		{name: "s4", what: "broadcast", unit: "deliv/s", per: "delivery", defN: 10_000, run: benchBroadcastScenario,
			// A broadcast never waits for a slow session, it cuts it off
			// past MaxQueueBytes: leave room for the whole burst.
			queue: func(f *benchFlags) int { return max(sockhop.DefaultMaxQueueBytes, 128*f.n) }},
		{name: "s5", what: "memory per idle connection", unit: "KB/conn", per: "connection", defN: 1000, run: benchMemory},
	}
}

// benchResult is one measurement; its JSON form is bench's --json line.
type benchResult struct {
	Scenario  string   `json:"scenario"`
	Mode      string   `json:"mode"`
	Transport string   `json:"transport"`
	Value     float64  `json:"value"`
	Unit      string   `json:"unit"`
	N         int      `json:"n"`
	Secs      float64  `json:"secs"`
	P50       *float64 `json:"p50_us,omitempty"`
	P99       *float64 `json:"p99_us,omitempty"`
	ClientCPU *float64 `json:"client_cpu_us_per_unit"`
	ServerCPU *float64 `json:"server_cpu_us_per_unit"`
	// s5 only: the server's Go heap in use per connection.
	HeapPerConn *float64 `json:"heap_kb_per_conn,omitempty"`
}

// bench is one run: its flags, its server child and its progress line.
type bench struct {
	f     benchFlags
	sc    benchScenario
	child *benchChild
	prog  *progress
}

func runBench(ctx context.Context, e *env, args []string) error {
	if len(args) > 0 && args[0] == "server" {
		return runBenchServer(ctx, e, args[1:])
	}
	fs := newFlagSet("bench")
	var f benchFlags
	fs.StringVar(&f.scenario, "scenario", "s1", "what to measure: `s1|s2seq|s2par|s3|s4|s5` (see above)")
	fs.StringVar(&f.mode, "mode", "binary", "`binary|json`: binary frames after the handshake, or JSON lines only")
	fs.StringVar(&f.transport, "transport", "tcp", "`tcp|unix`: loopback TCP or a Unix socket")
	fs.IntVar(&f.n, "n", 0, "messages, round trips, buffers or broadcasts of the timed pass (default per scenario: 500000, 20000, 200000, 256, 10000)")
	fs.IntVar(&f.inflight, "inflight", 64, "requests in flight for s2par")
	fs.IntVar(&f.clients, "clients", 0, "connections: for s1 and s2 (default 1, sharing the n messages or round trips), s4 (default 100) and s5 (default 1000)")
	fs.IntVar(&f.size, "size", 1<<20, "buffer size in `BYTES` for s3")
	fs.StringVar(&f.decode, "decode", "struct", "receivers decode each object into a `struct|map`")
	fs.BoolVar(&f.noRelease, "no-release", false, "s3: the receiving handler leaves its buffers to the GC instead of calling Message.Release")
	fs.BoolVar(&f.pipelined, "pipelined", false, "s2par: one goroutine per connection keeps the --inflight requests in flight with Client.RequestFunc (as raw Go's loop does), instead of a goroutine per request calling Request")
	fs.BoolVar(&f.inline, "inline", false, "handlers on both sides run on the reading goroutine (ConnOptions.InlineHandlers)")
	fs.IntVar(&f.port, "port", 0, "TCP port for the server (0: a free one)")
	fs.BoolVar(&f.json, "json", false, "print the result as one JSON line")
	fs.BoolVar(&f.noProgress, "no-progress", false, "no progress line on stderr")
	if _, err := parseFlags(e, fs, benchUsage, args, 0); err != nil {
		return err
	}
	b := &bench{f: f}
	found := false
	for _, sc := range benchScenarios() {
		if sc.name == f.scenario {
			b.sc, found = sc, true
		}
	}
	switch {
	case !found:
		return usageErrorf("bench: unknown --scenario %q (s1, s2seq, s2par, s3, s4 or s5)", f.scenario)
	case f.mode != "binary" && f.mode != "json":
		return usageErrorf("bench: --mode must be binary or json, not %q", f.mode)
	case f.transport != "tcp" && f.transport != "unix":
		return usageErrorf("bench: --transport must be tcp or unix, not %q", f.transport)
	case f.decode != "struct" && f.decode != "map":
		return usageErrorf("bench: --decode must be struct or map, not %q", f.decode)
	case f.n < 0 || f.inflight < 1 || f.clients < 0 || f.size < 1:
		return usageErrorf("bench: --n and --clients must not be negative, --inflight and --size must be positive")
	case f.port < 0 || f.port > 65535:
		return usageErrorf("bench: --port %d is not a port", f.port)
	case f.transport == "unix" && f.port != 0:
		return usageErrorf("bench: --port is for --transport tcp")
	case f.size > sockhop.DefaultMaxMessageSize*3/4-1024:
		return usageErrorf("bench: --size %d is over what one message may carry (MaxMessageSize %d, base64 in JSON mode)", f.size, sockhop.DefaultMaxMessageSize)
	}
	if b.f.n == 0 {
		b.f.n = b.sc.defN
	}
	if b.f.clients == 0 {
		b.f.clients = map[string]int{"s4": 100, "s5": 1000}[f.scenario]
	}
	b.prog = newProgress(e.stderr, !f.noProgress && isTerminal(e.stderr), f.scenario+" "+f.mode+" "+f.transport)
	defer b.prog.stop()

	child, err := startBenchChild(ctx, b)
	if err != nil {
		return err
	}
	defer child.stop()
	b.child = child
	stopProfile, err := startBenchProfile("client")
	if err != nil {
		return err
	}
	res, err := b.sc.run(ctx, b)
	stopProfile()
	b.prog.stop()
	if err != nil {
		if ctx.Err() != nil {
			return errInterrupted
		}
		return fmt.Errorf("bench %s: %w", f.scenario, err)
	}
	res.Scenario, res.Mode, res.Transport, res.Unit = f.scenario, f.mode, f.transport, b.sc.unit
	if f.json {
		line, _ := json.Marshal(res)
		_, err = fmt.Fprintf(e.stdout, "%s\n", line)
		return err
	}
	_, err = io.WriteString(e.stdout, b.readable(res))
	return err
}

// clientOptions are the options of every client bench opens.
func (b *bench) clientOptions() sockhop.ClientOptions {
	o := sockhop.ClientOptions{ConnOptions: sockhop.ConnOptions{NoBinary: b.f.mode == "json", InlineHandlers: b.f.inline}}
	if b.child.path != "" {
		o.Path = b.child.path
	} else {
		o.Addr = b.child.addr
	}
	return o
}

// dial starts one handshaked client.
func (b *bench) dial(ctx context.Context, setup func(c *sockhop.Client)) (*sockhop.Client, error) {
	c := sockhop.NewClient(b.clientOptions())
	if setup != nil {
		setup(c)
	}
	if err := c.Start(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// warmN is the size of the warm-up pass for a timed pass of n.
func warmN(n int) int { return max(1, n/10) }

// measured is what a timed pass cost.
type measured struct {
	secs               float64
	selfCPU, serverCPU time.Duration
	serverCPUKnown     bool
}

// measure runs the timed pass fn and takes the wall time and the CPU time
// of both processes around it.
func (b *bench) measure(fn func() error) (measured, error) {
	self0 := selfCPU()
	srv0, err0 := b.child.cpu()
	start := time.Now()
	err := fn()
	secs := time.Since(start).Seconds()
	self1 := selfCPU()
	srv1, err1 := b.child.cpu()
	return measured{secs: secs, selfCPU: self1 - self0, serverCPU: srv1 - srv0, serverCPUKnown: err0 == nil && err1 == nil}, err
}

// result fills in the figure and the CPU per unit of it.
func (b *bench) result(m measured, n int, units float64) *benchResult {
	r := &benchResult{N: n, Secs: round(m.secs, 4), Value: round(units/m.secs, 1)}
	if m.selfCPU > 0 {
		r.ClientCPU = ptr(round(float64(m.selfCPU.Microseconds())/units, 3))
	}
	if m.serverCPUKnown {
		r.ServerCPU = ptr(round(float64(m.serverCPU.Microseconds())/units, 3))
	}
	return r
}

func (b *bench) readable(r *benchResult) string {
	var s strings.Builder
	count := map[string]string{"s1": "messages", "s2seq": "round trips", "s2par": "round trips", "s3": "buffers", "s4": "broadcasts", "s5": "connections"}[r.Scenario]
	switch r.Scenario {
	case "s3":
		count = fmt.Sprintf("buffers of %s", sizeName(b.f.size))
	case "s4":
		count = fmt.Sprintf("broadcasts to %d clients", b.f.clients)
	case "s2par":
		count = fmt.Sprintf("round trips, %d in flight", b.f.inflight)
	}
	if b.f.clients > 1 && (r.Scenario == "s1" || strings.HasPrefix(r.Scenario, "s2")) {
		count += fmt.Sprintf(" over %d connections", b.f.clients)
	}
	fmt.Fprintf(&s, "%s %s, %s mode over %s: %s %s", r.Scenario, b.sc.what, r.Mode, r.Transport, thousands(r.Value), r.Unit)
	if r.Scenario == "s5" {
		fmt.Fprintf(&s, " (%s connections)\n", thousands(float64(r.N)))
	} else {
		fmt.Fprintf(&s, " (%s %s in %.3f s)\n", thousands(float64(r.N)), count, r.Secs)
	}
	if r.P50 != nil {
		fmt.Fprintf(&s, "  latency: p50 %.0f µs, p99 %.0f µs\n", *r.P50, *r.P99)
	}
	if r.HeapPerConn != nil {
		fmt.Fprintf(&s, "  Go heap in use: %.1f KB/conn\n", *r.HeapPerConn)
	}
	cpu := func(p *float64) string {
		if p == nil {
			return "unknown"
		}
		return fmt.Sprintf("%.3g µs", *p)
	}
	if r.Scenario != "s5" {
		fmt.Fprintf(&s, "  cpu per %s: client side %s, server %s\n", b.sc.per, cpu(r.ClientCPU), cpu(r.ServerCPU))
	}
	return s.String()
}

// thousands writes v rounded, with thousands separators (or with one
// decimal under 100).
func thousands(v float64) string {
	if v < 100 {
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	s := strconv.FormatInt(int64(math.Round(v)), 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func sizeName(n int) string {
	switch {
	case n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

func round(v float64, places int) float64 {
	p := math.Pow(10, float64(places))
	return math.Round(v*p) / p
}

func ptr[T any](v T) *T { return &v }

// progress is the one-line status on stderr, rewritten in place with \r
// while a pass runs; it is off when stderr is not a terminal.
type progress struct {
	label   string // "s1 binary tcp"
	w       io.Writer
	on      bool
	mu      sync.Mutex
	phase   string
	total   int64
	done    atomic.Int64
	quit    chan struct{}
	stopped chan struct{}
	once    sync.Once
	wrote   bool
}

func newProgress(w io.Writer, on bool, label string) *progress {
	p := &progress{label: label, w: w, on: on, quit: make(chan struct{}), stopped: make(chan struct{})}
	if !on {
		close(p.stopped)
		return p
	}
	go p.loop()
	return p
}

// begin starts a phase ("warm-up", "timed") of total units.
func (p *progress) begin(phase string, total int) {
	p.mu.Lock()
	p.phase, p.total = phase, int64(total)
	p.done.Store(0)
	p.mu.Unlock()
}

func (p *progress) add(n int) { p.done.Add(int64(n)) }

func (p *progress) set(n int) { p.done.Store(int64(n)) }

func (p *progress) loop() {
	defer close(p.stopped)
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-p.quit:
			if p.wrote {
				fmt.Fprint(p.w, "\r\033[K")
			}
			return
		case <-t.C:
			p.mu.Lock()
			phase, total := p.phase, p.total
			p.mu.Unlock()
			if phase == "" {
				continue
			}
			pct := 0.0
			if total > 0 {
				pct = 100 * float64(p.done.Load()) / float64(total)
			}
			fmt.Fprintf(p.w, "\r\033[Kbench %s: %s %3.0f%%", p.label, phase, min(pct, 100))
			p.wrote = true
		}
	}
}

// stop clears the line; it may be called more than once.
func (p *progress) stop() {
	p.once.Do(func() {
		if p.on {
			close(p.quit)
		}
	})
	<-p.stopped
}

// benchChild is the server process.
type benchChild struct {
	proc  *os.Process
	stdin io.WriteCloser
	wait  chan error
	addr  string // TCP
	path  string // Unix socket
	dir   string // holds the Unix socket
}
