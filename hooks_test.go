package sockhop

import (
	"testing"
	"time"
)

// The hook runner alone: order, settle from inside and outside a hook, and
// the bound on pending error reports.

func TestHookRunnerOrderAndSettle(t *testing.T) {
	var r hookRunner
	var got []int
	release := make(chan struct{})
	started := make(chan struct{})
	r.post(func() { close(started); <-release; got = append(got, 1) }, false)
	r.post(func() { got = append(got, 2) }, false)
	<-started
	// A hook runs: settle cannot tell whether its caller is that hook, so
	// it does not wait for it (nor for what is queued behind it).
	r.settle(nil)
	close(release)
	// Once the runner is idle again, settle sees every hook done.
	for r.seq() != 2 {
		time.Sleep(time.Millisecond)
	}
	r.waitRan(2, nil)
	r.settle(nil)
	equal(t, "order", len(got) == 2 && got[0] == 1 && got[1] == 2, true)
}

func TestHookRunnerSettleFromHook(t *testing.T) {
	var r hookRunner
	done := make(chan struct{})
	r.post(func() {
		r.post(func() {}, false) // queued behind this hook
		r.settle(nil)            // must not wait for this hook, nor what is behind it
		close(done)
	}, false)
	recv(t, done, "settle inside a hook to return")
	r.settle(nil)
}

func TestHookRunnerDropsErrorsPastBound(t *testing.T) {
	var r hookRunner
	release := make(chan struct{})
	started := make(chan struct{})
	r.post(func() { close(started); <-release }, false)
	<-started // running, no longer pending
	ran := 0
	for range maxPendingHooks + 10 {
		r.post(func() { ran++ }, true)
	}
	r.post(func() { ran += 1000 }, false) // lifecycle hooks are never dropped
	equal(t, "dropped", r.droppedCount(), uint64(10))
	close(release)
	r.waitRan(r.seq(), nil)
	equal(t, "ran", ran, maxPendingHooks+1000)
}
