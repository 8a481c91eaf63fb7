package sockhop

import (
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sockhop/sockhop-go/internal/nodepeer"
	"github.com/sockhop/sockhop-go/internal/wire"
)

// TestSyncUnsentReported: messages Send accepted that the connection never
// wrote in full when it died are counted and reported, not lost silently.
// The peer reads nothing and its pipe holds 200 KiB: of ten 70 KiB lines
// (each a segment of its own in the queue, which counts written messages
// per segment) two fit whole, the third in part; then the peer goes away.
func TestSyncUnsentReported(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newMemNode(t, nodepeer.Options{Hold: make(chan struct{})}) // never released
		n.size = 200 << 10
		errs := make(chan error, 4)
		co := ClientOptions{Dial: n.dial, ConnOptions: fastOpts(), OnError: func(_ *Client, err error) { errs <- err }}
		co.CompatibilityMode = true // nothing written at connect
		c := NewClient(co)
		defer c.Close()
		ctx := context.Background()
		noErr(t, c.Connect(ctx))
		p := <-n.peers
		msg := Named{Type: "T", Data: strings.Repeat("x", 70<<10)}
		body, err := encodeValue(msg)
		noErr(t, err)
		size := len(wire.AppendJSONLine(nil, &body, []byte("\n")))
		const sent = 10
		for range sent {
			noErr(t, c.Send(ctx, msg))
		}
		time.Sleep(time.Second) // every write that can go has gone
		synctest.Wait()
		p.Close()
		synctest.Wait()
		whole := n.size / size
		want := uint64(sent - whole)
		eventually(t, "the connection's end", func() bool { return !c.State().Connected })
		synctest.Wait()
		equal(t, "unsent", c.Stats().Unsent, want)
		err = recv(t, errs, "the report")
		if !strings.Contains(err.Error(), "message(s) accepted for sending") {
			t.Fatalf("report: %v", err)
		}
		t.Logf("%d-byte lines, %d whole in the pipe: %v", size, whole, err)
	})
}

// TestSyncUnsentRequeued: with a reconnect buffer, what the dead
// connection never wrote goes out on the next one, in order: ten 70 KiB
// messages to a peer that reads nothing and whose pipe holds 200 KiB; two
// went whole into the pipe (gone with the peer: the at-most-once window),
// the third in part (lost and reported), and the other seven reach the
// server the client reconnects to.
func TestSyncUnsentRequeued(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newMemListener()
		srv := NewServer(ServerOptions{ConnOptions: fastOpts()})
		got := make(chan int, 16)
		srv.Handle("T", func(ctx context.Context, m *Message) error {
			var v struct{ I int }
			if err := m.Decode(&v); err != nil {
				return err
			}
			got <- v.I
			return nil
		})
		served := make(chan error, 1)
		go func() { served <- srv.Serve(l) }()
		defer func() {
			srv.Close()
			<-served
		}()
		var hole net.Conn // the first peer: it reads nothing
		dials := 0
		errs := make(chan error, 4)
		co := ClientOptions{ConnOptions: fastOpts(), AutoReconnect: true, ReconnectInterval: 10 * time.Millisecond, ReconnectBufferSize: 4 << 20,
			OnError: func(_ *Client, err error) { errs <- err },
			Dial: func(context.Context, string, string) (net.Conn, error) {
				if dials++; dials == 1 {
					c, s := memPipe(200 << 10)
					hole = s
					return c, nil
				}
				return l.dial(), nil
			}}
		c := NewClient(co)
		defer c.Close()
		ctx := context.Background()
		noErr(t, c.Connect(ctx))
		pad := strings.Repeat("x", 70<<10)
		for i := range 10 {
			noErr(t, c.Send(ctx, Named{Type: "T", Data: map[string]any{"i": i, "pad": pad}}))
		}
		time.Sleep(time.Second) // every write that can go has gone
		synctest.Wait()
		hole.Close()
		for want := 3; want < 10; want++ {
			equal(t, "requeued message", recv(t, got, "a requeued message"), want)
		}
		err := recv(t, errs, "the report of the lost one")
		if !strings.Contains(err.Error(), "1 message(s) accepted for sending were lost") {
			t.Fatalf("report: %v", err)
		}
		synctest.Wait()
		equal(t, "unsent", c.Stats().Unsent, uint64(1))
		select {
		case i := <-got:
			t.Fatalf("message %d arrived too", i)
		default:
		}
	})
}

// TestSyncNode2UnsentRequeued: the same towards emulated Node 2.1.0
// servers: the first reads nothing and dies; the requeued messages reach
// the second after its handshake and the proof of the switch, none lost
// to its receiver (PROTOCOL.md 14.1).
func TestSyncNode2UnsentRequeued(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dead := newMemNode(t, nodepeer.Options{Hold: make(chan struct{})})
		dead.size = 200 << 10
		live := newMemNode(t, nodepeer.Options{})
		dials := 0
		co := ClientOptions{ConnOptions: fastOpts(), AutoReconnect: true, ReconnectInterval: 10 * time.Millisecond, ReconnectBufferSize: 4 << 20,
			Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
				if dials++; dials == 1 {
					return dead.dial(ctx, network, addr)
				}
				return live.dial(ctx, network, addr)
			}}
		c := NewClient(co)
		defer c.Close()
		ctx := context.Background()
		noErr(t, c.Connect(ctx))
		first := <-dead.peers
		pad := strings.Repeat("x", 70<<10)
		for i := range 10 {
			noErr(t, c.Send(ctx, Named{Type: "T", Data: map[string]any{"i": i, "pad": pad}}))
		}
		time.Sleep(time.Second)
		synctest.Wait()
		first.Close()
		p := <-live.peers
		msgs, err := p.WaitMessages(7, 10*time.Second)
		noErr(t, err)
		for k, m := range msgs {
			var v struct{ I int }
			noErr(t, json.Unmarshal(m.Data, &v))
			equal(t, "requeued message", v.I, k+3)
		}
		equal(t, "corrupted at the Node receiver", p.Corrupted(), 0)
	})
}
