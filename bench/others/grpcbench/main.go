// Command grpcbench runs the scenarios of `sockhop bench` and bench/rawgo
// with gRPC-go between two processes: the server is this binary re-run as
// a child (-server), the clients run here, and the result is one line,
// with -json in the format of `sockhop bench --json` ("mode":"grpc").
//
//	go run ./grpcbench -scenario s2par -json
//
// There is no protoc here, so the service is written by hand (a
// grpc.ServiceDesc with its handlers) and the messages travel as JSON,
// through a codec named "json" that uses encoding/json: the payload and
// the decoding (-decode struct or map) are those of the other
// implementations. Each scenario on gRPC:
//
//   - s1: one client-streaming RPC (Push) per connection, sending the
//     widgets; the server decodes each and counts; then a unary Count
//     returns the count, which must be n.
//   - s2seq, s2par: unary Call, widget in, {"seq":i} out; s2par has
//     -inflight calls at once on each connection (one HTTP/2 connection
//     per grpc.ClientConn).
//   - s4: every client holds a server-streaming RPC (Subscribe); a unary
//     Broadcast makes the server send each widget on every stream in turn,
//     encoded once per widget (grpc.PreparedMsg, reused on every stream).
//   - s5: -clients grpc.ClientConns, each made real by a unary Hello; the
//     server's RSS after a GC (unary RSS). gRPC's default buffers.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/metadata"

	"github.com/sockhop/sockhop-go/bench/others/internal/kit"
)

// jsonCodec carries gRPC messages as encoding/json.
type jsonCodec struct{}

func (jsonCodec) Marshal(v any) ([]byte, error)      { return json.Marshal(v) }
func (jsonCodec) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }
func (jsonCodec) Name() string                       { return "json" }

func init() { encoding.RegisterCodec(jsonCodec{}) }

const service = "sockhop.bench.Bench"

func method(name string) string { return "/" + service + "/" + name }

var (
	pushDesc      = grpc.StreamDesc{StreamName: "Push", ClientStreams: true}
	subscribeDesc = grpc.StreamDesc{StreamName: "Subscribe", ServerStreams: true}
)

func main() {
	kit.Command{Mode: "grpc", Name: "grpcbench", Child: runServer, Client: runClient}.Main()
}

// ---- server -------------------------------------------------------------

type server struct {
	decode kit.Decode
	count  atomic.Int64
	// mu guards subs and is held through a broadcast, so that a
	// Subscribe handler returns only when no broadcast sends on its
	// stream.
	mu   sync.Mutex
	subs map[grpc.ServerStream]struct{}
}

func runServer(f *kit.Flags) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	s := &server{decode: f.Decode, subs: make(map[grpc.ServerStream]struct{})}
	gs := grpc.NewServer()
	gs.RegisterService(s.desc(), nil)
	go gs.Serve(ln)
	kit.Serve(ln.Addr().String())
	gs.Stop()
	return nil
}

// unary is a hand-written unary method: h decodes its request with dec.
func unary(name string, h func(ctx context.Context, dec func(any) error) (any, error)) grpc.MethodDesc {
	return grpc.MethodDesc{MethodName: name, Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
		return h(ctx, dec)
	}}
}

func (s *server) desc() *grpc.ServiceDesc {
	push, subscribe := pushDesc, subscribeDesc
	push.Handler, subscribe.Handler = s.push, s.subscribe
	return &grpc.ServiceDesc{
		ServiceName: service,
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{
			unary("Call", s.call),
			unary("Count", func(_ context.Context, dec func(any) error) (any, error) {
				if err := dec(&kit.Empty{}); err != nil {
					return nil, err
				}
				return &kit.Count{Count: s.count.Swap(0)}, nil
			}),
			unary("Broadcast", s.broadcast),
			unary("Hello", func(_ context.Context, dec func(any) error) (any, error) {
				return &kit.Empty{}, dec(&kit.Empty{})
			}),
			unary("RSS", func(_ context.Context, dec func(any) error) (any, error) {
				if err := dec(&kit.Empty{}); err != nil {
					return nil, err
				}
				return kit.SelfRSS()
			}),
		},
		Streams: []grpc.StreamDesc{push, subscribe},
	}
}

