package sockhop

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Benchmarks of whole connections over loopback TCP, both ends in this
// process (`sockhop bench` measures two processes). Every receiver decodes
// each message fully, as an application would. Run them with
//
//	go test -run '^$' -bench . -benchmem -count 5 .
//
// and compare runs with benchstat; `sockhop bench` is the tool for figures
// to set against other implementations.

// benchWidget is the small object of the benchmarks,
// {"seq":1,"name":"widget","vals":[1,2,3]} (41 bytes).
type benchWidget struct {
	Seq  int    `json:"seq"`
	Name string `json:"name"`
	Vals []int  `json:"vals"`
}

func (benchWidget) SockhopType() string { return "Widget" }

var widget = benchWidget{Seq: 1, Name: "widget", Vals: []int{1, 2, 3}}

// benchPair is a server and one handshaked client over loopback TCP in
// the given mode.
func benchPair(b *testing.B, noBinary bool, setup func(srv *Server)) (*Server, *Client) {
	b.Helper()
	srv := NewServer(ServerOptions{Addr: "127.0.0.1:0", ConnOptions: ConnOptions{NoBinary: noBinary}})
	if setup != nil {
		setup(srv)
	}
	noErr(b, srv.Listen())
	b.Cleanup(func() { srv.Close() })
	c := benchClient(b, srv, noBinary)
	return srv, c
}

func benchClient(b *testing.B, srv *Server, noBinary bool) *Client {
	b.Helper()
	c := NewClient(ClientOptions{Addr: srv.Addr().String(), ConnOptions: ConnOptions{NoBinary: noBinary}})
	b.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	noErr(b, c.Start(ctx))
	return c
}

// counter counts decoded messages and signals when a target is reached.
type counter struct {
	n      atomic.Int64
	target atomic.Int64
	done   chan struct{}
}

func newCounter() *counter {
	c := &counter{done: make(chan struct{}, 1)}
	c.target.Store(-1)
	return c
}

func (c *counter) add() {
	if c.n.Add(1) == c.target.Load() {
		c.done <- struct{}{}
	}
}

// expect arms the counter for k more messages; wait blocks until they came.
func (c *counter) expect(k int64) { c.target.Store(c.n.Load() + k) }

func (c *counter) wait(b *testing.B) {
	b.Helper()
	select {
	case <-c.done:
	case <-time.After(time.Minute):
		b.Fatalf("only %d of %d messages arrived", c.n.Load(), c.target.Load())
	}
}

var benchModes = []struct {
	name     string
	noBinary bool
}{{"binary", false}, {"json", true}}

// BenchmarkSend: one-way objects, pipelined; an op is one message sent,
// received and decoded into a struct.
func BenchmarkSend(b *testing.B) {
	for _, mode := range benchModes {
		b.Run(mode.name, func(b *testing.B) {
			cnt := newCounter()
			_, c := benchPair(b, mode.noBinary, func(srv *Server) {
				srv.Handle("Widget", func(ctx context.Context, m *Message) error {
					var w benchWidget
					if err := m.Decode(&w); err != nil {
						return err
					}
					cnt.add()
					return nil
				})
			})
			ctx := context.Background()
			b.ReportAllocs()
			b.SetBytes(41)
			b.ResetTimer()
			cnt.expect(int64(b.N))
			w := widget
			for i := 0; i < b.N; i++ {
				w.Seq = i
				if err := c.Send(ctx, w); err != nil {
					b.Fatal(err)
				}
			}
			cnt.wait(b)
		})
	}
}

// BenchmarkRequest: request/reply, one in flight (seq) or 64 (par64); an
// op is one round trip with both sides decoding.
func BenchmarkRequest(b *testing.B) {
	for _, mode := range benchModes {
		for _, inflight := range []int{1, 64} {
			name := fmt.Sprintf("%s/seq", mode.name)
			if inflight > 1 {
				name = fmt.Sprintf("%s/par%d", mode.name, inflight)
			}
			b.Run(name, func(b *testing.B) {
				_, c := benchPair(b, mode.noBinary, func(srv *Server) {
					srv.Handle("Widget", func(ctx context.Context, m *Message) error {
						var w benchWidget
						if err := m.Decode(&w); err != nil {
							return err
						}
						return m.Reply(ctx, struct {
							Seq int `json:"seq"`
						}{w.Seq})
					})
				})
				ctx := context.Background()
				b.ReportAllocs()
				b.ResetTimer()
				var next atomic.Int64
				var wg sync.WaitGroup
				for range inflight {
					wg.Add(1)
					go func() {
						defer wg.Done()
						w := widget
						for {
							i := next.Add(1)
							if i > int64(b.N) {
								return
							}
							w.Seq = int(i)
							r, err := c.Request(ctx, w)
							if err != nil {
								b.Error(err)
								return
							}
							var ack struct {
								Seq int `json:"seq"`
							}
							if err := r.Decode(&ack); err != nil || ack.Seq != w.Seq {
								b.Errorf("reply %+v (%v) to request %d", ack, err, w.Seq)
								return
							}
						}
					}()
				}
				wg.Wait()
			})
		}
	}
}

