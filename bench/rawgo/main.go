// Command rawgo is the baseline of bench/compare.sh: the scenarios of
// `sockhop bench` written with plain Go sockets and encoding/json, and no
// protocol beyond newline-delimited JSON envelopes ({"type":..,"data":..,
// "id":N}), so that the comparison shows what the Sockhop library costs
// over the least a Go program could do. Like `sockhop bench`, it runs the
// server as a child process (itself, with -server) and prints one result,
// as a JSON line with -json, in the same format ("mode":"raw").
//
//	go run ./bench/rawgo -scenario s1 -json
//
// Differences from the library, on purpose: one goroutine per connection
// and side, buffered writes flushed when the reader has nothing buffered,
// numeric request ids, no handshake, no limits, no backpressure beyond
// TCP's; s3 sends length-prefixed raw bytes (the ceiling, no base64); s4
// writes each broadcast to every client's bufio.Writer in turn from the
// broadcasting goroutine.
package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

type widget struct {
	Seq  int    `json:"seq"`
	Name string `json:"name"`
	Vals []int  `json:"vals"`
}

// envelope is what travels: the Sockhop JSON-mode envelope with a numeric
// id.
type envelope struct {
	Type string `json:"type"`
	Data any    `json:"data"`
	ID   int64  `json:"id,omitempty"`
	CB   int64  `json:"callback_id,omitempty"`
}

// widgetEnvelope decodes a widget fully into a struct.
type widgetEnvelope struct {
	Type string `json:"type"`
	Data widget `json:"data"`
	ID   int64  `json:"id"`
	CB   int64  `json:"callback_id"`
}

type flags struct {
	scenario, transport, decode string
	n, inflight, clients, size  int
	json                        bool
}

