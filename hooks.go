package sockhop

import "sync"

// hookRunner runs one owner's hooks (a Client's, or a Session's) in the
// order they were posted, on a goroutine of its own that runs only while
// hooks are pending. The engine's goroutines post hooks and go on: a slow
// hook never stops a connection from reading or writing, and a hook may
// call any method, Close included, because nothing the engine waits for
// runs a hook.
//
// The calls that wait for hooks (Close, Start) use settle, which never
// waits for a hook that is running: that hook may be the caller.
type hookRunner struct {
	mu      sync.Mutex
	q       []func()
	running bool // the goroutine runs
	inHook  bool
	posted  uint64
	ran     uint64
	dropped uint64 // error hooks dropped while maxPendingHooks were pending
	changed chan struct{}
}

// maxPendingHooks bounds the hooks waiting to run; past it, error reports
// (OnError) are dropped and counted, so a peer that provokes errors faster
// than the hook handles them cannot grow memory. Lifecycle hooks are a few
// per connection and are never dropped.
const maxPendingHooks = 1024

// post queues f; droppable marks an error report.
func (r *hookRunner) post(f func(), droppable bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if droppable && len(r.q) >= maxPendingHooks {
		r.dropped++
		return
	}
	r.q = append(r.q, f)
	r.posted++
	if !r.running {
		r.running = true
		go r.loop()
	}
}

func (r *hookRunner) loop() {
	r.mu.Lock()
	for len(r.q) > 0 {
		f := r.q[0]
		r.q[0] = nil
		r.q = r.q[1:]
		r.inHook = true
		r.mu.Unlock()
		f()
		r.mu.Lock()
		r.inHook = false
		r.ran++
		r.notify()
	}
	r.q = nil
	r.running = false
	r.notify()
	r.mu.Unlock()
}

// notify wakes whoever waits for a change; r.mu held.
func (r *hookRunner) notify() {
	if r.changed != nil {
		close(r.changed)
		r.changed = nil
	}
}

// settle returns once every hook posted before the call has run, except
// that it never waits for the hook that was running when it was called:
// the caller may be that hook (a hook that calls Close). stop, when
// closed, ends the wait too.
func (r *hookRunner) settle(stop <-chan struct{}) {
	r.mu.Lock()
	target := r.posted
	var cur uint64 // the hook running at the call, if any
	if r.inHook {
		cur = r.ran + 1
	}
	for r.ran < target {
		if r.inHook && r.ran+1 == cur {
			break
		}
		ch := r.changedCh()
		r.mu.Unlock()
		select {
		case <-ch:
		case <-stop:
			return
		}
		r.mu.Lock()
	}
	r.mu.Unlock()
}

// changedCh returns a channel closed at the next change; r.mu held.
func (r *hookRunner) changedCh() chan struct{} {
	if r.changed == nil {
		r.changed = make(chan struct{})
	}
	return r.changed
}

// waitRan returns once the hook numbered seq (posted returned it) has run,
// or stop is closed. Unlike settle it waits for a running hook, so it must
// not be called from a hook of the same runner.
func (r *hookRunner) waitRan(seq uint64, stop <-chan struct{}) bool {
	r.mu.Lock()
	for r.ran < seq {
		ch := r.changedCh()
		r.mu.Unlock()
		select {
		case <-ch:
		case <-stop:
			return false
		}
		r.mu.Lock()
	}
	r.mu.Unlock()
	return true
}

// seq returns the number of the last hook posted.
func (r *hookRunner) seq() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.posted
}

func (r *hookRunner) droppedCount() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.dropped
}
