package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	sockhop "github.com/sockhop/sockhop-go"
)

// controlWait bounds a control request (a count, a broadcast, a memory
// report) and the wait for the deliveries of a broadcast: generous, since
// nothing waits for it unless the server is stuck.
const controlWait = 2 * time.Minute

// twoPasses runs pass with the warm-up size, then timed with n.
func (b *bench) twoPasses(n int, pass func(n int) error) (measured, error) {
	b.prog.begin("warm-up", warmN(n))
	if err := pass(warmN(n)); err != nil {
		return measured{}, fmt.Errorf("warm-up: %w", err)
	}
	b.prog.begin("timed pass", n)
	return b.measure(func() error { return pass(n) })
}

// checkCount asks the server what arrived since the last count and checks
// it against what was sent.
func (b *bench) checkCount(ctx context.Context, c *sockhop.Client, n, size int) error {
	ctx, cancel := context.WithTimeout(ctx, controlWait)
	defer cancel()
	reply, err := c.Request(ctx, benchCount{})
	if err != nil {
		return err
	}
	var got benchCount
	if err := reply.Decode(&got); err != nil {
		return err
	}
	if got.Count != int64(n) || got.Bytes != int64(n*size) {
		return fmt.Errorf("the server counted %d messages (%d bytes); %d (%d bytes) were sent", got.Count, got.Bytes, n, n*size)
	}
	return nil
}

// benchOneWay is s1: pipelined one-way objects, then a count. With
// --clients K, K connections send their share of the n messages at once.
func benchOneWay(ctx context.Context, b *bench) (*benchResult, error) {
	cs, err := b.dialMany(ctx, max(1, b.f.clients), nil)
	if err != nil {
		return nil, err
	}
	defer closeAll(cs)
	m, err := b.twoPasses(b.f.n, func(n int) error {
		err := eachClient(cs, n, func(c *sockhop.Client, first, count int) error {
			w := benchWidget{Name: "widget", Vals: []int{1, 2, 3}}
			for i := first; i < first+count; i++ {
				w.Seq = i
				if err := c.Send(ctx, widgetMsg(w)); err != nil {
					return err
				}
				if i&255 == 255 {
					b.prog.add(256)
				}
			}
			if len(cs) == 1 {
				return nil
			}
			// A request is handled after the messages before it on its
			// connection: its reply says they all arrived.
			reply, err := c.Request(ctx, widgetMsg(benchWidget{Seq: -1, Name: "sync", Vals: []int{}}))
			if err != nil {
				return err
			}
			return checkAck(reply, -1, b.f.decode == "map")
		})
		if err != nil {
			return err
		}
		return b.checkCount(ctx, cs[0], n, 0)
	})
	if err != nil {
		return nil, err
	}
	return b.result(m, b.f.n, float64(b.f.n)), nil
}

// eachClient runs fn on every client at once, client i with its share of
// n (count items from first), and returns the first error.
func eachClient(cs []*sockhop.Client, n int, fn func(c *sockhop.Client, first, count int) error) error {
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

// benchRequests is s2seq (one request in flight) and s2par (--inflight),
// on each of --clients connections (default 1).
func benchRequests(ctx context.Context, b *bench) (*benchResult, error) {
	cs, err := b.dialMany(ctx, max(1, b.f.clients), nil)
	if err != nil {
		return nil, err
	}
	defer closeAll(cs)
	inflight := 1
	if b.f.scenario == "s2par" {
		inflight = b.f.inflight
	}
	toMap := b.f.decode == "map"
	var lat []time.Duration
	pass := func(n int) error {
		lat = make([]time.Duration, n)
		var next atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, inflight*len(cs))
		if b.f.pipelined && inflight > 1 {
			return pipelinedPass(ctx, b, cs, inflight, n, lat, toMap)
		}
		for _, c := range cs {
			for range inflight {
				wg.Add(1)
				go func() {
					defer wg.Done()
					w := benchWidget{Name: "widget", Vals: []int{1, 2, 3}}
					for {
						i := int(next.Add(1) - 1)
						if i >= n {
							return
						}
						w.Seq = i
						start := time.Now()
						reply, err := c.Request(ctx, widgetMsg(w))
						if err == nil {
							err = checkAck(reply, i, toMap)
						}
						lat[i] = time.Since(start)
						if err != nil {
							errs <- err
							next.Store(int64(n)) // stop the others
							return
						}
						b.prog.add(1)
					}
				}()
			}
		}
		wg.Wait()
		select {
		case err := <-errs:
			return err
		default:
			return nil
		}
	}
	m, err := b.twoPasses(b.f.n, pass)
	if err != nil {
		return nil, err
	}
	r := b.result(m, b.f.n, float64(b.f.n))
	slices.Sort(lat)
	r.P50 = ptr(round(float64(lat[len(lat)/2].Nanoseconds())/1e3, 1))
	r.P99 = ptr(round(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, 1))
	return r, nil
}

