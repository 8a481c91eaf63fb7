package sockhop

import (
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// texts returns the reports' texts.
func (l *errLog) texts() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var s []string
	for _, err := range l.errs {
		s = append(s, err.Error())
	}
	return s
}

// rawToServer starts a server with so reporting into a log, and a raw
// connection to it.
func rawToServer(t *testing.T, so ServerOptions) (*Server, net.Conn, *errLog) {
	t.Helper()
	var log errLog
	so.OnError = log.add
	srv := startServer(t, transports[0], so)
	raw, err := net.Dial("tcp", srv.Addr().String())
	noErr(t, err)
	t.Cleanup(func() { raw.Close() })
	return srv, raw, &log
}

// TestUnknownCallbackIDsCost: replies with unknown callback ids, 1 MiB
// long ones among them, count toward MaxProtocolErrors: the connection is
// closed at the limit, the reports are few and quote no more than 64
// bytes of an id.
func TestUnknownCallbackIDsCost(t *testing.T) {
	srv, raw, rec := rawToServer(t, ServerOptions{ConnOptions: fastOpts()})
	long := strings.Repeat("L", 1<<20)
	go func() {
		for i := range 10_000 {
			id := fmt.Sprint("unknown-", i)
			if i%200 == 0 {
				id = long
			}
			if _, err := fmt.Fprintf(raw, `{"type":"Object","data":{},"callback_id":%q}`+"\n", id); err != nil {
				return // closed by the server
			}
		}
	}()
	raw.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, raw)
	if err != nil && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("the connection was not closed: %v", err)
	}
	eventually(t, "the session's end", func() bool { return len(srv.Sessions()) == 0 })
	st := srv.Stats()
	if st.ProtocolErrors != DefaultMaxProtocolErrors+1 {
		t.Errorf("protocol errors counted: %d, want the limit %d + 1", st.ProtocolErrors, DefaultMaxProtocolErrors)
	}
	errs := rec.texts()
	t.Logf("%d reports for %d protocol errors; first: %s", len(errs), st.ProtocolErrors, errs[0])
	if len(errs) > peerErrBurst+3 {
		t.Errorf("%d reports: not rate limited", len(errs))
	}
	for _, e := range errs {
		if strings.Contains(e, strings.Repeat("L", 65)) {
			t.Errorf("a report quotes more than 64 bytes of an id: %.200s", e)
		}
	}
	if last := errs[len(errs)-1]; !strings.Contains(last, "not reported one by one") && !strings.Contains(last, "MaxProtocolErrors") {
		t.Errorf("no summary of the suppressed reports: %v", errs[len(errs)-3:])
	}
}

// TestErrorsQuoteNoPayload: an undecodable line, a frame that does not
// parse and bad JSON data are reported with sizes and offsets, never with
// the bytes the peer sent.
func TestErrorsQuoteNoPayload(t *testing.T) {
	so := ServerOptions{ConnOptions: fastOpts()}
	so.MaxProtocolErrors = -1
	_, raw, rec := rawToServer(t, so)
	lines := []string{
		`{"type":"Login","data":{"password":"hunter2"`,
		`{"password":"hunter2"} trailing`,
		`hunter2`,
	}
	for _, l := range lines {
		_, err := io.WriteString(raw, l+"\n")
		noErr(t, err)
	}
	eventually(t, "every line reported", func() bool { return len(rec.texts()) >= len(lines) })
	for _, e := range rec.texts() {
		if strings.Contains(e, "hunter2") {
			t.Errorf("a report quotes the payload: %s", e)
		}
	}
	t.Logf("%s", strings.Join(rec.texts(), "\n"))
}

// TestProtocolErrorReportsRateLimited: with MaxProtocolErrors off, a
// thousand bad lines are all counted, reported a burst at a time, and the
// rest summed up when the connection ends.
func TestProtocolErrorReportsRateLimited(t *testing.T) {
	so := ServerOptions{ConnOptions: fastOpts()}
	so.MaxProtocolErrors = -1
	srv, raw, rec := rawToServer(t, so)
	const n = 1000
	_, err := io.WriteString(raw, strings.Repeat("not json\n", n))
	noErr(t, err)
	eventually(t, "every line counted", func() bool { return srv.Stats().ProtocolErrors == n })
	raw.Close()
	eventually(t, "the session's end", func() bool { return len(srv.Sessions()) == 0 })
	var errs []string
	eventually(t, "the summary", func() bool {
		errs = rec.texts()
		return strings.Contains(errs[len(errs)-1], "not reported one by one")
	})
	if len(errs) > peerErrBurst+5 {
		t.Errorf("%d reports for %d errors", len(errs), n)
	}
	t.Logf("%d reports; the last: %s", len(errs), errs[len(errs)-1])
}
