package sockhop

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Load tests are named TestLoad*: `make test` runs them apart from the rest,
// without the race detector and one package at a time (the NATS split), as
// their figures mean nothing under -race.

// TestLoadStalledConsumer (R1): 100 healthy clients each send 100 frames/s
// (256-byte objects, 10% of them requests) while the server broadcasts
// 100 messages/s of 1 KiB to everyone, and one client never reads. Every
// healthy client gets every broadcast in order, every request is answered,
// the stalled client is cut off as a slow consumer, and memory stays
// bounded. SOCKHOP_LOAD_SECS sets the length (20 s by default).
func TestLoadStalledConsumer(t *testing.T) {
	if raceEnabled {
		t.Skip("load figures are meaningless under -race; `make test` runs this test without it")
	}
	secs := 20
	if s := os.Getenv("SOCKHOP_LOAD_SECS"); s != "" {
		secs, _ = strconv.Atoi(s)
	}
	if testing.Short() {
		secs = 3
	}
	const clients, rate = 100, 100
	baseG := runtime.NumGoroutine()

	ended := make(chan error, 4)
	o := ServerOptions{ConnOptions: fastOpts(), OnSessionEnd: func(s *Session, err error) {
		if errors.Is(err, &Error{Code: CodeSlowConsumer}) {
			select {
			case ended <- err:
			default:
			}
		}
	}}
	o.MaxQueueBytes = 4 << 20
	o.WriteTimeout = 2 * time.Second
	o.OnSessionStart = func(ctx context.Context, s *Session) error {
		// Small kernel buffers, so a reader that stops shows up within
		// seconds rather than after megabytes of loopback buffering.
		if tc, ok := s.c.nc.(*net.TCPConn); ok {
			tc.SetWriteBuffer(16 << 10)
		}
		return nil
	}
	var inMsgs atomic.Uint64
	srv := startServer(t, transports[0], o)
	srv.Handle("Load", func(ctx context.Context, m *Message) error {
		inMsgs.Add(1)
		if m.IsRequest() {
			return m.Reply(ctx, m.JSON())
		}
		return nil
	})

	stalled := handshakeRaw(t, "tcp", srv.Addr().String(), 4<<10)
	defer stalled.Close()

	type result struct {
		lat      []time.Duration
		rtt      []time.Duration
		bcast    atomic.Int64 // after lat was appended to: reading it orders the rest
		badOrder string
		err      error
	}
	results := make([]*result, clients)
	cls := make([]*Client, clients)
	for i := range clients {
		res := &result{}
		results[i] = res
		next := 0
		c := startClient(t, transports[0], srv, ClientOptions{ConnOptions: fastOpts()})
		c.Handle("Tick", func(ctx context.Context, m *Message) error {
			var tick struct {
				Seq  int   `json:"seq"`
				Sent int64 `json:"sent"`
			}
			if err := m.Decode(&tick); err != nil {
				return err
			}
			res.lat = append(res.lat, time.Since(time.Unix(0, tick.Sent)))
			if tick.Seq != next && res.badOrder == "" {
				res.badOrder = fmt.Sprintf("broadcast %d arrived when %d was due", tick.Seq, next)
			}
			next = tick.Seq + 1
			res.bcast.Add(1)
			return nil
		})
		cls[i] = c
	}
	eventually(t, "all sessions", func() bool { return len(srv.Sessions()) == clients+1 })

	heap := sampleHeap(500 * time.Millisecond)

	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(secs+30)*time.Second)
	defer cancel()
	begin := time.Now()
	deadline := begin.Add(time.Duration(secs) * time.Second)
	var wg sync.WaitGroup
	payload := strings.Repeat("p", 200)
	for i, c := range cls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := results[i]
			tk := time.NewTicker(time.Second / rate)
			defer tk.Stop()
			for seq := 0; time.Now().Before(deadline); seq++ {
				<-tk.C
				msg := Named{Type: "Load", Data: map[string]any{"client": i, "seq": seq, "pad": payload}}
				if seq%10 == 0 {
					t0 := time.Now()
					if _, err := c.Request(ctx, msg); err != nil {
						res.err = err
						return
					}
					res.rtt = append(res.rtt, time.Since(t0))
				} else if err := c.Send(ctx, msg); err != nil {
					res.err = err
					return
				}
			}
		}()
	}
	pad := strings.Repeat("b", 1000)
	sent := 0
	tk := time.NewTicker(time.Second / rate)
	var cutAt time.Duration
	for time.Now().Before(deadline) {
		<-tk.C
		noErr(t, srv.SendAll(ctx, Named{Type: "Tick", Data: map[string]any{"seq": sent, "sent": time.Now().UnixNano(), "pad": pad}}))
		sent++
		if cutAt == 0 {
			select {
			case <-ended:
				cutAt = time.Since(begin)
			default:
			}
		}
	}
	tk.Stop()
	wg.Wait()
	eventually(t, "every broadcast delivered", func() bool {
		total := 0
		for _, r := range results {
			total += int(r.bcast.Load())
		}
		return total == sent*clients
	})
	peakHeap := heap.stop()
	elapsed := time.Since(begin)

	var lat, rtt []time.Duration
	for i, r := range results {
		if r.err != nil {
			t.Fatalf("client %d: %v", i, r.err)
		}
		if r.badOrder != "" {
			t.Fatalf("client %d: %s", i, r.badOrder)
		}
		lat = append(lat, r.lat...)
		rtt = append(rtt, r.rtt...)
	}
	if cutAt == 0 {
		t.Fatal("the stalled client was never cut off")
	}
	st := srv.Stats()
	p99 := func(d []time.Duration) time.Duration { slices.Sort(d); return d[len(d)*99/100] }
	t.Logf("R1 over %s: in %.0f frames/s, out %.0f deliveries/s; broadcast p99 %s, request p99 %s; stalled client cut after %s; peak heap %.1f MiB, VmHWM %s; slow-consumer cuts %d",
		elapsed.Round(time.Millisecond), float64(inMsgs.Load())/elapsed.Seconds(), float64(sent*clients)/elapsed.Seconds(),
		p99(lat), p99(rtt), cutAt.Round(time.Millisecond), float64(peakHeap)/(1<<20), vmHWM(), st.SlowConsumerCuts)
	// Latencies are reported, not asserted: timings depend on the machine
	// (RELIABILITY.md R1 asks for p99 <= 50 ms; read it off the log).
	if h := peakHeap; h > 64<<20 {
		t.Errorf("peak heap %d MiB over 64 MiB", h>>20)
	}
	for _, c := range cls {
		c.Close()
	}
	eventually(t, "sessions gone", func() bool { return len(srv.Sessions()) == 0 })
	if !waitFor(5*time.Second, func() bool { return runtime.NumGoroutine() <= baseG+4 }) {
		buf := make([]byte, 1<<20)
		t.Fatalf("goroutines: %d, baseline %d:\n%s", runtime.NumGoroutine(), baseG, buf[:runtime.Stack(buf, true)])
	}
}

// waitFor polls cond every 5 ms until it holds or d has passed.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// vmHWM is the process's peak resident memory, from /proc.
func vmHWM() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "unknown"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			return strings.Join(strings.Fields(l)[1:], " ")
		}
	}
	return "unknown"
}

// heapSampler records the peak of the live heap (objects' bytes) until
// stop.
type heapSampler struct {
	peak atomic.Uint64
	done chan struct{}
	wg   sync.WaitGroup
}

// heapNow returns the bytes of live heap objects (as of the last GC's
// sweep, plus what was allocated since).
func heapNow() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// sampleHeap starts sampling the heap every period.
func sampleHeap(period time.Duration) *heapSampler {
	h := &heapSampler{done: make(chan struct{})}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		for {
			if v := heapNow(); v > h.peak.Load() {
				h.peak.Store(v)
			}
			select {
			case <-h.done:
				return
			case <-time.After(period):
			}
		}
	}()
	return h
}

// stop ends the sampling and returns the peak.
func (h *heapSampler) stop() uint64 {
	close(h.done)
	h.wg.Wait()
	return h.peak.Load()
}
