package sockhop

import (
	"context"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sockhop/sockhop-go/internal/wire"
)

// The memory budget at full size (issue 15 "Done when"): the attacks that
// once held gigabytes keep the server's live heap under the budget plus a
// small constant. Run by `make load` (no race detector). The peers are raw
// sockets in this process, holding no more than one shared frame, so the
// process's heap is the server's.

// loadBudget is the budget of these tests: large enough for the default
// 4 MiB messages many times over, small enough for a shared machine.
const loadBudget = 64 << 20

// liveHeap is the live heap after a collection (twice: sync.Pool keeps
// what it dropped for one more).
func liveHeap() int64 {
	runtime.GC()
	runtime.GC()
	return int64(heapNow())
}

// holdAndMeasure samples the live heap every 300 ms for d and returns the
// highest figure.
func holdAndMeasure(d time.Duration) int64 {
	var peak int64
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(300 * time.Millisecond) {
		peak = max(peak, liveHeap())
	}
	return peak
}

func loadBudgetServer(t *testing.T, stall time.Duration) *Server {
	t.Helper()
	if raceEnabled {
		t.Skip("heap figures are meaningless under -race; `make load` runs this test without it")
	}
	o := ServerOptions{Addr: "127.0.0.1:0", MemoryBudget: loadBudget, MemoryBudgetStall: stall}
	o.MaxPreHandshakeSize = DefaultMaxMessageSize // raw peers never handshake
	o.MaxMessageSize = DefaultMaxMessageSize
	srv := NewServer(o)
	srv.Handle("Echo", func(ctx context.Context, m *Message) error {
		if m.IsRequest() {
			return m.Reply(ctx, m.JSON())
		}
		return m.Session().Send(ctx, Named{Type: "Echo", Data: m.JSON()})
	})
	srv.Handle("Blob", func(ctx context.Context, m *Message) error { m.Release(); return nil })
	noErr(t, srv.Listen())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return srv
}

// gcSlack is what the attack allocates and drops between the forced
// collection and the reading of the heap (buffers a growing frame
// outgrew), which the reading counts although it is garbage.
const gcSlack = 8 << 20

// budgetReport logs the figures and checks the heap bound: the budget
// plus perConn bytes of fixed cost (session structs, idle buffers) per
// connection, plus gcSlack.
func budgetReport(t *testing.T, srv *Server, what string, base, peak int64, conns int, perConn int64) {
	t.Helper()
	st := srv.Stats()
	grew := peak - base
	allowed := int64(loadBudget) + int64(conns)*perConn + gcSlack
	t.Logf("%s: live heap grew %.1f MiB (budget %d MiB, allowed %.1f MiB), budget in use %.1f MiB, cuts %d",
		what, float64(grew)/(1<<20), loadBudget>>20, float64(allowed)/(1<<20), float64(st.MemoryBudgetUsed)/(1<<20), st.MemoryBudgetCuts)
	if grew > allowed {
		t.Errorf("%s: the live heap grew %d bytes, more than the budget %d + %d per connection + %d", what, grew, loadBudget, perConn, gcSlack)
	}
}

// TestLoadBudgetHeaderOnly: 500 connections each send the header of a
// frame just under 4 MiB and nothing more (2.1 GB of heap before the
// budget).
func TestLoadBudgetHeaderOnly(t *testing.T) {
	srv := loadBudgetServer(t, 2*time.Second)
	const peers = 500
	frame := blobFrame(t, DefaultMaxMessageSize-100)
	base := liveHeap()
	for range peers {
		nc := rawBinaryPeer(t, srv.Addr().String())
		_, err := nc.Write(frame[:16])
		noErr(t, err)
	}
	eventually(t, "all peers connected", func() bool { return len(srv.Sessions()) == peers })
	peak := holdAndMeasure(3 * time.Second)
	budgetReport(t, srv, "500 header-only peers", base, peak, peers, 32<<10)
	healthyExchange(t, srv)
}

// TestLoadBudgetHeldFrames: 100 connections each send all but the last
// byte of a 4 MiB-1 frame (422 MB pinned before the budget): the server
// reads what fits in the budget, and cuts those that hold it without
// progress.
func TestLoadBudgetHeldFrames(t *testing.T) {
	srv := loadBudgetServer(t, time.Second)
	const peers = 100
	frame := blobFrame(t, DefaultMaxMessageSize-1+4) // 4 MiB-1 of payload
	base := liveHeap()
	var wg sync.WaitGroup
	conns := make([]net.Conn, peers)
	for i := range conns {
		nc := rawBinaryPeer(t, srv.Addr().String())
		conns[i] = nc
		wg.Go(func() {
			_ = nc.SetWriteDeadline(time.Now().Add(30 * time.Second))
			_, _ = nc.Write(frame[:len(frame)-1])
		})
	}
	peak := holdAndMeasure(4 * time.Second)
	budgetReport(t, srv, "100 peers holding 4 MiB-1 frames", base, peak, peers, 32<<10)
	healthyExchange(t, srv)
	if srv.Stats().MemoryBudgetCuts == 0 {
		t.Error("no peer was cut for holding budget without progress")
	}
	for _, nc := range conns {
		nc.Close()
	}
	wg.Wait()
}

// TestLoadBudgetNonReadingEcho: 20 peers send 1 MiB messages to an echo
// server and never read (590-669 MB before the budget, until
// WriteTimeout). Beyond the budget each connection may hold about one
// message (its first queued answer, the handler's encoding of one).
func TestLoadBudgetNonReadingEcho(t *testing.T) {
	srv := loadBudgetServer(t, 10*time.Second)
	const peers, size = 20, 1 << 20
	frame, err := wire.AppendFrame(nil, &wire.Message{Type: "Echo", Data: []byte(`"` + strings.Repeat("e", size) + `"`)})
	noErr(t, err)
	base := liveHeap()
	var wg sync.WaitGroup
	conns := make([]net.Conn, peers)
	for i := range conns {
		nc := rawBinaryPeer(t, srv.Addr().String())
		nc.(*net.TCPConn).SetReadBuffer(16 << 10)
		conns[i] = nc
		wg.Go(func() {
			_ = nc.SetWriteDeadline(time.Now().Add(30 * time.Second))
			for {
				if _, err := nc.Write(frame); err != nil {
					return
				}
			}
		})
	}
	peak := holdAndMeasure(4 * time.Second)
	budgetReport(t, srv, "20 non-reading echo peers", base, peak, peers, size+64<<10)
	healthyExchange(t, srv)
	for _, nc := range conns {
		nc.Close()
	}
	wg.Wait()
}