// call is s2: decode the widget, answer its seq.
func (s *server) call(_ context.Context, dec func(any) error) (any, error) {
	v := s.decode.NewWidgetTarget()
	if err := dec(v); err != nil {
		return nil, err
	}
	seq, err := kit.Seq(v)
	if err != nil {
		return nil, err
	}
	return &kit.Ack{Seq: seq}, nil
}

// push is s1: decode and count every widget of the stream.
func (s *server) push(_ any, st grpc.ServerStream) error {
	for {
		v := s.decode.NewWidgetTarget()
		if err := st.RecvMsg(v); err == io.EOF {
			return st.SendMsg(&kit.Empty{})
		} else if err != nil {
			return err
		}
		if _, err := kit.Seq(v); err != nil {
			return err
		}
		s.count.Add(1)
	}
}

// subscribe is s4's receiving end: the stream is registered, the header
// tells the client so, and it stays until the client goes.
func (s *server) subscribe(_ any, st grpc.ServerStream) error {
	if err := st.RecvMsg(&kit.Empty{}); err != nil {
		return err
	}
	s.mu.Lock()
	s.subs[st] = struct{}{}
	s.mu.Unlock()
	err := st.SendHeader(metadata.MD{})
	if err == nil {
		<-st.Context().Done()
	}
	s.mu.Lock()
	delete(s.subs, st)
	s.mu.Unlock()
	return err
}

// broadcast sends n widgets on every subscribed stream, each encoded once.
func (s *server) broadcast(_ context.Context, dec func(any) error) (any, error) {
	var b kit.Broadcast
	if err := dec(&b); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	streams := make([]grpc.ServerStream, 0, len(s.subs))
	for st := range s.subs {
		streams = append(streams, st)
	}
	if len(streams) == 0 {
		return &kit.BroadcastDone{}, nil
	}
	for i := range b.N {
		w := kit.NewWidget(i)
		var pm grpc.PreparedMsg
		if err := pm.Encode(streams[0], &w); err != nil {
			return nil, err
		}
		for _, st := range streams {
			if err := st.SendMsg(&pm); err != nil {
				return nil, fmt.Errorf("broadcast: %w", err)
			}
		}
	}
	return &kit.BroadcastDone{Sessions: len(streams)}, nil
}

// ---- client -------------------------------------------------------------

func dial(addr string) (*grpc.ClientConn, error) {
	c, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.CallContentSubtype(jsonCodec{}.Name())))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), kit.Wait)
	defer cancel()
	if err := c.Invoke(ctx, method("Hello"), &kit.Empty{}, &kit.Empty{}); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// dialMany opens k connections, each made real by a Hello, and returns
// what closes them.
func dialMany(addr string, k int) ([]*grpc.ClientConn, func(), error) {
	return kit.DialMany(k, func() (*grpc.ClientConn, error) { return dial(addr) }, (*grpc.ClientConn).Close)
}

func runClient(f *kit.Flags) (*kit.Result, error) {
	srv, err := kit.StartChild(append([]string{"-server"}, f.Args()...)...)
	if err != nil {
		return nil, err
	}
	servers := kit.Children{srv}
	defer servers.Stop()
	if f.Scenario == "s5" {
		ctl, err := dial(srv.Addr)
		if err != nil {
			return nil, err
		}
		defer ctl.Close()
		connect := func(k int) (func(), error) {
			_, closeAll, err := dialMany(srv.Addr, k)
			return closeAll, err
		}
		return kit.Memory(f, servers, connect, func() (kit.RSS, error) {
			ctx, cancel := context.WithTimeout(context.Background(), kit.Wait)
			defer cancel()
			var r kit.RSS
			return r, ctl.Invoke(ctx, method("RSS"), &kit.Empty{}, &r)
		})
	}
	conns, closeAll, err := dialMany(srv.Addr, f.Clients)
	if err != nil {
		return nil, err
	}
	defer closeAll()
	switch f.Scenario {
	case "s1":
		return kit.Timed(f, servers, kit.PerItem, func(n int) error { return oneWay(conns, n) }, nil)
	case "s2seq", "s2par":
		inflight := f.InFlight()
		var lat []time.Duration
		return kit.Timed(f, servers, kit.PerItem, func(n int) error {
			ctx, cancel := context.WithTimeout(context.Background(), kit.Wait)
			defer cancel()
			var err error
			lat, err = kit.Requests(n, len(conns), inflight, func(c, i int) error {
				w := kit.NewWidget(i)
				reply := f.Decode.NewAckTarget()
				if err := conns[c].Invoke(ctx, method("Call"), &w, reply); err != nil {
					return err
				}
				return kit.CheckAck(reply, i)
			})
			return err
		}, &lat)
	case "s4":
		return broadcast(f, servers, conns)
	}
	return nil, fmt.Errorf("scenario %s: %w", f.Scenario, kit.ErrUnsupported)
}

