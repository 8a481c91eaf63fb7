package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/sockhop/sockhop-go/internal/wire"
)

var sniffUsage = usage{
	synopsis: "sockhop sniff --listen HOST:PORT | --listen-unix PATH  --upstream HOST:PORT | --upstream-unix PATH\n" +
		"              [--json] [--split N] [--coalesce DURATION] [--delay DURATION] [--cut-after BYTES]\n" +
		"              [--max-message BYTES] [--preview BYTES] [--terminator TEXT] [--record FILE]",
	about: `Relays connections between Sockhop clients and a server, forwarding the bytes
unchanged in both directions, and prints every message of both directions
decoded: connection number, direction (c2s: client to server, s2c: server to
client), mode (json, or binary after that direction's transition line, from
the exact byte after it), kind (plain, request, response), type, callback id,
size on the wire and a preview of the data (JSON text, or the bytes).
Handshakes, handshake replies, transitions, pings and pongs are named as such.
Decoding runs beside the relay on a copy of the bytes and never holds up
forwarding. Bytes that do not decode are forwarded all the same and shown as
hex with the error; after an error that leaves a direction out of step (a
message over --max-message, a decoder more than 64 MiB behind), that
direction is still forwarded but no longer decoded, which is said once.

Faults, for testing peers (all optional, per forwarded read, both
directions): --split N writes each read as N-byte writes; --coalesce D
collects what arrives within D after a read and forwards it as one write
(what loses frames in a Node receiver, PROTOCOL.md 14.1); --delay D waits D
before forwarding each read; --cut-after BYTES closes the connection (both
directions) once BYTES bytes were forwarded in total, both directions
together: with a FIN, or, towards a TCP sender whose bytes past the budget
were dropped, with a reset, as a kernel closing a socket with unread bytes
does.

With --json, or when stdout is not a terminal, each line is a JSON object;
t_ms is the time in ms since sniff started (for a message, when its last
byte was forwarded); readable lines start with the time of day instead:
  {"event":"listening","t_ms":0,"addr":"127.0.0.1:50001","upstream":"127.0.0.1:50000"}
  {"event":"open","t_ms":812.5,"conn":1,"remote":"127.0.0.1:53412","upstream":"127.0.0.1:50000"}
  {"event":"message","t_ms":813.1,"conn":1,"dir":"c2s","mode":"binary","kind":"request",
   "type":"Widget","id":"...","size":78,"data_size":26,"data":{"id":7,"name":"sprocket"}}
  {"event":"undecodable","t_ms":820,"conn":1,"dir":"c2s","mode":"json","size":6,"hex":"68656c6c6f0a","error":"..."}
  {"event":"stopped","t_ms":830,"conn":1,"dir":"s2c","mode":"binary","hex":"...","error":"..."}
  {"event":"warning","t_ms":813.2,"conn":1,"dir":"s2c","warning":"..."}
  {"event":"close","t_ms":900,"conn":1,"dir":"c2s","bytes":1234,"reason":"eof"}
Warnings name the two failures of the switch to binary mode (PROTOCOL.md
14.1): a transition line forwarded in one write with the bytes after it to
a peer that announced a Node library version (it loses those frames), and
JSON following a transition line in the same direction.
Protocol messages carry "protocol": handshake, handshake-reply, transition,
ping or pong. Data longer than --preview is cut ("data_prefix" and
"truncated"); bytes are shown as base64. SIGINT or SIGTERM closes every
connection and exits 0.

JSON lines are split on "\n" unless --terminator names the peers' own
terminator (the reference's terminator option; one for both directions).

--record FILE writes every forwarded read of every connection, with its
time, to FILE when sniff stops, in the transcript format of the protocol's
test vectors (shared/vectors/transcripts: "chunks" with conn, dir, t_ms and
hex or eof, and "streams"; no masks or decoded messages). sockhop replay
plays its client side against a server. At most 64 MiB are recorded.`,
	examples: `sockhop sniff --listen 127.0.0.1:50001 --upstream 127.0.0.1:50000
sockhop sniff --listen 127.0.0.1:50001 --upstream 127.0.0.1:50000 --json | jq 'select(.event=="message")'
sockhop sniff --listen 127.0.0.1:50001 --upstream 127.0.0.1:50000 --coalesce 20ms   # provoke PROTOCOL.md 14.1
sockhop sniff --listen 127.0.0.1:50001 --upstream 127.0.0.1:50000 --split 1 --delay 1ms
sockhop sniff --listen-unix /tmp/sniff.sock --upstream-unix /tmp/sockhop.sock --cut-after 400
sockhop sniff --listen 127.0.0.1:50001 --upstream 127.0.0.1:50000 --record session.json`,
}

// Limits of the sniffer itself.
const (
	sniffBacklog     = 64 << 20 // bytes a decoder may fall behind its relay
	sniffDialTimeout = 5 * time.Second
	coalesceMax      = 1 << 20 // bytes one coalesced write may hold
	sniffHexBytes    = 64      // bytes of undecodable data shown
	readableHexBytes = 32      // bytes of binary data shown in readable output
)

