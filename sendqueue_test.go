package sockhop

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/sockhop/sockhop-go/internal/wire"
)

// The sendQueue alone: no socket, no goroutine. Each test drives it the way
// the connection does and checks the bytes a writer would be handed.

func qmsg(typ, data string) *wire.Message {
	return &wire.Message{Type: typ, Data: []byte(data)}
}

// mustPush pushes and fails the test on an error or a result other than
// want.
func mustPush(t *testing.T, q *sendQueue, m *wire.Message, class msgClass, tp tokenPolicy, want queueResult) pushed {
	t.Helper()
	p, err := q.push(m, false, class, tp)
	noErr(t, err)
	if p.r != want {
		t.Fatalf("push %s: result %d, want %d", m.Type, p.r, want)
	}
	return p
}

// takeAll takes one batch and returns it joined, with its transition flag.
func takeAll(q *sendQueue) (string, bool) {
	batch, _, tr := q.take(nil, nil)
	return string(bytes.Join(batch, nil)), tr
}

// decodeAll decodes a byte stream, switching at the transition as a peer
// does, and returns the types in order.
func decodeAll(t *testing.T, b string) []string {
	t.Helper()
	d := wire.NewDecoder(strings.NewReader(b), []byte("\n"), 1<<20)
	var types []string
	for {
		m, err := d.Next()
		if errors.Is(err, io.EOF) {
			return types
		}
		noErr(t, err)
		types = append(types, m.Type)
	}
}

// newStartedQueue is a queue whose connection has started (token free).
func newStartedQueue(max int) *sendQueue {
	q := newSendQueue(max, []byte("\n"))
	q.yieldToken()
	return q
}

func TestQueueOrderAndMode(t *testing.T) {
	q := newStartedQueue(1 << 20)
	p := mustPush(t, q, qmsg("A", "1"), appMsg, take, queuedOK)
	equal(t, "first push takes the token", p.token, true)
	p = mustPush(t, q, qmsg("B", "2"), appMsg, take, queuedOK)
	equal(t, "token while out", p.token, false)
	ok, _ := q.switchToBinary(false, take)
	equal(t, "switched", ok, true)
	mustPush(t, q, qmsg("C", "3"), appMsg, take, queuedOK)

	first, tr := takeAll(q)
	equal(t, "first batch ends with the transition", tr, true)
	if !strings.HasSuffix(first, transitionLine) || !strings.HasPrefix(first, `{"type":"A"`) {
		t.Fatalf("first batch %q", first)
	}
	second, tr := takeAll(q)
	equal(t, "second batch has no transition", tr, false)
	if second[0] == '{' {
		t.Fatalf("a message after the transition was encoded as JSON: %q", second)
	}
	got := decodeAll(t, first+second)
	equal(t, "types", strings.Join(got, ","), "A,B,SockhopBinaryModeTransition,C")
	empty, _ := takeAll(q)
	equal(t, "drained", empty, "")
	equal(t, "token given back by the empty take", q.takeToken(), false) // nothing ready
	p = mustPush(t, q, qmsg("D", "4"), appMsg, take, queuedOK)
	equal(t, "token free again", p.token, true)
}

