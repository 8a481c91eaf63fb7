package sockhop

import (
	"sync"
	"sync/atomic"

	"github.com/sockhop/sockhop-go/internal/wire"
)

// sendQueue is the one owner of a connection's outbound bytes: it decides
// what is written and when. Everything that leaves the connection goes
// through it; the goroutines that write (the writer, or a caller allowed
// to write for itself) only take batches from it and give back what a cut
// write left over.
//
// It knows nothing of sockets or goroutines, so it is tested alone
// (sendqueue_test.go). What it guarantees:
//
//   - Order. Messages leave in the order they were appended, except that
//     control messages (pongs, handshake replies, probe pings) may pass
//     application messages held behind the transition barrier.
//   - The transmit mode. A message is encoded in the mode of the instant
//     it is appended, and the transition line is appended and the mode
//     flipped in one critical section, so no JSON line can follow it
//     (PROTOCOL.md 5.5).
//   - The transition barrier. Towards a peer that may be a Node receiver,
//     which loses frames that share a read with the transition line
//     (PROTOCOL.md 14.1), application messages appended after the line are
//     held until release (the peer proved it reads binary frames). A take
//     always stops right after the transition line, so that whatever
//     follows it (the first probe ping) goes in a write of its own.
//   - Byte accounting. Application messages wait while more than max bytes
//     are queued; control messages may go past max by ctlHeadroom, so a
//     pong never fails because the application filled the queue.
//   - One writer at a time. The write token is taken in the same critical
//     section that sees bytes ready, and given back in the same critical
//     section that sees none, so bytes are never left without a writer.
type sendQueue struct {
	mu sync.Mutex

	max     int    // MaxQueueBytes
	maxSend int    // MaxSendSize; <= 0: none
	term    []byte // the JSON-line terminator

	// Application messages queued and written in full, and those that end
	// in each segment of the batch being written: a connection that dies
	// counts what it never wrote (unsentApps) instead of losing it
	// silently.
	appsQueued, appsWritten uint64
	flying                  []segMeta
	flyingSegs              [][]byte // the batch's segments as taken
	// keepUnsent (a client with a reconnect buffer): abort keeps what was
	// never written (unsent) for takeUnsent instead of dropping it.
	keepUnsent bool
	unsent     []unsentSeg

	binary bool // transmit mode: frames after our transition line
	ready  segs // written next, in order
	held   segs // application messages behind the transition barrier
	// holding: the barrier is up (our transition line was queued and the
	// peer has not proved yet that it reads frames).
	holding bool
	// stopAt > 0: ready.list[:stopAt] ends with our transition line, and
	// the next take stops there.
	stopAt int
	n      int // bytes in ready and held, control messages included

	closed  bool // closing: application messages are refused
	aborted bool // the socket is gone: everything queued was dropped
	busy    bool // the write token is out
	// readerBusy: a handler runs on the reading goroutine, which writes
	// what its replies queue before it reads again (see pushReply). Set by
	// the reader without q.mu and read by pushes under it: a push that
	// reads it set appends before the reader, which clears it first, next
	// takes q.mu to flush; one that reads it clear takes the token itself.
	readerBusy atomic.Bool
	// over mirrors n > max for the reader's check without q.mu.
	over atomic.Bool
	// finished is closed once the queue is closed, everything in it was
	// written (or dropped by abort) and the token is back.
	finished chan struct{}
	isDone   bool

	waiters int
	space   chan struct{} // closed and replaced when bytes leave the queue

	// Counters read by the connection's Stats (under mu).
	jsonOut, binOut uint64

	// bud, on a server, is charged with the bytes queued and those taken
	// by the token holder until its write returns (flight); while it is
	// short, application messages wait unless the queue is empty
	// (budget.go).
	bud    *budget
	flight int
}

// ctlHeadroom is how far control messages may take the queue past
// MaxQueueBytes. A pong is 171 bytes; a peer that makes us queue some
// 380 of them without reading any is cut off as a slow consumer.
const ctlHeadroom = 64 << 10