type sniffConfig struct {
	listen, listenUnix, upstream, upstreamUnix string
	split                                      int
	coalesce, delay                            time.Duration
	cutAfter                                   int64
	maxMessage                                 int
	preview                                    int
	term                                       []byte
}

func (c *sniffConfig) upstreamName() string {
	if c.upstreamUnix != "" {
		return c.upstreamUnix
	}
	return c.upstream
}

func runSniff(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("sniff")
	var c sniffConfig
	fs.StringVar(&c.listen, "listen", "", "accept clients on TCP address `HOST:PORT` (port 0 picks a free port)")
	fs.StringVar(&c.listenUnix, "listen-unix", "", "accept clients on Unix socket `PATH`, instead of --listen")
	fs.StringVar(&c.upstream, "upstream", "", "the server's TCP address `HOST:PORT`")
	fs.StringVar(&c.upstreamUnix, "upstream-unix", "", "the server's Unix socket `PATH`, instead of --upstream")
	jsonOut := fs.Bool("json", false, "one JSON object per event (the default when stdout is not a terminal)")
	fs.IntVar(&c.split, "split", 0, "forward each read as writes of `N` bytes")
	fs.DurationVar(&c.coalesce, "coalesce", 0, "collect what arrives within `DURATION` of a read and forward it as one write")
	fs.DurationVar(&c.delay, "delay", 0, "wait `DURATION` before forwarding each read")
	fs.Int64Var(&c.cutAfter, "cut-after", 0, "close the connection once `BYTES` bytes were forwarded, both directions together")
	fs.IntVar(&c.maxMessage, "max-message", wire.DefaultMaxMessage, "largest message decoded, in `BYTES`; a bigger one stops decoding its direction")
	fs.IntVar(&c.preview, "preview", 256, "show at most `BYTES` of each message's data")
	term := fs.String("terminator", `\n`, "JSON-mode line terminator `TEXT`, with Go escapes such as \\x00 or \\r\\n")
	record := fs.String("record", "", "write the conversation to `FILE` when sniff stops, as a transcript (shared/vectors format) for sockhop replay")
	if _, err := parseFlags(e, fs, sniffUsage, args, 0); err != nil {
		return err
	}
	switch {
	case (c.listen == "") == (c.listenUnix == ""):
		return usageErrorf("sniff: give one of --listen and --listen-unix (run 'sockhop sniff --help')")
	case (c.upstream == "") == (c.upstreamUnix == ""):
		return usageErrorf("sniff: give one of --upstream and --upstream-unix (run 'sockhop sniff --help')")
	case c.split < 0, c.coalesce < 0, c.delay < 0, c.cutAfter < 0:
		return usageErrorf("sniff: --split, --coalesce, --delay and --cut-after must not be negative")
	case c.maxMessage <= 0 || c.preview <= 0:
		return usageErrorf("sniff: --max-message and --preview must be positive")
	}
	tt, err := strconv.Unquote(`"` + strings.ReplaceAll(*term, `"`, `\"`) + `"`)
	if err != nil || tt == "" {
		return usageErrorf("sniff: --terminator %q is not a non-empty string with Go escapes (e.g. \\n, \\x00, \\r\\n)", *term)
	}
	c.term = []byte(tt)
	network, address := "tcp", c.listen
	if c.listenUnix != "" {
		network, address = "unix", c.listenUnix
	}
	ln, err := net.Listen(network, address)
	if err != nil {
		return err
	}
	start := time.Now()
	s := &sniffer{cfg: &c, rep: &sniffReporter{w: e.stdout, json: *jsonOut || !isTerminal(e.stdout), start: start}, relays: map[*relay]bool{}}
	if *record != "" {
		s.rec = newRecorder(*record, start)
	}
	ev := sniffEvent{Event: "listening", Upstream: c.upstreamName()}
	if c.listenUnix != "" {
		ev.Unix = c.listenUnix
	} else {
		ev.Addr = ln.Addr().String()
	}
	s.rep.emit(&ev)

	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		s.acceptLoop(ctx, ln)
	}()
	<-ctx.Done()
	ln.Close()
	<-accepted
	s.mu.Lock()
	s.closing = true
	for r := range s.relays {
		r.abort("sniff stopped")
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	t := time.NewTimer(shutdownGrace)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
	if s.rec != nil {
		return s.rec.write(fmt.Sprintf("recorded by sockhop sniff between clients of %s and %s", ev.Addr+ev.Unix, c.upstreamName()))
	}
	return nil
}

// sniffer accepts clients and runs one relay per client.
type sniffer struct {
	cfg *sniffConfig
	rep *sniffReporter
	rec *recorder // --record, or nil

	mu      sync.Mutex
	relays  map[*relay]bool
	next    uint64
	closing bool
	wg      sync.WaitGroup
}

