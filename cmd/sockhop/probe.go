package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	sockhop "github.com/sockhop/sockhop-go"
	"github.com/sockhop/sockhop-go/internal/wire"
)

var probeUsage = usage{
	synopsis: "sockhop probe [--addr HOST:PORT | --unix PATH] [--tls [--tls-ca FILE] [--tls-insecure]] [--timeout 3s]\n" +
		"              [--pings N] [--json]",
	about: `Tells what listens at an address: a Sockhop 2.x peer (its library version,
and whether it grants binary mode), a Sockhop 1.x peer or a 2.x peer in
compatibility mode (no handshake, but it answers pings), or something that is
not Sockhop. It then measures the ping round trip (p50 and p99 over --pings
pings, after one unmeasured ping) and, when the peer looks like the Node.js
reference (a 1.x peer, or a library version without "+go"), lists the known
defects of the reference this library works around when talking to it.

The probe speaks raw protocol lines and stays in JSON mode: it sends its
handshake (asking for binary mode, to learn whether the peer grants it),
answers the peer's handshake without granting binary mode, sends
SockhopPing lines and closes gracefully. It never sends a transition line, so
a 1.x peer never sees binary data, and it sends nothing that crashes a Node
peer (PROTOCOL.md 14.2). --timeout bounds connecting (TLS included), the wait
for the peer to show what it is, and each ping.

With --json, or when stdout is not a terminal, the result is one JSON object:
  {"addr":"127.0.0.1:50000","transport":"tcp","kind":"sockhop2",
   "library_version":"2.1.0","grants_binary":true,"pings_sent":5,
   "pings_answered":5,"ping_p50_us":180,"ping_p99_us":410,"node_defects":[...]}
kind is sockhop2, sockhop1-or-compat, not-sockhop or unreachable. The exit
code is 0 whenever the probe could tell (even not-sockhop), 1 when nothing
could be reached (then the error is also one line on stderr).`,
	examples: `sockhop probe
sockhop probe --addr 10.0.0.7:50000 --pings 20
sockhop probe --unix /tmp/sockhop.sock --json | jq .kind
sockhop probe --addr db.example:50443 --tls --tls-ca ca.pem
sockhop probe --addr 127.0.0.1:8080 --timeout 500ms   # is it Sockhop at all?`,
}

// Probe result kinds.
const (
	kindSockhop2    = "sockhop2"
	kindSockhop1    = "sockhop1-or-compat"
	kindNotSockhop  = "not-sockhop"
	kindUnreachable = "unreachable"
)

// probeTerm ends the lines the probe writes (the default terminator).
var probeTerm = []byte("\n")

// probeResult is what probe prints. Field order is the JSON key order.
type probeResult struct {
	Addr            string   `json:"addr"`
	Transport       string   `json:"transport"` // tcp, unix, tls or tls+unix
	Kind            string   `json:"kind"`
	LibraryVersion  string   `json:"library_version,omitempty"`
	ProtocolVersion any      `json:"protocol_version,omitempty"`
	GrantsBinary    *bool    `json:"grants_binary,omitempty"`
	PingsSent       int      `json:"pings_sent"`
	PingsAnswered   int      `json:"pings_answered"`
	PingP50us       *int64   `json:"ping_p50_us,omitempty"`
	PingP99us       *int64   `json:"ping_p99_us,omitempty"`
	NodeDefects     []string `json:"node_defects"`
	Notes           []string `json:"notes,omitempty"`
	Error           string   `json:"error,omitempty"`
}

