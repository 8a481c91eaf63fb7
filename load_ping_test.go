package sockhop

import (
	"context"
	"net"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sockhop/sockhop-go/internal/wire"
)

// TestLoadPingFloodSustained is R8 (c) as a rate, not a burst: a raw peer
// sends 10,000 pings a second, in batches every 10 ms, and never reads.
// The pongs it does not read may fill the kernel's buffers and then the
// outbound queue, never more (MaxQueueBytes, 1 MiB here so that it fills
// in seconds): the server must cut the peer as a slow consumer, keep its
// heap bounded, and answer another client throughout (its round trips are
// logged; RELIABILITY.md wants their p99 under 50 ms). Without -race.
func TestLoadPingFloodSustained(t *testing.T) {
	if raceEnabled {
		t.Skip("a load test: run without -race (make load)")
	}
	tr := transports[0]
	ended := make(chan error, 4)
	o := ServerOptions{
		ConnOptions:  fastOpts(),
		OnSessionEnd: func(_ *Session, err error) { ended <- err },
	}
	o.MaxQueueBytes = 1 << 20
	srv := startServer(t, tr, o)
	srv.Handle("Echo", func(ctx context.Context, m *Message) error { return m.Reply(ctx, m.JSON()) })
	healthy := startClient(t, tr, srv, ClientOptions{ConnOptions: fastOpts()})

	runtime.GC()
	base := heapNow()
	peak := base

	raw, err := net.Dial("tcp", srv.Addr().String())
	noErr(t, err)
	defer raw.Close()
	ping := `{"type":"SockhopPing","data":` + string(wire.MarshalPing(wire.NewUUID(), time.Now())) + "}\n"
	batch := []byte(strings.Repeat(ping, 100)) // 100 per 10 ms: 10,000/s
	stopFlood := make(chan struct{})
	flooded := make(chan int, 1)
	go func() {
		sent := 0
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		defer func() { flooded <- sent }()
		for {
			select {
			case <-stopFlood:
				return
			case <-tick.C:
			}
			raw.SetWriteDeadline(time.Now().Add(time.Second))
			if _, err := raw.Write(batch); err != nil {
				return // cut off, or our kernel buffer is full: the server stopped reading us
			}
			sent += 100
		}
	}()

	begin := time.Now()
	rtts, floodErr := echoUntilEnded(t, healthy, ended, 2*time.Millisecond, 30*time.Second, func() { peak = max(peak, heapNow()) })
	cutAfter := time.Since(begin)
	close(stopFlood)
	sent := <-flooded
	slices.Sort(rtts)
	growth := float64(int64(peak)-int64(base)) / (1 << 20)
	t.Logf("R8 c: flooder (%d pings sent at 10,000/s) cut after %s: %v; healthy client %d round trips meanwhile, p50 %s p99 %s max %s; heap growth at peak %.1f MiB",
		sent, cutAfter.Round(time.Millisecond), floodErr, len(rtts), rtts[len(rtts)/2], rtts[len(rtts)*99/100], rtts[len(rtts)-1], growth)
	equal(t, "flooder's end code", codeOf(floodErr), CodeSlowConsumer)
	if growth > 64 {
		t.Errorf("heap grew by %.1f MiB while the flooder's answers were held, want a bounded queue", growth)
	}
	r, err := healthy.Request(testCtx(t), Named{Type: "Echo", Data: "after"})
	noErr(t, err)
	equal(t, "reply after", string(r.JSON()), `"after"`)
}