func (s *sniffer) acceptLoop(ctx context.Context, ln net.Listener) {
	for {
		nc, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
				return
			}
			s.rep.emit(&sniffEvent{Event: "error", Error: oneLine(err)})
			time.Sleep(50 * time.Millisecond) // e.g. out of file descriptors: do not spin
			continue
		}
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			nc.Close()
			return
		}
		s.next++
		r := &relay{s: s, n: s.next, client: nc, done: make(chan struct{}), versions: map[string]string{}}
		r.order.init()
		s.relays[r] = true
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			r.run(ctx)
			s.mu.Lock()
			delete(s.relays, r)
			s.mu.Unlock()
		}()
	}
}

// relay is one client connection and its upstream connection.
type relay struct {
	s      *sniffer
	n      uint64
	client net.Conn

	mu        sync.Mutex
	server    net.Conn // nil until dialled
	forwarded int64    // both directions, for --cut-after
	reason    string   // why the relay was closed, if it was
	done      chan struct{}
	closed    bool

	hsMu     sync.Mutex
	hsIDs    []string          // ids of handshakes seen, to name their replies
	versions map[string]string // library_version announced by the sender of each direction

	order order
}

// abort closes both connections, once; reason says why.
func (r *relay) abort(reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.closed = true
	r.reason = reason
	close(r.done)
	r.client.Close()
	if r.server != nil {
		r.server.Close()
	}
}

func (r *relay) closeReason() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reason
}

func (r *relay) run(ctx context.Context) {
	cfg := r.s.cfg
	network, address := "tcp", cfg.upstream
	if cfg.upstreamUnix != "" {
		network, address = "unix", cfg.upstreamUnix
	}
	dctx, cancel := context.WithTimeout(ctx, sniffDialTimeout)
	server, err := (&net.Dialer{}).DialContext(dctx, network, address)
	cancel()
	if err != nil {
		r.s.rep.emit(&sniffEvent{Event: "error", Conn: r.n, Remote: remoteName(r.client.RemoteAddr()),
			Error: oneLine(fmt.Errorf("cannot connect to upstream %s; client connection closed: %w", cfg.upstreamName(), err))})
		r.abort("upstream unreachable")
		return
	}
	r.mu.Lock()
	r.server = server
	closed := r.closed
	r.mu.Unlock()
	if closed {
		server.Close() // stopped while dialling
		return
	}
	r.s.rep.emit(&sniffEvent{Event: "open", Conn: r.n, Remote: remoteName(r.client.RemoteAddr()), Upstream: cfg.upstreamName()})

	var wg sync.WaitGroup
	for i, d := range []struct {
		dir      string
		src, dst net.Conn
	}{{"c2s", r.client, server}, {"s2c", server, r.client}} {
		f := newFeed(&r.order, i)
		wg.Add(2)
		go func() {
			defer wg.Done()
			r.pump(d.dir, d.src, d.dst, f)
		}()
		go func() {
			defer wg.Done()
			r.decode(d.dir, f)
		}()
	}
	wg.Wait()
	r.abort("")
}

// pump forwards src to dst, applying the faults, and hands a copy of every
// forwarded byte to f for decoding.
func (r *relay) pump(dir string, src, dst net.Conn, f *feed) {
	cfg := r.s.cfg
	buf := make([]byte, 32<<10)
	var batch []byte
	var total int64
	// endFeed ends the decoder's copy, and the recording, of this direction.
	endFeed := func(err error) {
		f.close(total, err)
		if r.s.rec != nil {
			reason := ""
			if !errors.Is(err, io.EOF) {
				reason = err.Error()
			}
			r.s.rec.end(r.n, dir, reason)
		}
	}
	for {
		data, err := r.read(src, buf, &batch)
		if len(data) > 0 {
			if cfg.delay > 0 {
				t := time.NewTimer(cfg.delay)
				select {
				case <-t.C:
				case <-r.done:
					t.Stop()
				}
			}
			allowed, cut := r.take(len(data))
			if allowed < len(data) {
				// The cut drops bytes the sender saw accepted. A kernel
				// closing a socket with unread bytes resets it; do the same,
				// so that the sender learns of the loss as it would from a
				// real cut, instead of seeing a clean FIN.
				resetOnClose(src)
			}
			data = data[:allowed]
			f.write(data) // before forwarding: the decoder sees a message before its answer
			if r.s.rec != nil && r.s.rec.add(r.n, dir, data) {
				r.s.rep.emit(&sniffEvent{Event: "error", Conn: r.n, Error: fmt.Sprintf("sockhop: --record holds %d MiB; the rest is not recorded", recordMax>>20)})
			}
			werr := r.forward(dst, data)
			total += int64(len(data))
			if cut {
				r.abort(fmt.Sprintf("cut after %d bytes (--cut-after)", cfg.cutAfter))
				endFeed(errors.New(r.closeReason()))
				return
			}
			if werr != nil {
				r.abort(fmt.Sprintf("%s write failed: %v", dir, werr))
				endFeed(errors.New(r.closeReason()))
				return
			}
		}
		if err != nil {
			switch {
			case errors.Is(err, io.EOF):
				// Recorded before it is passed on, so that the peer's
				// answer to it (its own FIN) comes after it in the
				// transcript and the decoder's order.
				endFeed(io.EOF)
				// Pass the half-close on: the other direction may still run.
				if cw, ok := dst.(interface{ CloseWrite() error }); ok {
					_ = cw.CloseWrite()
				}
			case r.closeReason() != "":
				endFeed(errors.New(r.closeReason()))
			default:
				r.abort(fmt.Sprintf("%s read failed: %v", dir, err))
				endFeed(errors.New(r.closeReason()))
			}
			return
		}
	}
}

