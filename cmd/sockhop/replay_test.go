package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// vectorsDir holds the recorded transcripts of the protocol's test vectors.
var vectorsDir = filepath.Join("..", "..", "..", "shared", "vectors", "transcripts")

// TestRecordReplay: a conversation recorded by sniff --record replays
// against the same kind of server with no difference, and against a server
// that behaves otherwise with the first difference named.
func TestRecordReplay(t *testing.T) {
	file := filepath.Join(t.TempDir(), "session.json")
	p := startServe(t, "--addr", "127.0.0.1:0", "--echo")
	sn := startSniff(t, "--listen", "127.0.0.1:0", "--upstream", p.target[1], "--record", file)
	for _, args := range [][]string{
		{"--request", `{"id":7}`, "--type", "Widget"},
		{"--request", "--type", "Tile", "--base64", "AAEC"},
		{"--request", `"plain"`}, // a plain message echoed right before the FIN may or may not go out
	} {
		if r := sockhopRun(t, "", append(append([]string{"send"}, sn.target...), args...)...); r.code != 0 {
			t.Fatalf("send %q: exit %d, stderr %q", args, r.code, r.stderr)
		}
	}
	p.waitFor(t, "plain", map[string]any{"event": "receive", "data": "plain", "request": true})
	sn.waitFor(t, "third close", map[string]any{"event": "close", "conn": 3, "dir": "s2c"})
	if code, _ := sn.stop(t); code != 0 {
		t.Fatalf("sniff exit %d: %s", code, sn.stderr.String())
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var tr transcript
	if err := json.Unmarshal(b, &tr); err != nil {
		t.Fatal(err)
	}
	if len(tr.Chunks) == 0 || tr.Streams["conn0:c2s"].Length == 0 || tr.Scenario != "session" {
		t.Fatalf("transcript: scenario %q, %d chunks, streams %v", tr.Scenario, len(tr.Chunks), tr.Streams)
	}
	eofs := 0
	for _, c := range tr.Chunks {
		if c.EOF {
			eofs++
		}
	}
	if eofs != 6 {
		t.Errorf("%d eof chunks, want 6 (3 connections, 2 directions)", eofs)
	}

	// The same server: no difference, one line per connection.
	r := sockhopRun(t, "", append([]string{"replay", file, "--timeout", "5s"}, p.target...)...)
	if r.code != 0 || strings.Count(r.stdout, "\n") != 3 || r.stderr != "" {
		t.Fatalf("replay: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	var res replayResult
	if err := json.Unmarshal([]byte(strings.SplitN(r.stdout, "\n", 2)[0]), &res); err != nil || res.Recorded != res.Matched || res.Matched < 3 {
		t.Errorf("first connection: %+v, %v", res, err)
	}

	// A server without --echo sends no reply: the first difference is the
	// missing response.
	quiet := startServe(t, "--addr", "127.0.0.1:0")
	r = sockhopRun(t, "", append([]string{"replay", file, "--timeout", "1s"}, quiet.target...)...)
	if r.code != 1 || !strings.Contains(r.stderr, `recorded binary response "Widget" {"id":7}`) || !strings.Contains(r.stderr, "sent nothing more") {
		t.Errorf("replay against serve without --echo: exit %d, stderr %q", r.code, r.stderr)
	}
	oneErrorLine(t, r)
}

// TestReplayVectors replays the client side of every transcript of
// shared/vectors against `sockhop serve` configured like the recorded
// server. Where the recorded server's application did nothing but speak
// the protocol, nothing differs; where it replied or pushed on its own,
// replay names that first message (serve does neither).
func TestReplayVectors(t *testing.T) {
	cases := []struct {
		file  string
		serve []string // flags matching the recorded server
		diff  string   // "" for no difference, else a part of the error
	}{
		{"defect-transition-coalesced.json", nil, ""},
		{"ping-v2-v2-binary.json", nil, ""},
		{"ping-v2-v2-json.json", []string{"--compat"}, ""},
		{"ping-timeout-client.json", []string{"--compat"}, ""},
		{"v1-request-to-v2-server.json", nil, ""},
		// The recorded server pinged a silent client and cut it; serve does not ping.
		{"ping-timeout-server.json", []string{"--compat"}, "server message 1: the recorded server closed the connection"},
		// The recorded applications replied or pushed.
		{"v1-client-v2-server.json", nil, `server message 2: recorded json response "Object" {"v2_reply_to":"Object"}`},
		{"v2-v2-binary.json", nil, `server message 4: recorded binary plain "String" "hi client"`},
		{"v2-v2-client-no-binary.json", nil, `server message 3: recorded json response "Object" {"echo":"q"}`},
		{"v2-v2-server-no-binary.json", []string{"--no-binary"}, `server message 3: recorded json response "Object" {"echo":"q"}`},
		{"v2compat-client-v2-server.json", nil, `server message 2: recorded json response "String" "ok"`},
		{"v2-client-v2compat-server.json", []string{"--compat"}, `server message 1: recorded json plain "Object" {"y":2}`},
		{"v2-v2-terminator-pair.json", []string{"--compat"}, `server message 1: recorded json plain "String" "b"`},
		{"v2-v2-reconnect.json", nil, "server message 4: the recorded server closed the connection"},
		// 1.x servers: a 1.x application answers what serve does not.
		{"v1-v1-request.json", []string{"--compat"}, `server message 1: recorded json plain "SockhopResponsePacket"`},
		{"v2-client-v1-server.json", []string{"--compat"}, `server message 1: recorded json response "Object" {"v1_reply_to":"String"}`},
		{"v2-client-v1-echo-server.json", []string{"--compat"}, `server message 1: recorded json response "Object" {"protocol_version":2`},
	}
	files, _ := filepath.Glob(filepath.Join(vectorsDir, "*.json"))
	if len(files) != len(cases) {
		t.Errorf("%d transcripts in %s, %d cases: every transcript needs its case", len(files), vectorsDir, len(cases))
	}
	for _, tc := range cases {
		t.Run(strings.TrimSuffix(tc.file, ".json"), func(t *testing.T) {
			p := startServe(t, append([]string{"--addr", "127.0.0.1:0"}, tc.serve...)...)
			r := sockhopRun(t, "", append([]string{"replay", filepath.Join(vectorsDir, tc.file), "--timeout", "1500ms"}, p.target...)...)
			if tc.diff == "" {
				if r.code != 0 {
					t.Errorf("exit %d, stderr %q; want no difference", r.code, r.stderr)
				}
				return
			}
			if r.code != 1 || !strings.Contains(r.stderr, tc.diff) {
				t.Errorf("exit %d, stderr %q; want 1 and %q", r.code, r.stderr, tc.diff)
			}
			oneErrorLine(t, r)
		})
	}
}

// TestReplayPauses: a recorded hour of silence is cut to --max-pause (the
// run would otherwise outlast the test's bound), and a file that is not a
// transcript is one error line.
func TestReplayPauses(t *testing.T) {
	hexOf := func(s string) string { return fmt.Sprintf("%x", s) }
	tr := transcript{Scenario: "pause", Chunks: []tChunk{
		{Conn: 0, Dir: "c2s", TMs: 0, Hex: hexOf(`{"type":"String","data":"a"}` + "\n")},
		{Conn: 0, Dir: "c2s", TMs: 3_600_000, Hex: hexOf(`{"type":"String","data":"b"}` + "\n")},
		{Conn: 0, Dir: "c2s", TMs: 3_600_001, EOF: true},
		{Conn: 0, Dir: "s2c", TMs: 3_600_002, EOF: true},
	}}
	b, err := json.Marshal(&tr)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "pause.json")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	p := startServe(t, "--addr", "127.0.0.1:0", "--compat")
	r := sockhopRun(t, "", append([]string{"replay", file, "--max-pause", "100ms"}, p.target...)...)
	if r.code != 0 {
		t.Errorf("replay: exit %d, stderr %q", r.code, r.stderr)
	}
	p.waitFor(t, "b", map[string]any{"event": "receive", "data": "b"})

	if err := os.WriteFile(file, []byte("not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = sockhopRun(t, "", append([]string{"replay", file}, p.target...)...)
	if r.code != 1 || !strings.Contains(r.stderr, "is not a transcript") {
		t.Errorf("replay of a non-transcript: exit %d, stderr %q", r.code, r.stderr)
	}
	oneErrorLine(t, r)
}
