package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"sync"
	"sync/atomic"
)

// Default limits (shared/RELIABILITY.md).
const (
	DefaultMaxMessage = 4 << 20
	// ownedFrameMin is the frame size from which a frame gets a buffer of
	// its own, read into directly: the payload is then handed to the caller
	// without another copy and the shared read buffer stays small.
	ownedFrameMin = 64 << 10
	readMin       = 4 << 10
	readMax       = 64 << 10
	// idleRead is the size of the buffer a drained Decoder waits for the
	// next bytes in: a connection that sits idle (most of a server's) holds
	// this, not a read buffer; the read buffer (readBufSize, pooled) is
	// taken when more bytes come than fit, and given back when drained.
	idleRead    = 512
	readBufSize = 8 << 10
	// maxEmptyReads consecutive (0, nil) reads end the stream with
	// io.ErrNoProgress instead of spinning, as bufio.Reader does.
	maxEmptyReads = 100
)

// Decoder reads Sockhop messages from a byte stream. It starts in JSON mode
// and switches to binary frames at the first byte after a
// SockhopBinaryModeTransition line (PROTOCOL.md 5.5), even when that byte
// arrived in the same read as the line.
//
// Every length is checked against the limit before anything is buffered for
// it: a frame header announcing more than the limit, or a line growing past
// it without a terminator, ends the stream with a *SizeError: nothing is
// read for a frame whose header is over the limit, and at most limit +
// terminator + 4 KiB of a line.
//
// A Decoder is not safe for concurrent use.
type Decoder struct {
	r      io.Reader
	term   []byte
	limit  atomic.Int64 // the only field safe to set from another goroutine
	binary bool
	lazy   bool // SetLazyJSON

	buf        []byte
	start, end int // pending bytes are buf[start:end]
	scanned    int // JSON mode: pending bytes already searched for term
	want       int // binary mode: size of the frame being waited for
	names      nameCache
	alloc      func(n int) []byte                // buffers of large frames (SetFrameAlloc)
	free       func(b []byte)                    // takes back grown read buffers
	reserve    func(have, need int) (int, error) // SetMemory
	give       func(n int)                       // SetMemory
	reserved   int                               // bytes reserved for buf
	empty      int                               // consecutive reads that returned no bytes and no error
	err        error                             // sticky: the stream is finished
	idle       [idleRead]byte                    // buf while drained (see idleRead)
	owning     int                               // bytes of a large frame read so far into its own buffer
}

// readBufs are the pooled read buffers of every Decoder.
var readBufs = sync.Pool{New: func() any { return new([readBufSize]byte) }}

// setBuf makes b the read buffer, giving a pooled one back.
func (d *Decoder) setBuf(b []byte) {
	switch c := cap(d.buf); {
	case c == readBufSize:
		readBufs.Put((*[readBufSize]byte)(d.buf[:readBufSize]))
	case c > readBufSize && d.free != nil:
		d.free(d.buf)
	}
	if d.reserved > 0 {
		d.give(d.reserved)
		d.reserved = 0
	}
	d.buf = b
}

// NewDecoder returns a Decoder reading from r, splitting JSON lines on term
// (nil means "\n") and refusing messages over limit bytes (0 means
// DefaultMaxMessage).
func NewDecoder(r io.Reader, term []byte, limit int) *Decoder {
	if len(term) == 0 {
		term = []byte{'\n'}
	}
	if limit <= 0 {
		limit = DefaultMaxMessage
	}
	d := &Decoder{r: r, term: term}
	d.limit.Store(int64(limit))
	return d
}

// SetLimit changes the message size limit from the next check on; it may
// be called from another goroutine while Next is waiting for input (the
// connection raises the limit when its handshake ends, on a timer).
func (d *Decoder) SetLimit(n int) {
	if n <= 0 {
		n = DefaultMaxMessage
	}
	d.limit.Store(int64(n))
}

