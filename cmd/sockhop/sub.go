package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strings"
	"sync"
	"time"

	sockhop "github.com/sockhop/sockhop-go"
)

var subUsage = usage{
	synopsis: "sockhop sub [--addr HOST:PORT | --unix PATH] [--compat] [--no-binary] [--max-message BYTES]\n" +
		"            [--type NAME]... [--count N] [--echo | --reply JSON] [--reconnect] [--tls-ca FILE]",
	about: `Connects to a Sockhop server as a client and prints every message the server
pushes, one JSON line each, with the time it was received:
  {"time":"2026-12-03T18:30:01.123Z","type":"Widget","data":{"id":7}}
  {"time":"2026-12-03T18:30:01.125Z","type":"Tile","base64":"AQID","request":true}
Bytes (a Buffer, a typed buffer, a Sockhop 1.x Buffer object) are shown as
base64. --type (repeatable) prints only messages of those types; the others
are ignored, requests included. --count N exits 0 after N messages were
printed. A request is answered with --echo (its own type and data back) or
--reply JSON (that value, typed as send types it); without either it is
printed and left unanswered.

The connection ending ends sub with exit 1 and its reason, unless
--reconnect, which reconnects (every 2 s at first, backing off to 30 s) and
notes each loss and reconnection on stderr. A server that never answers the
handshake (Sockhop 1.x, --compat) is noted once; its messages arrive as JSON.
SIGINT or SIGTERM closes the connection and exits 0.`,
	examples: `sockhop sub
sockhop sub --type Widget --type Gadget --count 10
sockhop sub --echo                          # answer every request with itself
sockhop sub --reply '{"ok":true}' --reconnect
sockhop sub --unix /tmp/sockhop.sock | jq -c 'select(.type=="Alert")'`,
}

// typeList is a repeatable --type flag.
type typeList map[string]bool

func (l typeList) String() string {
	names := make([]string, 0, len(l))
	for n := range l {
		names = append(names, n)
	}
	return strings.Join(names, ",")
}

func (l typeList) Set(v string) error {
	if v == "" {
		return errors.New("an empty type name matches nothing")
	}
	l[v] = true
	return nil
}

var _ flag.Value = typeList(nil)

func runSub(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("sub")
	var cf connFlags
	cf.register(fs)
	tf := clientTLSFlags{cmd: "sub"}
	tf.register(fs)
	types := typeList{}
	fs.Var(types, "type", "print only messages of type `NAME` (repeat for several)")
	count := fs.Int("count", 0, "exit 0 after `N` messages were printed (0: never)")
	echoFlag := fs.Bool("echo", false, "answer each request with its own type and data")
	replyJSON := fs.String("reply", "", "answer each request with this `JSON` value")
	fs.Bool("json", true, "accepted for every command's sake: sub always prints JSON lines")
	reconnect := fs.Bool("reconnect", false, "reconnect when the connection ends, noting it on stderr, instead of exiting 1")
	if _, err := parseFlags(e, fs, subUsage, args, 0); err != nil {
		return err
	}
	if err := cf.check(fs); err != nil {
		return err
	}
	if *count < 0 {
		return usageErrorf("sub: --count must not be negative")
	}
	if *echoFlag && *replyJSON != "" {
		return usageErrorf("sub: --echo and --reply exclude each other")
	}
	var reply *outgoing
	if *replyJSON != "" {
		var err error
		if reply, err = (&encoder{}).encode(*replyJSON); err != nil {
			return usageErrorf("sub: --reply: %v", err)
		}
	}
	tlsCfg, err := tf.config()
	if err != nil {
		return err
	}

	sb := &subscriber{e: e, where: cf.where(), types: types, count: *count, echo: *echoFlag, reply: reply,
		reconnect: *reconnect, enough: make(chan struct{}), lost: make(chan error, 1)}
	o := sockhop.ClientOptions{
		Addr:          cf.addr,
		Path:          cf.unix,
		TLSConfig:     tlsCfg,
		ConnOptions:   cf.connOptions(),
		AutoReconnect: *reconnect,
		OnHandshake:   sb.onHandshake,
		OnDisconnect:  sb.onDisconnect,
		OnConnect:     sb.onConnect,
		OnReconnect:   sb.onReconnect,
		OnError:       sb.onError,
	}
	c := sockhop.NewClient(o)
	c.HandleDefault(sb.onMessage)
	defer c.Close()
	if err := c.Connect(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		if !*reconnect {
			return err
		}
		// The library keeps retrying a first connect that failed.
		sb.mu.Lock()
		sb.up, sb.down = true, true
		sb.mu.Unlock()
		sb.note("cannot connect to %s (%v); retrying", sb.where, err)
	}
	select {
	case <-ctx.Done():
		return nil // SIGINT or SIGTERM: the deferred Close ends the connection
	case <-sb.enough:
		return nil
	case err := <-sb.lost:
		return fmt.Errorf("connection to %s ended: %w", sb.where, err)
	}
}

