package sockhop

import (
	"bytes"
	"io"

	"github.com/sockhop/sockhop-go/internal/wire"
)

// What a dead connection never wrote, turned back into messages so that a
// client with a reconnect buffer sends them again after the reconnect
// (sendQueue.keepUnsent). The queue keeps encoded bytes, not messages:
// they are decoded again here, in the mode each segment was written in.

// recoverUnsent returns the plain messages of segs that were never written
// at all, in order, and how many others are lost without their sender
// having been told: replies, and messages written only in part. Requests
// are neither: their callers got ErrDisconnected when the connection
// ended. Protocol messages (handshake, transition, pings) are skipped.
func recoverUnsent(segs []unsentSeg, term []byte) (plain []heldMsg, lost int) {
	for _, u := range segs {
		data, written := u.b, 0
		if u.meta.cut {
			if u.meta.orig == nil {
				// The copied rest of a direct write: one message, begun.
				lost += int(u.meta.apps)
				continue
			}
			data, written = u.meta.orig, u.meta.off
		}
		dec := wire.NewDecoder(bytes.NewReader(data), term, len(data)+1)
		if u.meta.bin {
			dec.SwitchToBinary()
		}
		end := 0
		for {
			m, err := dec.Next()
			if err != nil {
				if err != io.EOF {
					// Our own bytes always decode; if not, what is left
					// is counted, not guessed at.
					lost += int(u.meta.apps)
				}
				break
			}
			start := end
			end += m.Size + len(term)
			if m.Binary {
				end = start + m.Size + wire.FrameHeaderLen
			}
			switch {
			case end <= written, m.Reserved():
				// Written in full, or the protocol's own.
			case m.Kind == wire.Request:
				// Its caller was told (ErrDisconnected).
			case start < written || m.Kind == wire.Response:
				lost++ // written in part, or a reply for a peer that is gone
			default:
				body := wire.Message{Type: m.Type, Data: append([]byte(nil), m.Data...), Bytes: m.Bytes}
				plain = append(plain, heldMsg{body: body, typed: m.IsTypedBuffer()})
			}
		}
	}
	return plain, lost
}