// The reference's defects (PROTOCOL.md 14) that matter to a peer of it, and
// what this library does about each. Concise on purpose: the section numbers
// lead to the details.
var (
	nodeDefectsV2 = []string{
		"14.1 binary frames that arrive in the same read as its transition line are lost: after our transition line we hold our binary frames until it answers a binary ping (proof that it reads frames; TransitionProofTimeout at most)",
		"14.1 it may write a JSON line after its own transition line: our decoder switches at the exact byte, and our MaxMessageSize limit ends such a stream instead of waiting forever",
		"14.2 a null line, a reply with an unknown or already used callback id, or null handshake/ping data crash the whole Node process: we never send any of them",
		"14.3 it buffers lines and frames without any size limit: we enforce MaxMessageSize (4 MiB) on what we receive; keep what you send it small",
		"14.4 its callback table is never cleaned (one table per server for all connections): each request of ours it leaves unanswered leaks there; our pending table is per connection and cleared on disconnect",
	}
	nodeDefectsV1 = []string{
		"1.x has no handshake: our handshake reaches its application as a SockhopHandshake request, and a Client waits HandshakeTimeout (3 s) before carrying on in JSON mode (CompatibilityMode skips the wait)",
		"1.x has no binary mode: no typed buffers; we never send it a transition line",
		`1.x writes a Buffer as {"type":"Buffer","data":{"type":"Buffer","data":[...]}} (delivered to us as that JSON, not bytes) and hands our base64 Buffers to its application as strings`,
		"14.2 a null line or a reply with an unknown or already used callback id crash the whole Node process: we never send them",
		"14.3 it buffers lines without any size limit: we enforce MaxMessageSize (4 MiB) on what we receive; keep what you send it small",
		"14.4 its callback table is never cleaned: each request of ours it leaves unanswered leaks there; our pending table is per connection and cleared on disconnect",
	}
)

func runProbe(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("probe")
	addr := fs.String("addr", sockhop.DefaultAddr, "TCP address `HOST:PORT` to probe")
	unix := fs.String("unix", "", "Unix socket `PATH` to probe, instead of --addr")
	var tf probeTLSFlags
	tf.register(fs)
	timeout := fs.Duration("timeout", 3*time.Second, "bound on connecting, on the peer showing what it is, and on each ping, a `DURATION`")
	pings := fs.Int("pings", 5, "`N` measured pings (0: none)")
	jsonOut := fs.Bool("json", false, "print one JSON object (the default when stdout is not a terminal)")
	if _, err := parseFlags(e, fs, probeUsage, args, 0); err != nil {
		return err
	}
	addrSet := false
	fs.Visit(func(f *flag.Flag) { addrSet = addrSet || f.Name == "addr" })
	switch {
	case addrSet && *unix != "":
		return usageErrorf("probe: --addr and --unix exclude each other")
	case *timeout <= 0:
		return usageErrorf("probe: --timeout must be positive")
	case *pings < 0 || *pings > 10000:
		return usageErrorf("probe: --pings must be between 0 and 10000")
	}
	tlsCfg, err := tf.config(*addr)
	if err != nil {
		return err
	}
	t := probeTarget{addr: *addr, unix: *unix, tls: tlsCfg}
	res, err := probe(ctx, t, *timeout, *pings)
	if ctx.Err() != nil {
		return errInterrupted
	}
	if *jsonOut || !isTerminal(e.stdout) {
		line, _ := json.Marshal(res) // nothing in a result can fail to encode
		_, _ = e.stdout.Write(append(line, '\n'))
	} else if err == nil {
		_, _ = io.WriteString(e.stdout, terminalSafeLines(res.readable()))
	}
	return err
}

// probeTLSFlags turn TLS on for probe.
type probeTLSFlags struct {
	on, insecure  bool
	ca, cert, key string
}

func (f *probeTLSFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&f.on, "tls", false, "connect with TLS, trusting the system's CAs (implied by the other --tls-* flags)")
	fs.StringVar(&f.ca, "tls-ca", "", "trust the server certificate's PEM CA `FILE`")
	fs.BoolVar(&f.insecure, "tls-insecure", false, "do not verify the server's certificate (probing only: it tells nothing about who answers)")
	fs.StringVar(&f.cert, "tls-cert", "", "present this PEM client certificate `FILE` (needs --tls-key)")
	fs.StringVar(&f.key, "tls-key", "", "PEM private key `FILE` of --tls-cert")
}

// config returns nil without TLS flags. The server name is --addr's host,
// also over a Unix socket, as the library's Client does.
func (f *probeTLSFlags) config(addr string) (*tls.Config, error) {
	if !f.on && !f.insecure && f.ca == "" && f.cert == "" && f.key == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: f.insecure}
	if host, _, err := net.SplitHostPort(addr); err == nil {
		cfg.ServerName = host
	}
	return withClientCerts("probe", cfg, f.ca, f.cert, f.key)
}