func TestQueueBarrier(t *testing.T) {
	q := newStartedQueue(1 << 20)
	q.switchToBinary(true, leave)
	p := mustPush(t, q, qmsg("App1", "1"), appMsg, take, queuedOK)
	equal(t, "held push takes the token for the line", p.token, true)
	shared := encodePair(qmsg("Shared", `"`+strings.Repeat("x", 3000)+`"`), []byte("\n"))
	_, err := q.pushShared(shared.typ, shared.json, shared.frame, shared.frameErr)
	noErr(t, err)

	line, tr := takeAll(q)
	equal(t, "the first batch is the line alone", line, transitionLine)
	equal(t, "transition flag", tr, true)
	empty, _ := takeAll(q)
	equal(t, "held frames are not taken", empty, "")

	// The probe passes the barrier, and goes alone.
	p = mustPush(t, q, &wire.Message{Type: wire.TypePing, Data: []byte("{}")}, ctlMsg, take, queuedOK)
	equal(t, "probe takes the token", p.token, true)
	probe, _ := takeAll(q)
	equal(t, "probe batch", strings.Join(decodeAll(t, transitionLine+probe), ","), "SockhopBinaryModeTransition,SockhopPing")
	empty, _ = takeAll(q)
	equal(t, "still held", empty, "")

	mustPush(t, q, qmsg("App2", "2"), appMsg, take, queuedOK)
	equal(t, "held bytes counted", q.queued() > 3000, true)
	r := q.release()
	equal(t, "release hands the token", r.token, true)
	rest, _ := takeAll(q)
	equal(t, "held, in order", strings.Join(decodeAll(t, transitionLine+rest), ","), "SockhopBinaryModeTransition,App1,Shared,App2")
	equal(t, "nothing left", q.queued(), 0)
}

// A take stops after the transition line even when more is ready and no
// barrier is up, and a cut write that ended with the line puts it back so
// that the next take stops after it again.
func TestQueueStopsAfterLine(t *testing.T) {
	q := newStartedQueue(1 << 20)
	mustPush(t, q, qmsg("A", "1"), appMsg, take, queuedOK)
	q.switchToBinary(false, leave)
	mustPush(t, q, qmsg("B", "2"), appMsg, leave, queuedOK)
	batch, owned, tr := q.take(nil, nil)
	equal(t, "transition", tr, true)
	// The write was cut 10 bytes before the end of the line.
	joined := bytes.Join(batch, nil)
	rest := [][]byte{joined[len(joined)-10:]}
	_ = owned
	q.putBack(rest, []bool{false}, true)
	again, tr := takeAll(q)
	equal(t, "the rest of the line alone", again, transitionLine[len(transitionLine)-10:])
	equal(t, "still the transition", tr, true)
	after, tr := takeAll(q)
	equal(t, "then B", strings.Join(decodeAll(t, transitionLine+after), ","), "SockhopBinaryModeTransition,B")
	equal(t, "no transition", tr, false)
}

func TestQueueByteAccounting(t *testing.T) {
	q := newStartedQueue(200)
	big := qmsg("Big", `"`+strings.Repeat("b", 150)+`"`)
	mustPush(t, q, big, appMsg, take, queuedOK) // an empty queue takes anything
	p := mustPush(t, q, big, appMsg, take, noRoom)
	equal(t, "token out already", p.token, false)
	select {
	case <-p.space:
		t.Fatal("space before anything left")
	default:
	}
	// Control messages use the headroom.
	pong := &wire.Message{Type: wire.TypePong, Data: []byte(`{"_id":"x"}`)}
	for range 10 {
		mustPush(t, q, pong, ctlMsg, take, queuedOK)
	}
	filler := qmsg(wire.TypePong, `"`+strings.Repeat("p", ctlHeadroom)+`"`)
	mustPush(t, q, filler, ctlMsg, take, overHeadroom)
	// The writer takes a batch: the waiter is woken.
	takeAll(q)
	select {
	case <-p.space:
	default:
		t.Fatal("waiter not woken when bytes left")
	}
	q.doneWaiting()
	mustPush(t, q, big, appMsg, take, queuedOK)
}

// A push that finds no room takes the token if nobody writes, so that a
// waiting sender always has a writer working for it, even when what fills
// the queue was left for a reader that is the waiting sender itself.
func TestQueueNoRoomTakesToken(t *testing.T) {
	q := newStartedQueue(100)
	q.setReaderBusy(true)
	reply := qmsg("R", `"`+strings.Repeat("r", 120)+`"`)
	p, err := q.push(reply, false, appMsg, takeUnlessReaderBusy)
	noErr(t, err)
	equal(t, "reply left for the reader", p.token, false)
	// A reply on the reader never waits, even past max.
	p, err = q.push(reply, false, appMsg, takeUnlessReaderBusy)
	noErr(t, err)
	equal(t, "reply past max queued", p.r, queuedOK)
	equal(t, "over the limit", q.overLimit(), true)
	// A send from the same handler waits, and takes the token.
	p = mustPush(t, q, qmsg("S", "1"), appMsg, take, noRoom)
	equal(t, "waiting sender holds the token", p.token, true)
	q.doneWaiting()
	q.setReaderBusy(false)
	p, _ = q.push(qmsg("S", "1"), false, appMsg, takeUnlessReaderBusy)
	equal(t, "busy writer: no token", p.token, false)
}

