package sockhop

import (
	"context"
	"encoding/json"
	"testing"
)

// The same value reaches a binary-mode and a JSON-mode client alike through
// SendAll and through SendAllEncoded: the hook is SendAll, minus encoding.
func TestSendAllEncodedMatchesSendAll(t *testing.T) {
	tr := transports[0]
	srv := startServer(t, tr, ServerOptions{ConnOptions: fastOpts()})
	type seen struct {
		typ  string
		data string
	}
	var chans []chan seen
	for _, noBinary := range []bool{false, true} {
		ch := make(chan seen, 4)
		chans = append(chans, ch)
		o := ClientOptions{ConnOptions: fastOpts()}
		o.NoBinary = noBinary
		c := startClient(t, tr, srv, o)
		c.HandleDefault(func(ctx context.Context, m *Message) error {
			ch <- seen{m.Type, string(m.JSON()) + string(m.Bytes())}
			return nil
		})
	}
	eventually(t, "two sessions", func() bool { return len(srv.Sessions()) == 2 })
	ctx := testCtx(t)
	for _, v := range []any{Widget{ID: 7, Tags: []string{"a"}}, []byte{1, 2, 3}, "text"} {
		e, err := Encode(v)
		noErr(t, err)
		noErr(t, srv.SendAllEncoded(ctx, e))
		noErr(t, srv.SendAll(ctx, v))
		for i, ch := range chans {
			a, b := recv(t, ch, "encoded broadcast"), recv(t, ch, "SendAll broadcast")
			if a != b {
				t.Fatalf("client %d, %T: SendAllEncoded delivered %+v, SendAll %+v", i, v, a, b)
			}
			equal(t, "type", a.typ, TypeName(v))
		}
	}
	typed, err := EncodeTyped("Frame", []byte{9})
	noErr(t, err)
	errorIs(t, srv.SendAllEncoded(ctx, typed), ErrNoBinaryMode)
}

// NewEncoded checks what may have crossed a network as Send checks values.
func TestNewEncodedChecks(t *testing.T) {
	for _, c := range []struct {
		name    string
		typ     string
		data    string
		isBytes bool
		code    string
	}{
		{"valid JSON", "Widget", `{"id":1}`, false, ""},
		{"no type", "", `null`, false, ""},
		{"buffer", "Buffer", "\x00\xff", true, ""},
		{"typed buffer", "Frame", "\x00", true, ""},
		{"invalid JSON", "Widget", `{"id":`, false, CodeBadData},
		{"reserved type", "SockhopHandshake", `{}`, false, CodeReservedType},
	} {
		t.Run(c.name, func(t *testing.T) {
			e, err := NewEncoded(c.typ, []byte(c.data), c.isBytes)
			if c.code != "" {
				errorIs(t, err, &Error{Code: c.code})
				return
			}
			noErr(t, err)
			equal(t, "type", e.Type(), c.typ)
			equal(t, "data", string(e.Data()), c.data)
			equal(t, "bytes", e.IsBytes(), c.isBytes)
			equal(t, "typed", e.IsTyped(), c.isBytes && c.typ != "Buffer")
		})
	}
}

// SendEncoded and RequestEncoded reach one peer as Send and Request do; a
// reply turned into an Encoded and back is the same message, and cannot be
// replied to.
func TestSessionSendRequestEncoded(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			tr := transports[0]
			srv := startServer(t, tr, ServerOptions{ConnOptions: fastOpts()})
			o := ClientOptions{ConnOptions: fastOpts()}
			o.NoBinary = mode.noBinary
			c := startClient(t, tr, srv, o)
			got := make(chan *Message, 2)
			c.Handle("Widget", func(ctx context.Context, m *Message) error {
				if m.IsRequest() {
					return m.Reply(ctx, Widget{ID: 2, Tags: []string{"back"}})
				}
				got <- m
				return nil
			})
			c.Handle("Frame", func(ctx context.Context, m *Message) error { got <- m; return nil })
			eventually(t, "session", func() bool { return len(srv.Sessions()) == 1 })
			sess := srv.Sessions()[0]
			// The session's handshake ends when the client's reply reaches
			// it, which may be after the client's Start returned.
			eventually(t, "the session's handshake", func() bool { return sess.State().HandshakeDone })
			ctx := testCtx(t)

			e, err := NewEncoded("Widget", []byte(`{"id":1,"tags":["a"]}`), false)
			noErr(t, err)
			noErr(t, sess.SendEncoded(ctx, e))
			m := recv(t, got, "sent message")
			equal(t, "data", string(m.JSON()), `{"id":1,"tags":["a"]}`)

			typed, err := EncodeTyped("Frame", []byte{1, 2})
			noErr(t, err)
			if mode.noBinary {
				errorIs(t, sess.SendEncoded(ctx, typed), ErrNoBinaryMode)
			} else {
				noErr(t, sess.SendEncoded(ctx, typed))
				equal(t, "typed bytes", string(recv(t, got, "typed buffer").Bytes()), "\x01\x02")
			}

			reply, err := sess.RequestEncoded(ctx, e)
			noErr(t, err)
			back, err := NewEncoded(reply.Type, reply.JSON(), reply.IsBytes())
			noErr(t, err)
			m = back.Message()
			var w Widget
			noErr(t, m.Decode(&w))
			equal(t, "reply id", w.ID, 2)
			equal(t, "reply tags", len(w.Tags), 1)
			equal(t, "type", m.Type, "Widget")
			errorIs(t, m.Reply(ctx, 1), ErrNotRequest)
			if raw := m.JSON(); !json.Valid(raw) {
				t.Fatalf("reply JSON %q", raw)
			}
		})
	}
}
