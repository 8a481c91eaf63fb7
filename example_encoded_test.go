package sockhop_test

import (
	"context"
	"fmt"
	"log"

	"github.com/sockhop/sockhop-go"
)

// Carry a message between processes without decoding it: encode once, send
// its parts anywhere (here nowhere), rebuild them and broadcast them as
// SendAll would have sent the value.
func Example_encoded() {
	srv := sockhop.NewServer(sockhop.ServerOptions{Addr: "127.0.0.1:0"})
	got := make(chan string)
	c, done := pair(srv, sockhop.ClientOptions{})
	defer done()
	c.Handle("Widget", func(ctx context.Context, m *sockhop.Message) error {
		got <- string(m.JSON())
		return nil
	})
	e, err := sockhop.Encode(Widget{ID: 7, Name: "gear"})
	if err != nil {
		log.Fatal(err)
	}
	typ, data, isBytes := e.Type(), e.Data(), e.IsBytes() // what a relay carries
	again, err := sockhop.NewEncoded(typ, data, isBytes)
	if err != nil {
		log.Fatal(err)
	}
	if err := srv.SendAllEncoded(context.Background(), again); err != nil {
		log.Fatal(err)
	}
	fmt.Println(typ, <-got)
	// Output: Widget {"id":7,"name":"gear"}
}
