package interop

import (
	"encoding/json"
	"net"
	"strconv"
	"syscall"
	"testing"
	"time"

	sockhop "github.com/sockhop/sockhop-go"
)

// TestReconnectToRestartedNodeServer (R16): a Go client with AutoReconnect
// talks to a Node 1.8.4 server that is killed and started again on the
// same port three times: each time the client reconnects and requests are
// answered again; a request pending at the kill fails instead of hanging.
func TestReconnectToRestartedNodeServer(t *testing.T) {
	port := freePort(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	start := func() *peer {
		p := startPeer(t, "server", "--port", strconv.Itoa(port))
		p.expectWithin(readyTimeout, `"listening"`, func(e event) bool { return e.Event == "listening" })
		return p
	}
	p := start()
	c := newGoClient(t, addr, "", func(o *sockhop.ClientOptions) {
		o.CompatibilityMode = true
		o.AutoReconnect = true
		o.ReconnectInterval = 100 * time.Millisecond
		o.MaxReconnectInterval = 200 * time.Millisecond
	})
	noError(t, c.Connect(testCtx(t)), "Connect")
	for round := range 4 {
		if round > 0 {
			p.allowErrors = true
			p.cmd.Process.Signal(syscall.SIGKILL)
			select {
			case <-c.down:
			case <-time.After(waitTimeout):
				t.Fatalf("round %d: no disconnect after the kill", round)
			}
			p = start()
			poll(t, "reconnected", func() bool { return c.State().Connected })
		}
		r, err := c.Request(testCtx(t), map[string]int{"round": round})
		noError(t, err, "Request")
		var echo struct {
			Echo map[string]int `json:"echo"`
		}
		if err := json.Unmarshal(r.JSON(), &echo); err != nil || echo.Echo["round"] != round {
			t.Fatalf("round %d: reply %s", round, r.JSON())
		}
	}
	st := c.Stats()
	if st.Reconnects != 3 {
		t.Fatalf("%d reconnects, want 3", st.Reconnects)
	}
	t.Logf("3 kills of the Node 1.8.4 server: %d reconnects, %d connections", st.Reconnects, st.Connections)
}
