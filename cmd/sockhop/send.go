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
	"os"
	"strings"
	"time"

	sockhop "github.com/sockhop/sockhop-go"
)

var sendUsage = usage{
	synopsis: "sockhop send [--addr HOST:PORT | --unix PATH] [--compat] [--no-binary] [--type NAME] [--request]\n" +
		"             [--timeout 5s] [--base64 | --file PATH] [--tls-ca FILE] [DATA]",
	about: `Connects to a Sockhop server, sends DATA and exits once it was written and
the connection closed gracefully. DATA is JSON; its type is named as a Node
sender would name it (Object, Array, String, Number, Boolean) unless --type
gives one, e.g. the name of the peer's class. With --base64, DATA is bytes:
a Buffer, or a typed buffer named --type (which needs binary mode). --file
sends a file's bytes the same way. Without DATA, each line of stdin is one
message. --request waits for each reply and prints it as one JSON line,
{"type":"...","data":...} or {"type":"...","base64":"..."}.

Without --compat the handshake comes first; a peer that never answers it
(Sockhop 1.x, or --compat) gets JSON after the handshake timeout (3 s, or
half of --timeout if that is shorter), with a note on stderr.
--timeout bounds the whole run; reading stdin, it bounds connecting and
each message instead.`,
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
	var tf clientTLSFlags
	tf.register(fs)
	typ := fs.String("type", "", "type `NAME` of the message (default: from the JSON kind, or Buffer for bytes)")
	request := fs.Bool("request", false, "wait for the reply to each message and print it as a JSON line")
	timeout := fs.Duration("timeout", 5*time.Second, "time allowed for the whole run (with stdin: for connecting, and for each message), a `DURATION` such as 5s")
	b64 := fs.Bool("base64", false, "DATA is base64 bytes: a Buffer, or a typed buffer named --type")
	file := fs.String("file", "", "send the bytes of `PATH` (as --base64 would)")
	pos, err := parseFlags(e, fs, sendUsage, args, 1)
	if err != nil {
		return err
	}
	if err := cf.check(fs); err != nil {
		return err
	}
	switch {
	case *timeout <= 0:
		return usageErrorf("send: --timeout must be positive")
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

	runCtx := ctx
	if one != nil {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	s := &sender{e: e, where: cf.where(), request: *request, timeout: *timeout, lost: make(chan error, 1)}
	err = s.connect(runCtx, &cf, tlsCfg)
	defer s.c.Close()
	if err != nil {
		return err
	}
	if one != nil {
		err = s.send(runCtx, one)
	} else {
		err = s.sendLines(ctx, &enc)
	}
	if ctx.Err() != nil {
		return errInterrupted // by SIGINT or SIGTERM; the deferred Close still flushes
	}
	if err != nil {
		return err
	}
	return s.close()
}

var errInterrupted = errors.New("interrupted")

// sender is one send run's connection.
type sender struct {
	e       *env
	c       *sockhop.Client
	where   string
	request bool
	timeout time.Duration
	lost    chan error // why the connection ended
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
		ConnectTimeout: s.timeout,
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
		return fmt.Errorf("connection to %s ended during the handshake: %w", s.where, err)
	case <-ctx.Done():
		return fmt.Errorf("handshake with %s: %w", s.where, ctx.Err())
	}
}

// send sends one message and, with --request, prints the reply.
func (s *sender) send(ctx context.Context, o *outgoing) error {
	var reply *sockhop.Message
	var err error
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
	if err != nil || reply == nil {
		return err
	}
	line, err := json.Marshal(show(reply))
	if err != nil {
		return err
	}
	_, err = s.e.stdout.Write(append(line, '\n'))
	return err
}

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
			return nil
		}
		if isBlank(line) {
			continue
		}
		o, err := enc.encode(line)
		if err != nil {
			return fmt.Errorf("stdin line %d: %w", n, err)
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

// close flushes what was sent and closes the connection gracefully. The
// library cannot say whether its final flush succeeded, so a connection
// that ended before Close, for any reason, is reported: what was queued may
// not have been written. With --request every message was answered, so
// nothing can have been lost.
func (s *sender) close() error {
	s.c.Close()
	select {
	case err := <-s.lost:
		if !s.request && !errors.Is(err, sockhop.ErrClosed) {
			return fmt.Errorf("connection to %s ended before the data was flushed: %w", s.where, err)
		}
	default:
	}
	return nil
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
