package sockhop

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
)

type Widget struct {
	ID   int      `json:"id"`
	Tags []string `json:"tags"`
}

// got is what a handler saw of one message.
type got struct {
	typ     string
	json    string
	bytes   []byte
	isBytes bool
	typed   bool
}

func record(ch chan<- got) Handler {
	return func(ctx context.Context, m *Message) error {
		ch <- got{typ: m.Type, json: string(m.JSON()), bytes: m.Bytes(), isBytes: m.IsBytes(), typed: m.IsTypedBuffer()}
		return nil
	}
}

// kinds are the values every transport and mode must carry, with the type
// name and JSON a Node receiver would see.
var kinds = []struct {
	v        any
	typ      string
	json     string
	rawBytes []byte
}{
	{"hello", "String", `"hello"`, nil},
	{42.5, "Number", `42.5`, nil},
	{7, "Number", `7`, nil},
	{true, "Boolean", `true`, nil},
	{[]int{1, 2, 3}, "Array", `[1,2,3]`, nil},
	{map[string]any{"a": 1}, "Object", `{"a":1}`, nil},
	{Widget{ID: 7, Tags: []string{"x"}}, "Widget", `{"id":7,"tags":["x"]}`, nil},
	{&Widget{ID: 8}, "Widget", `{"id":8,"tags":null}`, nil},
	{Named{Type: "Gadget", Data: json.RawMessage(`{"n": 1}`)}, "Gadget", `{"n":1}`, nil},
	{"<&> \u2028", "String", "\"<&> \u2028\"", nil},
	{[]byte("raw\x00bytes"), "Buffer", "", []byte("raw\x00bytes")},
	{[]byte{}, "Buffer", "", []byte{}},
}

// TestMessageKinds sends every kind of value both ways over every transport
// in both modes, plus typed buffers where binary mode allows them.
func TestMessageKinds(t *testing.T) {
	for _, tr := range transports {
		for _, md := range modes {
			t.Run(tr.name+"/"+md.name, func(t *testing.T) {
				ctx := testCtx(t)
				toServer := make(chan got, 64)
				toClient := make(chan got, 64)
				srv := startServer(t, tr, ServerOptions{ConnOptions: fastOpts()})
				srv.HandleDefault(record(toServer))
				o := ClientOptions{ConnOptions: fastOpts()}
				o.NoBinary = md.noBinary
				c := startClient(t, tr, srv, o)
				c.HandleDefault(record(toClient))
				st := c.State()
				equal(t, "client tx binary", st.TxBinary, !md.noBinary)
				eventually(t, "one session", func() bool { return len(srv.Sessions()) == 1 })
				sess := srv.Sessions()[0]

				for _, k := range kinds {
					noErr(t, c.Send(ctx, k.v))
					noErr(t, sess.Send(ctx, k.v))
					for side, ch := range map[string]chan got{"server": toServer, "client": toClient} {
						g := recv(t, ch, side+" receiving "+k.typ)
						equal(t, side+" type", g.typ, k.typ)
						if k.rawBytes != nil {
							equal(t, side+" isBytes", g.isBytes, true)
							equal(t, side+" typed", g.typed, false)
							if !bytes.Equal(g.bytes, k.rawBytes) {
								t.Fatalf("%s bytes: got %q, want %q", side, g.bytes, k.rawBytes)
							}
						} else {
							equal(t, side+" json of "+k.typ, g.json, k.json)
						}
					}
				}

				tile := []byte{0, 1, 2, 0x0a, 0xff}
				err := c.SendTyped(ctx, "Tile", tile)
				if md.noBinary {
					errorIs(t, err, ErrNoBinaryMode)
					errorIs(t, sess.SendTyped(ctx, "Tile", tile), ErrNoBinaryMode)
					return
				}
				noErr(t, err)
				noErr(t, sess.SendTyped(ctx, "Tile", tile))
				for side, ch := range map[string]chan got{"server": toServer, "client": toClient} {
					g := recv(t, ch, side+" receiving a typed buffer")
					equal(t, side+" type", g.typ, "Tile")
					equal(t, side+" typed", g.typed, true)
					if !bytes.Equal(g.bytes, tile) {
						t.Fatalf("%s typed bytes: got %x", side, g.bytes)
					}
				}
			})
		}
	}
}

