package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	sockhop "github.com/sockhop/sockhop-go"
)

var sendUsage = usage{
	synopsis: "sockhop send [--addr HOST:PORT | --unix PATH] [--compat] [--no-binary] [--type NAME] [--request]\n" +
		"             [--timeout 5s] [--connect-timeout 5s] [--max-message BYTES]\n" +
		"             [--base64 | --file PATH] [--tls | --tls-ca FILE | --tls-insecure] [--keep-going] [DATA]",
	about: `Connects to a Sockhop server, sends DATA and exits. DATA is JSON; its type is
named as a Node sender would name it (Object, Array, String, Number, Boolean)
unless --type gives one, e.g. the name of the peer's class. With --base64,
DATA is bytes: a Buffer, or a typed buffer named --type (which needs binary
mode). --file sends a file's bytes the same way. Without DATA, each line of
stdin is one message (on a terminal, send says so); a line that is not one
ends the run, or with --keep-going is skipped, noted, and makes the exit
code 1 once the rest was delivered. --request waits for each reply and prints it as one
JSON line, {"type":"...","data":...} or {"type":"...","base64":"..."}.

Exit 0 means: everything was written and the server confirmed the close by
closing its side in turn, which a Sockhop server (Node or Go) does once it
has read everything. Otherwise send exits 1 and says why (the connection
ended early, the server never closed its side, --timeout ran out). That the
server read the message does not mean its application handled it: only
--request confirms that, by the reply.

Without --compat the handshake comes first; a peer that never answers it
(Sockhop 1.x, or --compat) gets JSON after the handshake timeout (3 s, or
half of --timeout if that is shorter), with a note on stderr.
--timeout bounds the whole run, closing included; reading stdin, it bounds
connecting, each message and the close instead. --connect-timeout bounds
connecting (TCP and TLS).`,
	examples: `sockhop send '{"id":7,"name":"sprocket"}' --type Widget
sockhop send '"hello"' --request              # against sockhop serve --echo
sockhop send --base64 aGVsbG8=                 # a Buffer
sockhop send --type Tile --file tile.png       # a typed buffer
printf '1\n2\n3\n' | sockhop send --unix /tmp/sockhop.sock
sockhop send --compat '{"hello":"1.x"}' --addr 127.0.0.1:50001
sockhop send -- -5                             # "--" before data starting with "-"`,
}

// reservedTypes never reach a peer's application (PROTOCOL.md 2.3).
var reservedTypes = map[string]bool{
	"SockhopHandshake": true, "SockhopBinaryModeTransition": true, "SockhopPing": true, "SockhopPong": true,
}

