// Command natsbench runs the scenarios of `sockhop bench` and bench/rawgo
// over NATS, with the same JSON payload and decoding (-decode struct or
// map), and prints one result line, with -json in the format of `sockhop
// bench --json` ("mode":"nats").
//
//	go run ./natsbench -scenario s1 -json
//
// Three processes take part, all this binary: the NATS broker
// (nats-server embedded, -broker) on a loopback port; the server
// application (-server), a nats.go client of the broker that subscribes
// and replies; and this process, whose clients are nats.go connections
// to the broker. The server side's CPU per unit is the broker's plus the
// server application's. Each scenario on NATS:
//
//   - s1: the clients publish the widgets on bench.push (with -clients K,
//     K connections at once); the application subscribes and decodes and
//     counts each. Every client flushes (the broker has then routed all it
//     sent), then a request on the same subject, which arrives after the
//     widgets, returns the count, which must be n.
//   - s2seq, s2par: nc.Request on bench.call, widget in, {"seq":i} out;
//     s2par has -inflight requests at once on each connection. The
//     application answers from one subscription, in order.
//   - s4: each of -clients connections subscribes to bench.widgets; a
//     request on bench.broadcast makes the application publish the n
//     widgets there (each encoded once; the broker fans them out), flush
//     and reply.
//   - s5: -clients idle connections (nats.Connect's handshake makes each
//     real); the figure is the broker's RSS after a GC, asked on
//     bench.rss, which the broker answers through a connection of its
//     own, since the broker is the process that holds the connections.
//
// Subscriptions have no pending limits (no message is dropped as a slow
// consumer's); reconnection is off, so that a lost connection fails the
// run.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/sockhop/sockhop-go/bench/others/internal/kit"
)

const (
	subjPush      = "bench.push"
	subjCall      = "bench.call"
	subjBroadcast = "bench.broadcast"
	subjWidgets   = "bench.widgets"
	subjRSS       = "bench.rss"
)

var (
	broker     = new(bool)
	brokerAddr = new(string)
)

func main() {
	kit.Command{
		Mode: "nats",
		Name: "natsbench",
		Flags: func(fs *flag.FlagSet) {
			fs.BoolVar(broker, "broker", false, "run as the NATS broker child (internal)")
			fs.StringVar(brokerAddr, "nats", "", "the broker's address, for the server child (internal)")
		},
		IsChild: func() bool { return *broker },
		Child: func(f *kit.Flags) error {
			if *broker {
				return runBroker()
			}
			return runApp(f, *brokerAddr)
		},
		Client: runClient,
	}.Main()
}

// connect opens one connection to the broker; failed, if not nil, hears
// of the connection's asynchronous errors (a slow consumer, a lost
// connection).
func connect(addr string, failed *kit.FirstError) (*nats.Conn, error) {
	opts := []nats.Option{nats.NoReconnect(), nats.Timeout(10 * time.Second)}
	if failed != nil {
		opts = append(opts,
			nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { failed.Set(err) }),
			nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
				if err != nil {
					failed.Set(err)
				}
			}))
	}
	return nats.Connect("nats://"+addr, opts...)
}

// subscribe subscribes with no pending limits.
func subscribe(nc *nats.Conn, subj string, h nats.MsgHandler) error {
	sub, err := nc.Subscribe(subj, h)
	if err != nil {
		return err
	}
	return sub.SetPendingLimits(-1, -1)
}

func respond(m *nats.Msg, v any) {
	b, err := json.Marshal(v)
	if err == nil {
		err = m.Respond(b)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "natsbench server:", err)
	}
}

// ---- broker -------------------------------------------------------------

func runBroker() error {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true})
	if err != nil {
		return err
	}
	ns.Start()
	defer func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	}()
	if !ns.ReadyForConnections(10 * time.Second) {
		return errors.New("the broker is not ready after 10 s")
	}
	// s5 asks the broker for its RSS through a connection of its own
	// (over loopback TCP: one in-process connection over net.Pipe once
	// timed out in its handshake here).
	nc, err := connect(ns.Addr().String(), nil)
	if err != nil {
		return err
	}
	defer nc.Close()
	err = subscribe(nc, subjRSS, func(m *nats.Msg) {
		r, err := kit.SelfRSS()
		if err != nil {
			fmt.Fprintln(os.Stderr, "natsbench broker:", err)
			return
		}
		respond(m, r)
	})
	if err == nil {
		err = nc.FlushTimeout(10 * time.Second)
	}
	if err != nil {
		return err
	}
	kit.Serve(ns.Addr().String())
	return nil
}

// ---- server application -------------------------------------------------

func runApp(f *kit.Flags, addr string) error {
	nc, err := connect(addr, nil)
	if err != nil {
		return err
	}
	defer nc.Close()
	switch f.Scenario {
	case "s1":
		var count atomic.Int64
		err = subscribe(nc, subjPush, func(m *nats.Msg) {
			if m.Reply != "" { // the count request, after the widgets
				respond(m, kit.Count{Count: count.Swap(0)})
				return
			}
			if _, err := f.Decode.DecodeWidget(m.Data); err != nil {
				fmt.Fprintln(os.Stderr, "natsbench server:", err)
				return
			}
			count.Add(1)
		})
	case "s2seq", "s2par":
		err = subscribe(nc, subjCall, func(m *nats.Msg) {
			seq, err := f.Decode.DecodeWidget(m.Data)
			if err != nil {
				fmt.Fprintln(os.Stderr, "natsbench server:", err)
				return
			}
			respond(m, kit.Ack{Seq: seq})
		})
	case "s4":
		err = subscribe(nc, subjBroadcast, func(m *nats.Msg) {
			var b kit.Broadcast
			err := json.Unmarshal(m.Data, &b)
			for i := 0; i < b.N && err == nil; i++ {
				var data []byte
				if data, err = json.Marshal(kit.NewWidget(i)); err == nil {
					err = nc.Publish(subjWidgets, data)
				}
			}
			if err == nil {
				err = nc.FlushTimeout(kit.Wait)
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, "natsbench server:", err)
				return
			}
			// The application does not know its receivers: the client
			// counts the deliveries.
			respond(m, kit.BroadcastDone{Sessions: -1})
		})
	}
	if err == nil {
		err = nc.FlushTimeout(10 * time.Second)
	}
	if err != nil {
		return err
	}
	kit.Serve(addr)
	return nil
}

