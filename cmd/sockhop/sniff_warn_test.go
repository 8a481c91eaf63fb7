package main

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sockhop/sockhop-go/internal/wire"
)

const transitionLine = `{"type":"SockhopBinaryModeTransition"}` + "\n"

// handshakeLine is a handshake request announcing version.
func handshakeLine(version string) string {
	return `{"type":"SockhopHandshake","data":{"protocol_version":2,"library_version":"` + version +
		`","request_binary_mode":true},"id":"hs-1"}` + "\n"
}

// rawPair connects a raw client through sniff to a raw server that writes
// its handshake (announcing serverVersion) at once; the client has read it
// when rawPair returns, so sniff has seen it.
func rawPair(t *testing.T, sniffArgs []string, serverVersion string) (client net.Conn, sn *serveProc) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	stop := make(chan struct{})
	go func() {
		defer close(served)
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		_, _ = nc.Write([]byte(handshakeLine(serverVersion)))
		<-stop
	}()
	t.Cleanup(func() {
		close(stop)
		ln.Close()
		<-served
	})
	sn = startSniff(t, append([]string{"--listen", "127.0.0.1:0", "--upstream", ln.Addr().String()}, sniffArgs...)...)
	client, err = net.DialTimeout("tcp", sn.target[1], testWait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	_ = client.SetDeadline(time.Now().Add(testWait))
	if _, err := bufio.NewReader(client).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	return client, sn
}

func frame(t *testing.T, typ, data string) []byte {
	t.Helper()
	b, err := wire.AppendFrame(nil, &wire.Message{Type: typ, HasType: true, Data: []byte(data)})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSniffWarnsSharedTransition: with --coalesce, a transition line and the
// frame written after it go out in one write; sniff warns when the receiver
// announced a Node version, and not when it announced this library.
func TestSniffWarnsSharedTransition(t *testing.T) {
	for _, tc := range []struct {
		version string
		warn    bool
	}{{"2.1.0", true}, {"0.1.0+go", false}} {
		client, sn := rawPair(t, []string{"--coalesce", "300ms"}, tc.version)
		f := frame(t, "String", `"after"`)
		if _, err := client.Write([]byte(transitionLine)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond) // two writes: only the relay's --coalesce joins them
		if _, err := client.Write(f); err != nil {
			t.Fatal(err)
		}
		sn.waitFor(t, "frame", map[string]any{"event": "message", "dir": "c2s", "mode": "binary", "type": "String"})
		n := sn.count(map[string]any{"event": "warning", "dir": "c2s"})
		if tc.warn {
			ev := sn.waitFor(t, "warning", map[string]any{"event": "warning", "dir": "c2s"})
			w := ev["warning"].(string)
			if !strings.Contains(w, "2.1.0") || !strings.Contains(w, "14.1") || !strings.Contains(w, fmt.Sprintf("the %d bytes", len(f))) {
				t.Errorf("warning %q", w)
			}
		} else if n != 0 {
			t.Errorf("%d warnings towards a Go peer: %v", n, sn.snapshot())
		}
		for _, ev := range sn.snapshot() {
			if _, ok := ev["t_ms"].(float64); !ok {
				t.Errorf("event without t_ms: %v", ev)
			}
		}
	}
}

// TestSniffWarnsJSONAfterTransition: JSON that follows a transition line in
// the same direction is named.
func TestSniffWarnsJSONAfterTransition(t *testing.T) {
	client, sn := rawPair(t, nil, "0.1.0+go")
	if _, err := client.Write([]byte(transitionLine + `{"type":"String","data":"late"}` + "\n")); err != nil {
		t.Fatal(err)
	}
	ev := sn.waitFor(t, "warning", map[string]any{"event": "warning", "dir": "c2s"})
	if !strings.Contains(ev["warning"].(string), "JSON follows") {
		t.Errorf("warning %v", ev)
	}
}