func main() {
	var f flags
	server := flag.Bool("server", false, "run as the child server (internal)")
	path := flag.String("path", "", "unix socket path (internal)")
	flag.StringVar(&f.scenario, "scenario", "s1", "s1|s2seq|s2par|s3|s4|s5")
	flag.StringVar(&f.transport, "transport", "tcp", "tcp|unix")
	flag.StringVar(&f.decode, "decode", "map", "map|struct: how receivers decode each object")
	flag.IntVar(&f.n, "n", 0, "work of the timed pass (default per scenario)")
	flag.IntVar(&f.inflight, "inflight", 64, "requests in flight for s2par")
	flag.IntVar(&f.clients, "clients", 0, "connections for s1 and s2 (1), s4 (100) and s5 (1000)")
	flag.IntVar(&f.size, "size", 1<<20, "buffer size for s3")
	flag.BoolVar(&f.json, "json", false, "one JSON line")
	flag.Parse()
	// SOCKHOP_BENCH_PROFILE=DIR: CPU profiles of both processes, as
	// `sockhop bench` writes them, to compare the two side by side.
	if dir := os.Getenv("SOCKHOP_BENCH_PROFILE"); dir != "" {
		role := "raw-client"
		if *server {
			role = "raw-server"
		}
		if pf, perr := os.Create(filepath.Join(dir, role+".pprof")); perr == nil {
			defer pf.Close() // after StopCPUProfile, which writes to it
			if pprof.StartCPUProfile(pf) == nil {
				defer pprof.StopCPUProfile()
			}
		}
	}
	var err error
	if *server {
		err = runServer(f, *path)
	} else {
		err = runClient(f)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "rawgo:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

// ---- server -------------------------------------------------------------

type srv struct {
	f       flags
	count   atomic.Int64
	bytes   atomic.Int64
	mu      sync.Mutex
	conns   map[net.Conn]*bufio.Writer
	connsMu sync.Mutex
}

func runServer(f flags, path string) error {
	var ln net.Listener
	var err error
	if f.transport == "unix" {
		ln, err = net.Listen("unix", path)
	} else {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		return err
	}
	s := &srv{f: f, conns: make(map[net.Conn]*bufio.Writer)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(c)
		}
	}()
	ready, _ := json.Marshal(map[string]string{"addr": ln.Addr().String()})
	fmt.Printf("%s\n", ready)
	_, _ = io.Copy(io.Discard, os.Stdin)
	return ln.Close()
}

func (s *srv) serve(c net.Conn) {
	defer c.Close()
	if s.f.scenario == "s3" {
		s.serveFrames(c)
		return
	}
	size := 64 << 10
	if s.f.scenario == "s5" {
		size = 4 << 10 // what an idle connection keeps
	}
	r := bufio.NewReaderSize(c, size)
	var w *bufio.Writer
	writer := func() *bufio.Writer {
		if w == nil {
			w = bufio.NewWriterSize(c, size)
		}
		return w
	}
	if s.f.scenario == "s4" {
		s.connsMu.Lock()
		s.conns[c] = writer()
		s.connsMu.Unlock()
	}
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return
		}
		var typ string
		var id int64
		var seq int
		if s.f.decode == "struct" {
			var e widgetEnvelope
			if json.Unmarshal(line, &e) != nil {
				return
			}
			typ, id, seq = e.Type, e.ID, e.Data.Seq
		} else {
			var e map[string]any
			if json.Unmarshal(line, &e) != nil {
				return
			}
			typ, _ = e["type"].(string)
			f, _ := e["id"].(float64)
			id = int64(f)
			if d, ok := e["data"].(map[string]any); ok {
				f, _ := d["seq"].(float64)
				seq = int(f)
			}
		}
		var reply any
		switch {
		case typ == "Widget" && id == 0:
			s.count.Add(1)
		case typ == "Widget":
			reply = map[string]int{"seq": seq}
		case typ == "Count":
			reply = map[string]int64{"count": s.count.Swap(0), "bytes": s.bytes.Swap(0)}
		case typ == "Broadcast":
			var e struct{ Data struct{ N int } }
			_ = json.Unmarshal(line, &e)
			reply = map[string]int{"sessions": s.broadcast(e.Data.N)}
		case typ == "RSS":
			debug.FreeOSMemory()
			rss, _ := readRSS("/proc/self/status")
			s.connsMu.Lock()
			reply = map[string]int64{"rss_kb": rss}
			s.connsMu.Unlock()
		case typ == "Hello":
			reply = map[string]int{}
		}
		if reply != nil {
			b, _ := json.Marshal(envelope{Type: "Object", Data: reply, CB: id})
			s.mu.Lock() // s4: broadcasts write to this connection too
			writer().Write(append(b, '\n'))
			if r.Buffered() == 0 {
				if writer().Flush() != nil {
					s.mu.Unlock()
					return
				}
			}
			s.mu.Unlock()
		}
	}
}

// broadcast writes n widgets to every connection, each encoded once.
func (s *srv) broadcast(n int) int {
	s.connsMu.Lock()
	ws := make([]*bufio.Writer, 0, len(s.conns))
	for _, w := range s.conns {
		ws = append(ws, w)
	}
	s.connsMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	wd := widget{Name: "widget", Vals: []int{1, 2, 3}}
	for i := range n {
		wd.Seq = i
		b, _ := json.Marshal(envelope{Type: "Widget", Data: wd})
		b = append(b, '\n')
		for _, w := range ws {
			w.Write(b)
		}
	}
	for _, w := range ws {
		w.Flush()
	}
	return len(ws)
}

// serveFrames is s3: [u32le length][bytes] frames; length 0 asks for the
// count, answered with a JSON line.
func (s *srv) serveFrames(c net.Conn) {
	r := bufio.NewReaderSize(c, 64<<10)
	var hdr [4]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return
		}
		n := binary.LittleEndian.Uint32(hdr[:])
		if n == 0 {
			b, _ := json.Marshal(map[string]int64{"count": s.count.Swap(0), "bytes": s.bytes.Swap(0)})
			if _, err := c.Write(append(b, '\n')); err != nil {
				return
			}
			continue
		}
		buf := make([]byte, n) // the application keeps it, as a Sockhop handler may
		if _, err := io.ReadFull(r, buf); err != nil {
			return
		}
		s.count.Add(1)
		s.bytes.Add(int64(len(buf)))
	}
}

