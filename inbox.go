package sockhop

import "sync"

// inbox carries application messages from the reader to the dispatcher. It
// is bounded in bytes, not messages: a handler that itself waits for a
// reply (which the reader handles directly) keeps working through a burst of
// small messages, and only a backlog over MaxInboxBytes makes the reader
// wait, which in turn stops reading from the socket.
type inbox struct {
	mu     sync.Mutex
	q      []*Message
	head   int
	bytes  int
	max    int
	closed bool
	// running: the dispatcher took a plain message and has not come back
	// for the next, so its handler may be running.
	running bool
	// Who waits: each side is woken only when it waits, and a reader
	// waiting for room only once the backlog is down to half the limit,
	// so that a full inbox does not wake it for every message taken
	// (a goroutine wake-up costs more than handling a small message).
	popWait, pushWait bool
	ready             chan struct{} // kicks the dispatcher
	space             chan struct{} // kicks a waiting reader
}

func newInbox(max int) *inbox {
	return &inbox{max: max, ready: make(chan struct{}, 1), space: make(chan struct{}, 1)}
}

func msgSize(m *Message) int { return len(m.data) + len(m.Type) + 64 }

func kick(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// push queues m, waiting while the backlog is over the limit. It gives up,
// dropping m, only when done is closed first: the connection is closing.
func (in *inbox) push(m *Message, done <-chan struct{}) bool {
	size := msgSize(m)
	in.mu.Lock()
	for in.bytes > 0 && in.bytes+size > in.max {
		in.pushWait = true
		in.mu.Unlock()
		select {
		case <-in.space:
		case <-done:
			return false
		}
		in.mu.Lock()
	}
	in.q = append(in.q, m)
	in.bytes += size
	wake := in.popWait
	in.popWait = false
	in.mu.Unlock()
	if wake {
		kick(in.ready)
	}
	return true
}

// pop returns the oldest message, waiting for one; ok is false once the
// inbox is closed and empty.
func (in *inbox) pop() (m *Message, ok bool) {
	in.mu.Lock()
	in.running = false
	for in.head == len(in.q) {
		if in.closed && in.head == len(in.q) {
			in.mu.Unlock()
			return nil, false
		}
		in.popWait = true
		in.mu.Unlock()
		<-in.ready // a stale kick only makes the loop look again
		in.mu.Lock()
	}
	m = in.q[in.head]
	in.q[in.head] = nil
	in.head++
	if in.head == len(in.q) {
		in.q, in.head = in.q[:0], 0
	}
	in.bytes -= msgSize(m)
	in.running = !m.IsRequest()
	wake := in.pushWait && in.bytes <= in.max/2
	if wake {
		in.pushWait = false
	}
	in.mu.Unlock()
	if wake {
		kick(in.space)
	}
	return m, true
}

// idle reports whether nothing is queued and no plain message taken is
// still being handled: a message run by the reader now keeps its order.
// Only the pusher (the reader) may rely on it staying so.
func (in *inbox) idle() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.head == len(in.q) && !in.running
}

// close lets pop report the end once the queued messages are taken.
func (in *inbox) close() {
	in.mu.Lock()
	in.closed = true
	in.mu.Unlock()
	kick(in.ready)
}