// read returns the next data to forward: one read, or with --coalesce
// everything that arrived within the window after it.
func (r *relay) read(src net.Conn, buf []byte, batch *[]byte) ([]byte, error) {
	n, err := src.Read(buf)
	win := r.s.cfg.coalesce
	if win <= 0 || err != nil || n == 0 {
		return buf[:n], err
	}
	b := append((*batch)[:0], buf[:n]...)
	_ = src.SetReadDeadline(time.Now().Add(win))
	for len(b) < coalesceMax {
		n, err = src.Read(buf)
		b = append(b, buf[:n]...)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				err = nil
			}
			break
		}
	}
	_ = src.SetReadDeadline(time.Time{})
	*batch = b
	return b, err
}

// take reserves n bytes of the --cut-after budget; cut reports that the
// budget is used up with these bytes.
func (r *relay) take(n int) (allowed int, cut bool) {
	limit := r.s.cfg.cutAfter
	if limit == 0 {
		return n, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	left := limit - r.forwarded
	if left <= 0 {
		return 0, true
	}
	allowed = int(min(int64(n), left))
	r.forwarded += int64(allowed)
	return allowed, r.forwarded >= limit
}

// resetOnClose makes the coming Close of a TCP connection send a reset
// (SO_LINGER 0) instead of a FIN. Unix sockets have no such thing.
func resetOnClose(nc net.Conn) {
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
}

// forward writes data to dst, in --split pieces.
func (r *relay) forward(dst net.Conn, data []byte) error {
	step := r.s.cfg.split
	if step <= 0 {
		step = len(data)
	}
	for len(data) > 0 {
		k := min(step, len(data))
		if _, err := dst.Write(data[:k]); err != nil {
			return err
		}
		data = data[k:]
	}
	return nil
}

// decode reads one direction's copy and reports each message, in the order
// the relay forwarded the messages' last bytes across both directions.
func (r *relay) decode(dir string, f *feed) {
	cfg := r.s.cfg
	o, self := f.o, f.dir
	defer o.finish(self)
	tr := &trackingReader{f: f}
	dec := wire.NewDecoder(tr, cfg.term, cfg.maxMessage)
	var last int64 // stream offset where the next message starts
	afterTransition := false
	for {
		mode := modeName(dec.Binary())
		m, err := dec.Next()
		end := tr.total - int64(dec.Buffered())
		if afterTransition {
			afterTransition = false
			if raw := tr.bytes(last, min(tr.total, last+2)); string(raw) == `{"` {
				c := tr.chunkAt(last + 1)
				o.emit(self, c.seq, func() {
					r.s.rep.emit(&sniffEvent{Event: "warning", Conn: r.n, Dir: dir, at: c.at,
						Warning: "JSON follows this direction's transition line: the sender wrote JSON after switching to binary mode, and the receiver reads it as a frame (PROTOCOL.md 14.1, 5.5)"})
				})
			}
		}
		var de *wire.DecodeError
		var se *wire.SizeError
		switch {
		case err == nil:
			c := tr.chunkAt(end)
			var shared int64
			if m.HasType && m.Type == wire.TypeTransition && !m.Binary {
				afterTransition = true
				shared = sharedWrite(c, end, cfg.split)
			}
			o.emit(self, c.seq, func() {
				r.report(dir, &m, end-last, c.at)
				if shared > 0 {
					r.warnShared(dir, shared, c.at)
				}
			})
		case errors.As(err, &de):
			raw := tr.bytes(last, min(end, last+sniffHexBytes))
			c := tr.chunkAt(end)
			o.emit(self, c.seq, func() {
				r.s.rep.emit(&sniffEvent{Event: "undecodable", at: c.at, Conn: r.n, Dir: dir, Mode: mode, Size: end - last,
					Hex: hex.EncodeToString(raw), Truncated: end-last > int64(len(raw)), Error: oneLine(err)})
			})
		case errors.As(err, &se) || errors.Is(err, errFeedBacklog):
			raw := tr.bytes(last, min(tr.total, last+sniffHexBytes))
			o.emit(self, tr.seqAt(tr.total), func() {
				r.s.rep.emit(&sniffEvent{Event: "stopped", Conn: r.n, Dir: dir, Mode: mode, Hex: hex.EncodeToString(raw),
					Error: oneLine(fmt.Errorf("decoding stopped, bytes still forwarded: %w", err))})
			})
			f.stop()
			o.finish(self) // nothing more to say until the direction ends
			r.reportClose(dir, f, f.wait())
			return
		default:
			// The direction ended; its reason is the feed's.
			if tail := tr.total - last; tail > 0 {
				raw := tr.bytes(last, min(tr.total, last+sniffHexBytes))
				o.emit(self, tr.seqAt(tr.total), func() {
					r.s.rep.emit(&sniffEvent{Event: "undecodable", Conn: r.n, Dir: dir, Mode: mode, Size: tail,
						Hex: hex.EncodeToString(raw), Truncated: tail > int64(len(raw)),
						Error: fmt.Sprintf("sockhop: the stream ended inside a message (%d bytes of it)", tail)})
				})
			}
			r.reportClose(dir, f, f.wait())
			return
		}
		last = end
		tr.discard(last)
	}
}

func (r *relay) reportClose(dir string, f *feed, e feedEnd) {
	reason := "eof"
	if !errors.Is(e.err, io.EOF) {
		reason = e.err.Error()
	}
	f.o.emit(f.dir, e.seq, func() {
		r.s.rep.emit(&sniffEvent{Event: "close", Conn: r.n, Dir: dir, Bytes: &e.total, Reason: reason})
	})
}

func modeName(binary bool) string {
	if binary {
		return "binary"
	}
	return "json"
}

// sharedWrite returns how many bytes after stream offset end (where a
// transition line ends) were forwarded in the same write as the line's last
// byte: the whole chunk, or its --split piece.
func sharedWrite(c chunk, end int64, split int) int64 {
	wEnd := c.end
	if split > 0 && end > c.start {
		piece := (end - 1 - c.start) / int64(split)
		wEnd = min(c.end, c.start+(piece+1)*int64(split))
	}
	return max(0, wEnd-end)
}

// warnShared reports a transition line forwarded in one write with the
// bytes after it, when the receiver announced a Node library version: a
// Node receiver loses frames that share a read with the line (PROTOCOL.md
// 14.1). This library announces a version ending in "+go" and reads them.
func (r *relay) warnShared(dir string, shared int64, at time.Time) {
	r.hsMu.Lock()
	v := r.versions[otherDir(dir)]
	r.hsMu.Unlock()
	if v == "" || strings.HasSuffix(v, "+go") {
		return
	}
	r.s.rep.emit(&sniffEvent{Event: "warning", Conn: r.n, Dir: dir, at: at,
		Warning: fmt.Sprintf("the transition line and the %d bytes after it went out in one write to a peer that announced library version %s (Node): a Node receiver loses the frames that share a read with the transition line (PROTOCOL.md 14.1)", shared, v)})
}

func otherDir(dir string) string {
	if dir == "c2s" {
		return "s2c"
	}
	return "c2s"
}

// report prints one decoded message; at is when its last byte was
// forwarded.
func (r *relay) report(dir string, m *wire.Message, size int64, at time.Time) {
	cfg := r.s.cfg
	ev := sniffEvent{Event: "message", Conn: r.n, Dir: dir, Mode: modeName(m.Binary), Kind: m.Kind.String(), ID: m.ID, Size: size, at: at}
	if m.HasType {
		t := m.Type
		ev.Type = &t
	}
	var fields struct {
		LibraryVersion    string `json:"library_version"`
		RequestBinaryMode *bool  `json:"request_binary_mode"`
		AllowBinaryMode   *bool  `json:"allow_binary_mode"`
		ID                string `json:"_id"`
	}
	if m.HasType && m.Reserved() || m.Kind == wire.Response {
		_ = json.Unmarshal(m.Data, &fields) // best effort: odd data leaves the fields empty
	}
	switch {
	case !m.HasType:
	case m.Type == wire.TypeHandshake:
		ev.Protocol = "handshake"
		ev.LibraryVersion, ev.Binary = fields.LibraryVersion, fields.RequestBinaryMode
		if m.Kind == wire.Request {
			r.hsMu.Lock()
			if len(r.hsIDs) < 16 {
				r.hsIDs = append(r.hsIDs, m.ID)
			}
			r.versions[dir] = fields.LibraryVersion
			r.hsMu.Unlock()
		}
	case m.Type == wire.TypeTransition:
		ev.Protocol = "transition"
	case m.Type == wire.TypePing:
		ev.Protocol, ev.PingID = "ping", fields.ID
	case m.Type == wire.TypePong:
		ev.Protocol, ev.PingID = "pong", fields.ID
	case m.Kind == wire.Response && r.isHandshakeReply(m):
		ev.Protocol, ev.Binary = "handshake-reply", fields.AllowBinaryMode
	}
	if m.Bytes {
		n := len(m.Data)
		ev.DataSize = &n
		shownBytes := m.Data[:min(n, cfg.preview)]
		s := base64.StdEncoding.EncodeToString(shownBytes)
		ev.Base64 = &s
		ev.Truncated = n > len(shownBytes)
		ev.raw = m.Data[:min(n, readableHexBytes)]
	} else if m.Data != nil {
		var b bytes.Buffer
		text := m.Data
		if json.Compact(&b, m.Data) == nil {
			text = b.Bytes()
		}
		n := len(text)
		ev.DataSize = &n
		if len(text) > cfg.preview {
			cut := cfg.preview
			for cut > 0 && !utf8.RuneStart(text[cut]) {
				cut--
			}
			ev.DataPrefix, ev.Truncated = string(text[:cut]), true
		} else {
			ev.Data = json.RawMessage(bytes.Clone(text))
		}
	}
	r.s.rep.emit(&ev)
}

// isHandshakeReply tells a reply to a handshake: its id is one of the
// handshakes seen, or its data has the reply's shape (the handshake may be
// decoded after its reply, by the other direction's decoder).
func (r *relay) isHandshakeReply(m *wire.Message) bool {
	r.hsMu.Lock()
	for _, id := range r.hsIDs {
		if id == m.ID {
			r.hsMu.Unlock()
			return true
		}
	}
	r.hsMu.Unlock()
	if m.Bytes || len(m.Data) == 0 || m.Data[0] != '{' {
		return false
	}
	var keys map[string]json.RawMessage
	if json.Unmarshal(m.Data, &keys) != nil {
		return false
	}
	_, ok := keys["allow_binary_mode"]
	return ok && len(keys) == 1
}

// sniffEvent is one line of sniff's output. Field order is the JSON key
// order.
type sniffEvent struct {
	Event    string  `json:"event"`
	TMs      float64 `json:"t_ms"` // ms since sniff started; for a message, when its last byte was forwarded
	Conn     uint64  `json:"conn,omitempty"`
	Dir      string  `json:"dir,omitempty"`
	Addr     string  `json:"addr,omitempty"`
	Unix     string  `json:"unix,omitempty"`
	Remote   string  `json:"remote,omitempty"`
	Upstream string  `json:"upstream,omitempty"`
	Mode     string  `json:"mode,omitempty"`
	Kind     string  `json:"kind,omitempty"`
	Type     *string `json:"type,omitempty"`
	ID       string  `json:"id,omitempty"`
	Size     int64   `json:"size,omitempty"`
	Protocol string  `json:"protocol,omitempty"`
	// LibraryVersion and Binary (request_binary_mode, or for a reply
	// allow_binary_mode) of a handshake; PingID of a ping or pong.
	LibraryVersion string          `json:"library_version,omitempty"`
	Binary         *bool           `json:"binary,omitempty"`
	PingID         string          `json:"ping_id,omitempty"`
	DataSize       *int            `json:"data_size,omitempty"`
	Data           json.RawMessage `json:"data,omitempty"`
	DataPrefix     string          `json:"data_prefix,omitempty"`
	Base64         *string         `json:"base64,omitempty"`
	Hex            string          `json:"hex,omitempty"`
	Truncated      bool            `json:"truncated,omitempty"`
	Bytes          *int64          `json:"bytes,omitempty"`
	Reason         string          `json:"reason,omitempty"`
	Error          string          `json:"error,omitempty"`
	Warning        string          `json:"warning,omitempty"`

	raw []byte    // readable output: the first bytes of binary data
	at  time.Time // when it happened (zero: when it is printed)
}

// sniffReporter writes sniff's events one line each, as reporter does for
// serve.
type sniffReporter struct {
	mu    sync.Mutex
	w     io.Writer
	json  bool
	start time.Time // t_ms counts from here
}

func (r *sniffReporter) emit(ev *sniffEvent) {
	if ev.at.IsZero() {
		ev.at = time.Now()
	}
	ev.TMs = math.Round(float64(ev.at.Sub(r.start).Microseconds())) / 1000
	var line []byte
	if r.json {
		line, _ = json.Marshal(ev) // nothing in an event can fail to encode
	} else {
		line = []byte(ev.at.Format("15:04:05.000 ") + terminalSafe(ev.readable()))
	}
	line = append(line, '\n')
	r.mu.Lock()
	defer r.mu.Unlock()
	_, _ = r.w.Write(line)
}

// readable renders an event for a person.
func (ev *sniffEvent) readable() string {
	who := ""
	if ev.Conn != 0 {
		who = fmt.Sprintf("[%d] ", ev.Conn)
		if ev.Dir != "" {
			who += ev.Dir + " "
		}
	}
	switch ev.Event {
	case "listening":
		where := ev.Addr
		if ev.Unix != "" {
			where = "unix socket " + ev.Unix
		}
		return "listening on " + where + ", relaying to " + ev.Upstream
	case "open":
		return who + "open from " + ev.Remote + " to " + ev.Upstream
	case "close":
		return fmt.Sprintf("%sclosed after %d bytes (%s)", who, *ev.Bytes, ev.Reason)
	case "undecodable":
		h := ev.Hex
		if ev.Truncated {
			h += "…"
		}
		return fmt.Sprintf("%s%s UNDECODABLE %dB %s: %s", who, ev.Mode, ev.Size, h, ev.Error)
	case "stopped":
		return fmt.Sprintf("%s%s %s; next bytes %s…", who, ev.Mode, ev.Error, ev.Hex)
	case "error":
		return who + "error: " + ev.Error
	case "warning":
		return who + "WARNING " + ev.Warning
	case "message":
		return who + ev.Mode + " " + ev.describe()
	}
	return who + ev.Event
}

// describe renders a message: protocol messages by what they mean, the
// others as kind, type, id, size and data.
func (ev *sniffEvent) describe() string {
	var b strings.Builder
	binary := "?"
	if ev.Binary != nil {
		binary = fmt.Sprint(*ev.Binary)
	}
	switch ev.Protocol {
	case "handshake":
		fmt.Fprintf(&b, "handshake v%s binary=%s", ev.LibraryVersion, binary)
	case "handshake-reply":
		fmt.Fprintf(&b, "handshake reply binary=%s", binary)
	case "transition":
		if ev.Mode == "json" {
			b.WriteString("transition -> binary")
		} else {
			b.WriteString("transition (again, already binary)")
		}
	case "ping", "pong":
		fmt.Fprintf(&b, "%s %s", ev.Protocol, ev.PingID)
	default:
		b.WriteString(ev.Kind + " ")
		if ev.Type == nil {
			b.WriteString("(no type)")
		} else {
			b.WriteString(typeName(*ev.Type))
		}
	}
	fmt.Fprintf(&b, " %dB", ev.Size)
	if ev.ID != "" {
		id := ev.ID
		if len(id) > 8 {
			id = id[:8] + "…"
		}
		b.WriteString(" id " + id)
	}
	if ev.Protocol != "" {
		return b.String()
	}
	switch {
	case ev.Base64 != nil:
		h := hex.EncodeToString(ev.raw)
		if *ev.DataSize > len(ev.raw) {
			h += "…"
		}
		fmt.Fprintf(&b, " %d bytes %s", *ev.DataSize, h)
	case ev.Data != nil:
		b.WriteString(" " + string(ev.Data))
	case ev.DataPrefix != "":
		fmt.Fprintf(&b, " %s… (%d bytes)", ev.DataPrefix, *ev.DataSize)
	default:
		b.WriteString(" (no data)")
	}
	return b.String()
}

// errFeedBacklog: the decoder fell too far behind its relay.
var errFeedBacklog = fmt.Errorf("the decoder fell %d MiB behind", sniffBacklog>>20)

// feed carries a copy of one direction's forwarded bytes to its decoder.
// Writes never block: a decoder that falls more than sniffBacklog behind
// is cut off instead of slowing the relay.
type feed struct {
	o   *order
	dir int // index in o

	mu      sync.Mutex
	cond    sync.Cond
	chunks  []chunk
	queued  int
	over    bool // backlog exceeded
	stopped bool // the decoder no longer reads: drop what comes
	end     *feedEnd
	off     int64 // stream offset of the next chunk
}

// chunk is one forwarded read, its number in the relay's order, when it
// was forwarded and where it starts in the direction's stream.
type chunk struct {
	b          []byte
	seq        uint64
	at         time.Time
	start, end int64 // the whole forwarded read, however the decoder takes it
}

// feedEnd is how a direction ended: io.EOF for the peer's FIN, or a reason.
type feedEnd struct {
	total int64 // bytes forwarded
	err   error
	seq   uint64
}

func newFeed(o *order, dir int) *feed {
	f := &feed{o: o, dir: dir}
	f.cond.L = &f.mu
	return f
}

func (f *feed) write(b []byte) {
	if len(b) == 0 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped || f.over || f.end != nil {
		return
	}
	if f.queued+len(b) > sniffBacklog {
		f.over, f.chunks, f.queued = true, nil, 0
		f.cond.Broadcast()
		return
	}
	f.chunks = append(f.chunks, chunk{bytes.Clone(b), f.o.next(f.dir), time.Now(), f.off, f.off + int64(len(b))})
	f.off += int64(len(b))
	f.queued += len(b)
	f.cond.Broadcast()
}

func (f *feed) close(total int64, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.end == nil {
		f.end = &feedEnd{total: total, err: err, seq: f.o.next(-1)}
	}
	f.cond.Broadcast()
}

// read gives the decoder the next bytes and their chunk (without its
// bytes), waiting for them.
func (f *feed) read(p []byte) (int, chunk, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for len(f.chunks) == 0 && f.end == nil && !f.over {
		f.o.idle(f.dir)
		f.cond.Wait()
	}
	switch {
	case f.over:
		return 0, chunk{}, errFeedBacklog
	case len(f.chunks) == 0:
		if errors.Is(f.end.err, io.EOF) {
			return 0, chunk{}, io.EOF
		}
		return 0, chunk{}, f.end.err
	}
	c := &f.chunks[0]
	n, info := copy(p, c.b), chunk{seq: c.seq, at: c.at, start: c.start, end: c.end}
	if n == len(c.b) {
		f.chunks[0] = chunk{}
		f.chunks = f.chunks[1:]
	} else {
		c.b = c.b[n:]
	}
	f.queued -= n
	return n, info, nil
}

// stop drops what is queued and what comes later.
func (f *feed) stop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stopped, f.chunks, f.queued = true, nil, 0
}