func readRSS(file string) (int64, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			return strconv.ParseInt(strings.Fields(rest)[0], 10, 64)
		}
	}
	return 0, errors.New("no VmRSS")
}

// ---- client -------------------------------------------------------------

type child struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	network string
	addr    string
	dir     string
}

func startChild(f flags) (*child, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	ch := &child{network: f.transport}
	args := []string{"-server", "-scenario", f.scenario, "-transport", f.transport, "-decode", f.decode}
	if f.transport == "unix" {
		if ch.dir, err = os.MkdirTemp("", "rawgo"); err != nil {
			return nil, err
		}
		ch.addr = filepath.Join(ch.dir, "s.sock")
		args = append(args, "-path", ch.addr)
	}
	ch.cmd = exec.Command(self, args...)
	ch.cmd.Stderr = os.Stderr
	ch.stdin, _ = ch.cmd.StdinPipe()
	out, _ := ch.cmd.StdoutPipe()
	if err := ch.cmd.Start(); err != nil {
		return nil, err
	}
	line, err := bufio.NewReader(out).ReadBytes('\n')
	if err != nil {
		ch.stop()
		return nil, fmt.Errorf("server did not start: %w", err)
	}
	if f.transport == "tcp" {
		var r struct{ Addr string }
		if err := json.Unmarshal(line, &r); err != nil {
			ch.stop()
			return nil, err
		}
		ch.addr = r.Addr
	}
	return ch, nil
}

func (ch *child) stop() {
	ch.stdin.Close()
	ch.cmd.Wait()
	if ch.dir != "" {
		os.RemoveAll(ch.dir)
	}
}

// cpu is the child's user+system time from /proc/PID/stat.
func (ch *child) cpu() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", ch.cmd.Process.Pid))
	if err != nil {
		return -1
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// conn is one client connection.
type conn struct {
	c net.Conn
	r *bufio.Reader
	w *bufio.Writer
}

func (ch *child) dial() (*conn, error) {
	c, err := net.Dial(ch.network, ch.addr)
	if err != nil {
		return nil, err
	}
	return &conn{c: c, r: bufio.NewReaderSize(c, 64<<10), w: bufio.NewWriterSize(c, 64<<10)}, nil
}

func (c *conn) send(e envelope) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	_, err = c.w.Write(append(b, '\n'))
	return err
}

// call sends a control request and decodes the reply's data into v.
func (c *conn) call(typ string, data any, v any) error {
	if err := c.send(envelope{Type: typ, Data: data, ID: 1}); err != nil {
		return err
	}
	if err := c.w.Flush(); err != nil {
		return err
	}
	line, err := c.r.ReadSlice('\n')
	if err != nil {
		return err
	}
	var e struct{ Data json.RawMessage }
	if err := json.Unmarshal(line, &e); err != nil {
		return err
	}
	return json.Unmarshal(e.Data, v)
}

type result struct {
	Scenario  string   `json:"scenario"`
	Mode      string   `json:"mode"`
	Transport string   `json:"transport"`
	Value     float64  `json:"value"`
	Unit      string   `json:"unit"`
	N         int      `json:"n"`
	Secs      float64  `json:"secs"`
	P50       *float64 `json:"p50_us,omitempty"`
	P99       *float64 `json:"p99_us,omitempty"`
	ClientCPU float64  `json:"client_cpu_us_per_unit"`
	ServerCPU float64  `json:"server_cpu_us_per_unit"`
}

func round(v float64, p int) float64 {
	m := math.Pow(10, float64(p))
	return math.Round(v*m) / m
}