// Segment sizes: shared bytes shorter than sharedMin are copied into the
// open segment (an iovec entry costs more than a small copy); a message
// larger than largeMsg gets a segment of its own, sized exactly and taken
// from framePools, so it is copied once and its memory reused; written
// buffers up to poolMax go back to bufPool, larger ones to framePools. No
// buffer stays with a connection once its queue is written, so an idle
// connection holds no write buffer at all.
const (
	sharedMin = 2 << 10
	largeMsg  = 64 << 10
	poolMax   = 256 << 10
	// openMax bounds the open segment: a sender that outruns the writer
	// would otherwise grow one buffer to megabytes, copying it at every
	// doubling (42% of a pipelined sender's CPU in s1). Past it the segment
	// is sealed and the next one starts at this size.
	openMax = 32 << 10
)

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

// segs is an ordered run of bytes to write: sealed segments, then the open
// one that small messages are encoded into.
type segs struct {
	list  [][]byte
	owned []bool // owned[i]: list[i] is ours, to reuse once written
	// meta[i] describes list[i] (openMeta: open), so that what was never
	// written can be counted, and recovered, when a connection dies.
	meta     []segMeta
	open     []byte
	openMeta segMeta
}

// segMeta is what the queue knows of a segment besides its bytes.
type segMeta struct {
	apps int32 // application messages that end in the segment
	bin  bool  // binary frames; otherwise JSON lines (the last may be our transition line)
	// cut: the segment is the rest of a cut write, and starts inside a
	// message. orig is the whole segment it was cut from and off how much
	// of it was written (orig is nil for the copied rest of a direct
	// write: one message, partly written).
	cut  bool
	orig []byte
	off  int
}

func (s *segs) empty() bool { return len(s.list) == 0 && len(s.open) == 0 }

// seal ends the open segment.
func (s *segs) seal() {
	if len(s.open) > 0 {
		s.list = append(s.list, s.open)
		s.owned = append(s.owned, true)
		s.meta = append(s.meta, s.openMeta)
		s.open, s.openMeta = nil, segMeta{}
	}
}

// openBuf returns the open segment, taking a pooled buffer if there is none.
func (s *segs) openBuf() []byte {
	if s.open == nil {
		s.open = (*bufPool.Get().(*[]byte))[:0]
	}
	return s.open
}

// bigOpenBuf returns an empty buffer of at least openMax bytes, reusing a
// written one when the pool has one that large.
func bigOpenBuf() []byte {
	p := bufPool.Get().(*[]byte)
	if cap(*p) >= openMax {
		return (*p)[:0]
	}
	bufPool.Put(p)
	return make([]byte, 0, openMax)
}

func (s *segs) push(b []byte, owned bool, meta segMeta) {
	s.seal()
	s.list = append(s.list, b)
	s.owned = append(s.owned, owned)
	s.meta = append(s.meta, meta)
}

// opening records the mode of the open segment when its first bytes are
// about to be appended.
func (s *segs) opening(binary bool) {
	if len(s.open) == 0 {
		s.openMeta.bin = binary
	}
}

// keep moves the segments to u, in order, leaving s empty; they are not
// released (unsent holds them).
func (s *segs) keep(u *[]unsentSeg) {
	s.seal()
	for i, b := range s.list {
		*u = append(*u, unsentSeg{b: b, meta: s.meta[i]})
	}
	clear(s.list)
	s.list, s.owned, s.meta = s.list[:0], s.owned[:0], s.meta[:0]
}

// drop releases everything and empties s.
func (s *segs) drop() {
	s.seal()
	for i, b := range s.list {
		if s.owned[i] {
			releaseSeg(b)
		}
	}
	clear(s.list)
	s.list, s.owned, s.meta = s.list[:0], s.owned[:0], s.meta[:0]
}

// newSendQueue returns a queue whose write token is out: nothing is
// written until its connection starts (yieldToken or giveBack).
func newSendQueue(max int, term []byte) *sendQueue {
	return &sendQueue{max: max, term: term, busy: true, finished: make(chan struct{}), space: make(chan struct{})}
}

// msgClass says how a message may use the queue.
type msgClass uint8