// wait returns how the direction ended, once it has.
func (f *feed) wait() feedEnd {
	f.mu.Lock()
	defer f.mu.Unlock()
	for f.end == nil {
		f.cond.Wait()
	}
	return *f.end
}

// trackingReader counts what the decoder reads and keeps the bytes from
// the start of the current message on, so that a message that does not
// decode can be shown.
type trackingReader struct {
	f     *feed
	total int64  // bytes read so far
	buf   []byte // buf[start:] holds the stream bytes from offset at on
	start int
	at    int64
	segs  []segment // which chunk the kept bytes came from
}

// segment says that the stream bytes up to end came from chunk c.
type segment struct {
	end int64
	c   chunk
}

func (t *trackingReader) Read(p []byte) (int, error) {
	n, c, err := t.f.read(p)
	if n > 0 {
		t.buf = append(t.buf, p[:n]...)
		t.total += int64(n)
		t.segs = append(t.segs, segment{t.total, c})
	}
	return n, err
}

// chunkAt returns the chunk that brought the byte before offset off: the
// last byte of a message ending there.
func (t *trackingReader) chunkAt(off int64) chunk {
	for _, s := range t.segs {
		if s.end >= off {
			return s.c
		}
	}
	if len(t.segs) > 0 {
		return t.segs[len(t.segs)-1].c
	}
	return chunk{}
}