// pipelinedPass is s2par with --pipelined: on each connection one
// goroutine keeps inflight requests in flight with RequestFunc, whose
// function runs on the connection's reading goroutine, as raw Go's loop
// writes from one goroutine and reads the replies on another.
func pipelinedPass(ctx context.Context, b *bench, cs []*sockhop.Client, inflight, n int, lat []time.Duration, toMap bool) error {
	var next atomic.Int64
	var failed atomic.Pointer[error]
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var calls sync.WaitGroup
			defer calls.Wait()
			sem := make(chan struct{}, inflight)
			w := benchWidget{Name: "widget", Vals: []int{1, 2, 3}}
			for failed.Load() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				sem <- struct{}{}
				w.Seq = i
				start := time.Now()
				calls.Add(1)
				err := c.RequestFunc(ctx, widgetMsg(w), func(reply *sockhop.Message, err error) {
					defer calls.Done()
					if err == nil {
						err = checkAck(reply, i, toMap)
					}
					lat[i] = time.Since(start)
					<-sem
					if err != nil {
						failed.CompareAndSwap(nil, &err)
						return
					}
					b.prog.add(1)
				})
				if err != nil {
					calls.Done()
					failed.CompareAndSwap(nil, &err)
				}
			}
		}()
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		return *err
	}
	return nil
}

// checkAck decodes a reply fully and checks that it answers request seq.
func checkAck(reply *sockhop.Message, seq int, toMap bool) error {
	got := -1
	if toMap {
		var v map[string]any
		if err := reply.Decode(&v); err != nil {
			return err
		}
		if f, ok := v["seq"].(float64); ok {
			got = int(f)
		}
	} else {
		var a benchAck
		if err := reply.Decode(&a); err != nil {
			return err
		}
		got = a.Seq
	}
	if got != seq {
		return fmt.Errorf("request %d was answered with seq %d", seq, got)
	}
	return nil
}

// benchBuffers is s3: typed buffers (Buffers in JSON mode), then a count.
func benchBuffers(ctx context.Context, b *bench) (*benchResult, error) {
	c, err := b.dial(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	buf := make([]byte, b.f.size)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	typed := b.f.mode == "binary"
	m, err := b.twoPasses(b.f.n, func(n int) error {
		for range n {
			var err error
			if typed {
				err = c.SendTyped(ctx, "Blob", buf)
			} else {
				err = c.Send(ctx, buf)
			}
			if err != nil {
				return err
			}
			b.prog.add(1)
		}
		return b.checkCount(ctx, c, n, b.f.size)
	})
	if err != nil {
		return nil, err
	}
	return b.result(m, b.f.n, float64(b.f.n)*float64(b.f.size)/(1<<20)), nil
}

// dialMany starts k handshaked clients, a few at a time.
func (b *bench) dialMany(ctx context.Context, k int, setup func(c *sockhop.Client)) ([]*sockhop.Client, error) {
	clients := make([]*sockhop.Client, k)
	var next atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for range min(k, 8) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= k {
					return
				}
				c, err := b.dial(ctx, setup)
				if err != nil {
					mu.Lock()
					first = cmp(first, err)
					mu.Unlock()
					next.Store(int64(k))
					return
				}
				clients[i] = c
				b.prog.add(1)
			}
		}()
	}
	wg.Wait()
	if first != nil {
		closeAll(clients)
		return nil, fmt.Errorf("connecting %d clients: %w", k, first)
	}
	return clients, nil
}

func cmp(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// closeAll closes clients in parallel (each Close waits for its peer's
// FIN).
func closeAll(clients []*sockhop.Client) {
	var wg sync.WaitGroup
	for _, c := range clients {
		if c != nil {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.Close()
			}()
		}
	}
	wg.Wait()
}

// broadcastPhase counts the deliveries of one broadcast pass.
type broadcastPhase struct {
	target int64
	got    atomic.Int64
	done   chan struct{}
}