const (
	// appMsg: an application message; waits for room, held by the barrier.
	appMsg msgClass = iota
	// ctlMsg: a control message; never waits, uses the headroom, passes
	// the barrier, and is accepted while closing.
	ctlMsg
)

// queueResult says what a push did.
type queueResult uint8

const (
	// queuedOK: appended.
	queuedOK queueResult = iota
	// noRoom: not appended; wait on pushed.space and try again.
	noRoom
	// overHeadroom: a control message did not fit even in the headroom.
	overHeadroom
	// refused: the queue is closed.
	refused
)

// pushed is the outcome of a push.
type pushed struct {
	r queueResult
	// token: the write token is now the caller's, because bytes are ready
	// and nobody writes. The caller writes itself or hands it to a new
	// writer goroutine. A push that finds no room takes it too, so that
	// someone is always writing while a sender waits for room.
	token bool
	// space, with noRoom, is closed when bytes next leave the queue; the
	// caller calls doneWaiting once it has waited.
	space <-chan struct{}
	// size and binary, with queuedOK: the message's encoded size and the
	// mode it was queued in (for a Trace).
	size   int
	binary bool
}

// encodedSize estimates the bytes m takes in either mode, for admission.
func encodedSize(m *wire.Message) int {
	if m.Bytes {
		return wire.FrameSize(m) + len(m.Data)/3 + 64 // base64 in JSON mode
	}
	return wire.FrameSize(m) + 32
}

// check reports why m cannot be sent in the current mode; q.mu held.
func (q *sendQueue) check(m *wire.Message, typed bool) error {
	if typed && !q.binary {
		return ErrNoBinaryMode
	}
	if err := overSendLimit(m, q.maxSend, q.binary); err != nil {
		return err
	}
	if q.binary {
		if err := wire.CheckFrame(m); err != nil {
			return newError(CodeSerializeFailed, "cannot send in binary mode", err)
		}
	}
	return nil
}

// admit reports whether size more bytes may be queued for class; q.mu held.
// A broadcast (shared) does not wait for the memory budget: it never
// waits, and a session refused for the budget would be cut.
func (q *sendQueue) admit(size int, class msgClass, shared bool) queueResult {
	switch {
	case q.aborted || q.isDone || (q.closed && class == appMsg):
		return refused
	case q.n == 0 || (q.n+size <= q.max && (shared || class != appMsg || q.bud == nil || q.bud.fits(size))):
		return queuedOK
	case class == ctlMsg && q.n+size <= q.max+ctlHeadroom:
		return queuedOK
	case class == ctlMsg:
		return overHeadroom
	}
	return noRoom
}

// add encodes m into the queue in the current mode; the checks were done.
// wantToken says whether the caller takes the write token if it is free.
func (q *sendQueue) add(m *wire.Message, class msgClass, wantToken bool) pushed {
	dst := &q.ready
	if q.holding && class == appMsg {
		dst = &q.held
	}
	n := 0
	var app int32
	if class == appMsg {
		app = 1
		q.appsQueued++
	}
	if size := encodedSize(m); size > largeMsg {
		if q.binary {
			size = wire.FrameSize(m) // exact: no room reserved for base64
		}
		seg := q.encode(getFrame(size)[:0], m)
		dst.push(seg, true, segMeta{apps: app, bin: q.binary})
		n = len(seg)
	} else {
		if len(dst.open) > 0 && len(dst.open)+size > openMax {
			dst.seal()
			dst.open = bigOpenBuf() // busy: start at full size
		}
		dst.opening(q.binary)
		k := len(dst.open)
		dst.open = q.encode(dst.openBuf(), m)
		dst.openMeta.apps += app
		n = len(dst.open) - k
	}
	q.addN(n)
	q.count()
	p := q.afterAdd(wantToken)
	p.size, p.binary = n, q.binary
	return p
}

// afterAdd hands the token to a caller that wants it when bytes are ready
// and nobody writes; q.mu held.
func (q *sendQueue) afterAdd(wantToken bool) pushed {
	return pushed{r: queuedOK, token: wantToken && q.grab()}
}

// grab takes the token if nobody writes and bytes are ready; q.mu held.
func (q *sendQueue) grab() bool {
	if q.busy || q.aborted || q.ready.empty() {
		return false
	}
	q.busy = true
	return true
}

