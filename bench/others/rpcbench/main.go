// Command rpcbench runs the scenarios of `sockhop bench` and bench/rawgo
// with the standard library's net/rpc and its JSON-RPC codec
// (net/rpc/jsonrpc) over TCP, between two processes: the server is this
// binary re-run as a child (-server), the clients run here. It prints one
// result line, with -json in the format of `sockhop bench --json`
// ("mode":"netrpc"). The widget travels as the call's parameter and the
// receivers decode it fully (-decode struct or map: the method's argument
// is a Widget or a map[string]any). Each scenario on net/rpc:
//
//   - s1: net/rpc has no one-way call, so each widget is a Bench.Push
//     call (client.Go) whose reply is an empty object, with at most 1024
//     calls in flight per connection and every reply awaited; then
//     Bench.Count returns the count, which must be n.
//   - s2seq, s2par: Bench.Call, widget in, {"seq":i} out; s2par has
//     -inflight calls at once on each connection (client.Call from as
//     many goroutines; the server runs each call on a goroutine).
//   - s4: not possible, a net/rpc server cannot send to a client that did
//     not ask: the command says so and exits with status 2.
//   - s5: -clients connections, each made real by a Bench.Hello call; the
//     server's RSS after a GC (Bench.RSS).
//
// The JSON-RPC codec writes each request and reply to the connection as
// it comes (no batching of writes), as it is used out of the box.
//
//	go run ./rpcbench -scenario s2seq -json
package main

import (
	"fmt"
	"net"
	"net/rpc"
	"net/rpc/jsonrpc"
	"sync/atomic"
	"time"

	"github.com/sockhop/sockhop-go/bench/others/internal/kit"
)

// pushWindow is how many s1 calls a connection has in flight at most.
const pushWindow = 1024

func main() {
	kit.Command{Mode: "netrpc", Name: "rpcbench", Child: runServer, Client: runClient}.Main()
}

// ---- server -------------------------------------------------------------

// Bench is the service; the Map methods decode the widget into a map.
type Bench struct {
	count atomic.Int64
}

// Push counts a widget (s1).
func (b *Bench) Push(_ kit.Widget, _ *kit.Empty) error {
	b.count.Add(1)
	return nil
}

// PushMap counts a widget decoded into a map (s1).
func (b *Bench) PushMap(w map[string]any, _ *kit.Empty) error {
	if _, err := kit.Seq(&w); err != nil {
		return err
	}
	b.count.Add(1)
	return nil
}

// Call answers a widget with its seq (s2).
func (b *Bench) Call(w kit.Widget, ack *kit.Ack) error {
	ack.Seq = w.Seq
	return nil
}

// CallMap answers a widget decoded into a map with its seq (s2).
func (b *Bench) CallMap(w map[string]any, ack *kit.Ack) error {
	seq, err := kit.Seq(&w)
	ack.Seq = seq
	return err
}

// Count returns the count of pushed widgets since the last count.
func (b *Bench) Count(_ kit.Empty, c *kit.Count) error {
	c.Count = b.count.Swap(0)
	return nil
}

// Hello makes a connection real (s5).
func (b *Bench) Hello(_ kit.Empty, _ *kit.Empty) error { return nil }

// RSS returns the server's RSS after a GC (s5).
func (b *Bench) RSS(_ kit.Empty, r *kit.RSS) (err error) {
	*r, err = kit.SelfRSS()
	return err
}

func runServer(f *kit.Flags) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := rpc.NewServer()
	if err := srv.Register(&Bench{}); err != nil {
		return err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go srv.ServeCodec(jsonrpc.NewServerCodec(c))
		}
	}()
	kit.Serve(ln.Addr().String())
	return ln.Close()
}

// ---- client -------------------------------------------------------------

// connTimeout bounds everything a client connection does: past it, its
// calls fail.
const connTimeout = 5 * time.Minute

func dial(addr string) (*rpc.Client, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	if err := c.SetDeadline(time.Now().Add(connTimeout)); err != nil {
		c.Close()
		return nil, err
	}
	client := jsonrpc.NewClient(c)
	if err := client.Call("Bench.Hello", kit.Empty{}, &kit.Empty{}); err != nil {
		client.Close()
		return nil, err
	}
	return client, nil
}

// dialMany opens k connections, each made real by a Hello, and returns
// what closes them.
func dialMany(addr string, k int) ([]*rpc.Client, func(), error) {
	return kit.DialMany(k, func() (*rpc.Client, error) { return dial(addr) }, (*rpc.Client).Close)
}

func runClient(f *kit.Flags) (*kit.Result, error) {
	if f.Scenario == "s4" {
		return nil, fmt.Errorf("s4 (broadcast): a net/rpc server cannot push to its clients: %w", kit.ErrUnsupported)
	}
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
			var r kit.RSS
			return r, ctl.Call("Bench.RSS", kit.Empty{}, &r)
		})
	}
	clients, closeAll, err := dialMany(srv.Addr, f.Clients)
	if err != nil {
		return nil, err
	}
	defer closeAll()
	suffix := ""
	if f.Decode == kit.Map {
		suffix = "Map"
	}
	switch f.Scenario {
	case "s1":
		return kit.Timed(f, servers, kit.PerItem, func(n int) error {
			err := kit.Split(n, len(clients), func(c, from, to int) error {
				return push(clients[c], "Bench.Push"+suffix, from, to)
			})
			if err != nil {
				return err
			}
			var got kit.Count
			if err := clients[0].Call("Bench.Count", kit.Empty{}, &got); err != nil {
				return err
			}
			return got.Check(n)
		}, nil)
	case "s2seq", "s2par":
		inflight := f.InFlight()
		var lat []time.Duration
		return kit.Timed(f, servers, kit.PerItem, func(n int) error {
			var err error
			lat, err = kit.Requests(n, len(clients), inflight, func(c, i int) error {
				reply := f.Decode.NewAckTarget()
				if err := clients[c].Call("Bench.Call"+suffix, kit.NewWidget(i), reply); err != nil {
					return err
				}
				return kit.CheckAck(reply, i)
			})
			return err
		}, &lat)
	}
	return nil, fmt.Errorf("scenario %s: %w", f.Scenario, kit.ErrUnsupported)
}

// push sends widgets [from, to) as calls, pushWindow in flight at most,
// and waits for every reply.
func push(c *rpc.Client, method string, from, to int) error {
	done := make(chan *rpc.Call, pushWindow)
	var empty kit.Empty
	inflight := 0
	wait := func() error {
		call := <-done
		inflight--
		return call.Error
	}
	for i := from; i < to; i++ {
		if inflight == pushWindow {
			if err := wait(); err != nil {
				return err
			}
		}
		c.Go(method, kit.NewWidget(i), &empty, done)
		inflight++
	}
	for inflight > 0 {
		if err := wait(); err != nil {
			return err
		}
	}
	return nil
}
