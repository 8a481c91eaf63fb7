package sockhop_test

import (
	"context"
	"fmt"
	"log"
	"sync"
	"time"

	"github.com/sockhop/sockhop-go"
)

// Widget is something to pass: its Sockhop type name is "Widget", the name
// a Node peer's class Widget would have.
type Widget struct {
	ID   int    `json:"id"`
	Name string `json:"name"`
}

// pair starts a server on a free port and a client connected to it with a
// completed handshake. Both are closed by the returned func.
func pair(srv *sockhop.Server, co sockhop.ClientOptions) (*sockhop.Client, func()) {
	if err := srv.Listen(); err != nil {
		log.Fatal(err)
	}
	co.Addr = srv.Addr().String()
	c := sockhop.NewClient(co)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		log.Fatal(err)
	}
	return c, func() { c.Close(); srv.Close() }
}

// Pass a Widget from the server to every client (Node: s.sendall(new
// Widget())); the client's handler sees type "Widget" and decodes it.
func Example_widget() {
	srv := sockhop.NewServer(sockhop.ServerOptions{Addr: "127.0.0.1:0"})
	got := make(chan Widget)
	c, done := pair(srv, sockhop.ClientOptions{})
	defer done()
	c.Handle("Widget", func(ctx context.Context, m *sockhop.Message) error {
		var w Widget
		err := m.Decode(&w)
		got <- w
		return err
	})
	_ = srv.SendAll(context.Background(), Widget{ID: 7, Name: "sprocket"})
	fmt.Printf("%+v\n", <-got)
	// Output: {ID:7 Name:sprocket}
}

// Send raw bytes: a []byte travels as a Node Buffer (raw in binary mode,
// base64 in JSON mode) and arrives as bytes with type "Buffer".
func Example_rawBuffer() {
	srv := sockhop.NewServer(sockhop.ServerOptions{Addr: "127.0.0.1:0"})
	got := make(chan string)
	srv.Handle("Buffer", func(ctx context.Context, m *sockhop.Message) error {
		got <- fmt.Sprintf("%s %x typed=%v", m.Type, m.Bytes(), m.IsTypedBuffer())
		return nil
	})
	c, done := pair(srv, sockhop.ClientOptions{})
	defer done()
	_ = c.Send(context.Background(), []byte{0xca, 0xfe})
	fmt.Println(<-got)
	// Output: Buffer cafe typed=false
}

// Send a typed buffer: bytes with a type name of your own (Node:
// send_typed_buffer). It needs binary mode, which Start negotiated.
func Example_typedBuffer() {
	srv := sockhop.NewServer(sockhop.ServerOptions{Addr: "127.0.0.1:0"})
	got := make(chan string)
	srv.Handle("Tile", func(ctx context.Context, m *sockhop.Message) error {
		got <- fmt.Sprintf("%s %d bytes typed=%v", m.Type, len(m.Bytes()), m.IsTypedBuffer())
		return nil
	})
	c, done := pair(srv, sockhop.ClientOptions{})
	defer done()
	fmt.Println("binary:", c.State().TxBinary)
	_ = c.SendTyped(context.Background(), "Tile", make([]byte, 256))
	fmt.Println(<-got)
	// Output:
	// binary: true
	// Tile 256 bytes typed=true
}

// Large buffers at full speed: a handler that is done with a message's
// bytes releases them, so the buffer of the next large frame is reused
// instead of collected. Here the handler sums the bytes (it keeps nothing
// that aliases them) before releasing.
func Example_releaseLargeBuffers() {
	srv := sockhop.NewServer(sockhop.ServerOptions{Addr: "127.0.0.1:0"})
	sums := make(chan int)
	srv.Handle("Chunk", func(ctx context.Context, m *sockhop.Message) error {
		sum := 0
		for _, b := range m.Bytes() {
			sum += int(b)
		}
		m.Release() // m.Bytes() must not be used after this
		sums <- sum
		return nil
	})
	c, done := pair(srv, sockhop.ClientOptions{})
	defer done()
	chunk := make([]byte, 1<<20)
	for i := range 3 {
		for j := range chunk {
			chunk[j] = byte(i)
		}
		// SendTyped returns once chunk may be reused.
		_ = c.SendTyped(context.Background(), "Chunk", chunk)
		fmt.Println(<-sums)
	}
	// Output:
	// 0
	// 1048576
	// 2097152
}