// noRoomLocked counts a waiter and makes sure someone writes; q.mu held.
func (q *sendQueue) noRoomLocked() pushed {
	q.waiters++
	return pushed{r: noRoom, token: q.grab(), space: q.space}
}

func (q *sendQueue) count() {
	if q.binary {
		q.binOut++
	} else {
		q.jsonOut++
	}
}

// encode appends m in the current transmit mode; check was done.
func (q *sendQueue) encode(dst []byte, m *wire.Message) []byte {
	if q.binary {
		dst, _ = wire.AppendFrame(dst, m)
		return dst
	}
	return wire.AppendJSONLine(dst, m, q.term)
}

// tokenPolicy says whether a push takes the write token when it is free.
type tokenPolicy uint8

const (
	// take: the caller writes itself or starts a writer goroutine.
	take tokenPolicy = iota
	// leave: the pushing goroutine is the reader, which writes what is
	// ready before it next reads from the socket (flushForRead).
	leave
	// takeUnlessReaderBusy: a reply. While a handler runs on the reading
	// goroutine (readerBusy), replies are left for the reader, so that
	// the replies to a batch of requests read at once leave in one write
	// with no goroutine woken; otherwise as take. Decided in the same
	// critical section that appends, so a reply is never left after the
	// reader's last flush.
	takeUnlessReaderBusy
	// replyTake: a reply on a connection whose reader cannot write (TLS):
	// it takes the token, and like takeUnlessReaderBusy it never waits for
	// room while a handler runs on the reader.
	replyTake
)

// push appends one message in the current mode. An application message
// that does not fit returns noRoom (wait on space). typed marks a typed
// buffer, which needs binary mode.
func (q *sendQueue) push(m *wire.Message, typed bool, class msgClass, tp tokenPolicy) (pushed, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if err := q.check(m, typed); err != nil {
		return pushed{r: refused}, err
	}
	r := q.admit(encodedSize(m), class, false)
	if r == noRoom && (tp == takeUnlessReaderBusy || tp == replyTake) && q.readerBusy.Load() {
		// A reply from a handler on the reader never waits for room: the
		// reader, stopped, could not read what the peer needs to read
		// ours (inline.go). The reader hands messages on while over.
		r = queuedOK
	}
	switch r {
	case queuedOK:
		return q.add(m, class, tp == take || tp == replyTake || (tp == takeUnlessReaderBusy && !q.readerBusy.Load())), nil
	case noRoom:
		return q.noRoomLocked(), nil
	default:
		return pushed{r: r}, nil
	}
}

// pushShared appends bytes already encoded for each mode (a broadcast); the
// bytes are shared by many connections and never modified. It never waits:
// noRoom tells the caller the peer is too slow (no waiter is counted).
func (q *sendQueue) pushShared(typ string, json, frame []byte, frameErr error) (pushed, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	b, size := json, len(json)-len(q.term)
	if q.binary {
		if frameErr != nil {
			return pushed{r: refused}, newError(CodeSerializeFailed, "cannot send in binary mode", frameErr)
		}
		b, size = frame, len(frame)-wire.FrameHeaderLen
	}
	if q.maxSend > 0 && size > q.maxSend {
		return pushed{r: refused}, tooLargeToSend(typ, size, q.maxSend, q.binary)
	}
	if r := q.admit(len(b), appMsg, true); r != queuedOK {
		return pushed{r: r}, nil
	}
	dst := &q.ready
	if q.holding {
		dst = &q.held
	}
	q.appsQueued++
	if len(b) < sharedMin {
		dst.opening(q.binary)
		dst.open = append(dst.openBuf(), b...)
		dst.openMeta.apps++
	} else {
		dst.push(b, false, segMeta{apps: 1, bin: q.binary})
	}
	q.addN(len(b))
	q.count()
	p := q.afterAdd(true)
	p.size, p.binary = len(b), q.binary
	return p, nil
}

// doneWaiting ends the wait of a push that returned noRoom.
func (q *sendQueue) doneWaiting() {
	q.mu.Lock()
	q.waiters--
	q.mu.Unlock()
}