func TestQueueCloseAndFinish(t *testing.T) {
	q := newStartedQueue(1 << 20)
	q.switchToBinary(true, leave)
	mustPush(t, q, qmsg("Held", "1"), appMsg, leave, queuedOK)
	p := q.close()
	equal(t, "close hands the token for the line", p.token, true)
	mustPush(t, q, qmsg("Late", "2"), appMsg, take, refused)
	mustPush(t, q, &wire.Message{Type: wire.TypePing, Data: []byte("{}")}, ctlMsg, take, queuedOK)
	takeAll(q) // the line
	takeAll(q) // the probe
	empty, _ := takeAll(q)
	equal(t, "held", empty, "")
	select {
	case <-q.finished:
		t.Fatal("finished while a message is held")
	default:
	}
	r := q.release()
	equal(t, "token after release", r.token, true)
	rest, _ := takeAll(q)
	equal(t, "the held message", strings.Join(decodeAll(t, transitionLine+rest), ","), "SockhopBinaryModeTransition,Held")
	takeAll(q) // empty: the token goes back
	select {
	case <-q.finished:
	default:
		t.Fatal("not finished once drained")
	}
	mustPush(t, q, &wire.Message{Type: wire.TypePong, Data: []byte("{}")}, ctlMsg, take, refused)
}

func TestQueueAbort(t *testing.T) {
	q := newStartedQueue(1 << 20)
	q.switchToBinary(true, leave)
	mustPush(t, q, qmsg("Held", "1"), appMsg, leave, queuedOK)
	equal(t, "token", q.takeToken(), true)
	q.abort()
	select {
	case <-q.finished:
		t.Fatal("finished while the token is out")
	default:
	}
	equal(t, "nothing more to write", q.giveBack(), false)
	<-q.finished
	equal(t, "queued", q.queued(), 0)
}

func TestQueueTakeDirect(t *testing.T) {
	q := newStartedQueue(1 << 20)
	equal(t, "JSON mode", q.takeDirect(), false)
	q.switchToBinary(false, leave)
	equal(t, "line still queued", q.takeDirect(), false)
	q.takeToken()
	takeAll(q)
	takeAll(q) // empty: token back
	equal(t, "idle and binary", q.takeDirect(), true)
	equal(t, "token out", q.takeDirect(), false)
	q.putBack([][]byte{[]byte("tail")}, []bool{false}, false)
	equal(t, "rest left for a writer", q.giveBack(), true)

	h := newStartedQueue(1 << 20)
	h.switchToBinary(true, leave)
	h.takeToken()
	takeAll(h)
	takeAll(h)
	equal(t, "barrier up", h.takeDirect(), false)
}

// Shared bytes (a broadcast) are referenced, not copied, when large.
func TestQueueSharedNotCopied(t *testing.T) {
	q := newStartedQueue(1 << 20)
	enc := encodePair(qmsg("Big", `"`+strings.Repeat("s", 4000)+`"`), []byte("\n"))
	p, err := q.pushShared(enc.typ, enc.json, enc.frame, enc.frameErr)
	noErr(t, err)
	equal(t, "token", p.token, true)
	batch, owned, _ := q.take(nil, nil)
	equal(t, "one segment", len(batch), 1)
	equal(t, "not ours", len(owned), 0)
	equal(t, "same memory", &batch[0][0] == &enc.json[0], true)
}