// A remote callback: the client sends and waits for the server's answer
// (Node: c.send(obj, callback) and meta.callback(reply)).
func Example_remoteCallback() {
	srv := sockhop.NewServer(sockhop.ServerOptions{Addr: "127.0.0.1:0"})
	srv.Handle("String", func(ctx context.Context, m *sockhop.Message) error {
		return m.Reply(ctx, "I got your message!")
	})
	c, done := pair(srv, sockhop.ClientOptions{})
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	reply, err := c.Request(ctx, "Promise to call when you get this")
	if err != nil {
		log.Fatal(err)
	}
	var s string
	_ = reply.Decode(&s)
	fmt.Println(reply.Type, s)
	// Output: String I got your message!
}

// Many requests in flight from one goroutine, the replies handed to a
// function (Node: c.send(obj, callback) in a loop). The function runs on
// the goroutine that reads the connection, so it only records the answer;
// here a WaitGroup tells when all have come.
func Example_pipelinedRequests() {
	srv := sockhop.NewServer(sockhop.ServerOptions{Addr: "127.0.0.1:0"})
	srv.Handle("Number", func(ctx context.Context, m *sockhop.Message) error {
		var n int
		if err := m.Decode(&n); err != nil {
			return err
		}
		return m.Reply(ctx, n*n)
	})
	c, done := pair(srv, sockhop.ClientOptions{})
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	squares := make([]int, 5)
	var wg sync.WaitGroup
	for i := range squares {
		wg.Add(1)
		err := c.RequestFunc(ctx, i, func(reply *sockhop.Message, err error) {
			defer wg.Done()
			if err == nil {
				err = reply.Decode(&squares[i])
			}
			if err != nil {
				squares[i] = -1
			}
		})
		if err != nil { // not sent: the function will not be called
			wg.Done()
			log.Print(err)
		}
	}
	wg.Wait()
	fmt.Println(squares)
	// Output: [0 1 4 9 16]
}

// A session that must verify itself: the server drops any connection that
// has not sent a "Verify" message within a deadline (Node: a Session
// subclass whose start() arms a timer). Per-connection state lives in the
// session's Value.
func Example_sessionVerification() {
	type verification struct{ ok chan struct{} }
	srv := sockhop.NewServer(sockhop.ServerOptions{
		Addr: "127.0.0.1:0",
		OnSessionStart: func(ctx context.Context, s *sockhop.Session) error {
			v := &verification{ok: make(chan struct{})}
			s.SetValue(v)
			go func() {
				select {
				case <-v.ok:
				case <-time.After(200 * time.Millisecond): // 3 s in the Node example
					s.Close()
				case <-s.Done():
				}
			}()
			return nil
		},
	})
	srv.Handle("Verify", func(ctx context.Context, m *sockhop.Message) error {
		close(m.Session().Value().(*verification).ok)
		return nil
	})
	verified, done := pair(srv, sockhop.ClientOptions{})
	defer done()
	_ = verified.Send(context.Background(), sockhop.Named{Type: "Verify", Data: "secret"})

	lazy := sockhop.NewClient(sockhop.ClientOptions{Addr: srv.Addr().String()})
	defer lazy.Close()
	_ = lazy.Start(context.Background())
	time.Sleep(400 * time.Millisecond)
	fmt.Println("verified client connected:", verified.State().Connected)
	fmt.Println("lazy client connected:", lazy.State().Connected)
	// Output:
	// verified client connected: true
	// lazy client connected: false
}

// Handshake events: hooks report the outcome and each direction's switch
// to binary mode (Node: the handshake and binary_mode:rx/tx events).
func Example_handshakeEvents() {
	type outcome struct {
		ok   bool
		peer string
		tx   bool
	}
	done := make(chan outcome, 1)
	srv := sockhop.NewServer(sockhop.ServerOptions{
		Addr: "127.0.0.1:0",
		OnHandshake: func(s *sockhop.Session, ok bool, err error) {
			st := s.State()
			done <- outcome{ok, st.PeerVersion, st.TxBinary}
		},
	})
	hs := make(chan bool, 1)
	_, stop := pair(srv, sockhop.ClientOptions{
		OnHandshake: func(c *sockhop.Client, ok bool, err error) { hs <- ok },
	})
	defer stop()
	fmt.Println("client handshake ok:", <-hs)
	o := <-done
	fmt.Println("server handshake ok:", o.ok, "peer is this library:", o.peer == sockhop.Version, "server sends binary:", o.tx)
	// Output:
	// client handshake ok: true
	// server handshake ok: true peer is this library: true server sends binary: true
}