func runClient(f flags) error {
	defs := map[string]int{"s1": 500_000, "s2seq": 20_000, "s2par": 200_000, "s3": 256, "s4": 10_000, "s5": 1000}
	units := map[string]string{"s1": "msg/s", "s2seq": "rt/s", "s2par": "rt/s", "s3": "MiB/s", "s4": "deliv/s", "s5": "KB/conn"}
	if _, ok := defs[f.scenario]; !ok {
		return fmt.Errorf("unknown scenario %q", f.scenario)
	}
	if f.n == 0 {
		f.n = defs[f.scenario]
	}
	if f.clients == 0 {
		f.clients = map[string]int{"s4": 100, "s5": 1000}[f.scenario]
	}
	ch, err := startChild(f)
	if err != nil {
		return err
	}
	defer ch.stop()
	r := &result{Scenario: f.scenario, Mode: "raw", Transport: f.transport, Unit: units[f.scenario], N: f.n}
	var lat []time.Duration
	var work float64
	var pass func(n int) error
	switch f.scenario {
	case "s1":
		pass, work = s1(ch, f)
	case "s2seq", "s2par":
		pass, work = s2(ch, f, &lat)
	case "s3":
		pass, work = s3(ch, f)
	case "s4":
		pass, work = s4(ch, f)
	case "s5":
		return s5(ch, f, r)
	}
	if pass == nil {
		return errors.New("setup failed")
	}
	if err := pass(max(1, f.n/10)); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	c0, s0 := selfCPU(), ch.cpu()
	start := time.Now()
	err = pass(f.n)
	secs := time.Since(start).Seconds()
	c1, s1 := selfCPU(), ch.cpu()
	if err != nil {
		return err
	}
	r.Secs = round(secs, 4)
	r.Value = round(work/secs, 1)
	r.ClientCPU = round(float64((c1-c0).Microseconds())/work, 3)
	r.ServerCPU = round(float64((s1-s0).Microseconds())/work, 3)
	if lat != nil {
		slices.Sort(lat)
		p50 := round(float64(lat[len(lat)/2].Nanoseconds())/1e3, 1)
		p99 := round(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, 1)
		r.P50, r.P99 = &p50, &p99
	}
	return print(f, r)
}

func print(f flags, r *result) error {
	if f.json {
		b, _ := json.Marshal(r)
		fmt.Printf("%s\n", b)
		return nil
	}
	fmt.Printf("raw Go %s over %s: %.1f %s (n %d in %.3f s; cpu/unit client %.3g µs, server %.3g µs)",
		r.Scenario, r.Transport, r.Value, r.Unit, r.N, r.Secs, r.ClientCPU, r.ServerCPU)
	if r.P50 != nil {
		fmt.Printf(", p50 %.0f µs, p99 %.0f µs", *r.P50, *r.P99)
	}
	fmt.Println()
	return nil
}

func checkCount(c *conn, n, size int) error {
	var got struct{ Count, Bytes int64 }
	if err := c.call("Count", map[string]int{}, &got); err != nil {
		return err
	}
	if got.Count != int64(n) || got.Bytes != int64(n*size) {
		return fmt.Errorf("server counted %d (%d bytes), sent %d", got.Count, got.Bytes, n)
	}
	return nil
}

// dialK opens k connections (at least one).
func (ch *child) dialK(k int) ([]*conn, error) {
	cs := make([]*conn, max(1, k))
	for i := range cs {
		c, err := ch.dial()
		if err != nil {
			return nil, err
		}
		cs[i] = c
	}
	return cs, nil
}

