package sockhop

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
)

// fill writes a pattern that identifies buffer i into b.
func fill(b []byte, i int) {
	for j := range b {
		b[j] = byte(i*31 + j*7)
	}
}

// TestLargeBuffersReuse sends large typed buffers of varied sizes from
// several goroutines, each buffer overwritten by its sender as soon as
// SendTyped returns, to a handler that checks every byte and releases each
// message: neither the senders' reuse of their buffers nor the receiver's
// reuse of frame buffers may change a byte that arrives. The first half
// goes while the first frames are held after the switch to binary (so
// through the queue), the second after a round trip, when a sender finds
// the connection idle and writes from its own buffer.
func TestLargeBuffersReuse(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			srv := startServer(t, tr, ServerOptions{ConnOptions: fastOpts()})
			const senders, each = 4, 25
			var mu sync.Mutex
			var bad []string
			seen := 0
			done := make(chan struct{})
			srv.Handle("Blob", func(ctx context.Context, m *Message) error {
				b := m.Bytes()
				i := int(b[0])<<8 | int(b[1])
				want := make([]byte, len(b))
				fill(want, i)
				want[0], want[1] = b[0], b[1]
				mu.Lock()
				defer mu.Unlock()
				if !bytes.Equal(b, want) {
					bad = append(bad, fmt.Sprintf("buffer %d (%d bytes) changed", i, len(b)))
				}
				m.Release()
				if m.Bytes() != nil {
					bad = append(bad, "Bytes after Release is not nil")
				}
				m.Release() // twice does nothing
				if seen++; seen == senders*each {
					close(done)
				}
				return nil
			})
			srv.Handle("Sync", func(ctx context.Context, m *Message) error { return m.Reply(ctx, 0) })
			c := startClient(t, tr, srv, ClientOptions{ConnOptions: fastOpts()})
			ctx := testCtx(t)
			var wg sync.WaitGroup
			errs := make(chan error, senders)
			send := func(s, from, to int) {
				defer wg.Done()
				buf := make([]byte, 300<<10)
				for k := from; k < to; k++ {
					i := s*each + k
					b := buf[:64<<10+i*2039]
					fill(b, i)
					b[0], b[1] = byte(i>>8), byte(i)
					if err := c.SendTyped(ctx, "Blob", b); err != nil {
						errs <- err
						return
					}
					fill(b, 9999) // SendTyped returned: the buffer is ours again
				}
			}
			for s := range senders {
				wg.Add(1)
				go send(s, 0, each/2)
			}
			wg.Wait()
			_, err := c.Request(ctx, Named{Type: "Sync", Data: 0})
			noErr(t, err)
			for s := range senders {
				wg.Add(1)
				go send(s, each/2, each)
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			select {
			case <-done:
			case <-ctx.Done():
				t.Fatalf("only %d of %d buffers arrived", seen, senders*each)
			}
			mu.Lock()
			defer mu.Unlock()
			for _, s := range bad {
				t.Error(s)
			}
		})
	}
}

// TestSlowPeerLargeBuffer: a large buffer written from the sender's memory
// to a peer that reads slowly (a relay forwarding 32 MB a second)
// takes longer than inlineWriteMax, so the rest is copied and left to the
// writer while SendTyped returns and the sender overwrites its buffer:
// every byte must still arrive as it was.
func TestSlowPeerLargeBuffer(t *testing.T) {
	srv := startServer(t, transports[0], ServerOptions{ConnOptions: fastOpts()})
	got := make(chan []byte, 8)
	srv.Handle("Blob", func(ctx context.Context, m *Message) error {
		got <- append([]byte(nil), m.Bytes()...)
		return nil
	})
	srv.Handle("Sync", func(ctx context.Context, m *Message) error { return m.Reply(ctx, 0) })
	rl := newRelay(t, srv.Addr().String(), 0)
	rl.rate.Store(32 << 20)
	// Small kernel buffers on both ends of the slow link: what the link
	// can take in inlineWriteMax (its 512 KiB of chunks, 64 KiB buffers and
	// 160 KiB forwarded) is well under 3 MiB on any machine; left to
	// autotuning, loopback buffers can grow to several MiB and absorb the
	// whole buffer at once.
	rl.rcvBuf.Store(64 << 10)
	c := NewClient(ClientOptions{Addr: rl.addr(), Dial: smallSendBuffer(64 << 10), ConnOptions: fastOpts()})
	ctx := testCtx(t)
	noErr(t, c.Start(ctx))
	defer c.Close()
	_, err := c.Request(ctx, Named{Type: "Sync", Data: 0}) // the peer is this library: no proof wait, but a round trip first
	noErr(t, err)
	buf := make([]byte, 3<<20)
	const n = 6
	for i := range n {
		fill(buf, i)
		noErr(t, c.SendTyped(ctx, "Blob", buf))
		fill(buf, 9999)
	}
	for i := range n {
		b := recv(t, got, "a buffer")
		want := make([]byte, len(buf))
		fill(want, i)
		if !bytes.Equal(b, want) {
			t.Fatalf("buffer %d changed on the way", i)
		}
	}
	left := c.cur.stats.leftToWriter.Load()
	t.Logf("inline writes left to the writer: %d", left)
	if left == 0 {
		t.Error("no write took longer than inlineWriteMax: the test did not reach the path it is for")
	}
}