// Talking to a Sockhop 1.x peer, which has no handshake and no binary mode:
// connect without waiting for a handshake (Connect, not Start), or use
// CompatibilityMode to behave like a 1.x peer yourself. Here a server in
// compatibility mode stands in for the 1.x peer.
func Example_oneXPeer() {
	old := sockhop.NewServer(sockhop.ServerOptions{Addr: "127.0.0.1:0",
		ConnOptions: sockhop.ConnOptions{CompatibilityMode: true}})
	old.Handle("String", func(ctx context.Context, m *sockhop.Message) error {
		return m.Reply(ctx, sockhop.Named{Type: "Object", Data: map[string]string{"v1_reply_to": m.Type}})
	})
	if err := old.Listen(); err != nil {
		log.Fatal(err)
	}
	defer old.Close()
	c := sockhop.NewClient(sockhop.ClientOptions{Addr: old.Addr().String(),
		ConnOptions: sockhop.ConnOptions{CompatibilityMode: true}})
	defer c.Close()
	if err := c.Connect(context.Background()); err != nil {
		log.Fatal(err)
	}
	reply, err := c.Request(context.Background(), "hello v1")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(reply.Type, string(reply.JSON()), "binary:", c.State().TxBinary)
	// Output: Object {"v1_reply_to":"String"} binary: false
}

// One client for 2.x and 1.x peers alike (the seed README's
// "interoperating with 1.x" pattern): Connect, not Start, and wait for
// OnReady, which comes after the handshake succeeded (2.x: binary mode)
// or failed (1.x: JSON mode). OnUnhandshake tells a lost connection that
// had handshaked from one that never did (Node: the unhandshake event and
// disconnect's handshaked argument). A server in compatibility mode stands
// in for the 1.x peer.
func Example_interoperate() {
	v2 := sockhop.NewServer(sockhop.ServerOptions{Addr: "127.0.0.1:0"})
	v1 := sockhop.NewServer(sockhop.ServerOptions{Addr: "127.0.0.1:0",
		ConnOptions: sockhop.ConnOptions{CompatibilityMode: true}})
	for _, srv := range []*sockhop.Server{v2, v1} {
		if err := srv.Listen(); err != nil {
			log.Fatal(err)
		}
		defer srv.Close()
	}
	for _, srv := range []*sockhop.Server{v2, v1} {
		events := make(chan string, 4)
		c := sockhop.NewClient(sockhop.ClientOptions{
			Addr:          srv.Addr().String(),
			ConnOptions:   sockhop.ConnOptions{HandshakeTimeout: 200 * time.Millisecond},
			OnReady:       func(c *sockhop.Client) { events <- fmt.Sprintf("ready, binary: %v", c.State().TxBinary) },
			OnDisconnect:  func(c *sockhop.Client, err error) { events <- "disconnect" },
			OnUnhandshake: func(c *sockhop.Client, err error) { events <- "unhandshake" },
		})
		if err := c.Connect(context.Background()); err != nil {
			log.Fatal(err)
		}
		fmt.Println(<-events)
		c.Close()
		fmt.Println(<-events)
		if srv == v2 {
			fmt.Println(<-events)
		}
	}
	// Output:
	// ready, binary: true
	// disconnect
	// unhandshake
	// ready, binary: false
	// disconnect
}

// Tracing what crosses the wire (Node: debug: true and the debug:sending /
// debug:received events). Here only application messages are printed; the
// protocol's own (handshake, transition, pings) have Protocol set.
func Example_trace() {
	srv := sockhop.NewServer(sockhop.ServerOptions{Addr: "127.0.0.1:0"})
	srv.Handle("Ask", func(ctx context.Context, m *sockhop.Message) error { return m.Reply(ctx, "yes") })
	var mu sync.Mutex
	var lines []string
	show := func(dir string) func(sockhop.TraceEvent) {
		return func(ev sockhop.TraceEvent) {
			if ev.Protocol {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			lines = append(lines, fmt.Sprintf("%s %s %s, frame: %v, %d bytes", dir, ev.Kind, ev.Type, ev.Binary, ev.Size))
		}
	}
	c, done := pair(srv, sockhop.ClientOptions{ConnOptions: sockhop.ConnOptions{
		Trace: &sockhop.Trace{Sending: show("sent"), Received: show("received")},
	}})
	defer done()
	if _, err := c.Request(context.Background(), sockhop.Named{Type: "Ask", Data: 1}); err != nil {
		log.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, l := range lines {
		fmt.Println(l)
	}
	// Output:
	// sent request Ask, frame: true, 50 bytes
	// received response String, frame: true, 52 bytes
}
