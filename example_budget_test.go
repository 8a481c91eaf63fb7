package sockhop_test

import (
	"context"
	"fmt"
	"time"

	"github.com/sockhop/sockhop-go"
)

// Bound what a server buffers for all its peers together, and how many
// request handlers run at once. A 1 MiB buffer is charged to the budget
// while it is received and until its handler returns.
func Example_memoryBudget() {
	srv := sockhop.NewServer(sockhop.ServerOptions{
		Addr:              "127.0.0.1:0",
		MemoryBudget:      32 << 20,        // all peers together
		MemoryBudgetStall: 5 * time.Second, // a peer holding budget without progress is cut after this
		MaxHandlers:       64,              // request handlers at once, all sessions
	})
	got := make(chan int)
	srv.Handle("Tile", func(ctx context.Context, m *sockhop.Message) error {
		got <- len(m.Bytes())
		m.Release()
		return nil
	})
	c, done := pair(srv, sockhop.ClientOptions{})
	defer done()
	if err := c.SendTyped(context.Background(), "Tile", make([]byte, 1<<20)); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("received", <-got, "bytes")
	// The charge is released once the handler has returned.
	for i := 0; i < 100 && srv.Stats().MemoryBudgetUsed != 0; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	st := srv.Stats()
	fmt.Printf("budget %d MiB, in use %d\n", st.MemoryBudgetLimit>>20, st.MemoryBudgetUsed)
	// Output:
	// received 1048576 bytes
	// budget 32 MiB, in use 0
}