// shares runs fn on every connection at once, connection i with its share
// of n (count items from first), and returns the first error.
func shares(cs []*conn, n int, fn func(c *conn, first, count int) error) error {
	var wg sync.WaitGroup
	errs := make(chan error, len(cs))
	for i, c := range cs {
		first, count := i*n/len(cs), (i+1)*n/len(cs)-i*n/len(cs)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(c, first, count); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// s1: pipelined one-way widgets; with -clients K, K connections share them
// at once, each ending with a request whose reply says its widgets were
// all handled (the server handles a connection's lines in order).
func s1(ch *child, f flags) (func(int) error, float64) {
	cs, err := ch.dialK(f.clients)
	if err != nil {
		return nil, 0
	}
	return func(n int) error {
		err := shares(cs, n, func(c *conn, first, count int) error {
			w := widget{Name: "widget", Vals: []int{1, 2, 3}}
			for i := first; i < first+count; i++ {
				w.Seq = i
				if err := c.send(envelope{Type: "Widget", Data: w}); err != nil {
					return err
				}
			}
			if len(cs) == 1 {
				return nil
			}
			var ack struct{ Seq int }
			return c.call("Widget", widget{Seq: -1, Name: "sync", Vals: []int{}}, &ack)
		})
		if err != nil {
			return err
		}
		return checkCount(cs[0], n, 0)
	}, float64(f.n)
}

// s2: request/reply, one or -inflight in flight on each of -clients
// connections (default 1), n round trips in all.
func s2(ch *child, f flags, lat *[]time.Duration) (func(int) error, float64) {
	cs, err := ch.dialK(f.clients)
	if err != nil {
		return nil, 0
	}
	k := 1
	if f.scenario == "s2par" {
		k = f.inflight
	}
	return func(n int) error {
		l := make([]time.Duration, n)
		*lat = l
		return shares(cs, n, func(c *conn, first, count int) error {
			return c.requests(f, k, first, count, l)
		})
	}, float64(f.n)
}

// requests makes count requests (ids first+1 ... first+count), k in
// flight, recording each round trip's latency in l.
func (c *conn) requests(f flags, k, first, count int, l []time.Duration) error {
	starts := make([]time.Time, count)
	sem := make(chan struct{}, k)
	readErr := make(chan error, 1)
	go func() {
		for range count {
			line, err := c.r.ReadSlice('\n')
			if err != nil {
				readErr <- err
				return
			}
			var id int64
			var seq int
			if f.decode == "struct" {
				var e struct {
					CB   int64 `json:"callback_id"`
					Data struct {
						Seq int `json:"seq"`
					} `json:"data"`
				}
				if err := json.Unmarshal(line, &e); err != nil {
					readErr <- err
					return
				}
				id, seq = e.CB, e.Data.Seq
			} else {
				var e map[string]any
				if err := json.Unmarshal(line, &e); err != nil {
					readErr <- err
					return
				}
				cb, _ := e["callback_id"].(float64)
				id = int64(cb)
				d, _ := e["data"].(map[string]any)
				s, _ := d["seq"].(float64)
				seq = int(s)
			}
			if int64(seq) != id-1 || id <= int64(first) || id > int64(first+count) {
				readErr <- fmt.Errorf("reply %d answers %d", seq, id)
				return
			}
			l[id-1] = time.Since(starts[int(id)-1-first])
			<-sem
		}
		readErr <- nil
	}()
	w := widget{Name: "widget", Vals: []int{1, 2, 3}}
	for i := first; i < first+count; i++ {
		select {
		case sem <- struct{}{}:
		default:
			if err := c.w.Flush(); err != nil {
				return err
			}
			sem <- struct{}{}
		}
		w.Seq = i
		starts[i-first] = time.Now()
		if err := c.send(envelope{Type: "Widget", Data: w, ID: int64(i + 1)}); err != nil {
			return err
		}
		if k == 1 {
			if err := c.w.Flush(); err != nil {
				return err
			}
		}
	}
	if err := c.w.Flush(); err != nil {
		return err
	}
	return <-readErr
}

func s3(ch *child, f flags) (func(int) error, float64) {
	c, err := ch.dial()
	if err != nil {
		return nil, 0
	}
	buf := make([]byte, 4+f.size)
	binary.LittleEndian.PutUint32(buf, uint32(f.size))
	for i := 4; i < len(buf); i++ {
		buf[i] = byte(i * 7)
	}
	return func(n int) error {
		for range n {
			if _, err := c.c.Write(buf); err != nil {
				return err
			}
		}
		if _, err := c.c.Write([]byte{0, 0, 0, 0}); err != nil {
			return err
		}
		line, err := c.r.ReadSlice('\n')
		if err != nil {
			return err
		}
		var got struct{ Count, Bytes int64 }
		if err := json.Unmarshal(line, &got); err != nil {
			return err
		}
		if got.Count != int64(n) || got.Bytes != int64(n*f.size) {
			return fmt.Errorf("server counted %d buffers, sent %d", got.Count, n)
		}
		return nil
	}, float64(f.n) * float64(f.size) / (1 << 20)
}

func s4(ch *child, f flags) (func(int) error, float64) {
	conns := make([]*conn, f.clients)
	for i := range conns {
		c, err := ch.dial()
		if err != nil {
			return nil, 0
		}
		conns[i] = c
	}
	// Every connection says hello, so that the server has registered it.
	for _, c := range conns {
		var v map[string]any
		if err := c.call("Hello", map[string]int{}, &v); err != nil {
			return nil, 0
		}
	}
	var total, target atomic.Int64
	done := make(chan struct{}, 1)
	var ctl chan json.RawMessage = make(chan json.RawMessage, 1)
	for i, c := range conns {
		go func() {
			for {
				line, err := c.r.ReadSlice('\n')
				if err != nil {
					return
				}
				if f.decode == "struct" {
					var e widgetEnvelope
					if json.Unmarshal(line, &e) != nil {
						return
					}
					if e.Type != "Widget" {
						ctl <- append(json.RawMessage(nil), line...)
						continue
					}
				} else {
					var e map[string]any
					if json.Unmarshal(line, &e) != nil {
						return
					}
					if e["type"] != "Widget" {
						ctl <- append(json.RawMessage(nil), line...)
						continue
					}
				}
				if total.Add(1) == target.Load() {
					done <- struct{}{}
				}
			}
		}()
		_ = i
	}
	return func(n int) error {
		total.Store(0)
		target.Store(int64(n) * int64(len(conns)))
		c := conns[0]
		if err := c.send(envelope{Type: "Broadcast", Data: map[string]int{"n": n}, ID: 1}); err != nil {
			return err
		}
		if err := c.w.Flush(); err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		select {
		case <-done:
		case <-ctx.Done():
			return fmt.Errorf("%d of %d deliveries", total.Load(), target.Load())
		}
		<-ctl // the reply to the broadcast request
		return nil
	}, float64(f.n) * float64(f.clients)
}

func s5(ch *child, f flags, r *result) error {
	hello := func(k int) ([]*conn, error) {
		cs := make([]*conn, k)
		for i := range cs {
			c, err := ch.dial()
			if err != nil {
				return nil, err
			}
			var v map[string]any
			if err := c.call("Hello", map[string]int{}, &v); err != nil {
				return nil, err
			}
			cs[i] = c
		}
		return cs, nil
	}
	warm, err := hello(max(1, f.clients/10) + 1)
	if err != nil {
		return err
	}
	var before, after struct {
		RSS int64 `json:"rss_kb"`
	}
	if err := warm[0].call("RSS", map[string]int{}, &before); err != nil {
		return err
	}
	c0, s0 := selfCPU(), ch.cpu()
	start := time.Now()
	conns, err := hello(f.clients)
	if err != nil {
		return err
	}
	secs := time.Since(start).Seconds()
	c1, s1 := selfCPU(), ch.cpu()
	time.Sleep(200 * time.Millisecond)
	if err := warm[0].call("RSS", map[string]int{}, &after); err != nil {
		return err
	}
	for _, c := range append(warm, conns...) {
		c.c.Close()
	}
	k := float64(f.clients)
	r.N = f.clients
	r.Secs = round(secs, 4)
	r.Value = round(float64(after.RSS-before.RSS)/k, 2)
	r.ClientCPU = round(float64((c1-c0).Microseconds())/k, 3)
	r.ServerCPU = round(float64((s1-s0).Microseconds())/k, 3)
	runtime.KeepAlive(conns)
	return print(f, r)
}