func runSend(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("send")
	var cf connFlags
	cf.register(fs)
	tf := clientTLSFlags{cmd: "send"}
	tf.register(fs)
	typ := fs.String("type", "", "type `NAME` of the message (default: from the JSON kind, or Buffer for bytes)")
	request := fs.Bool("request", false, "wait for the reply to each message and print it as a JSON line")
	timeout := fs.Duration("timeout", 5*time.Second, "time allowed for the whole run, closing included (with stdin: for connecting, each message and the close), a `DURATION` such as 5s")
	connectTimeout := fs.Duration("connect-timeout", sockhop.DefaultConnectTimeout, "time allowed for connecting (TCP and TLS), a `DURATION`; at most --timeout")
	b64 := fs.Bool("base64", false, "DATA is base64 bytes: a Buffer, or a typed buffer named --type")
	file := fs.String("file", "", "send the bytes of `PATH` (as --base64 would)")
	keepGoing := fs.Bool("keep-going", false, "reading stdin: skip a line that is not a message (noted on stderr) instead of ending the run; exit 1 at the end if any was skipped")
	fs.Bool("json", true, "accepted for every command's sake: the replies --request prints are always JSON lines")
	pos, err := parseFlags(e, fs, sendUsage, args, 1)
	if err != nil {
		return err
	}
	if err := cf.check(fs); err != nil {
		return err
	}
	switch {
	case *timeout <= 0 || *connectTimeout <= 0:
		return usageErrorf("send: --timeout and --connect-timeout must be positive")
	case *file != "" && (*b64 || len(pos) > 0):
		return usageErrorf("send: --file sends a file's bytes; it excludes --base64 and DATA")
	case reservedTypes[*typ]:
		return usageErrorf("send: type %q is reserved by the protocol; a peer would not deliver it", *typ)
	case *typ == "Buffer" && !*b64 && *file == "":
		return usageErrorf("send: --type Buffer needs bytes: add --base64 or --file")
	case *typ != "" && *typ != "Buffer" && (*b64 || *file != "") && (cf.compat || cf.noBinary):
		return usageErrorf("send: typed buffer %q needs binary mode, which --compat and --no-binary turn off; drop --type to send a Buffer", *typ)
	}
	tlsCfg, err := tf.config()
	if err != nil {
		return err
	}
	enc := encoder{typ: *typ, bytes: *b64}
	var one *outgoing
	switch {
	case *file != "":
		b, err := os.ReadFile(*file)
		if err != nil {
			return err
		}
		one = &outgoing{typ: *typ, bytes: b, isBytes: true}
	case len(pos) == 1:
		if one, err = enc.encode(pos[0]); err != nil {
			return usageErrorf("send: %v", err)
		}
	}

	s := &sender{e: e, where: cf.where(), request: *request, timeout: *timeout, keepGoing: *keepGoing, lost: make(chan error, 1)}
	s.connectTimeout = min(*connectTimeout, *timeout)
	// One message: --timeout is a deadline for everything, the close
	// included. Lines from stdin: each step gets --timeout of its own.
	var deadline time.Time
	runCtx := ctx
	if one != nil {
		deadline = time.Now().Add(*timeout)
		var cancel context.CancelFunc
		runCtx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	err = s.connect(runCtx, &cf, tlsCfg)
	if err == nil {
		if one != nil {
			err = s.send(runCtx, one)
		} else {
			if f, ok := e.stdin.(*os.File); ok && isTerminal(f) {
				fmt.Fprintln(e.stderr, "sockhop: reading messages from stdin, one per line (JSON, or base64 with --base64); end with Ctrl-D")
			}
			err = s.sendLines(ctx, &enc)
		}
	}
	if deadline.IsZero() {
		deadline = time.Now().Add(*timeout)
	}
	if ctx.Err() != nil {
		s.closeWithin(deadline) // by SIGINT or SIGTERM: still flush what was accepted
		return errInterrupted
	}
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && runCtx.Err() != nil && !s.answered {
			err = fmt.Errorf("--timeout %s ran out: %w", *timeout, err)
		}
		s.closeWithin(deadline)
		return err
	}
	if err := s.close(deadline); err != nil {
		return err
	}
	if s.skipped > 0 {
		return fmt.Errorf("%d of %d stdin lines were skipped as not messages (--keep-going); the others were delivered", s.skipped, s.lines)
	}
	return nil
}

var errInterrupted = errors.New("interrupted")

// sender is one send run's connection.
type sender struct {
	e              *env
	c              *sockhop.Client
	where          string
	request        bool
	timeout        time.Duration
	connectTimeout time.Duration
	lost           chan error // why the connection ended
	answered       bool       // a request got its reply
	keepGoing      bool       // --keep-going
	skipped, lines int        // stdin lines skipped by --keep-going, of all read
}

// connect dials and waits for the handshake; s.c is set even when it
// fails, for the caller to close. Unlike Client.Start it keeps
// the connection when the peer never answers the handshake: a Sockhop 1.x
// peer, or one in compatibility mode, still reads JSON.
func (s *sender) connect(ctx context.Context, cf *connFlags, tlsCfg *tls.Config) error {
	type result struct {
		ok  bool
		err error
	}
	hs := make(chan result, 1)
	opts := cf.connOptions()
	opts.HandshakeTimeout = min(sockhop.DefaultHandshakeTimeout, s.timeout/2)
	opts.WriteTimeout = s.timeout
	o := sockhop.ClientOptions{
		Addr:           cf.addr,
		Path:           cf.unix,
		TLSConfig:      tlsCfg,
		ConnectTimeout: s.connectTimeout,
		ConnOptions:    opts,
		OnHandshake: func(_ *sockhop.Client, ok bool, err error) {
			select {
			case hs <- result{ok, err}:
			default:
			}
		},
		OnDisconnect: func(_ *sockhop.Client, err error) {
			select {
			case s.lost <- err:
			default:
			}
		},
	}
	s.c = sockhop.NewClient(o)
	if err := s.c.Connect(ctx); err != nil {
		var ne net.Error
		if (errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()) && ctx.Err() == nil {
			return fmt.Errorf("connecting to %s took longer than --connect-timeout %s: %w", s.where, s.connectTimeout, err)
		}
		return err
	}
	if cf.compat {
		return nil
	}
	select {
	case r := <-hs:
		if r.ok {
			return nil
		}
		if !errors.Is(r.err, sockhop.ErrHandshakeTimeout) {
			return r.err
		}
		fmt.Fprintf(s.e.stderr, "sockhop: %s did not answer the handshake within %s (a Sockhop 1.x or --compat peer?); sending JSON\n",
			s.where, opts.HandshakeTimeout)
		return nil
	case err := <-s.lost:
		if tlsCfg == nil {
			// A TLS server closes on our handshake line, which is not a
			// TLS record.
			return fmt.Errorf("connection to %s ended during the handshake (is it a TLS server? try --tls): %w", s.where, err)
		}
		return fmt.Errorf("connection to %s ended during the handshake: %w", s.where, err)
	case <-ctx.Done():
		return fmt.Errorf("handshake with %s: %w", s.where, ctx.Err())
	}
}