// TestRequestsBothWays asks and answers in both directions, with JSON,
// Buffer and typed-buffer replies.
func TestRequestsBothWays(t *testing.T) {
	for _, tr := range transports {
		for _, md := range modes {
			t.Run(tr.name+"/"+md.name, func(t *testing.T) {
				ctx := testCtx(t)
				answer := func(ctx context.Context, m *Message) error {
					switch {
					case m.IsTypedBuffer():
						if m.Session() != nil || md.noBinary {
							return m.Reply(ctx, append([]byte("re:"), m.Bytes()...))
						}
						return m.ReplyTyped(ctx, "Ack", append([]byte("re:"), m.Bytes()...))
					case m.IsBytes():
						return m.Reply(ctx, bytes.ToUpper(m.Bytes()))
					}
					var w Widget
					if err := m.Decode(&w); err != nil {
						return err
					}
					w.ID++
					return m.Reply(ctx, w)
				}
				srv := startServer(t, tr, ServerOptions{ConnOptions: fastOpts()})
				srv.HandleDefault(answer)
				o := ClientOptions{ConnOptions: fastOpts()}
				o.NoBinary = md.noBinary
				c := startClient(t, tr, srv, o)
				c.HandleDefault(answer)
				eventually(t, "one session", func() bool { return len(srv.Sessions()) == 1 })
				sess := srv.Sessions()[0]

				ask := map[string]func(context.Context, any) (*Message, error){"client": c.Request, "session": sess.Request}
				for who, request := range ask {
					r, err := request(ctx, Widget{ID: 1})
					noErr(t, err)
					var w Widget
					noErr(t, r.Decode(&w))
					equal(t, who+" reply type", r.Type, "Widget")
					equal(t, who+" reply id", w.ID, 2)

					r, err = request(ctx, []byte("abc"))
					noErr(t, err)
					equal(t, who+" buffer reply type", r.Type, "Buffer")
					equal(t, who+" buffer reply", string(r.Bytes()), "ABC")
				}
				if md.noBinary {
					_, err := c.RequestTyped(ctx, "Blob", []byte{1})
					errorIs(t, err, ErrNoBinaryMode)
					return
				}
				r, err := sess.RequestTyped(ctx, "Blob", []byte{1, 2})
				noErr(t, err)
				equal(t, "typed reply from client", r.Type, "Ack")
				equal(t, "typed reply is typed", r.IsTypedBuffer(), true)
				r, err = c.RequestTyped(ctx, "Blob", []byte{3})
				noErr(t, err)
				equal(t, "buffer reply from server", r.Type, "Buffer")
				equal(t, "buffer reply bytes", string(r.Bytes()), "re:\x03")
			})
		}
	}
}

// TestThousandRightAfterStart: messages sent the moment Start returns, while
// the peer's transition may still be in flight, all arrive, in order.
func TestThousandRightAfterStart(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			const n = 1000
			seen := make(chan int, n)
			srv := startServer(t, tr, ServerOptions{ConnOptions: fastOpts()})
			srv.Handle("Number", func(ctx context.Context, m *Message) error {
				var i int
				if err := m.Decode(&i); err != nil {
					return err
				}
				seen <- i
				return nil
			})
			c := startClient(t, tr, srv, ClientOptions{ConnOptions: fastOpts()})
			ctx := testCtx(t)
			for i := range n {
				noErr(t, c.Send(ctx, i))
			}
			for i := range n {
				equal(t, "message number", recv(t, seen, fmt.Sprint("message ", i)), i)
			}
		})
	}
}

// TestRequestsInFlight keeps 64 requests waiting at once; each gets its own
// answer.
func TestRequestsInFlight(t *testing.T) {
	tr := transports[0]
	srv := startServer(t, tr, ServerOptions{ConnOptions: fastOpts()})
	release := make(chan struct{})
	var arrived sync.WaitGroup
	arrived.Add(64)
	srv.Handle("Number", func(ctx context.Context, m *Message) error {
		var i int
		if err := m.Decode(&i); err != nil {
			return err
		}
		arrived.Done()
		<-release // every request is in flight before any is answered
		return m.Reply(ctx, i*i)
	})
	c := startClient(t, tr, srv, ClientOptions{ConnOptions: fastOpts()})
	ctx := testCtx(t)
	errs := make(chan error, 64)
	for i := range 64 {
		go func() {
			r, err := c.Request(ctx, i)
			if err == nil {
				var sq int
				if err = r.Decode(&sq); err == nil && sq != i*i {
					err = fmt.Errorf("request %d got %d", i, sq)
				}
			}
			errs <- err
		}()
	}
	arrived.Wait()
	close(release)
	for range 64 {
		noErr(t, recv(t, errs, "a reply"))
	}
}

// TestSendAllFifty broadcasts to 50 sessions, half in JSON and half in
// binary mode: each gets the message once.
func TestSendAllFifty(t *testing.T) {
	tr := transports[0]
	srv := startServer(t, tr, ServerOptions{ConnOptions: fastOpts()})
	const n = 50
	got := make(chan string, n)
	for i := range n {
		o := ClientOptions{ConnOptions: fastOpts()}
		o.NoBinary = i%2 == 0
		c := startClient(t, tr, srv, o)
		c.Handle("Widget", func(ctx context.Context, m *Message) error {
			got <- fmt.Sprintf("%d:%s", i, m.JSON())
			return nil
		})
	}
	eventually(t, "50 sessions", func() bool { return len(srv.Sessions()) == n })
	noErr(t, srv.SendAll(testCtx(t), Widget{ID: 3}))
	seen := map[string]bool{}
	for range n {
		s := recv(t, got, "a broadcast")
		if seen[s] {
			t.Fatalf("duplicate delivery %s", s)
		}
		seen[s] = true
	}
}