// seqAt returns the number of chunkAt(off).
func (t *trackingReader) seqAt(off int64) uint64 { return t.chunkAt(off).seq }

// bytes returns the stream bytes [from, to), or nil if they are not kept.
func (t *trackingReader) bytes(from, to int64) []byte {
	if from < t.at || to > t.total || from > to {
		return nil
	}
	return t.buf[t.start+int(from-t.at) : t.start+int(to-t.at)]
}

// discard forgets the bytes before offset off.
func (t *trackingReader) discard(off int64) {
	if off <= t.at {
		return
	}
	t.start += int(off - t.at)
	t.at = off
	i := 0
	for i < len(t.segs) && t.segs[i].end <= off {
		i++
	}
	t.segs = append(t.segs[:0], t.segs[i:]...)
	if t.start > len(t.buf)/2 {
		t.buf = append(t.buf[:0], t.buf[t.start:]...)
		t.start = 0
	}
}

// order lets the two decoders of a relay print in the order the relay
// forwarded the bytes: each forwarded chunk gets the next number, and a
// decoder prints a message only when the other direction has nothing to
// print from an earlier chunk. Forwarding never waits for it.
type order struct {
	mu    sync.Mutex
	cond  sync.Cond
	seq   uint64
	state [2]uint64 // per direction: stIdle, stBusy, or the chunk number of the message it waits to print
}