// switchToBinary appends our transition line and flips the mode in one
// critical section (PROTOCOL.md 5.5). With barrier, application messages
// appended from now on are held until release. It reports false when
// already binary or closed; the token is the caller's as with push.
func (q *sendQueue) switchToBinary(barrier bool, tp tokenPolicy) (bool, pushed) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.binary || q.aborted || q.closed {
		return false, pushed{}
	}
	q.ready.opening(false)
	k := len(q.ready.open)
	q.ready.open = wire.AppendJSONLine(q.ready.openBuf(), &wire.Message{Type: wire.TypeTransition, Data: wire.TransitionData}, q.term)
	q.addN(len(q.ready.open) - k)
	q.count()
	q.binary = true
	q.ready.seal() // the line ends a segment, so a take can stop after it
	q.stopAt = len(q.ready.list)
	q.holding = barrier
	return true, q.afterAdd(tp == take)
}

// release lifts the transition barrier: the held messages follow what is
// ready. The token is the caller's as with push.
func (q *sendQueue) release() pushed {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.holding {
		return pushed{}
	}
	q.holding = false
	q.held.seal()
	q.ready.seal()
	q.ready.list = append(q.ready.list, q.held.list...)
	q.ready.owned = append(q.ready.owned, q.held.owned...)
	q.ready.meta = append(q.ready.meta, q.held.meta...)
	clear(q.held.list)
	q.held.list, q.held.owned, q.held.meta = q.held.list[:0], q.held.owned[:0], q.held.meta[:0]
	r := q.afterAdd(true)
	q.checkFinished()
	return r
}

// isHolding reports whether the barrier is up.
func (q *sendQueue) isHolding() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.holding
}

// take moves the next batch into batch (and the segments that are ours
// also into owned) for the token holder. It stops right after our
// transition line (transition reports that the batch ends with it). An
// empty batch means nothing is ready: the token was given back in the same
// critical section.
func (q *sendQueue) take(batch, owned [][]byte) (_, _ [][]byte, transition bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.ready.seal()
	k := len(q.ready.list)
	if q.stopAt > 0 {
		k, transition = q.stopAt, true
		q.stopAt = 0
	}
	if k == 0 {
		q.busy = false
		q.checkFinished()
		return batch, owned, false
	}
	taken := 0
	for i, seg := range q.ready.list[:k] {
		batch = append(batch, seg)
		if q.ready.owned[i] {
			owned = append(owned, seg)
		}
		taken += len(seg)
	}
	// Out of the queue, but in memory until written: the budget's charge
	// stays until finishWrite.
	q.n -= taken
	q.over.Store(q.n > q.max)
	q.flight += taken
	q.flying = append(q.flying[:0], q.ready.meta[:k]...)
	q.flyingSegs = append(q.flyingSegs[:0], q.ready.list[:k]...) // the write trims the segments in batch as it goes
	rest := copy(q.ready.list, q.ready.list[k:])
	clear(q.ready.list[rest:])
	q.ready.list = q.ready.list[:rest]
	copy(q.ready.owned, q.ready.owned[k:])
	q.ready.owned = q.ready.owned[:rest]
	copy(q.ready.meta, q.ready.meta[k:])
	clear(q.ready.meta[rest:])
	q.ready.meta = q.ready.meta[:rest]
	if q.waiters > 0 {
		close(q.space)
		q.space = make(chan struct{})
	}
	return batch, owned, transition
}

// refuseDirect takes back the count of a direct write that failed: its
// sender gets the error, so it is not one of the unsent.
func (q *sendQueue) refuseDirect() {
	q.mu.Lock()
	q.appsQueued--
	q.endBatch()
	q.mu.Unlock()
}

