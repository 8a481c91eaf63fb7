package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/sockhop/sockhop-go/internal/wire"
)

var replayUsage = usage{
	synopsis: "sockhop replay FILE [--addr HOST:PORT | --unix PATH] [--timeout 5s] [--max-pause 2s] [--terminator TEXT] [--json]",
	about: `Plays the client side of a recorded conversation (sniff --record, or a
transcript of shared/vectors/transcripts) against a live server and
compares what the server sends with what the recorded server sent, message
by message. Each connection of the recording gets a connection of its own.
The client's bytes go out chunk by chunk with the recorded pauses (each at
most --max-pause, so that an idle hour in a recording does not take an
hour); before
each chunk, replay waits (at most --timeout) for the server messages that
were recorded before it, and a recorded close of the server's side must be
matched by the live server.

What varies from run to run is masked, as the vectors README describes:
callback ids and other UUIDs, ISO dates, and the library_version of a
handshake compare equal whatever their value. Ids the live server chose are
put in place of the recorded ones in the client bytes that answer them (a
reply to the server's handshake, say). Pings and pongs are not compared,
since their number depends on timers; the server's pings are answered where
the client stream is between two messages, unless the recorded client left
the recorded server's pings unanswered.

Prints one line per connection (JSON with --json) and exits 0 when nothing
differed; at the first difference it says where (connection, message
number, what was recorded and what came) and exits 1.`,
	examples: `sockhop replay session.json --addr 127.0.0.1:50000
sockhop replay ../shared/vectors/transcripts/v2-v2-server-no-binary.json --addr 127.0.0.1:50000`,
}

func runReplay(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("replay")
	addr := fs.String("addr", "127.0.0.1:50000", "the server's TCP address `HOST:PORT`")
	unix := fs.String("unix", "", "the server's Unix socket `PATH`, instead of --addr")
	timeout := fs.Duration("timeout", 5*time.Second, "how long to wait for each recorded server message or close, a `DURATION`")
	term := fs.String("terminator", `\n`, "the server's JSON-mode line terminator `TEXT`, with Go escapes such as \\x00")
	maxPause := fs.Duration("max-pause", 2*time.Second, "longest recorded pause between two client chunks kept as it is, a `DURATION`; longer ones are cut to it")
	jsonOut := fs.Bool("json", false, "one JSON object per connection (the default when stdout is not a terminal)")
	pos, err := parseFlags(e, fs, replayUsage, args, 1)
	if err != nil {
		return err
	}
	addrSet := false
	fs.Visit(func(f *flag.Flag) { addrSet = addrSet || f.Name == "addr" })
	switch {
	case len(pos) == 0:
		return usageErrorf("replay: give the transcript FILE (run 'sockhop replay --help')")
	case addrSet && *unix != "":
		return usageErrorf("replay: --addr and --unix exclude each other")
	case *timeout <= 0:
		return usageErrorf("replay: --timeout must be positive")
	case *maxPause < 0:
		return usageErrorf("replay: --max-pause must not be negative")
	}
	tt, err := strconv.Unquote(`"` + strings.ReplaceAll(*term, `"`, `\"`) + `"`)
	if err != nil || tt == "" {
		return usageErrorf("replay: --terminator %q is not a non-empty string with Go escapes (e.g. \\n, \\x00, \\r\\n)", *term)
	}
	conns, err := loadTranscript(pos[0], []byte(tt))
	if err != nil {
		return err
	}
	network, address := "tcp", *addr
	if *unix != "" {
		network, address = "unix", *unix
	}
	asJSON := *jsonOut || !isTerminal(e.stdout)
	for _, rc := range conns {
		p := &player{rc: rc, network: network, address: address, timeout: *timeout, maxPause: *maxPause, term: []byte(tt), ids: map[string]string{}}
		res := p.play(ctx)
		if ctx.Err() != nil {
			return errInterrupted
		}
		if asJSON {
			line, _ := json.Marshal(res)
			fmt.Fprintf(e.stdout, "%s\n", line)
		} else {
			fmt.Fprintln(e.stdout, terminalSafe(res.readable()))
		}
		if res.Difference != "" {
			return fmt.Errorf("%s: connection %d differs from the recording at server message %d: %s", pos[0], rc.n, res.Matched+1, res.Difference)
		}
		if res.Error != "" {
			return fmt.Errorf("%s: connection %d: %s", pos[0], rc.n, res.Error)
		}
	}
	return nil
}