// ---- client -------------------------------------------------------------

// connectMany opens k connections and returns what closes them.
func connectMany(addr string, k int, failed *kit.FirstError) ([]*nats.Conn, func(), error) {
	conns := make([]*nats.Conn, 0, k)
	closeAll := func() {
		for _, c := range conns {
			c.Close()
		}
	}
	for range k {
		c, err := connect(addr, failed)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		conns = append(conns, c)
	}
	return conns, closeAll, nil
}

// request makes a control request and decodes its reply into v.
func request(nc *nats.Conn, subj string, req, v any) error {
	b, err := json.Marshal(req)
	if err != nil {
		return err
	}
	m, err := nc.Request(subj, b, kit.Wait)
	if err != nil {
		return fmt.Errorf("%s: %w", subj, err)
	}
	return json.Unmarshal(m.Data, v)
}

func runClient(f *kit.Flags) (*kit.Result, error) {
	br, err := kit.StartChild(append([]string{"-broker"}, f.Args()...)...)
	if err != nil {
		return nil, err
	}
	servers := kit.Children{br}
	defer func() { servers.Stop() }()
	app, err := kit.StartChild(append([]string{"-server", "-nats", br.Addr}, f.Args()...)...)
	if err != nil {
		return nil, err
	}
	servers = append(servers, app)
	var failed kit.FirstError
	var closing atomic.Bool
	if f.Scenario == "s5" {
		ctl, err := connect(br.Addr, nil)
		if err != nil {
			return nil, err
		}
		defer ctl.Close()
		connect := func(k int) (func(), error) {
			_, closeAll, err := connectMany(br.Addr, k, nil)
			return closeAll, err
		}
		return kit.Memory(f, servers, connect, func() (kit.RSS, error) {
			var r kit.RSS
			return r, request(ctl, subjRSS, kit.Empty{}, &r)
		})
	}
	conns, closeAll, err := connectMany(br.Addr, f.Clients, &failed)
	if err != nil {
		return nil, err
	}
	defer func() {
		closing.Store(true)
		closeAll()
	}()
	check := func() error {
		if closing.Load() {
			return nil
		}
		return failed.Err()
	}
	switch f.Scenario {
	case "s1":
		return kit.Timed(f, servers, kit.PerItem, func(n int) error {
			err := kit.Split(n, len(conns), func(c, from, to int) error {
				w := kit.NewWidget(0)
				for i := from; i < to; i++ {
					w.Seq = i
					b, err := json.Marshal(&w)
					if err != nil {
						return err
					}
					if err := conns[c].Publish(subjPush, b); err != nil {
						return err
					}
				}
				return conns[c].FlushTimeout(kit.Wait)
			})
			if err != nil {
				return errors.Join(err, check())
			}
			var got kit.Count
			if err := request(conns[0], subjPush, kit.Empty{}, &got); err != nil {
				return errors.Join(err, check())
			}
			return got.Check(n)
		}, nil)
	case "s2seq", "s2par":
		inflight := f.InFlight()
		var lat []time.Duration
		return kit.Timed(f, servers, kit.PerItem, func(n int) error {
			var err error
			lat, err = kit.Requests(n, len(conns), inflight, func(c, i int) error {
				b, err := json.Marshal(kit.NewWidget(i))
				if err != nil {
					return err
				}
				m, err := conns[c].Request(subjCall, b, kit.Wait)
				if err != nil {
					return errors.Join(err, check())
				}
				reply := f.Decode.NewAckTarget()
				if err := json.Unmarshal(m.Data, reply); err != nil {
					return err
				}
				return kit.CheckAck(reply, i)
			})
			return err
		}, &lat)
	case "s4":
		var phase atomic.Pointer[kit.Deliveries]
		phase.Store(kit.NewDeliveries(-1))
		for _, c := range conns {
			err := subscribe(c, subjWidgets, func(m *nats.Msg) {
				if _, err := f.Decode.DecodeWidget(m.Data); err != nil {
					failed.Set(err)
					return
				}
				phase.Load().Add()
			})
			if err != nil {
				return nil, err
			}
		}
		for _, c := range conns { // the broker has every subscription
			if err := c.FlushTimeout(kit.Wait); err != nil {
				return nil, err
			}
		}
		k := len(conns)
		return kit.Timed(f, servers, func(n int) float64 { return float64(n) * float64(k) }, func(n int) error {
			d := kit.NewDeliveries(int64(n) * int64(k))
			phase.Store(d)
			var done kit.BroadcastDone
			if err := request(conns[0], subjBroadcast, kit.Broadcast{N: n}, &done); err != nil {
				return errors.Join(err, check())
			}
			return d.Wait(check)
		}, nil)
	}
	return nil, fmt.Errorf("scenario %s: %w", f.Scenario, kit.ErrUnsupported)
}