// SetFrameAlloc makes the Decoder take the buffers of large frames (those
// read into a buffer of their own) and of large base64 Buffers decoded from
// JSON lines from alloc, which returns a slice of length n (see
// Message.Frame). It also takes the read buffer it grows for a long line
// from alloc, and hands it to free once drained. Call it before the first
// Next.
func (d *Decoder) SetFrameAlloc(alloc func(n int) []byte, free func(b []byte)) {
	d.alloc, d.free = alloc, free
}

// SetMemory makes the Decoder account for the large buffers it makes:
// read buffers grown past the pooled size (long lines) and the buffers of
// frames of 64 KiB and more. Before making one, it calls reserve(have,
// need): need is the buffer's full size and have the bytes of it already
// received; reserve returns how many bytes to make now, at most need and
// more than have (a frame's buffer then grows as its bytes arrive, so a
// header alone never costs the size it announces), or an error, which
// ends the stream. give(n) is called when the Decoder lets go of a buffer
// of n bytes it reserved; the buffer of a frame handed out in a Message
// (Owned) is the caller's to give back: len(m.Frame) bytes. A read
// buffer's reserve must grant need whole. Call it before the first Next.
func (d *Decoder) SetMemory(reserve func(have, need int) (int, error), give func(n int)) {
	d.reserve, d.give = reserve, give
}

// SetLazyJSON(true) leaves the JSON data of application messages in binary
// frames unvalidated (Message.Unchecked): a receiver that decodes the data
// anyway (encoding/json validates as it decodes) then does not pay for a
// second pass. Protocol messages (the reserved types) are still validated,
// and JSON lines always are: the envelope is parsed from the whole line.
// Call it before the first Next.
func (d *Decoder) SetLazyJSON(on bool) { d.lazy = on }

// Limit returns the current message size limit.
func (d *Decoder) Limit() int { return int(d.limit.Load()) }

// Binary reports whether the stream has switched to binary frames.
func (d *Decoder) Binary() bool { return d.binary }

// Buffered returns how many bytes are held waiting for the rest of a message.
func (d *Decoder) Buffered() int { return d.end - d.start }

// Partial returns how many bytes of the message being read have arrived:
// the bytes buffered, or those of a large frame read into its own buffer.
func (d *Decoder) Partial() int { return d.end - d.start + d.owning }

// Next returns the next message. A *DecodeError concerns one message only:
// it was skipped and the stream is still in sync, so Next may be called
// again. Any other error (a *SizeError, the reader's error, io.EOF at a
// message boundary, io.ErrUnexpectedEOF inside one) ends the stream and is
// returned again by later calls.
//
// The returned message's slices alias the Decoder's buffer unless m.Owned is
// set; they are valid until the next call.
func (d *Decoder) Next() (Message, error) {
	for {
		if d.binary {
			if m, ok, err := d.nextFrame(); ok || err != nil {
				return m, err
			}
		} else if m, ok, err := d.nextLine(); ok || err != nil {
			return m, err
		}
		if d.err != nil {
			if errors.Is(d.err, io.EOF) && d.end > d.start {
				return Message{}, io.ErrUnexpectedEOF
			}
			return Message{}, d.err
		}
		d.fill(d.want)
	}
}

// nextLine returns a complete line's message if one is buffered.
func (d *Decoder) nextLine() (Message, bool, error) {
	pending := d.buf[d.start:d.end]
	from := d.scanned - len(d.term) + 1
	if from < 0 {
		from = 0
	}
	i := bytes.Index(pending[from:], d.term)
	if i < 0 {
		d.scanned = len(pending)
		if len(pending) >= d.Limit()+len(d.term) {
			// Without a terminator, even one cut by the end of what was
			// read, the line has more than limit bytes. How many more
			// depends on how the reads fell, so it is not reported.
			return Message{}, false, d.fail(&SizeError{Size: int64(d.Limit()) + 1, AtLeast: true, Limit: d.Limit()})
		}
		return Message{}, false, nil
	}
	i += from
	line := pending[:i]
	d.start += i + len(d.term)
	d.scanned = 0
	if len(line) > d.Limit() {
		return Message{}, false, d.fail(&SizeError{Size: int64(len(line)), Limit: d.Limit()})
	}
	m, err := parseLine(line, &d.names, d.alloc)
	m.Size = len(line)
	if err == nil && m.HasType && m.Type == TypeTransition {
		d.binary = true
	}
	return m, true, err
}

