package sockhop

import (
	"math/bits"
	"sync"
)

// Buffers of large binary frames (64 KiB and more), read into directly by
// the decoder, and of large base64 Buffers decoded from JSON lines, come
// from framePools and go back there when the handler calls
// Message.Release; so do the read buffers the decoder grows for long lines
// (back once drained) and the large segments of the write queue (back once
// written). A handler that receives megabyte buffers at disk
// speed otherwise has the GC clean up after every few of them: measured in
// s3 (256 x 1 MiB typed buffers), releasing them took the receiving server
// from about 850 to about 500 µs of CPU per MiB.
//
// Pools are per power-of-two class of the capacity; a buffer is made with
// exactly the size asked for (an unreleased buffer wastes nothing), and is
// taken again for any frame of its class it is large enough for. sync.Pool
// drops what stays unused across two collections.
var framePools [64]sync.Pool

// getFrame returns a buffer of length n for a large frame.
func getFrame(n int) []byte {
	p := &framePools[bits.Len(uint(n))-1]
	if v := p.Get(); v != nil {
		b := *v.(*[]byte)
		if cap(b) >= n {
			return b[:n]
		}
		p.Put(v) // smaller of the same class: keep it for a frame it fits
	}
	return make([]byte, n)
}

// putFrame makes b available to getFrame again.
func putFrame(b []byte) {
	if cap(b) == 0 {
		return
	}
	framePools[bits.Len(uint(cap(b)))-1].Put(&b)
}
