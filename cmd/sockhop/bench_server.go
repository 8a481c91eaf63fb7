package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"

	sockhop "github.com/sockhop/sockhop-go"
)

// The bench server is `sockhop bench` re-executed as its child: `sockhop
// bench server FLAGS` (not in any help text, since only bench runs it). It
// listens, prints one JSON line {"addr":...} or {"path":...} on stdout once
// it accepts connections, serves the bench's messages and exits when its
// stdin closes, so it never outlives the bench that started it.

// benchWidget is the object of the one-way, request and broadcast
// scenarios, {"seq":1,"name":"widget","vals":[1,2,3]} on the wire, sent as
// type "Widget" (sockhop.Named). It has no methods on purpose: encoding/json
// looks for Unmarshaler implementations on every value of a type with
// methods, which made decoding it a third slower than raw Go's method-less
// struct (a SockhopType method for its name did that).
type benchWidget struct {
	Seq  int    `json:"seq"`
	Name string `json:"name"`
	Vals []int  `json:"vals"`
}

// widgetMsg is w as the bench sends it.
func widgetMsg(w benchWidget) sockhop.Named { return sockhop.Named{Type: "Widget", Data: w} }

// The control messages between the bench and its server.
type (
	benchAck struct {
		Seq int `json:"seq"`
	}
	// benchCount asks for, and answers with, what arrived since the last
	// count; asking resets it.
	benchCount struct {
		Count int64 `json:"count"`
		Bytes int64 `json:"bytes"`
	}
	benchBroadcast struct {
		N int `json:"n"`
	}
	benchBroadcastDone struct {
		Sessions int `json:"sessions"`
	}
	benchRSSQuery struct{}
	benchRSS      struct {
		RSSKB    int64 `json:"rss_kb"`
		HeapKB   int64 `json:"heap_kb"`
		Sessions int   `json:"sessions"`
	}
)

func (benchAck) SockhopType() string           { return "Ack" }
func (benchCount) SockhopType() string         { return "Count" }
func (benchBroadcast) SockhopType() string     { return "Broadcast" }
func (benchBroadcastDone) SockhopType() string { return "BroadcastDone" }
func (benchRSSQuery) SockhopType() string      { return "RSS" }
func (benchRSS) SockhopType() string           { return "RSSReport" }

// benchServerFlags are what bench passes to its child.
type benchServerFlags struct {
	mode, transport, decode string
	port                    int
	path                    string
	queue                   int
	noRelease, inline       bool
}

func runBenchServer(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("bench server", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var f benchServerFlags
	fs.StringVar(&f.mode, "mode", "binary", "")
	fs.StringVar(&f.transport, "transport", "tcp", "")
	fs.StringVar(&f.decode, "decode", "struct", "")
	fs.IntVar(&f.port, "port", 0, "")
	fs.StringVar(&f.path, "path", "", "")
	fs.IntVar(&f.queue, "queue", 0, "")
	fs.BoolVar(&f.noRelease, "no-release", false, "")
	fs.BoolVar(&f.inline, "inline", false, "")
	if err := fs.Parse(args); err != nil {
		return usageErrorf("bench server: %v", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		// The bench closes our stdin when it is done, or dies: either way
		// we end.
		_, _ = io.Copy(io.Discard, e.stdin)
		cancel()
	}()

	o := sockhop.ServerOptions{
		ConnOptions:    sockhop.ConnOptions{NoBinary: f.mode == "json", MaxQueueBytes: f.queue, InlineHandlers: f.inline},
		MaxConnections: 1 << 20,
	}
	if f.transport == "unix" {
		o.Path = f.path
	} else {
		o.Addr = "127.0.0.1:" + strconv.Itoa(f.port)
	}
	srv := sockhop.NewServer(o)
	var count, nbytes atomic.Int64
	decodeMap := f.decode == "map"

	srv.Handle("Widget", func(ctx context.Context, m *sockhop.Message) error {
		seq, err := decodeWidget(m, decodeMap)
		if err != nil {
			return err
		}
		if m.IsRequest() {
			return m.Reply(ctx, benchAck{Seq: seq})
		}
		count.Add(1)
		return nil
	})
	blob := func(_ context.Context, m *sockhop.Message) error {
		var b []byte
		if err := m.Decode(&b); err != nil {
			return err
		}
		count.Add(1)
		nbytes.Add(int64(len(b)))
		if !f.noRelease {
			m.Release() // b is not used any more
		}
		return nil
	}
	srv.Handle("Blob", blob)   // typed buffers, binary mode
	srv.Handle("Buffer", blob) // plain Buffers, JSON mode
	srv.Handle("Count", func(ctx context.Context, m *sockhop.Message) error {
		return m.Reply(ctx, benchCount{Count: count.Swap(0), Bytes: nbytes.Swap(0)})
	})
	srv.Handle("Broadcast", func(ctx context.Context, m *sockhop.Message) error {
		var b benchBroadcast
		if err := m.Decode(&b); err != nil {
			return err
		}
		w := benchWidget{Name: "widget", Vals: []int{1, 2, 3}}
		for i := 0; i < b.N; i++ {
			w.Seq = i
			if err := srv.SendAll(ctx, widgetMsg(w)); err != nil {
				return err
			}
		}
		return m.Reply(ctx, benchBroadcastDone{Sessions: len(srv.Sessions())})
	})
	srv.Handle("RSS", func(ctx context.Context, m *sockhop.Message) error {
		rss, heap := memoryKB()
		if err := writeHeapProfile(); err != nil {
			return err
		}
		return m.Reply(ctx, benchRSS{RSSKB: rss, HeapKB: heap, Sessions: len(srv.Sessions())})
	})

	stopProfile, err := startBenchProfile("server")
	if err != nil {
		return err
	}
	defer stopProfile()
	if err := srv.Listen(); err != nil {
		return err
	}
	defer srv.Close()
	ready := map[string]string{"addr": srv.Addr().String()}
	if f.transport == "unix" {
		ready = map[string]string{"path": f.path}
	}
	line, _ := json.Marshal(ready)
	if _, err := fmt.Fprintf(e.stdout, "%s\n", line); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

// decodeWidget decodes a Widget fully, into its struct or into a map.
func decodeWidget(m *sockhop.Message, toMap bool) (int, error) {
	if toMap {
		var v map[string]any
		if err := m.Decode(&v); err != nil {
			return 0, err
		}
		seq, _ := v["seq"].(float64)
		return int(seq), nil
	}
	var w benchWidget
	if err := m.Decode(&w); err != nil {
		return 0, err
	}
	return w.Seq, nil
}

// memoryKB returns the process's resident set and Go heap in use, in KiB,
// after a collection and a return of free memory to the system, so that
// what is counted is what connections keep, not garbage waiting for the
// next cycle.
func memoryKB() (rss, heap int64) {
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	heap = int64(ms.HeapInuse) / 1024
	rss, _ = readRSS("/proc/self/status")
	return rss, heap
}

// readRSS reads VmRSS (KiB) from a /proc status file.
func readRSS(file string) (int64, error) {
	f, err := os.Open(file)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			fields := strings.Fields(rest)
			if len(fields) > 0 {
				return strconv.ParseInt(fields[0], 10, 64)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("no VmRSS in " + file)
}