// nextFrame returns a complete frame's message if one is buffered, reading a
// large frame straight into a buffer of its own.
func (d *Decoder) nextFrame() (Message, bool, error) {
	pending := d.buf[d.start:d.end]
	d.want = 0
	if len(pending) < frameHeaderLen {
		return Message{}, false, nil
	}
	size := binary.LittleEndian.Uint32(pending)
	if uint64(size) > uint64(d.Limit()) {
		return Message{}, false, d.fail(&SizeError{Size: int64(size), Limit: d.Limit(), Binary: true})
	}
	need := frameHeaderLen + int(size)
	if len(pending) < need {
		if need < ownedFrameMin {
			d.want = need
			return Message{}, false, nil
		}
		return d.readOwnedFrame(need)
	}
	d.start += need
	m, err := parsePayload(pending[4], pending[frameHeaderLen:need], &d.names, d.lazy)
	m.Size = int(size)
	return m, true, err
}

// readOwnedFrame reads the rest of a large frame into a buffer of its
// own, so its bytes are copied from the kernel once and the payload can be
// handed on without another copy. With SetMemory the buffer is made as
// large as reserve grants and grown as the bytes arrive.
func (d *Decoder) readOwnedFrame(need int) (Message, bool, error) {
	have := d.end - d.start
	frame, err := d.frameBuf(have, need)
	if err != nil {
		return Message{}, false, d.fail(err)
	}
	copy(frame, d.buf[d.start:d.end])
	d.start, d.end, d.scanned = 0, 0, 0
	defer func() { d.owning = 0 }()
	for empty := 0; have < need; {
		d.owning = have
		if have == len(frame) {
			nb, err := d.frameBuf(have, need)
			if err != nil {
				d.dropFrame(frame)
				return Message{}, false, d.fail(err)
			}
			copy(nb, frame)
			d.dropFrame(frame)
			frame = nb
		}
		n, err := d.r.Read(frame[have:])
		have += n
		if err != nil {
			if have < need {
				if errors.Is(err, io.EOF) {
					err = io.ErrUnexpectedEOF
				}
				d.dropFrame(frame)
				return Message{}, false, d.fail(err)
			}
			// The frame is complete; the error (often io.EOF delivered
			// with the last bytes) ends the stream after it.
			d.err = err
		}
		if n > 0 {
			empty = 0
		} else if empty++; empty >= maxEmptyReads {
			d.dropFrame(frame)
			return Message{}, false, d.fail(io.ErrNoProgress)
		}
	}
	m, err := parsePayload(frame[4], frame[frameHeaderLen:], &d.names, d.lazy)
	m.Owned, m.Frame, m.Size = true, frame, need-frameHeaderLen
	return m, true, err
}

// frameBuf makes the next buffer of a frame of need bytes, have of them
// received: whole, or as much as reserve grants.
func (d *Decoder) frameBuf(have, need int) ([]byte, error) {
	size := need
	if d.reserve != nil {
		var err error
		if size, err = d.reserve(have, need); err != nil {
			return nil, err
		}
		size = min(max(size, have+1), need)
	}
	if d.alloc != nil {
		return d.alloc(size), nil
	}
	return make([]byte, size), nil
}

// FrameStep is the first buffer GrowStep gives a large frame.
const FrameStep = 64 << 10

// GrowStep is the size of the next buffer of a frame of need bytes, have
// of them received, for a SetMemory reserve that grows frames with their
// bytes: FrameStep first, then four times what has arrived, and the whole
// frame once that is at least half of it. A frame is then copied less
// than a third of its size again as it grows, and a header alone costs
// FrameStep.
func GrowStep(have, need int) int {
	size := max(FrameStep, 4*have)
	if 2*size >= need {
		return need
	}
	return size
}