// subscriber prints what a sub run receives.
type subscriber struct {
	e         *env
	where     string
	types     typeList
	count     int
	echo      bool
	reply     *outgoing
	reconnect bool

	mu      sync.Mutex // orders the lines and the count
	printed int
	enough  chan struct{} // closed once count messages were printed
	lost    chan error    // the connection ended (without --reconnect)
	up      bool          // connected at least once: later connects are reconnections
	down    bool          // a loss was noted and no reconnection yet
}

// subLine is one line of sub's output.
type subLine struct {
	Time    string `json:"time"`
	*shown         // type, data, base64
	Request bool   `json:"request,omitempty"`
}

func (sb *subscriber) onMessage(ctx context.Context, m *sockhop.Message) error {
	if len(sb.types) > 0 && !sb.types[m.Type] {
		return nil
	}
	now := time.Now().UTC().Format("2006-01-02T15:04:05.000Z07:00")
	sh := show(m)
	line, err := json.Marshal(subLine{Time: now, shown: &sh, Request: m.IsRequest()})
	if err != nil {
		return err
	}
	sb.mu.Lock()
	if sb.count > 0 && sb.printed >= sb.count {
		sb.mu.Unlock()
		return nil // past --count: the run is ending
	}
	_, _ = sb.e.stdout.Write(append(line, '\n'))
	sb.printed++
	last := sb.count > 0 && sb.printed == sb.count
	sb.mu.Unlock()
	if last {
		// The run ends once the last message was answered, not before.
		defer close(sb.enough)
	}
	if !m.IsRequest() {
		return nil
	}
	switch {
	case sb.echo:
		return echoReply(ctx, m)
	case sb.reply != nil:
		return m.Reply(ctx, sockhop.Named{Type: sb.reply.typ, Data: sb.reply.json})
	}
	return nil
}

// echoReply answers a request with its own type and data; a typed buffer
// goes back as one only in binary mode.
func echoReply(ctx context.Context, m *sockhop.Message) error {
	if b, ok := messageBytes(m); ok {
		if m.IsTypedBuffer() {
			if err := m.ReplyTyped(ctx, m.Type, b); err == nil {
				return nil
			}
		}
		return m.Reply(ctx, b)
	}
	v := sockhop.Named{Type: m.Type}
	if raw := m.JSON(); raw != nil {
		v.Data = raw
	}
	return m.Reply(ctx, v)
}

// note writes one stderr line.
func (sb *subscriber) note(format string, a ...any) {
	fmt.Fprintln(sb.e.stderr, "sockhop: "+terminalSafe(fmt.Sprintf(format, a...)))
}

func (sb *subscriber) onHandshake(_ *sockhop.Client, ok bool, err error) {
	if !ok && errors.Is(err, sockhop.ErrHandshakeTimeout) {
		sb.note("%s did not answer the handshake (a Sockhop 1.x or --compat server?); receiving JSON", sb.where)
	} else if !ok {
		sb.note("handshake with %s failed, staying in JSON mode: %v", sb.where, err)
	}
}

func (sb *subscriber) onConnect(*sockhop.Client) {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if sb.up && sb.down {
		sb.note("reconnected to %s", sb.where)
	}
	sb.up, sb.down = true, false
}

func (sb *subscriber) onDisconnect(_ *sockhop.Client, err error) {
	if errors.Is(err, sockhop.ErrClosed) {
		return // our own close
	}
	if sb.reconnect {
		sb.mu.Lock()
		sb.down = true
		sb.mu.Unlock()
		sb.note("connection to %s lost (%v); reconnecting", sb.where, err)
		return
	}
	select {
	case sb.lost <- err:
	default:
	}
}

func (sb *subscriber) onReconnect(_ *sockhop.Client, attempt int, err error, next time.Duration) {
	sb.note("reconnect attempt %d to %s failed (%v); next in %s", attempt, sb.where, err, next.Round(time.Millisecond))
}

func (sb *subscriber) onError(_ *sockhop.Client, err error) {
	sb.note("%v", err)
}