// wrotePart records how much of the batch taken last a failed write
// wrote: the messages of its segments written in full count as written.
func (q *sendQueue) wrotePart(n int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	i := 0
	for ; i < len(q.flying) && i < len(q.flyingSegs); i++ {
		size := int64(len(q.flyingSegs[i]))
		if n < size {
			break
		}
		n -= size
		q.appsWritten += uint64(q.flying[i].apps)
	}
	if q.keepUnsent {
		// What the failed write did not finish goes ahead of what is
		// still queued (abort adds that): it was taken first.
		var lost []unsentSeg
		for j := i; j < len(q.flying) && j < len(q.flyingSegs); j++ {
			m, seg := q.flying[j], q.flyingSegs[j]
			if j == i && n > 0 {
				m = cutMeta(m, seg, int(n))
			}
			lost = append(lost, unsentSeg{b: seg, meta: m})
		}
		q.unsent = append(lost, q.unsent...)
	}
	q.endBatch()
}

// cutMeta describes the rest of segment seg (meta m) after written bytes.
func cutMeta(m segMeta, seg []byte, written int) segMeta {
	if m.cut {
		if m.orig != nil {
			m.off += written // a rest cut again: same original
		}
		return m
	}
	m.cut, m.orig, m.off = true, seg, written
	return m
}

// unsentSeg is a segment a dead connection never wrote (in full).
type unsentSeg struct {
	b    []byte
	meta segMeta
}

// takeUnsent returns, once finished is closed, the segments a queue with
// keepUnsent never wrote, in order.
func (q *sendQueue) takeUnsent() []unsentSeg {
	q.mu.Lock()
	defer q.mu.Unlock()
	u := q.unsent
	q.unsent = nil
	return u
}

// wrote records that the batch taken last was written in full.
func (q *sendQueue) wrote() {
	q.mu.Lock()
	q.written()
	q.mu.Unlock()
}

// written counts the messages of flying as written and ends the batch;
// q.mu held.
func (q *sendQueue) written() {
	for _, m := range q.flying {
		q.appsWritten += uint64(m.apps)
	}
	q.endBatch()
}

// endBatch forgets the batch taken last: its segments must not stay
// reachable from here once written (a large one would outlive its use).
func (q *sendQueue) endBatch() {
	clear(q.flying)
	q.flying = q.flying[:0]
	clear(q.flyingSegs)
	q.flyingSegs = q.flyingSegs[:0]
}

// unsentApps returns how many application messages were queued but never
// written in full; final once finished is closed.
func (q *sendQueue) unsentApps() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.appsQueued - q.appsWritten
}

// takeToken gives the caller the write token if nobody writes and bytes
// are ready (the reader before it reads).
func (q *sendQueue) takeToken() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.grab()
}

// takeDirect gives the caller the token for writing a message straight
// from its own memory, when that keeps the order: nobody writes, nothing
// is queued or held, and the barrier is down. The caller then counts the
// message (countDirect) and writes it.
func (q *sendQueue) takeDirect() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.busy || q.closed || q.aborted || q.holding || !q.binary || q.n > 0 {
		return false
	}
	q.busy = true
	q.binOut++
	q.appsQueued++
	q.flying = append(q.flying[:0], segMeta{apps: 1, bin: true}) // a batch of one message
	q.flyingSegs = q.flyingSegs[:0]
	return true
}

// putBack returns what a cut write left over; it goes out first, ahead of
// everything appended meanwhile, which came after it. transition says the
// cut batch ended with the transition line, so the next take stops after
// it again. owned marks the leftovers that are ours (leftovers of a
// caller's memory were copied first).
func (q *sendQueue) putBack(rest [][]byte, owned []bool, transition bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	// rest is the tail of the batch taken last (a direct write's, merged
	// into one segment, is a batch of one): the messages of the segments
	// before it were written; those ending in rest were not.
	tail := make([]segMeta, len(rest))
	if k, n := len(rest), len(q.flying); k > 0 && k <= n {
		copy(tail, q.flying[n-k:])
		if n-k < len(q.flyingSegs) {
			orig := q.flyingSegs[n-k]
			tail[0] = cutMeta(tail[0], orig, len(orig)-len(rest[0]))
		} else {
			tail[0].cut = true // a direct write's copied rest: one message
		}
		q.flying = q.flying[:n-k]
	}
	q.written()
	if q.aborted {
		if q.keepUnsent {
			// Taken before what abort kept: it goes first.
			lost := make([]unsentSeg, len(rest))
			for i, b := range rest {
				lost[i] = unsentSeg{b: b, meta: tail[i]}
			}
			q.unsent = append(lost, q.unsent...)
			return
		}
		for i, b := range rest {
			if owned[i] {
				releaseSeg(b)
			}
		}
		return
	}
	q.ready.seal()
	for _, b := range rest {
		// Back from the write that took it (still charged), or, from a
		// direct write, new to the queue.
		back := min(len(b), q.flight)
		q.flight -= back
		q.n += back
		q.addN(len(b) - back)
	}
	q.over.Store(q.n > q.max)
	q.ready.list = append(rest, q.ready.list...)
	q.ready.owned = append(owned, q.ready.owned...)
	q.ready.meta = append(tail, q.ready.meta...)
	if transition {
		q.stopAt = len(rest)
	} else if q.stopAt > 0 {
		q.stopAt += len(rest)
	}
}

