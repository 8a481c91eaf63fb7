package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// evil is a type name that, printed raw, ends the line, starts a forged
// one and sets the terminal's title.
const evil = "Evil\n\x1b]0;pwned\a"

// rawControl reports the first control byte or unsafe rune a terminal would
// act on, other than the line's own final newline.
func rawControl(line string) (rune, bool) {
	for _, r := range strings.TrimSuffix(line, "\n") {
		if r < 0x20 || r == 0x7f || unsafeRune(r) {
			return r, true
		}
	}
	return 0, false
}

func TestTerminalSafe(t *testing.T) {
	for in, want := range map[string]string{
		"Widget":              "Widget",
		evil:                  `Evil\n\x1b]0;pwned\x07`,
		"tab\there":           `tab\there`,
		"rtl\u202eoverride":   `rtl\u202eoverride`,
		"c1 \u009b csi":       `c1 \u009b csi`,
		"bad \xff utf8":       `bad \xff utf8`,
		"ünïcödé and emoji 🦀": "ünïcödé and emoji 🦀",
	} {
		if got := terminalSafe(in); got != want {
			t.Errorf("terminalSafe(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestReadableOutputsEscaped: every human-readable output that shows a
// peer's type, data, version or error text stays one line with nothing a
// terminal acts on.
func TestReadableOutputsEscaped(t *testing.T) {
	var out bytes.Buffer
	rep := &reporter{w: &out}
	data := json.RawMessage(`"` + "\u202e\u009b" + `"`)
	rep.emit(event{Event: "receive", Session: 1, shown: &shown{Type: evil, Data: data}})
	rep.emit(event{Event: "handshake", Session: 1, Success: new(bool), BinaryRx: new(bool), BinaryTx: new(bool), Error: evil})
	yes := true
	rep.emit(event{Event: "handshake", Session: 2, Success: &yes, BinaryRx: &yes, BinaryTx: &yes, PeerVersion: evil})
	rep.emit(event{Event: "error", Session: 1, Error: "sockhop: type " + evil})

	srep := &sniffReporter{w: &out}
	typ := evil
	srep.emit(&sniffEvent{Event: "message", Conn: 1, Dir: "c2s", Mode: "json", Kind: "plain", Type: &typ, Size: 9, Data: data})
	srep.emit(&sniffEvent{Event: "message", Conn: 1, Dir: "c2s", Mode: "json", Kind: "request", Type: &typ, Protocol: "handshake", LibraryVersion: evil, ID: evil})
	srep.emit(&sniffEvent{Event: "error", Conn: 1, Error: evil})

	out.WriteString(oneLine(errors.New("peer sent "+evil)) + "\n")
	out.WriteString(terminalSafeLines((&probeResult{Addr: "x", Transport: "tcp", Kind: kindSockhop2, LibraryVersion: evil}).readable()))

	lines := strings.SplitAfter(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 10 {
		t.Errorf("%d lines, want 10 (one per output): %q", len(lines), out.String())
	}
	for _, l := range lines {
		if r, bad := rawControl(l); bad {
			t.Errorf("raw %U in %q", r, l)
		}
	}
	if !strings.Contains(out.String(), `Evil\n\x1b]0;pwned\x07`) {
		t.Errorf("the type name is not shown escaped: %q", out.String())
	}
}

// TestServeJSONEscaped: the same type name sent by a real client comes out
// of serve --json and of send --request as JSON with its characters
// escaped, and decodes back to the name.
func TestServeJSONEscaped(t *testing.T) {
	p := startServe(t, "--addr", "127.0.0.1:0", "--echo")
	r := sockhopRun(t, "", append([]string{"send", "--request", "--type", evil, `{"x":"\u001b[2J"}`}, p.target...)...)
	if r.code != 0 {
		t.Fatalf("send: exit %d, stderr %q", r.code, r.stderr)
	}
	if _, bad := rawControl(r.stdout); bad || strings.Count(r.stdout, "\n") != 1 {
		t.Errorf("send printed %q", r.stdout)
	}
	var reply shown
	if err := json.Unmarshal([]byte(r.stdout), &reply); err != nil || reply.Type != evil {
		t.Errorf("reply %q: type %q, %v", r.stdout, reply.Type, err)
	}
	p.waitFor(t, "evil receive", map[string]any{"event": "receive", "type": evil})
}