// probeTarget is where to probe.
type probeTarget struct {
	addr, unix string
	tls        *tls.Config
}

func (t probeTarget) where() string {
	if t.unix != "" {
		return t.unix
	}
	return t.addr
}

func (t probeTarget) transport() string {
	s := "tcp"
	if t.unix != "" {
		s = "unix"
	}
	if t.tls != nil {
		if t.unix != "" {
			return "tls+unix"
		}
		return "tls"
	}
	return s
}

// probe connects to t and finds out what listens there. The error is set
// only when nothing could be reached (kind unreachable).
func probe(ctx context.Context, t probeTarget, timeout time.Duration, pings int) (*probeResult, error) {
	res := &probeResult{Addr: t.where(), Transport: t.transport(), NodeDefects: []string{}}
	nc, err := probeDial(ctx, t, timeout)
	if err != nil {
		res.Kind = kindUnreachable
		res.Error = oneLine(err)
		return res, err
	}
	p := &prober{nc: nc, dec: wire.NewDecoder(nc, nil, 0), timeout: timeout, res: res, pings: map[string]*pingTrack{}}
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Now()) }) // a signal ends every wait
	defer stop()
	p.run(pings)
	p.close(res.Kind != kindNotSockhop)
	if t.tls != nil && p.received == 0 && rejectsCertificate(p.readErr) {
		// TLS 1.3 finishes the client's side of the handshake before the
		// server checks our certificate: its refusal comes as an alert on
		// the first read, not from the handshake.
		err := fmt.Errorf("the TLS server at %s needs a client certificate it accepts (give --tls-cert and --tls-key): %w", t.where(), p.readErr)
		res.Kind, res.Error, res.Notes = kindUnreachable, oneLine(err), nil
		return res, err
	}
	return res, nil
}

// rejectsCertificate tells a TLS alert refusing our client certificate, or
// its absence.
func rejectsCertificate(err error) bool {
	if err == nil {
		return false
	}
	msg := err.Error()
	return strings.Contains(msg, "tls: certificate required") || strings.Contains(msg, "tls: bad certificate") ||
		strings.Contains(msg, "tls: unknown certificate authority")
}

func probeDial(ctx context.Context, t probeTarget, timeout time.Duration) (net.Conn, error) {
	network, address := "tcp", t.addr
	if t.unix != "" {
		network, address = "unix", t.unix
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	d := &net.Dialer{}
	nc, err := d.DialContext(ctx, network, address)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Err != nil {
			err = op.Err // "connect: connection refused" without the address again
		}
		return nil, fmt.Errorf("cannot connect to %s: %w", t.where(), err)
	}
	if t.tls == nil {
		return nc, nil
	}
	tc := tls.Client(nc, t.tls)
	if err := tc.HandshakeContext(ctx); err != nil {
		nc.Close()
		return nil, fmt.Errorf("connected to %s, but the TLS handshake failed (is it a TLS server?): %w", t.where(), err)
	}
	return tc, nil
}

// prober is one probe's connection and what it has seen. It runs on one
// goroutine: every wait is a read with a deadline, and a read that times
// out ends the probe (the decoder's errors are final).
type prober struct {
	nc      net.Conn
	dec     *wire.Decoder
	timeout time.Duration
	res     *probeResult
	readErr error // the decoder's final error, once it has one

	hsID         string
	peerHS       bool  // the peer sent a handshake of its own
	gotReply     bool  // the peer answered ours
	allow        *bool // its answer's allow_binary_mode, when present
	echoed       bool  // our own handshake or ping came back
	notSockhop   string
	received     int // messages decoded
	pings        map[string]*pingTrack
	appMessages  []string // types of application messages it sent us
	peerSwitched bool
}

type pingTrack struct {
	sent, answered time.Time
}