// dropFrame lets go of a frame buffer that is not handed out: one the
// frame outgrew, or that of a frame never finished. It is left to the
// collector rather than pooled (free): a pooled buffer is memory nobody
// accounts for, and under a memory budget frames grow in steps all the
// time, so the pool would hold a steady stock of them.
func (d *Decoder) dropFrame(b []byte) {
	if d.give != nil {
		d.give(len(b))
	}
}

func (d *Decoder) fail(err error) error {
	d.err = err
	return err
}

// fill reads once from the reader into the buffer, compacting or growing it
// first when less than readMin bytes are free.
func (d *Decoder) fill(need int) {
	pending := d.end - d.start
	if pending == 0 {
		d.start, d.end = 0, 0
		if cap(d.buf) != idleRead && need <= idleRead {
			// Drained: wait for the next bytes in the small buffer, and
			// take a read buffer again only when more come than fit.
			d.setBuf(d.idle[:])
		}
	}
	if cap(d.buf)-d.end < readMin && !(cap(d.buf) == idleRead && pending == 0) || cap(d.buf)-d.start < need {
		want := pending + readMin
		if want < need {
			want = need
		}
		if want <= cap(d.buf) && d.start > 0 {
			copy(d.buf[:cap(d.buf)], d.buf[d.start:d.end])
		} else {
			newCap := 2 * cap(d.buf)
			if newCap < want {
				newCap = want
			}
			if !d.binary {
				// A line never needs more than limit + terminator + the
				// read that shows it is too long (see below).
				if max := d.Limit() + len(d.term) + readMin; newCap > max && want <= max {
					newCap = max
				}
			} else if newCap > ownedFrameMin+readMax && want <= ownedFrameMin+readMax {
				newCap = ownedFrameMin + readMax
			}
			var nb []byte
			switch {
			case newCap <= readBufSize:
				nb = readBufs.Get().(*[readBufSize]byte)[:]
			default:
				if d.reserve != nil {
					if _, err := d.reserve(newCap, newCap); err != nil {
						d.err = err
						return
					}
				}
				if d.alloc != nil {
					nb = d.alloc(newCap)
				} else {
					nb = make([]byte, newCap)
				}
			}
			copy(nb, d.buf[d.start:d.end])
			d.setBuf(nb)
			if d.reserve != nil && newCap > readBufSize {
				d.reserved = newCap
			}
		}
		d.buf = d.buf[:cap(d.buf)]
		d.start, d.end = 0, pending
	}
	d.buf = d.buf[:cap(d.buf)]
	room := d.buf[d.end:]
	if !d.binary {
		// The pending bytes are one unterminated line (nextLine found no
		// terminator in them and they are under the limit): read no further
		// into it than needed to see it is too long, so an endless line is
		// refused after limit + terminator + readMin bytes, whatever the
		// buffer's size (RELIABILITY.md R3).
		if max := d.Limit() + len(d.term) + readMin - pending; max < len(room) {
			room = room[:max]
		}
	}
	n, err := d.r.Read(room)
	d.end += n
	if err != nil {
		d.err = err
	}
	if n > 0 {
		d.empty = 0
	} else if d.empty++; d.empty >= maxEmptyReads && d.err == nil {
		d.err = io.ErrNoProgress
	}
}

// Release lets go of the read buffer, giving back what SetMemory's reserve
// granted for it. Call it once the Decoder is no longer used.
func (d *Decoder) Release() {
	d.setBuf(d.idle[:])
	d.start, d.end, d.scanned = 0, 0, 0
}

// SwitchToBinary puts the stream in binary mode without a transition line:
// for tools and tests that start reading in the middle of a binary stream.
func (d *Decoder) SwitchToBinary() { d.binary = true }
