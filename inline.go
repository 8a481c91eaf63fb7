package sockhop

// Handlers on the reading goroutine (ConnOptions.InlineHandlers).
//
// Handing a message from the reader to another goroutine costs a goroutine
// wake-up, which on a small virtual machine is a futex call and an
// inter-processor interrupt. With InlineHandlers the reader runs each
// handler itself, the way a hand-written read loop would, and the replies
// of the handlers it ran are written by the reader just before it next
// reads from the socket, so that the replies to a batch of requests read at
// once leave in one write.
//
// The price is a contract, not a timer: while a handler runs, nothing else
// is read from its connection, so a handler must not wait for anything
// that needs this connection to read. A Request on the same connection
// with the handler's ctx fails at once with ErrInlineRequest instead of
// waiting for a reply that could never be read; anything else a handler
// waits for simply holds up its connection (as in a hand-written loop).
//
// Backpressure must not turn into that kind of wait, or two peers that
// flood each other with requests would each stop reading while waiting
// for the other to read. So a reply from a handler on the reader never
// waits for room in the queue (it may take the queue past MaxQueueBytes by
// its own size), and while the queue is over MaxQueueBytes the reader
// hands messages to the dispatcher instead of running them, as it does
// whenever messages already wait there (which keeps plain messages in
// order). Both are decided from byte counts, never from time.

// inlineKey marks the ctx of a handler running on its connection's reader.
type inlineKey struct{}

// inlineNow reports whether the reader may run the next handler itself:
// nothing waits for the dispatcher and the queue has room.
func (c *conn) inlineNow() bool {
	return !c.q.overLimit() && (!c.dispatching || c.inbox.idle())
}

// runInline runs m's handler on the reader. Replies it queues are left for
// the reader (sendQueue.readerBusy), which writes them before it reads
// again.
func (c *conn) runInline(m *Message) {
	c.q.setReaderBusy(true)
	c.run(c.inlineCtx, m)
	c.q.setReaderBusy(false)
}
