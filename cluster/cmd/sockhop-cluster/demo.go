package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/sockhop/sockhop-go"
	"github.com/sockhop/sockhop-go/cluster"
)

// Note is the demo's message.
type Note struct {
	Text string `json:"text"`
	From string `json:"from"`
}

// demo runs the whole story in one process, with nothing installed: an
// embedded NATS server on a loopback port, three sockhop servers joined
// into cluster "demo", a client on each; a broadcast from one server
// reaches all three clients, and a request made on the first server
// reaches the client of the third and its reply comes back. It prints
// what happens, in plain lines.
func demo(ctx context.Context, w io.Writer) error {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true})
	if err != nil {
		return err
	}
	go ns.Start()
	defer ns.WaitForShutdown()
	defer ns.Shutdown()
	if !ns.ReadyForConnections(10 * time.Second) {
		return fmt.Errorf("the embedded NATS server did not start")
	}
	fmt.Fprintf(w, "NATS server at %s\n", ns.ClientURL())

	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var nodes []*cluster.Node
	got := make(chan string, 10)
	for i := range 3 {
		name := fmt.Sprintf("server %d", i+1)
		nc, err := nats.Connect(ns.ClientURL())
		if err != nil {
			return err
		}
		defer nc.Close()
		node, err := cluster.New(nc, cluster.Options{Name: "demo"})
		if err != nil {
			return err
		}
		srv := sockhop.NewServer(node.ServerOptions(sockhop.ServerOptions{Addr: "127.0.0.1:0"}))
		if err := srv.Listen(); err != nil {
			return err
		}
		defer srv.Close()
		if err := node.Join(srv); err != nil {
			return err
		}
		defer node.Close()
		nodes = append(nodes, node)
		fmt.Fprintf(w, "%s listening on %s, cluster id %s\n", name, srv.Addr(), node.ServerID())

		client := fmt.Sprintf("client %d", i+1)
		c := sockhop.NewClient(sockhop.ClientOptions{Addr: srv.Addr().String()})
		c.Handle("Note", func(ctx context.Context, m *sockhop.Message) error {
			var n Note
			if err := m.Decode(&n); err != nil {
				return err
			}
			if m.IsRequest() {
				return m.Reply(ctx, Note{Text: "hello back", From: client})
			}
			got <- fmt.Sprintf("%s (on %s) got %q from %s", client, name, n.Text, n.From)
			return nil
		})
		if err := c.Start(ctx); err != nil {
			return err
		}
		defer c.Close()
	}
	for len(nodes[0].Sessions()) < 3 {
		if ctx.Err() != nil {
			return fmt.Errorf("the directory did not fill: %w", ctx.Err())
		}
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Fprintln(w, "server 1's directory of the cluster:")
	for _, s := range nodes[0].Sessions() {
		fmt.Fprintf(w, "  session %s on server %s from %s\n", s.ID, s.Server, s.RemoteAddr)
	}

	if err := nodes[1].Broadcast(ctx, Note{Text: "hello everyone", From: "server 2"}); err != nil {
		return err
	}
	for range 3 {
		select {
		case line := <-got:
			fmt.Fprintln(w, line)
		case <-ctx.Done():
			return fmt.Errorf("a broadcast did not arrive: %w", ctx.Err())
		}
	}

	var far string
	for _, s := range nodes[0].Sessions() {
		if s.Server == nodes[2].ServerID() {
			far = s.ID
		}
	}
	start := time.Now()
	reply, err := nodes[0].Request(ctx, far, Note{Text: "hello", From: "server 1"})
	if err != nil {
		return err
	}
	var n Note
	if err := reply.Decode(&n); err != nil {
		return err
	}
	fmt.Fprintf(w, "server 1 asked session %s (on server 3): %q from %s, in %s\n", far, n.Text, n.From, time.Since(start).Round(time.Microsecond))
	return nil
}