// finishWrite releases the budget's charge of what the token holder took
// and did not put back: written, or dropped with a failed write. The
// holder calls it once its write has returned. Only the token's holder
// touches flight (take and putBack are its calls too), and the token
// passes under q.mu, so no lock is needed here.
func (q *sendQueue) finishWrite() {
	if q.bud == nil || q.flight == 0 {
		return
	}
	n := q.flight
	q.flight = 0
	q.bud.charge(-n)
}

// giveBack returns the write token after a write; more reports that bytes
// are ready and the token was kept for the caller to hand to a writer
// goroutine.
func (q *sendQueue) giveBack() (more bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.aborted && !q.ready.empty() {
		return true
	}
	q.busy = false
	q.checkFinished()
	return false
}

// yieldToken gives the token back without writing what is ready: the
// reader writes it before its first read (see tokenPolicy leave).
func (q *sendQueue) yieldToken() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.busy = false
	q.checkFinished()
}

// setReaderBusy marks a handler running on the reading goroutine (see
// pushReply).
func (q *sendQueue) setReaderBusy(b bool) { q.readerBusy.Store(b) }

// close refuses application messages from now on; what is queued is still
// written (a graceful close). The token is the caller's as with push.
func (q *sendQueue) close() pushed {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	if q.waiters > 0 {
		close(q.space)
		q.space = make(chan struct{})
	}
	r := q.afterAdd(true)
	q.checkFinished()
	return r
}

// abort drops everything queued or held: the socket is gone.
func (q *sendQueue) abort() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed, q.aborted, q.holding = true, true, false
	if q.keepUnsent {
		q.ready.keep(&q.unsent)
		q.held.keep(&q.unsent)
	}
	q.ready.drop()
	q.held.drop()
	q.addN(-q.n)
	q.stopAt = 0
	if q.waiters > 0 {
		close(q.space)
		q.space = make(chan struct{})
	}
	q.checkFinished()
}

// checkFinished closes finished when a closed queue has nothing left to
// write and nobody writes; q.mu held.
func (q *sendQueue) checkFinished() {
	if q.closed && !q.isDone && !q.busy && !q.holding && q.ready.empty() && q.held.empty() {
		q.isDone = true
		close(q.finished)
	}
}

// addN changes the bytes queued and its mirror for overLimit; q.mu held.
func (q *sendQueue) addN(d int) {
	q.n += d
	q.over.Store(q.n > q.max)
	if q.bud != nil {
		q.bud.charge(d)
	}
}

// overLimit reports whether more than max bytes are queued or held (as of
// the last change: the reader uses it as a hint per message).
func (q *sendQueue) overLimit() bool { return q.over.Load() }

// queued returns the bytes queued or held.
func (q *sendQueue) queued() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}

// isBinary reports the transmit mode.
func (q *sendQueue) isBinary() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.binary
}

func (q *sendQueue) counts() (jsonOut, binOut uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.jsonOut, q.binOut
}

// releaseSeg makes a written segment of ours available again: small ones
// as open segments (bufPool), large ones as large segments or frame
// buffers (framePools).
func releaseSeg(b []byte) {
	if cap(b) <= poolMax {
		b = b[:0]
		bufPool.Put(&b)
	} else {
		putFrame(b)
	}
}