// run identifies the peer, then pings it.
func (p *prober) run(n int) {
	p.hsID = wire.NewUUID()
	line := wire.AppendJSONLine(nil, &wire.Message{
		Type: wire.TypeHandshake, Kind: wire.Request, ID: p.hsID,
		Data: wire.MarshalHandshake(sockhop.Version, true),
	}, probeTerm)
	// The first ping goes in the same write and is not measured: a peer
	// answers in order, so once its pong is in, everything the peer had to
	// say about our handshake (and its own handshake) has arrived too.
	first := p.pingLine()
	if err := p.write(append(line, first.line...)); err != nil {
		p.readErr = err
		p.classify()
		return
	}
	first.track.sent = time.Now()
	p.readUntil(func() bool { return !first.track.answered.IsZero() || p.echoed || p.notSockhop != "" })
	p.classify()
	if p.res.Kind == kindNotSockhop || first.track.answered.IsZero() {
		if p.res.Kind != kindNotSockhop {
			p.note("it did not answer our first ping within %s; no round trip measured", p.timeout)
		}
		return
	}
	var rtts []time.Duration
	for i := 0; i < n && p.readErr == nil; i++ {
		pl := p.pingLine()
		pl.track.sent = time.Now()
		if err := p.write(pl.line); err != nil {
			p.note("writing ping %d failed: %v", i+1, err)
			break
		}
		p.res.PingsSent++
		if !p.readUntil(func() bool { return !pl.track.answered.IsZero() }) {
			p.note("ping %d of %d was not answered within %s", i+1, n, p.timeout)
			break
		}
		rtts = append(rtts, pl.track.answered.Sub(pl.track.sent))
	}
	p.res.PingsAnswered = len(rtts)
	if len(rtts) > 0 {
		slices.Sort(rtts)
		p50, p99 := percentile(rtts, 50).Microseconds(), percentile(rtts, 99).Microseconds()
		p.res.PingP50us, p.res.PingP99us = &p50, &p99
	}
}

// percentile is the nearest-rank percentile of sorted samples.
func percentile(sorted []time.Duration, pct int) time.Duration {
	rank := (pct*len(sorted) + 99) / 100 // ceil(pct/100 * n)
	return sorted[max(rank, 1)-1]
}

type pingLine struct {
	line  []byte
	track *pingTrack
}

func (p *prober) pingLine() pingLine {
	id := wire.NewUUID()
	tr := &pingTrack{}
	p.pings[id] = tr
	return pingLine{
		line:  wire.AppendJSONLine(nil, &wire.Message{Type: wire.TypePing, Data: wire.MarshalPing(id, time.Now())}, probeTerm),
		track: tr,
	}
}

func (p *prober) write(b []byte) error {
	_ = p.nc.SetWriteDeadline(time.Now().Add(p.timeout))
	_, err := p.nc.Write(b)
	return err
}

// readUntil handles what the peer sends until done reports true (true), or
// the timeout, the end of the stream or bytes that are not Sockhop (false).
func (p *prober) readUntil(done func() bool) bool {
	if p.readErr != nil {
		return false
	}
	_ = p.nc.SetReadDeadline(time.Now().Add(p.timeout))
	for !done() {
		m, err := p.dec.Next()
		var de *wire.DecodeError
		switch {
		case errors.As(err, &de):
			p.setNotSockhop("it sent bytes that are not Sockhop: " + strings.TrimPrefix(de.Error(), "sockhop: "))
			return false
		case err != nil:
			p.readErr = err
			return false
		}
		p.received++
		p.handle(&m)
	}
	return true
}

func (p *prober) setNotSockhop(why string) {
	if p.notSockhop == "" {
		p.notSockhop = why
	}
}

