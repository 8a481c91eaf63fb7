package cluster

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sockhop/sockhop-go"
)

// counted starts n clients of m that only count what they receive.
func counted(b *testing.B, m *member, n int) []*atomic.Int64 {
	b.Helper()
	var counts []*atomic.Int64
	for range n {
		cnt := new(atomic.Int64)
		counts = append(counts, cnt)
		c := sockhop.NewClient(sockhop.ClientOptions{Addr: m.srv.Addr().String()})
		c.HandleDefault(func(ctx context.Context, msg *sockhop.Message) error { cnt.Add(1); return nil })
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		noErr(b, c.Start(ctx))
		cancel()
		b.Cleanup(func() { c.Close() })
	}
	return counts
}

// waitAll waits until every client has received at least want messages.
func waitAll(b *testing.B, counts []*atomic.Int64, want int64) {
	b.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for _, c := range counts {
		for c.Load() < want {
			if time.Now().After(deadline) {
				b.Fatalf("a client has %d of %d broadcasts", c.Load(), want)
			}
			time.Sleep(time.Millisecond)
		}
	}
}

// BenchmarkBroadcast300: deliveries/s to 300 clients, spread over 3
// servers of a cluster (a broadcast from one of them), and on one server
// with SendAll. Broadcasts go out in windows of 256 so that no queue
// overflows; the figure is deliveries to clients per second.
func BenchmarkBroadcast300(b *testing.B) {
	for _, servers := range []int{3, 1} {
		name := fmt.Sprintf("cluster-%dx%d", servers, 300/servers)
		if servers == 1 {
			name = "sendall-1x300"
		}
		b.Run(name, func(b *testing.B) {
			ns := startNATS(b)
			ms := startCluster(b, ns, servers)
			var counts []*atomic.Int64
			for _, m := range ms {
				counts = append(counts, counted(b, m, 300/servers)...)
			}
			converged(b, ms, 300)
			ctx := context.Background()
			v := Tick{From: "bench", N: 1}
			send := func() error { return ms[0].node.Broadcast(ctx, v) }
			if servers == 1 {
				send = func() error { return ms[0].srv.SendAll(ctx, v) }
			}
			b.ResetTimer()
			start := time.Now()
			for i := range b.N {
				noErr(b, send())
				if i%256 == 255 {
					waitAll(b, counts, int64(i+1-256))
				}
			}
			waitAll(b, counts, int64(b.N))
			b.ReportMetric(float64(b.N)*300/time.Since(start).Seconds(), "deliveries/s")
		})
	}
}

// BenchmarkRequest: the round trip of a Request to a session of the same
// server and to one of another server (through NATS and back).
func BenchmarkRequest(b *testing.B) {
	ns := startNATS(b)
	ms := startCluster(b, ns, 2)
	answer := func(*sockhop.Message) any { return 1 }
	local, far := connect(b, ms[0], false, answer), connect(b, ms[1], false, answer)
	converged(b, ms, 2)
	ids := map[string]string{"local": idOf(b, ms[0], local), "cross-server": idOf(b, ms[1], far)}
	for _, name := range []string{"local", "cross-server"} {
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			for range b.N {
				m, err := ms[0].node.Request(ctx, ids[name], 1)
				noErr(b, err)
				m.Release()
			}
		})
	}
}
