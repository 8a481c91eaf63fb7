package sockhop

import (
	"context"
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