// send sends one message and, with --request, prints the reply.
func (s *sender) send(ctx context.Context, o *outgoing) error {
	var reply *sockhop.Message
	var err error
	start := time.Now()
	switch {
	case o.isBytes && o.typ != "" && o.typ != "Buffer":
		if !s.c.State().TxBinary {
			return fmt.Errorf("typed buffer %q needs binary mode, and this connection is in JSON mode (--compat, --no-binary, or a peer without binary mode); send it as a Buffer without --type", o.typ)
		}
		if s.request {
			reply, err = s.c.RequestTyped(ctx, o.typ, o.bytes)
		} else {
			err = s.c.SendTyped(ctx, o.typ, o.bytes)
		}
	case o.isBytes:
		if s.request {
			reply, err = s.c.Request(ctx, o.bytes)
		} else {
			err = s.c.Send(ctx, o.bytes)
		}
	default:
		v := sockhop.Named{Type: o.typ, Data: o.json}
		if s.request {
			reply, err = s.c.Request(ctx, v)
		} else {
			err = s.c.Send(ctx, v)
		}
	}
	if s.request && err != nil && errors.Is(err, context.DeadlineExceeded) {
		return s.noAnswer(time.Since(start), err)
	}
	if err != nil || reply == nil {
		return err
	}
	s.answered = true
	line, err := json.Marshal(show(reply))
	if err != nil {
		return err
	}
	_, err = s.e.stdout.Write(append(line, '\n'))
	return err
}

// noAnswer explains a request that timed out: the server read it (or not)
// but sent no reply. A Go peer may be sockhop serve, which replies only
// with --echo.
func (s *sender) noAnswer(waited time.Duration, err error) error {
	msg := fmt.Sprintf("the server at %s did not answer the request within %s", s.where, waited.Round(time.Millisecond))
	if st := s.c.State(); st.PeerVersion == sockhop.Version || strings.HasSuffix(st.PeerVersion, "+go") {
		msg += " (the server announced sockhop-go " + st.PeerVersion + "; if it is `sockhop serve`, it answers requests only with --echo)"
	} else {
		msg += " (does its handler answer requests?)"
	}
	return &noAnswerError{msg: msg, err: err}
}

// noAnswerError keeps the library's error for errors.Is while saying
// what it means for this run.
type noAnswerError struct {
	msg string
	err error
}

func (e *noAnswerError) Error() string { return e.msg }
func (e *noAnswerError) Unwrap() error { return e.err }

