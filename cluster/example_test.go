package cluster_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/sockhop/sockhop-go"
	"github.com/sockhop/sockhop-go/cluster"
)

// Greeting is what the example sends around.
type Greeting struct {
	Text string `json:"text"`
}

// startServer starts a sockhop server joined to cluster "demo" over its own
// NATS connection; stop closes all three.
func startServer(url string) (*cluster.Node, *sockhop.Server, func()) {
	nc, err := nats.Connect(url)
	if err != nil {
		log.Fatal(err)
	}
	node, err := cluster.New(nc, cluster.Options{Name: "demo"})
	if err != nil {
		log.Fatal(err)
	}
	srv := sockhop.NewServer(node.ServerOptions(sockhop.ServerOptions{Addr: "127.0.0.1:0"}))
	if err := srv.Listen(); err != nil {
		log.Fatal(err)
	}
	if err := node.Join(srv); err != nil {
		log.Fatal(err)
	}
	return node, srv, func() { node.Close(); srv.Close(); nc.Close() }
}

// Two servers act as one: a client of server B answers a request made on
// server A by the client's cluster-wide id, and gets A's broadcast.
func Example() {
	// A NATS server for the example; in production, your NATS deployment.
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true})
	if err != nil {
		log.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		log.Fatal("nats-server did not start")
	}
	defer ns.WaitForShutdown()
	defer ns.Shutdown()

	a, _, stopA := startServer(ns.ClientURL())
	defer stopA()
	_, srvB, stopB := startServer(ns.ClientURL())
	defer stopB()

	got := make(chan string, 1)
	c := sockhop.NewClient(sockhop.ClientOptions{Addr: srvB.Addr().String()})
	c.Handle("Greeting", func(ctx context.Context, m *sockhop.Message) error {
		var g Greeting
		if err := m.Decode(&g); err != nil {
			return err
		}
		if m.IsRequest() {
			return m.Reply(ctx, Greeting{Text: "hello back"})
		}
		got <- g.Text
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	// Server A finds the session in the cluster's directory.
	var id string
	for id == "" && ctx.Err() == nil {
		for _, s := range a.Sessions() {
			id = s.ID
		}
		time.Sleep(10 * time.Millisecond)
	}
	reply, err := a.Request(ctx, id, Greeting{Text: "hello"})
	if err != nil {
		log.Fatal(err)
	}
	var g Greeting
	if err := reply.Decode(&g); err != nil {
		log.Fatal(err)
	}
	fmt.Println("reply:", g.Text)

	if err := a.Broadcast(ctx, Greeting{Text: "to everyone"}); err != nil {
		log.Fatal(err)
	}
	fmt.Println("broadcast:", <-got)
	// Output:
	// reply: hello back
	// broadcast: to everyone
}