// handle acts on one message from the peer.
func (p *prober) handle(m *wire.Message) {
	if !m.HasType {
		p.setNotSockhop(fmt.Sprintf("it sent a line that is JSON but not a Sockhop message: %.80s", m.Data))
		return
	}
	switch {
	case m.Type == wire.TypeHandshake:
		if m.Kind == wire.Request && m.ID == p.hsID {
			p.echoed = true // never answer our own handshake: the echo would look like a reply
			p.setNotSockhop("it echoes what it receives (our handshake came back)")
			return
		}
		p.onHandshake(m)
	case m.Type == wire.TypePing:
		var d struct {
			ID string `json:"_id"`
		}
		_ = json.Unmarshal(m.Data, &d)
		if p.pings[d.ID] != nil {
			p.echoed = true
			p.setNotSockhop("it echoes what it receives (our ping came back as a ping, not a pong)")
			return
		}
		// A peer that pings us gets its pong, as any Sockhop peer would.
		data := m.Data
		if m.Bytes {
			data = nil
		}
		_ = p.write(wire.AppendJSONLine(nil, &wire.Message{Type: wire.TypePong, Data: wire.MarshalPong(data, time.Now())}, probeTerm))
	case m.Type == wire.TypePong:
		var d struct {
			ID string `json:"_id"`
		}
		_ = json.Unmarshal(m.Data, &d)
		if tr := p.pings[d.ID]; tr != nil && tr.answered.IsZero() {
			tr.answered = time.Now()
		}
	case m.Type == wire.TypeTransition:
		p.peerSwitched = true // we granted nothing; the decoder follows anyway
	case m.Kind == wire.Response && m.ID == p.hsID:
		p.onReply(m)
	default:
		if len(p.appMessages) < 3 {
			p.appMessages = append(p.appMessages, m.Kind.String()+" "+m.Type)
		}
	}
}

func (p *prober) onHandshake(m *wire.Message) {
	var hs struct {
		ProtocolVersion   any    `json:"protocol_version"`
		LibraryVersion    string `json:"library_version"`
		RequestBinaryMode *bool  `json:"request_binary_mode"`
	}
	if m.Bytes || json.Unmarshal(m.Data, &hs) != nil {
		p.note("its handshake carries no handshake data (%.60s)", m.Data)
	}
	if !p.peerHS {
		p.peerHS = true
		p.res.LibraryVersion = hs.LibraryVersion
		p.res.ProtocolVersion = hs.ProtocolVersion
	}
	if m.Kind != wire.Request {
		return // no id to answer; a reply without one would reach its application
	}
	// We answer without granting binary mode, so the peer keeps writing JSON
	// lines, and its pongs cannot be caught in its switch-over (14.1).
	no := false
	reply, _ := json.Marshal(wire.HandshakeReply{AllowBinaryMode: &no})
	_ = p.write(wire.AppendJSONLine(nil, &wire.Message{Type: "Object", Kind: wire.Response, ID: m.ID, RawID: m.RawID, Data: reply}, probeTerm))
}

func (p *prober) onReply(m *wire.Message) {
	if p.gotReply {
		p.note("it answered our handshake more than once")
		return
	}
	p.gotReply = true
	var r struct {
		Allow any `json:"allow_binary_mode"`
	}
	var keys map[string]json.RawMessage
	if !m.Bytes && json.Unmarshal(m.Data, &keys) == nil {
		if _, ok := keys["allow_binary_mode"]; ok {
			_ = json.Unmarshal(m.Data, &r)
			allow := truthy(r.Allow)
			p.allow = &allow
			return
		}
	}
	p.note("it answered our handshake as an ordinary request (type %s, no allow_binary_mode): a 1.x application answering every request?", m.Type)
}

// truthy is JavaScript's truthiness of a decoded JSON value, which is how
// the reference reads allow_binary_mode (5.5).
func truthy(v any) bool {
	switch v := v.(type) {
	case nil:
		return false
	case bool:
		return v
	case float64:
		return v != 0
	case string:
		return v != ""
	}
	return true
}

func (p *prober) note(format string, a ...any) {
	p.res.Notes = append(p.res.Notes, fmt.Sprintf(format, a...))
}