// sendLines sends each line of stdin as one message. Lines are read on a
// goroutine of their own so that a signal, or the peer leaving, ends the
// run while a read is blocked.
func (s *sender) sendLines(ctx context.Context, enc *encoder) error {
	lines := make(chan string)
	readErr := make(chan error, 1)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		sc := bufio.NewScanner(s.e.stdin)
		sc.Buffer(make([]byte, 64<<10), maxLine)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-stop:
				return
			}
		}
		readErr <- sc.Err()
		close(lines)
	}()
	skipped := 0
	for n := 1; ; n++ {
		var line string
		var ok bool
		select {
		case line, ok = <-lines:
		case err := <-s.lost:
			return fmt.Errorf("connection to %s ended: %w", s.where, err)
		case <-ctx.Done():
			return errInterrupted
		}
		if !ok {
			if err := <-readErr; err != nil {
				return fmt.Errorf("reading stdin: %w", err)
			}
			s.skipped, s.lines = skipped, n-1
			return nil
		}
		if isBlank(line) {
			continue
		}
		o, err := enc.encode(line)
		if err != nil && s.keepGoing {
			skipped++
			fmt.Fprintln(s.e.stderr, oneLine(fmt.Errorf("stdin line %d skipped: %w", n, err)))
			continue
		}
		if err != nil {
			return fmt.Errorf("stdin line %d: %w (--keep-going skips such lines)", n, err)
		}
		mctx, cancel := context.WithTimeout(ctx, s.timeout)
		err = s.send(mctx, o)
		cancel()
		if err != nil {
			return fmt.Errorf("stdin line %d: %w", n, err)
		}
	}
}

// maxLine bounds one stdin line, as the library bounds one message.
const maxLine = sockhop.DefaultMaxMessageSize * 2

// close flushes what was sent and closes the connection gracefully, by
// deadline. Exit 0 needs more than the bytes handed to the kernel: the
// server must have closed its side in answer to ours (counted by the
// library in Stats.UnconfirmedCloses), which a Sockhop peer does only once
// it has read everything before our FIN. With --request every message was
// answered, which says more than that, so the close is not checked.
func (s *sender) close(deadline time.Time) error {
	ok, closeErr := s.closeWithin(deadline)
	if !ok {
		return fmt.Errorf("--timeout %s ran out while closing: %s did not confirm that it read everything (written data may still be in a kernel buffer)", s.timeout, s.where)
	}
	select {
	case err := <-s.lost:
		if !errors.Is(err, sockhop.ErrClosed) {
			if s.request {
				return nil
			}
			return fmt.Errorf("connection to %s ended before our close, so the server may not have read everything: %w", s.where, err)
		}
	default:
	}
	if s.request {
		return nil
	}
	if closeErr != nil {
		return fmt.Errorf("closing the connection to %s: %w", s.where, closeErr)
	}
	if s.c.Stats().UnconfirmedCloses > 0 {
		return fmt.Errorf("%s did not close its side after ours (it closed first, reset the connection, or is not reading): it may not have read everything we wrote", s.where)
	}
	return nil
}

// closeWithin runs Close and waits for it until deadline; ok is false when
// the deadline came first (the process is about to exit anyway, which
// ends the connection).
func (s *sender) closeWithin(deadline time.Time) (ok bool, err error) {
	done := make(chan error, 1)
	go func() { done <- s.c.Close() }()
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case err = <-done:
		return true, err
	case <-t.C:
		return false, nil
	}
}

// outgoing is one message to send: JSON text or bytes, with its type.
type outgoing struct {
	typ     string
	json    json.RawMessage
	bytes   []byte
	isBytes bool
}

// encoder turns DATA text into an outgoing message.
type encoder struct {
	typ   string // --type, "" for the default
	bytes bool   // --base64
}

func (enc *encoder) encode(text string) (*outgoing, error) {
	if enc.bytes {
		b, err := decodeBase64(text)
		if err != nil {
			return nil, err
		}
		return &outgoing{typ: enc.typ, bytes: b, isBytes: true}, nil
	}
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(text)); err != nil {
		return nil, fmt.Errorf("DATA is not JSON (%v); quote a string as '\"hello\"', or send bytes with --base64", err)
	}
	typ := enc.typ
	if typ == "" {
		if typ = sockhop.TypeName(json.RawMessage(b.Bytes())); typ == "" {
			return nil, errors.New("JSON null has no type a Sockhop peer could name (a Node sender cannot send null either); give one with --type")
		}
	}
	return &outgoing{typ: typ, json: b.Bytes()}, nil
}

// decodeBase64 accepts standard base64 with or without padding, as people
// paste it; the URL-safe alphabet too, as the Node reference does.
func decodeBase64(text string) ([]byte, error) {
	text = strings.TrimSpace(text)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(text); err == nil {
			return b, nil
		}
	}
	return nil, fmt.Errorf("DATA is not base64: %.40q", text)
}

func isBlank(s string) bool { return strings.TrimSpace(s) == "" }
