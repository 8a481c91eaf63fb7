package cluster

import (
	"fmt"
	"testing"

	"github.com/sockhop/sockhop-go"
)

// Tick is a numbered broadcast of one server.
type Tick struct {
	From string `json:"from"`
	N    int    `json:"n"`
}

// Three servers, two clients each (one in binary mode, one in JSON mode):
// every server broadcasts, concurrently; every client gets every
// broadcast exactly once, each server's in the order it made them.
func TestBroadcastReachesEveryClientOnce(t *testing.T) {
	ns := startNATS(t)
	ms := startCluster(t, ns, 3)
	var clients []*tclient
	for _, m := range ms {
		clients = append(clients, connect(t, m, false, nil), connect(t, m, true, nil))
	}
	converged(t, ms, len(clients))
	const each = 50
	ctx := testCtx(t)
	errs := make(chan error, len(ms))
	for _, m := range ms {
		go func() {
			for i := range each {
				if err := m.node.Broadcast(ctx, Tick{From: m.name, N: i}); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range ms {
		noErr(t, <-errs)
	}
	for ci, tc := range clients {
		next := map[string]int{}
		for range each * len(ms) {
			msg := tc.in.next(t, fmt.Sprintf("client %d: broadcast", ci))
			if msg.Type != "Tick" {
				t.Fatalf("client %d: type %q", ci, msg.Type)
			}
			var tk Tick
			noErr(t, msg.Decode(&tk))
			if tk.N != next[tk.From] {
				t.Fatalf("client %d: from %s got #%d, want #%d (lost, duplicated or reordered)", ci, tk.From, tk.N, next[tk.From])
			}
			next[tk.From]++
		}
		tc.in.empty(t, fmt.Sprintf("client %d after all broadcasts", ci))
	}
	var out, in uint64
	for _, m := range ms {
		st := m.node.Stats()
		out += st.Broadcasts
		in += st.BroadcastsIn
	}
	if out != 3*each || in != 2*3*each {
		t.Fatalf("Stats: %d broadcasts published, %d fanned out from others; want %d and %d", out, in, 3*each, 2*3*each)
	}
}

// A broadcast arrives exactly as Server.SendAll would have sent it, in
// both modes, whatever the value.
func TestBroadcastSameAsSendAll(t *testing.T) {
	ns := startNATS(t)
	ms := startCluster(t, ns, 2)
	bin, js := connect(t, ms[1], false, nil), connect(t, ms[1], true, nil)
	converged(t, ms, 2)
	ctx := testCtx(t)
	for _, v := range []any{Tick{From: "x", N: 1}, []byte{0, 1, 255}, "text", 3.5, map[string]any{"a": []int{1}}} {
		noErr(t, ms[0].node.Broadcast(ctx, v))
		noErr(t, ms[1].srv.SendAll(ctx, v))
		for _, tc := range []*tclient{bin, js} {
			a, b := tc.in.next(t, "broadcast"), tc.in.next(t, "SendAll")
			if a.Type != b.Type || string(a.JSON()) != string(b.JSON()) || string(a.Bytes()) != string(b.Bytes()) || a.Type != sockhop.TypeName(v) {
				t.Fatalf("%T: broadcast gave %s %q%q, SendAll %s %q%q", v, a.Type, a.JSON(), a.Bytes(), b.Type, b.JSON(), b.Bytes())
			}
		}
	}
}

// Broadcasts made concurrently on one server reach every session, on every
// server, in one and the same order.
func TestConcurrentBroadcastsOneOrder(t *testing.T) {
	ns := startNATS(t)
	ms := startCluster(t, ns, 3)
	var clients []*tclient
	for _, m := range ms {
		clients = append(clients, connect(t, m, false, nil))
	}
	converged(t, ms, len(clients))
	const each = 100
	ctx := testCtx(t)
	errs := make(chan error, 2)
	for _, g := range []string{"g1", "g2"} {
		go func() {
			for i := range each {
				if err := ms[0].node.Broadcast(ctx, Tick{From: g, N: i}); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	noErr(t, <-errs)
	noErr(t, <-errs)
	var first []Tick
	for ci, tc := range clients {
		var seq []Tick
		for range 2 * each {
			var tk Tick
			noErr(t, tc.in.next(t, "broadcast").Decode(&tk))
			seq = append(seq, tk)
		}
		if ci == 0 {
			first = seq
			continue
		}
		for i := range seq {
			if seq[i] != first[i] {
				t.Fatalf("client %d: broadcast #%d is %+v, client 0 got %+v there", ci, i, seq[i], first[i])
			}
		}
	}
}