// recConn is one recorded connection: its chunks, and the recorded server
// messages with where each ends in the server's stream.
type recConn struct {
	n      int
	chunks []recChunk
	s2c    []recMsg
	c2s    []int64 // where each client message ends: a pong fits there
	c2sBin int64   // where the client's transition line ends (-1: never)
	// The recorded client answered pings, or the recorded server sent
	// none: the live server's pings are answered. A recorded client that
	// left the server's pings unanswered is left silent.
	clientPongs, serverPings bool
}

type recChunk struct {
	dir string
	t   time.Duration
	b   []byte
	eof bool
}

type recMsg struct {
	m   wire.Message
	end int64
}

// loadTranscript reads FILE and cuts it into connections; term is the
// server's JSON terminator.
func loadTranscript(file string, term []byte) ([]*recConn, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var t transcript
	if err := json.Unmarshal(b, &t); err != nil {
		return nil, fmt.Errorf("%s is not a transcript (JSON with \"chunks\"): %w", file, err)
	}
	if len(t.Chunks) == 0 {
		return nil, fmt.Errorf("%s has no chunks: nothing to replay", file)
	}
	var conns []*recConn
	byNum := map[int]*recConn{}
	for i, c := range t.Chunks {
		if c.Dir != "c2s" && c.Dir != "s2c" {
			return nil, fmt.Errorf("%s: chunk %d has dir %q; want c2s or s2c", file, i, c.Dir)
		}
		data, err := hex.DecodeString(c.Hex)
		if err != nil {
			return nil, fmt.Errorf("%s: chunk %d: hex: %w", file, i, err)
		}
		rc := byNum[c.Conn]
		if rc == nil {
			rc = &recConn{n: c.Conn}
			byNum[c.Conn] = rc
			conns = append(conns, rc)
		}
		rc.chunks = append(rc.chunks, recChunk{dir: c.Dir, t: time.Duration(c.TMs * float64(time.Millisecond)), b: data, eof: c.EOF})
	}
	for _, rc := range conns {
		var s2c, c2s []byte
		for _, c := range rc.chunks {
			if c.dir == "s2c" {
				s2c = append(s2c, c.b...)
			} else {
				c2s = append(c2s, c.b...)
			}
		}
		rc.s2c = decodeAll(s2c, term)
		msgs := decodeAll(c2s, nil)
		rc.c2sBin = -1
		for _, m := range msgs {
			rc.c2s = append(rc.c2s, m.end)
			if rc.c2sBin < 0 && m.m.Type == wire.TypeTransition && !m.m.Binary {
				rc.c2sBin = m.end
			}
			rc.clientPongs = rc.clientPongs || (m.m.HasType && m.m.Type == wire.TypePong)
		}
		for _, m := range rc.s2c {
			rc.serverPings = rc.serverPings || (m.m.HasType && m.m.Type == wire.TypePing)
		}
	}
	return conns, nil
}

// decodeAll decodes a recorded stream as far as it decodes.
func decodeAll(stream, term []byte) []recMsg {
	r := bytes.NewReader(stream)
	dec := wire.NewDecoder(r, term, len(stream)+1)
	var out []recMsg
	for {
		m, err := dec.Next()
		if err != nil {
			return out
		}
		end := int64(len(stream)-r.Len()) - int64(dec.Buffered())
		out = append(out, recMsg{m: cloneMsg(m), end: end})
	}
}

func cloneMsg(m wire.Message) wire.Message {
	m.Data = bytes.Clone(m.Data)
	return m
}