const (
	stBusy = 0              // decoding: its next message's chunk is not known yet
	stIdle = math.MaxUint64 // waiting for bytes (or done): anything it prints later comes from a later chunk
)

func (o *order) init() {
	o.cond.L = &o.mu
	o.state = [2]uint64{stIdle, stIdle}
}

// next numbers a chunk of direction dir (-1: an event of no direction),
// which now has bytes to decode.
func (o *order) next(dir int) uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.seq++
	if dir >= 0 && o.state[dir] == stIdle {
		o.state[dir] = stBusy
	}
	return o.seq
}

// idle says that direction dir waits for bytes.
func (o *order) idle(dir int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.state[dir] = stIdle
	o.cond.Broadcast()
}

// finish says that direction dir prints nothing more.
func (o *order) finish(dir int) { o.idle(dir) }

// emit runs print for a message of direction dir whose last byte came in
// chunk seq, once the other direction has nothing earlier to print.
func (o *order) emit(dir int, seq uint64, print func()) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if seq == 0 { // no chunk known (a decoder cut off before it read anything): now
		o.seq++
		seq = o.seq
	}
	o.state[dir] = seq
	o.cond.Broadcast()
	other := 1 - dir
	for o.state[other] == stBusy || o.state[other] < seq {
		o.cond.Wait()
	}
	print()
	o.state[dir] = stBusy
	o.cond.Broadcast()
}