// oneWay is an s1 pass: the connections share the n widgets, a Push
// stream each, then Count.
func oneWay(conns []*grpc.ClientConn, n int) error {
	ctx, cancel := context.WithTimeout(context.Background(), kit.Wait)
	defer cancel()
	err := kit.Split(n, len(conns), func(c, from, to int) error {
		st, err := conns[c].NewStream(ctx, &pushDesc, method("Push"))
		if err != nil {
			return err
		}
		w := kit.NewWidget(0)
		for i := from; i < to; i++ {
			w.Seq = i
			if err := st.SendMsg(&w); err == io.EOF {
				break // the stream failed: RecvMsg tells why
			} else if err != nil {
				return err
			}
		}
		if err := st.CloseSend(); err != nil {
			return err
		}
		return st.RecvMsg(&kit.Empty{})
	})
	if err != nil {
		return err
	}
	var got kit.Count
	if err := conns[0].Invoke(ctx, method("Count"), &kit.Empty{}, &got); err != nil {
		return err
	}
	return got.Check(n)
}

// bounded runs fn and waits kit.Wait at most for it.
func bounded(what string, fn func() error) error {
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		return err
	case <-time.After(kit.Wait):
		return fmt.Errorf("%s: no answer in %v", what, kit.Wait)
	}
}

// broadcast is s4: a Subscribe stream per connection, a goroutine per
// stream decoding every widget.
func broadcast(f *kit.Flags, servers kit.Children, conns []*grpc.ClientConn) (*kit.Result, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var phase atomic.Pointer[kit.Deliveries]
	phase.Store(kit.NewDeliveries(-1))
	var failed kit.FirstError
	var closing atomic.Bool
	defer closing.Store(true)
	for _, c := range conns {
		st, err := c.NewStream(ctx, &subscribeDesc, method("Subscribe"))
		if err != nil {
			return nil, err
		}
		err = bounded("subscribing", func() error {
			if err := st.SendMsg(&kit.Empty{}); err != nil {
				return err
			}
			if err := st.CloseSend(); err != nil {
				return err
			}
			_, err := st.Header() // the server has registered the stream
			return err
		})
		if err != nil {
			return nil, err
		}
		go func() {
			for {
				v := f.Decode.NewWidgetTarget()
				err := st.RecvMsg(v)
				if err == nil {
					_, err = kit.Seq(v)
				}
				if err != nil {
					if !closing.Load() {
						failed.Set(err)
					}
					return
				}
				phase.Load().Add()
			}
		}()
	}
	k := len(conns)
	return kit.Timed(f, servers, func(n int) float64 { return float64(n) * float64(k) }, func(n int) error {
		d := kit.NewDeliveries(int64(n) * int64(k))
		phase.Store(d)
		cctx, ccancel := context.WithTimeout(ctx, kit.Wait)
		defer ccancel()
		var done kit.BroadcastDone
		if err := conns[0].Invoke(cctx, method("Broadcast"), &kit.Broadcast{N: n}, &done); err != nil {
			return err
		}
		if done.Sessions != k {
			return fmt.Errorf("the server broadcast to %d streams, not %d", done.Sessions, k)
		}
		return d.Wait(failed.Err)
	}, nil)
}