// replayResult is one line of replay's output.
type replayResult struct {
	Conn       int    `json:"conn"`
	Recorded   int    `json:"recorded"` // server messages recorded (pings and pongs not counted)
	Matched    int    `json:"matched"`
	Difference string `json:"difference,omitempty"`
	Error      string `json:"error,omitempty"`
}

func (r *replayResult) readable() string {
	switch {
	case r.Difference != "":
		return fmt.Sprintf("conn %d: DIFFERENT at server message %d of %d: %s", r.Conn, r.Matched+1, r.Recorded, r.Difference)
	case r.Error != "":
		return fmt.Sprintf("conn %d: %s", r.Conn, r.Error)
	}
	return fmt.Sprintf("conn %d: the server sent the %d recorded messages, as recorded", r.Conn, r.Recorded)
}

// player replays one recorded connection.
type player struct {
	rc       *recConn
	network  string
	address  string
	timeout  time.Duration
	maxPause time.Duration
	term     []byte
	nc       net.Conn
	live     chan liveItem     // closed by the reader after the stream's end
	done     chan struct{}     // closed when the replay of this connection ends
	ended    bool              // the live stream's end was taken
	ids      map[string]string // recorded id -> live id
	next     int               // index in rc.s2c of the next recorded message to compare
	written  int64             // client bytes written
	pongs    [][]byte          // pings of the server still to answer (their data)
	matched  int
	recorded int
}

// liveItem is what the live server sent: a message, or the end of its
// stream (err io.EOF for a FIN).
type liveItem struct {
	m   wire.Message
	err error
}

// errDiffer carries a difference, as opposed to a failure to replay.
type errDiffer struct{ msg string }

func (e *errDiffer) Error() string { return e.msg }

func (p *player) play(ctx context.Context) replayResult {
	res := replayResult{Conn: p.rc.n}
	for _, m := range p.rc.s2c {
		if !isPingPong(&m.m) {
			p.recorded++
		}
	}
	res.Recorded = p.recorded
	err := p.run(ctx)
	res.Matched = p.matched
	var d *errDiffer
	switch {
	case errors.As(err, &d):
		res.Difference = d.msg
	case err != nil:
		res.Error = err.Error()
	}
	return res
}

func (p *player) run(ctx context.Context) error {
	dctx, cancel := context.WithTimeout(ctx, p.timeout)
	nc, err := (&net.Dialer{}).DialContext(dctx, p.network, p.address)
	cancel()
	if err != nil {
		return fmt.Errorf("cannot connect: %w", err)
	}
	p.nc = nc
	defer nc.Close()
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	p.live = make(chan liveItem, 64)
	p.done = make(chan struct{})
	reading := make(chan struct{})
	go func() {
		defer close(reading)
		p.read(p.live, p.done)
	}()
	defer func() {
		close(p.done)
		nc.Close()
		<-reading
	}()

	var s2cSeen int64         // recorded server bytes before the current chunk
	lastT := p.rc.chunks[0].t // recorded time of the previous client chunk (at first: of the connection's start)
	lastAt := time.Now()      // when it went out
	for _, c := range p.rc.chunks {
		if c.dir == "s2c" {
			s2cSeen += int64(len(c.b))
			if c.eof {
				if err := p.expect(s2cSeen); err != nil {
					return err
				}
				if err := p.expectEOF(); err != nil {
					return err
				}
			}
			continue
		}
		// A client chunk: first the server messages recorded before it.
		if err := p.expect(s2cSeen); err != nil {
			return err
		}
		// The recorded pause since the previous client chunk, at most
		// --max-pause; waiting for the server above counts towards it.
		if err := sleepUntil(ctx, lastAt.Add(min(max(c.t-lastT, 0), p.maxPause))); err != nil {
			return err
		}
		lastT, lastAt = c.t, time.Now()
		if c.eof {
			if cw, ok := nc.(interface{ CloseWrite() error }); ok {
				_ = cw.CloseWrite()
			}
			continue
		}
		if err := p.write(p.substitute(c.b)); err != nil {
			return err
		}
	}
	return p.expect(s2cSeen)
}