// BenchmarkSendAll: the server broadcasts to 100 sessions; an op is one
// broadcast, delivered to and decoded by all 100 clients.
func BenchmarkSendAll(b *testing.B) {
	const clients = 100
	for _, mode := range benchModes {
		b.Run(mode.name, func(b *testing.B) {
			srv := NewServer(ServerOptions{Addr: "127.0.0.1:0", ConnOptions: ConnOptions{
				NoBinary: mode.noBinary, MaxQueueBytes: 256 << 20,
			}})
			noErr(b, srv.Listen())
			b.Cleanup(func() { srv.Close() })
			cnt := newCounter()
			for range clients {
				c := NewClient(ClientOptions{Addr: srv.Addr().String(), ConnOptions: ConnOptions{NoBinary: mode.noBinary}})
				c.Handle("Widget", func(ctx context.Context, m *Message) error {
					var w benchWidget
					if err := m.Decode(&w); err != nil {
						return err
					}
					cnt.add()
					return nil
				})
				b.Cleanup(func() { c.Close() })
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				noErr(b, c.Start(ctx))
				cancel()
			}
			for len(srv.Sessions()) < clients {
				time.Sleep(time.Millisecond)
			}
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			// In rounds, so that a large b.N cannot overflow the queues.
			w := widget
			for done := 0; done < b.N; {
				k := min(b.N-done, 20000)
				cnt.expect(int64(k) * clients)
				for i := range k {
					w.Seq = done + i
					if err := srv.SendAll(ctx, w); err != nil {
						b.Fatal(err)
					}
				}
				cnt.wait(b)
				done += k
			}
			b.ReportMetric(float64(b.N)*clients/b.Elapsed().Seconds(), "deliv/s")
		})
	}
}

// BenchmarkTypedBuffer: 1 MiB typed buffers (binary), or Buffers in
// base64 (json); an op is one buffer sent and received.
func BenchmarkTypedBuffer(b *testing.B) {
	const size = 1 << 20
	for _, mode := range benchModes {
		for _, release := range []bool{false, true} {
			name := mode.name
			if release {
				name += "/release"
			}
			b.Run(name, func(b *testing.B) {
				cnt := newCounter()
				h := func(ctx context.Context, m *Message) error {
					var p []byte
					if err := m.Decode(&p); err != nil {
						return err
					}
					if len(p) != size {
						return fmt.Errorf("got %d bytes", len(p))
					}
					if release {
						m.Release()
					}
					cnt.add()
					return nil
				}
				_, c := benchPair(b, mode.noBinary, func(srv *Server) {
					srv.Handle("Blob", h)
					srv.Handle("Buffer", h)
				})
				buf := make([]byte, size)
				for i := range buf {
					buf[i] = byte(i)
				}
				ctx := context.Background()
				b.ReportAllocs()
				b.SetBytes(size)
				b.ResetTimer()
				cnt.expect(int64(b.N))
				for range b.N {
					var err error
					if mode.noBinary {
						err = c.Send(ctx, buf)
					} else {
						err = c.SendTyped(ctx, "Blob", buf)
					}
					if err != nil {
						b.Fatal(err)
					}
				}
				cnt.wait(b)
			})
		}
	}
}

// BenchmarkRequestUnix: sequential request/reply over a Unix socket.
func BenchmarkRequestUnix(b *testing.B) {
	dir, err := os.MkdirTemp("", "shb")
	noErr(b, err)
	b.Cleanup(func() { os.RemoveAll(dir) })
	srv := NewServer(ServerOptions{Path: filepath.Join(dir, "s.sock")})
	srv.Handle("Widget", func(ctx context.Context, m *Message) error {
		var w benchWidget
		if err := m.Decode(&w); err != nil {
			return err
		}
		return m.Reply(ctx, w.Seq)
	})
	noErr(b, srv.Listen())
	b.Cleanup(func() { srv.Close() })
	c := NewClient(ClientOptions{Path: filepath.Join(dir, "s.sock")})
	b.Cleanup(func() { c.Close() })
	ctx := context.Background()
	noErr(b, c.Start(ctx))
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		r, err := c.Request(ctx, widget)
		if err != nil {
			b.Fatal(err)
		}
		var n int
		if err := r.Decode(&n); err != nil || n != 1 {
			b.Fatalf("reply %d (%v) to request %d", n, err, i)
		}
	}
}
