// Command sockhop-cluster runs sockhop servers joined into one cluster over
// NATS, and reaches their sessions from the command line.
//
//	sockhop-cluster serve     --nats URL --cluster NAME [--addr HOST:PORT] [--echo]
//	sockhop-cluster broadcast --nats URL --cluster NAME [--type T] JSON
//	sockhop-cluster send      --nats URL --cluster NAME --to ID [--type T] JSON
//	sockhop-cluster request   --nats URL --cluster NAME --to ID [--type T] [--timeout D] JSON
//	sockhop-cluster sessions  --nats URL --cluster NAME [--wait D]
//	sockhop-cluster demo
//
// It is a binary of the cluster module, not a subcommand of sockhop, so
// that the sockhop command and library stay free of the NATS client.
// Every command prints one JSON object per line.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/sockhop/sockhop-go"
	"github.com/sockhop/sockhop-go/cluster"
)

const usage = `usage:
  sockhop-cluster serve     --nats URL --cluster NAME [--addr HOST:PORT] [--echo]
  sockhop-cluster broadcast --nats URL --cluster NAME [--type T] JSON
  sockhop-cluster send      --nats URL --cluster NAME --to ID [--type T] JSON
  sockhop-cluster request   --nats URL --cluster NAME --to ID [--type T] [--timeout D] JSON
  sockhop-cluster sessions  --nats URL --cluster NAME [--wait D]
  sockhop-cluster demo

demo runs an embedded NATS server, three servers and a client on each, and
shows a broadcast and a request across servers: nothing to install. serve runs a Sockhop server joined to the cluster and prints its events
(listening, join and leave anywhere in the cluster, receive); --echo sends
every message back to its sender. broadcast reaches every session of every
server; send and request reach one session by its cluster-wide id (see
sessions, or the join events of serve). JSON is the message's data; its type
name is --type, or the JSON kind (Object, Array, String, Number, Boolean).

examples:
  sockhop-cluster serve --nats nats://127.0.0.1:4222 --cluster demo --addr 127.0.0.1:50000
  sockhop-cluster broadcast --nats nats://127.0.0.1:4222 --cluster demo --type Notice '{"text":"hello"}'
  sockhop-cluster request --nats nats://127.0.0.1:4222 --cluster demo --to 3f2a9c0e1b7d4e55-1 '"ping"'
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run runs one command; 0 on success, 1 on failure, 2 on bad usage.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, args := args[0], args[1:]
	if cmd == "demo" {
		if err := demo(ctx, stdout); err != nil {
			fmt.Fprintf(stderr, "sockhop-cluster demo: %v\n", err)
			return 1
		}
		return 0
	}
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	natsURL := fs.String("nats", nats.DefaultURL, "NATS server URL")
	name := fs.String("cluster", "", "cluster name")
	addr := fs.String("addr", "127.0.0.1:50000", "serve: address to listen on")
	echo := fs.Bool("echo", false, "serve: send every message back to its sender")
	typ := fs.String("type", "", "type name of the message (default: the JSON kind)")
	to := fs.String("to", "", "send, request: the session's cluster-wide id")
	timeout := fs.Duration("timeout", 10*time.Second, "request: how long to wait for the reply")
	wait := fs.Duration("wait", 2*time.Second, "how long to wait for the cluster's directory")
	if err := fs.Parse(args); err != nil {
		fmt.Fprintf(stderr, "sockhop-cluster %s: %v\n\n%s", cmd, err, usage)
		return 2
	}
	if *name == "" {
		fmt.Fprintf(stderr, "sockhop-cluster %s: --cluster NAME is required\n\n%s", cmd, usage)
		return 2
	}
	var v any
	switch cmd {
	case "broadcast", "send", "request":
		if fs.NArg() != 1 {
			fmt.Fprintf(stderr, "sockhop-cluster %s: give the message's data as one JSON argument\n\n%s", cmd, usage)
			return 2
		}
		raw := json.RawMessage(fs.Arg(0))
		if !json.Valid(raw) {
			fmt.Fprintf(stderr, "sockhop-cluster %s: %q is not JSON; quote strings: '\"text\"'\n", cmd, fs.Arg(0))
			return 2
		}
		v = raw
		if *typ != "" {
			v = sockhop.Named{Type: *typ, Data: raw}
		}
		if cmd != "broadcast" && *to == "" {
			fmt.Fprintf(stderr, "sockhop-cluster %s: --to ID is required\n\n%s", cmd, usage)
			return 2
		}
	case "serve", "sessions":
		if fs.NArg() != 0 {
			fmt.Fprintf(stderr, "sockhop-cluster %s: unexpected argument %q\n\n%s", cmd, fs.Arg(0), usage)
			return 2
		}
	default:
		fmt.Fprintf(stderr, "sockhop-cluster: unknown command %q\n\n%s", cmd, usage)
		return 2
	}

	nc, err := nats.Connect(*natsURL, nats.Name("sockhop-cluster "+cmd), nats.MaxReconnects(-1), nats.Timeout(5*time.Second))
	if err != nil {
		fmt.Fprintf(stderr, "sockhop-cluster: connecting to NATS at %s: %v\n", *natsURL, err)
		return 1
	}
	defer nc.Close()
	out := &printer{w: stdout}
	if cmd == "serve" {
		err = serve(ctx, nc, *name, *addr, *echo, out)
	} else {
		err = client(ctx, nc, *name, cmd, *to, v, *timeout, *wait, out)
	}
	if err != nil {
		fmt.Fprintf(stderr, "sockhop-cluster %s: %v\n", cmd, err)
		return 1
	}
	return 0
}

// serve runs a server joined to the cluster until ctx ends.
func serve(ctx context.Context, nc *nats.Conn, name, addr string, echo bool, out *printer) error {
	node, err := cluster.New(nc, cluster.Options{
		Name:    name,
		OnJoin:  func(s cluster.SessionInfo) { out.print(map[string]any{"event": "join", "session": s}) },
		OnLeave: func(s cluster.SessionInfo) { out.print(map[string]any{"event": "leave", "session": s}) },
		OnError: func(err error) { out.print(map[string]any{"event": "error", "message": err.Error()}) },
	})
	if err != nil {
		return err
	}
	srv := sockhop.NewServer(node.ServerOptions(sockhop.ServerOptions{Addr: addr}))
	srv.HandleDefault(func(ctx context.Context, m *sockhop.Message) error {
		ev := describe("receive", m)
		ev["session"] = node.ID(m.Session())
		ev["request"] = m.IsRequest()
		out.print(ev)
		if !echo {
			return nil
		}
		e, err := encodedOf(m)
		if err != nil {
			return err
		}
		if m.IsRequest() {
			if e.IsTyped() {
				return m.ReplyTyped(ctx, e.Type(), e.Data())
			}
			if e.IsBytes() {
				return m.Reply(ctx, e.Data())
			}
			return m.Reply(ctx, sockhop.Named{Type: e.Type(), Data: json.RawMessage(e.Data())})
		}
		return m.Session().SendEncoded(ctx, e)
	})
	if err := srv.Listen(); err != nil {
		return err
	}
	defer srv.Close()
	if err := node.Join(srv); err != nil {
		return err
	}
	defer node.Close()
	out.print(map[string]any{"event": "listening", "addr": srv.Addr().String(), "server": node.ServerID(), "cluster": name})
	<-ctx.Done()
	return nil
}

// client runs broadcast, send, request or sessions through a node whose
// server listens nowhere (it holds no sessions).
func client(ctx context.Context, nc *nats.Conn, name, cmd, to string, v any, timeout, wait time.Duration, out *printer) error {
	node, err := cluster.New(nc, cluster.Options{Name: name})
	if err != nil {
		return err
	}
	srv := sockhop.NewServer(sockhop.ServerOptions{})
	defer srv.Close()
	if err := node.Join(srv); err != nil {
		return err
	}
	defer node.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout+wait)
	defer cancel()
	switch cmd {
	case "broadcast":
		return node.Broadcast(ctx, v)
	case "sessions":
		// The other servers answer the node's hello at once; wait covers
		// their snapshots on a slow network.
		sleep(ctx, wait)
		for _, s := range node.Sessions() {
			out.print(s)
		}
		return nil
	}
	deadline := time.Now().Add(wait)
	for {
		if _, ok := node.Lookup(to); ok || time.Now().After(deadline) {
			break
		}
		sleep(ctx, 20*time.Millisecond)
	}
	if cmd == "send" {
		return node.Send(ctx, to, v)
	}
	rctx, rcancel := context.WithTimeout(ctx, timeout)
	defer rcancel()
	reply, err := node.Request(rctx, to, v)
	if err != nil {
		return err
	}
	out.print(describe("reply", reply))
	return nil
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// encodedOf returns a received message as it could be sent again.
func encodedOf(m *sockhop.Message) (*sockhop.Encoded, error) {
	if m.IsBytes() {
		return sockhop.NewEncoded(m.Type, m.Bytes(), true)
	}
	data := []byte(m.JSON())
	if data == nil {
		data = []byte("null")
	}
	return sockhop.NewEncoded(m.Type, data, false)
}

// describe is a message as an event line: JSON data as is, bytes as base64.
func describe(event string, m *sockhop.Message) map[string]any {
	ev := map[string]any{"event": event, "type": m.Type}
	if m.IsBytes() {
		ev["base64"] = m.Bytes() // encoding/json writes []byte as base64
	} else if raw := m.JSON(); raw != nil {
		ev["data"] = raw
	}
	return ev
}

// printer writes one JSON object per line, from any goroutine.
type printer struct {
	mu sync.Mutex
	w  io.Writer
}

func (p *printer) print(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		b, _ = json.Marshal(map[string]any{"event": "error", "message": err.Error()})
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	_, _ = p.w.Write(append(b, '\n'))
}