// sleepUntil waits until t, or until ctx ends (SIGINT).
func sleepUntil(ctx context.Context, t time.Time) error {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// read decodes the live server's stream onto live until it ends, or
// until done.
func (p *player) read(live chan<- liveItem, done <-chan struct{}) {
	defer close(live)
	dec := wire.NewDecoder(p.nc, p.term, 0)
	for {
		m, err := dec.Next()
		it := liveItem{m: cloneMsg(m), err: err}
		select {
		case live <- it:
		case <-done:
			return
		}
		if err != nil {
			return
		}
	}
}

func (p *player) write(b []byte) error {
	_ = p.nc.SetWriteDeadline(time.Now().Add(p.timeout))
	if _, err := p.nc.Write(b); err != nil {
		return &errDiffer{fmt.Sprintf("writing the recorded client bytes failed (%v): the server closed the connection earlier than recorded", err)}
	}
	p.written += int64(len(b))
	p.answerPings()
	return nil
}

// expect compares the live server's messages with the recorded ones that
// end within the first upTo bytes of the recorded server stream.
func (p *player) expect(upTo int64) error {
	for p.next < len(p.rc.s2c) && p.rc.s2c[p.next].end <= upTo {
		rec := &p.rc.s2c[p.next]
		p.next++
		if isPingPong(&rec.m) {
			continue
		}
		live, err := p.nextLive()
		if err != nil {
			return &errDiffer{fmt.Sprintf("recorded %s; the live server %s", describeMsg(&rec.m), err)}
		}
		if d := p.compare(&rec.m, live); d != "" {
			return &errDiffer{d}
		}
		p.matched++
	}
	return nil
}

// expectEOF waits for the live server to close its side, as recorded.
func (p *player) expectEOF() error {
	m, err := p.nextLive()
	if err == nil {
		return &errDiffer{fmt.Sprintf("the recorded server closed the connection here; the live one sent %s", describeMsg(m))}
	}
	if errors.Is(err, errLiveEOF) {
		return nil
	}
	return &errDiffer{"the recorded server closed the connection here; the live one " + err.Error()}
}

var errLiveEOF = errors.New("closed the connection")

// nextLive returns the live server's next message other than a ping or
// pong, answering pings on the way.
func (p *player) nextLive() (*wire.Message, error) {
	t := time.NewTimer(p.timeout)
	defer t.Stop()
	for {
		if p.ended {
			return nil, errLiveEOF
		}
		select {
		case it, ok := <-p.live:
			if !ok || it.err != nil {
				p.ended = true
				if !ok || errors.Is(it.err, io.EOF) {
					return nil, errLiveEOF
				}
				return nil, fmt.Errorf("sent what does not decode or ended the connection: %v", it.err)
			}
			if it.m.HasType && it.m.Type == wire.TypePing {
				p.pongs = append(p.pongs, it.m.Data)
				p.answerPings()
			}
			if isPingPong(&it.m) {
				continue
			}
			return &it.m, nil
		case <-t.C:
			return nil, fmt.Errorf("sent nothing more within %s", p.timeout)
		}
	}
}

// answerPings writes a pong for each ping waiting, if the client stream
// written so far ends between two messages (a pong inside a recorded
// message would break it), in the stream's mode at that point.
func (p *player) answerPings() {
	if p.rc.serverPings && !p.rc.clientPongs {
		p.pongs = nil // a silent client, as recorded
		return
	}
	if len(p.pongs) == 0 || !p.atBoundary() {
		return
	}
	binary := p.rc.c2sBin >= 0 && p.written >= p.rc.c2sBin
	var b []byte
	for _, data := range p.pongs {
		m := wire.Message{Type: wire.TypePong, HasType: true, Data: wire.MarshalPong(data, time.Now())}
		if binary {
			b, _ = wire.AppendFrame(b, &m)
		} else {
			b = wire.AppendJSONLine(b, &m, nil)
		}
	}
	p.pongs = nil
	_ = p.nc.SetWriteDeadline(time.Now().Add(p.timeout))
	_, _ = p.nc.Write(b) // a failure shows in what the server sends next
}

func (p *player) atBoundary() bool {
	if p.written == 0 {
		return true
	}
	for _, end := range p.rc.c2s {
		if end == p.written {
			return true
		}
	}
	return false
}

// substitute puts the ids the live server chose in place of the recorded
// ones in a client chunk (UUIDs are 36 bytes both ways, so frames keep
// their lengths).
func (p *player) substitute(b []byte) []byte {
	if len(p.ids) == 0 {
		return b
	}
	out := b
	for rec, live := range p.ids {
		if rec != live && bytes.Contains(out, []byte(rec)) {
			if &out[0] == &b[0] {
				out = bytes.Clone(b)
			}
			out = bytes.ReplaceAll(out, []byte(rec), []byte(live))
		}
	}
	return out
}

var (
	uuidRE = regexp.MustCompile(`[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}`)
	dateRE = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$`)
)

// compare returns "" when live matches rec after masking, else what
// differs. It learns the live server's ids on the way.
func (p *player) compare(rec, live *wire.Message) string {
	recIDs := uuidRE.FindAllString(rec.ID+" "+string(rec.Data), -1)
	liveIDs := uuidRE.FindAllString(live.ID+" "+string(live.Data), -1)
	if len(recIDs) == len(liveIDs) {
		for i := range recIDs {
			p.ids[recIDs[i]] = liveIDs[i]
		}
	}
	differ := func(what string) string {
		return fmt.Sprintf("%s differs: recorded %s, got %s", what, describeMsg(rec), describeMsg(live))
	}
	switch {
	case rec.Binary != live.Binary:
		return differ("the mode")
	case rec.Kind != live.Kind:
		return differ("the kind")
	case rec.HasType != live.HasType || rec.Type != live.Type:
		return differ("the type")
	case (rec.ID == "") != (live.ID == ""):
		return differ("the callback id")
	case rec.Bytes != live.Bytes:
		return differ("the data's kind (bytes or JSON)")
	case rec.Bytes:
		if !bytes.Equal(rec.Data, live.Data) {
			return differ("the data")
		}
		return ""
	}
	if (rec.Data == nil) != (live.Data == nil) {
		return differ("the data")
	}
	if rec.Data == nil {
		return ""
	}
	var a, b any
	if json.Unmarshal(rec.Data, &a) != nil || json.Unmarshal(live.Data, &b) != nil {
		if !bytes.Equal(rec.Data, live.Data) {
			return differ("the data")
		}
		return ""
	}
	if !reflect.DeepEqual(mask(a, ""), mask(b, "")) {
		return differ("the data")
	}
	return ""
}

// mask replaces what varies between runs: UUIDs, ISO dates and the
// library_version of a handshake.
func mask(v any, key string) any {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			out[k] = mask(x, k)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = mask(x, "")
		}
		return out
	case string:
		switch {
		case key == "library_version":
			return "<version>"
		case uuidRE.MatchString(v) && len(v) == 36:
			return "<uuid>"
		case dateRE.MatchString(v):
			return "<date>"
		}
	}
	return v
}

func isPingPong(m *wire.Message) bool {
	return m.HasType && (m.Type == wire.TypePing || m.Type == wire.TypePong)
}

// describeMsg renders a message in one short line.
func describeMsg(m *wire.Message) string {
	var b strings.Builder
	b.WriteString(modeName(m.Binary) + " " + m.Kind.String())
	if m.HasType {
		b.WriteString(" " + strconv.Quote(m.Type))
	} else {
		b.WriteString(" (no type)")
	}
	switch {
	case m.Bytes:
		fmt.Fprintf(&b, " %d bytes", len(m.Data))
	case m.Data != nil:
		d := string(m.Data)
		if len(d) > 120 {
			d = d[:120] + "…"
		}
		b.WriteString(" " + d)
	}
	return b.String()
}
