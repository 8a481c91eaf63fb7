package kit

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Timed runs pass with the warm-up size (a tenth of f.N), then with f.N
// as the timed pass, and returns the result: units of work per second of
// the timed pass (units(n) is the work of a pass of n) and the CPU both
// sides used per unit. servers are the processes of the server side,
// whose CPU times add up. With lat, the latencies of the timed pass give
// p50 and p99 (lat is read after the timed pass).
func Timed(f *Flags, servers Children, units func(n int) float64, pass func(n int) error, lat *[]time.Duration) (*Result, error) {
	if err := pass(WarmN(f.N)); err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	c0 := SelfCPU()
	s0, serr0 := servers.CPU()
	start := time.Now()
	err := pass(f.N)
	secs := time.Since(start).Seconds()
	c1 := SelfCPU()
	s1, serr1 := servers.CPU()
	if err != nil {
		return nil, err
	}
	if serr := errors.Join(serr0, serr1); serr != nil {
		return nil, fmt.Errorf("server CPU: %w", serr)
	}
	work := units(f.N)
	r := &Result{
		N:         f.N,
		Secs:      Round(secs, 4),
		Value:     Round(work/secs, 1),
		ClientCPU: Round(float64((c1-c0).Microseconds())/work, 3),
		ServerCPU: Round(float64((s1-s0).Microseconds())/work, 3),
	}
	if lat != nil {
		r.SetLatencies(*lat)
	}
	return r, nil
}

// PerItem is the units of a pass of n items: n.
func PerItem(n int) float64 { return float64(n) }

// Split runs send(conn, from, to) on k goroutines at once, connection
// conn sending items [from, to) of the n, and returns the first error.
func Split(n, k int, send func(conn, from, to int) error) error {
	errs := make(chan error, k)
	for c := range k {
		go func() { errs <- send(c, n*c/k, n*(c+1)/k) }()
	}
	var first error
	for range k {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Requests runs n requests, inflight at once on each of k connections
// (k*inflight goroutines, each making one request at a time): call(conn,
// i) makes request i on connection conn and checks its reply. It returns
// each request's latency, and the first error (the others stop then).
func Requests(n, k, inflight int, call func(conn, i int) error) ([]time.Duration, error) {
	lat := make([]time.Duration, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for g := range k * inflight {
		conn := g % k
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				start := time.Now()
				err := call(conn, i)
				lat[i] = time.Since(start)
				if err != nil {
					once.Do(func() { first = err })
					next.Store(int64(n)) // stop the others
					return
				}
			}
		})
	}
	wg.Wait()
	return lat, first
}

// Deliveries counts the deliveries of one broadcast pass.
type Deliveries struct {
	target int64
	got    atomic.Int64
	done   chan struct{}
}

// NewDeliveries waits for target deliveries.
func NewDeliveries(target int64) *Deliveries {
	return &Deliveries{target: target, done: make(chan struct{})}
}

// Add counts one delivery.
func (d *Deliveries) Add() {
	if d.got.Add(1) == d.target {
		close(d.done)
	}
}

// Wait waits until all deliveries arrived, Wait at most; failed tells
// what stopped a receiver, if one did.
func (d *Deliveries) Wait(failed func() error) error {
	t := time.NewTimer(Wait)
	defer t.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-d.done:
			return nil
		case <-tick.C:
			if err := failed(); err != nil {
				return err
			}
		case <-t.C:
			return fmt.Errorf("%d of %d deliveries arrived in %v", d.got.Load(), d.target, Wait)
		}
	}
}

// FirstError keeps the first error some goroutine reports.
type FirstError struct {
	mu  sync.Mutex
	err error
}

// Set keeps err if it is the first.
func (e *FirstError) Set(err error) {
	e.mu.Lock()
	if e.err == nil {
		e.err = err
	}
	e.mu.Unlock()
}

// Err is the first error, or nil.
func (e *FirstError) Err() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.err
}

// Memory is s5, as rawgo measures it: connect(k) opens k idle
// connections (each made real by a round trip) and returns what closes
// them; rss asks the process that holds the server's side of the
// connections for its RSS after a GC. The warm-up connections (a tenth,
// plus one) stay open, since the first connections also pay for
// structures later ones share; the figure is the RSS growth over
// f.Clients more connections, per connection, and the CPU is that of
// opening them.
func Memory(f *Flags, servers Children, connect func(k int) (func(), error), rss func() (RSS, error)) (*Result, error) {
	closeWarm, err := connect(WarmN(f.Clients) + 1)
	if err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	defer closeWarm()
	before, err := rss()
	if err != nil {
		return nil, err
	}
	c0 := SelfCPU()
	s0, serr0 := servers.CPU()
	start := time.Now()
	closeConns, err := connect(f.Clients)
	secs := time.Since(start).Seconds()
	c1 := SelfCPU()
	s1, serr1 := servers.CPU()
	if err != nil {
		return nil, err
	}
	defer closeConns()
	if serr := errors.Join(serr0, serr1); serr != nil {
		return nil, fmt.Errorf("server CPU: %w", serr)
	}
	// Let the server's side of the last connections settle.
	time.Sleep(200 * time.Millisecond)
	after, err := rss()
	if err != nil {
		return nil, err
	}
	k := float64(f.Clients)
	return &Result{
		N:         f.Clients,
		Secs:      Round(secs, 4),
		Value:     Round(float64(after.KB-before.KB)/k, 2),
		ClientCPU: Round(float64((c1-c0).Microseconds())/k, 3),
		ServerCPU: Round(float64((s1-s0).Microseconds())/k, 3),
	}, nil
}