// classify decides the kind from what was seen so far.
func (p *prober) classify() {
	r := p.res
	answeredPing := false
	for _, tr := range p.pings {
		answeredPing = answeredPing || !tr.answered.IsZero()
	}
	switch {
	case p.echoed:
		r.Kind = kindNotSockhop
	case p.peerHS || p.allow != nil:
		r.Kind = kindSockhop2
		r.GrantsBinary = p.allow
		if !p.gotReply {
			p.note("it sent its handshake but did not answer ours within %s", p.timeout)
		}
		if !p.peerHS {
			p.note("it answered our handshake but sent none of its own")
		}
		if !strings.HasSuffix(r.LibraryVersion, "+go") {
			r.NodeDefects = nodeDefectsV2
		}
	case answeredPing:
		r.Kind = kindSockhop1
		r.NodeDefects = nodeDefectsV1
	default:
		r.Kind = kindNotSockhop
	}
	if p.notSockhop != "" {
		p.note("%s", p.notSockhop)
	}
	if r.Kind == kindNotSockhop && p.notSockhop == "" {
		switch {
		case closedByPeer(p.readErr) && p.received == 0 && !strings.HasPrefix(r.Transport, "tls"):
			// A TLS server closes on our handshake line, which is not a
			// TLS record.
			p.note("it closed the connection without answering our handshake or a ping (is it a TLS server? try --tls)")
		case closedByPeer(p.readErr) && p.received == 0:
			p.note("it closed the connection without answering our handshake or a ping")
		case errors.Is(p.readErr, os.ErrDeadlineExceeded) && p.received == 0:
			p.note("it accepted the connection but answered neither our handshake nor a ping within %s", p.timeout)
		case p.received > 0:
			p.note("it sent %d Sockhop message(s) but no handshake and no pong", p.received)
		case p.readErr != nil:
			p.note("reading from it failed: %v", p.readErr)
		}
		if buf := p.dec.Buffered(); buf > 0 {
			p.note("%d byte(s) of an unfinished message were left", buf)
		}
	}
	if p.peerSwitched {
		p.note("it switched to binary mode although we did not grant it")
	}
	if len(p.appMessages) > 0 && r.Kind != kindNotSockhop {
		p.note("it also sent application messages unprompted: %s", strings.Join(p.appMessages, ", "))
	}
}

// closedByPeer tells the errors of a connection the peer closed or reset.
func closedByPeer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// close ends the connection: for a Sockhop peer gracefully, with our FIN
// (TLS close_notify) and then whatever it still sends until its FIN,
// briefly, so that it sees an orderly close rather than a reset.
func (p *prober) close(graceful bool) {
	defer p.nc.Close()
	if !graceful {
		return
	}
	type closeWriter interface{ CloseWrite() error }
	cw, ok := p.nc.(closeWriter)
	if !ok || cw.CloseWrite() != nil {
		return
	}
	_ = p.nc.SetReadDeadline(time.Now().Add(min(p.timeout, time.Second)))
	_, _ = io.Copy(io.Discard, p.nc)
}

// readable renders a result for a person.
func (r *probeResult) readable() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%s): ", r.Addr, r.Transport)
	switch r.Kind {
	case kindSockhop2:
		b.WriteString("Sockhop 2.x")
		if r.LibraryVersion != "" {
			b.WriteString(", library " + r.LibraryVersion)
		}
		if r.ProtocolVersion != nil {
			fmt.Fprintf(&b, ", protocol %v", r.ProtocolVersion)
		}
		switch {
		case r.GrantsBinary == nil:
			b.WriteString(", binary mode unknown (no answer to our handshake)")
		case *r.GrantsBinary:
			b.WriteString(", grants binary mode")
		default:
			b.WriteString(", JSON only (does not grant binary mode)")
		}
	case kindSockhop1:
		b.WriteString("Sockhop 1.x, or 2.x in compatibility mode (no handshake; answers pings)")
	case kindNotSockhop:
		b.WriteString("not Sockhop")
	}
	b.WriteString("\n")
	for _, n := range r.Notes {
		b.WriteString("  note: " + n + "\n")
	}
	if r.PingsSent > 0 {
		fmt.Fprintf(&b, "ping: %d of %d answered", r.PingsAnswered, r.PingsSent)
		if r.PingP50us != nil {
			fmt.Fprintf(&b, ", round trip p50 %s, p99 %s", time.Duration(*r.PingP50us)*time.Microsecond, time.Duration(*r.PingP99us)*time.Microsecond)
		}
		b.WriteString("\n")
	}
	if len(r.NodeDefects) > 0 {
		if r.Kind == kindSockhop1 {
			b.WriteString("If it is the Node.js reference (1.x, or 2.x in compatibility mode), its known defects and what this library does about them:\n")
		} else {
			b.WriteString("It looks like the Node.js reference (no \"+go\" in its version); its known defects and what this library does about them:\n")
		}
		for _, d := range r.NodeDefects {
			b.WriteString("  - " + d + "\n")
		}
	}
	return b.String()
}