// benchBroadcastScenario is s4: the server broadcasts to --clients
// receivers in this process.
func benchBroadcastScenario(ctx context.Context, b *bench) (*benchResult, error) {
	var phase atomic.Pointer[broadcastPhase]
	toMap := b.f.decode == "map"
	var decodeErr atomic.Value
	setup := func(c *sockhop.Client) {
		c.Handle("Widget", func(_ context.Context, m *sockhop.Message) error {
			if _, err := decodeWidget(m, toMap); err != nil {
				decodeErr.CompareAndSwap(nil, err)
				return err
			}
			p := phase.Load()
			if p.got.Add(1) == p.target {
				close(p.done)
			}
			return nil
		})
	}
	phase.Store(&broadcastPhase{target: -1, done: make(chan struct{})})
	b.prog.begin("connecting", b.f.clients)
	clients, err := b.dialMany(ctx, b.f.clients, setup)
	if err != nil {
		return nil, err
	}
	defer closeAll(clients)
	k := len(clients)
	m, err := b.twoPasses(b.f.n, func(n int) error {
		p := &broadcastPhase{target: int64(n) * int64(k), done: make(chan struct{})}
		phase.Store(p)
		ctx, cancel := context.WithTimeout(ctx, controlWait)
		defer cancel()
		reply, err := clients[0].Request(ctx, benchBroadcast{N: n})
		if err != nil {
			return err
		}
		var done benchBroadcastDone
		if err := reply.Decode(&done); err != nil {
			return err
		}
		if done.Sessions != k {
			return fmt.Errorf("the server broadcast to %d sessions, not %d", done.Sessions, k)
		}
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-p.done:
				return nil
			case <-tick.C:
				b.prog.set(int(p.got.Load() * int64(n) / p.target))
			case <-ctx.Done():
				if err, _ := decodeErr.Load().(error); err != nil {
					return err
				}
				return fmt.Errorf("%d of %d deliveries arrived: %w", p.got.Load(), p.target, ctx.Err())
			}
		}
	})
	if err != nil {
		return nil, err
	}
	return b.result(m, b.f.n, float64(b.f.n)*float64(k)), nil
}

// benchMemory is s5: the server's RSS growth per idle handshaked
// connection.
func benchMemory(ctx context.Context, b *bench) (*benchResult, error) {
	var all []*sockhop.Client
	defer func() { closeAll(all) }()
	// The warm-up connections stay open: the first connections also pay
	// for runtime structures that later ones share.
	b.prog.begin("warm-up", warmN(b.f.clients)+1)
	warm, err := b.dialMany(ctx, warmN(b.f.clients)+1, nil)
	if err != nil {
		return nil, err
	}
	all = append(all, warm...)
	ctl := warm[0]
	before, err := b.serverMemory(ctx, ctl)
	if err != nil {
		return nil, err
	}
	b.prog.begin("connecting", b.f.clients)
	var conns []*sockhop.Client
	m, err := b.measure(func() error {
		var err error
		conns, err = b.dialMany(ctx, b.f.clients, nil)
		return err
	})
	if err != nil {
		return nil, err
	}
	all = append(all, conns...)
	// Let the server's side of the last handshakes finish.
	time.Sleep(200 * time.Millisecond)
	after, err := b.serverMemory(ctx, ctl)
	if err != nil {
		return nil, err
	}
	if want := len(all); after.Sessions != want {
		return nil, fmt.Errorf("the server has %d sessions, not %d", after.Sessions, want)
	}
	k := float64(b.f.clients)
	r := b.result(m, b.f.clients, k)
	r.Value = round(float64(after.RSSKB-before.RSSKB)/k, 2)
	r.HeapPerConn = ptr(round(float64(after.HeapKB-before.HeapKB)/k, 2))
	return r, nil
}

func (b *bench) serverMemory(ctx context.Context, c *sockhop.Client) (benchRSS, error) {
	ctx, cancel := context.WithTimeout(ctx, controlWait)
	defer cancel()
	var r benchRSS
	reply, err := c.Request(ctx, benchRSSQuery{})
	if err != nil {
		return r, err
	}
	if err := reply.Decode(&r); err != nil {
		return r, err
	}
	if r.RSSKB == 0 {
		return r, errors.New("the server cannot read its RSS (no /proc/self/status)")
	}
	return r, nil
}
