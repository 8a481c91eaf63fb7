package sockhop

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestBroadcastSharesMemory (R11): one 48 KiB broadcast to 1,000 sessions
// over Unix sockets costs about one copy of the message, not a thousand;
// and SendAll never waits for peers that do not read.
func TestBroadcastSharesMemory(t *testing.T) {
	n := 1000
	if testing.Short() {
		n = 200
	}
	o := ServerOptions{ConnOptions: fastOpts()}
	o.MaxQueueBytes = 1 << 20
	srv := startServer(t, transports[1], o)
	peers := make([]net.Conn, 0, n)
	defer func() {
		for _, p := range peers {
			p.Close()
		}
	}()
	for range n {
		peers = append(peers, handshakeRaw(t, "unix", srv.o.Path, 0))
	}
	eventually(t, "all sessions handshaked", func() bool {
		ss := srv.Sessions()
		if len(ss) != n {
			return false
		}
		for _, s := range ss {
			if !s.State().HandshakeOK {
				return false
			}
		}
		return true
	})
	msg := Named{Type: "Big", Data: strings.Repeat("b", 48<<10)}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	noErr(t, srv.SendAll(testCtx(t), msg))
	runtime.ReadMemStats(&after)
	growth := int64(after.TotalAlloc - before.TotalAlloc)
	limit := int64(before.HeapAlloc/10) + 1<<20
	t.Logf("SendAll of 48 KiB to %d sessions allocated %d KiB (heap before %d KiB; limit %d KiB)", n, growth>>10, before.HeapAlloc>>10, limit>>10)
	if growth > limit {
		t.Fatalf("broadcast allocated %d KiB for %d sessions: the message is being copied per session", growth>>10, n)
	}

	// None of the peers reads: SendAll keeps returning at once, and
	// sessions whose queue fills are cut, not waited for.
	var times []time.Duration
	for range 40 {
		t0 := time.Now()
		noErr(t, srv.SendAll(testCtx(t), msg))
		times = append(times, time.Since(t0))
	}
	slices.Sort(times)
	t.Logf("SendAll to %d non-reading peers: p50 %s, p99 %s; %d sessions left, %d slow-consumer cuts", n, times[len(times)/2], times[len(times)*99/100], len(srv.Sessions()), srv.Stats().SlowConsumerCuts)
}

// handshakeRaw connects a raw peer that completes a JSON-mode handshake by
// hand and then never reads again; rcvbuf, when set, shrinks its receive
// buffer so that it stalls the sender sooner.
func handshakeRaw(t *testing.T, network, addr string, rcvbuf int) net.Conn {
	t.Helper()
	raw, err := net.Dial(network, addr)
	noErr(t, err)
	if rcvbuf > 0 {
		raw.(interface{ SetReadBuffer(int) error }).SetReadBuffer(rcvbuf)
	}
	line, err := bufio.NewReader(raw).ReadBytes('\n')
	noErr(t, err)
	var hs struct {
		ID string `json:"id"`
	}
	noErr(t, json.Unmarshal(line, &hs))
	fmt.Fprintf(raw, `{"type":"Object","data":{"allow_binary_mode":false},"callback_id":%q}`+"\n", hs.ID)
	fmt.Fprint(raw, `{"type":"SockhopHandshake","data":{"protocol_version":2,"library_version":"raw","request_binary_mode":false},"id":"raw-1"}`+"\n")
	return raw
}
