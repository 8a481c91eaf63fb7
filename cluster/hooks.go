package cluster

import (
	"sync"
	"sync/atomic"
)

// maxHookQueue bounds the hook events waiting to run, as the core's hook
// runner does: a hook that blocks loses events (counted), never memory.
const maxHookQueue = 1000

// hookQueue runs the node's hooks on one goroutine, in the order posted.
type hookQueue struct {
	mu      sync.Mutex
	q       []func()
	stopped bool
	running bool
	idle    *sync.Cond
	dropped *atomic.Uint64
}

func (h *hookQueue) init(dropped *atomic.Uint64) {
	h.dropped = dropped
	h.idle = sync.NewCond(&h.mu)
}

// post queues f; the goroutine runs while there is something to run.
func (h *hookQueue) post(f func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped {
		return
	}
	if len(h.q) >= maxHookQueue {
		h.dropped.Add(1)
		return
	}
	h.q = append(h.q, f)
	if !h.running {
		h.running = true
		go h.loop()
	}
}

func (h *hookQueue) loop() {
	h.mu.Lock()
	for len(h.q) > 0 {
		f := h.q[0]
		h.q[0] = nil
		h.q = h.q[1:]
		h.mu.Unlock()
		runHook(f)
		h.mu.Lock()
	}
	h.running = false
	h.idle.Broadcast()
	h.mu.Unlock()
}

// runHook runs one hook; a panic in user code must not kill the process.
func runHook(f func()) {
	defer func() { _ = recover() }()
	f()
}

// stop refuses new events and waits for those queued to have run.
func (h *hookQueue) stop() {
	h.mu.Lock()
	h.stopped = true
	for h.running {
		h.idle.Wait()
	}
	h.mu.Unlock()
}
