package wire

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// memLedger is a SetMemory accountant: it grants frame buffers in steps
// (GrowStep, as the server's budget does when short) and records what is
// held.
type memLedger struct {
	held     int
	peak     int
	reserves []int
}

func (l *memLedger) reserve(have, need int) (int, error) {
	size := need
	if have < need {
		size = GrowStep(have, need)
	}
	l.reserves = append(l.reserves, size)
	l.held += size
	l.peak = max(l.peak, l.held)
	return size, nil
}

func (l *memLedger) give(n int) { l.held -= n }

// TestDecoderFrameGrowsWithBytes: with SetMemory, a large frame's buffer
// is made as its bytes arrive, not from the size its header announces; a
// peer that sends only a header holds the first step; everything reserved
// is given back (the handed-out frame by its taker).
func TestDecoderFrameGrowsWithBytes(t *testing.T) {
	body := bytes.Repeat([]byte("x"), 1<<20)
	frame, err := AppendFrame(nil, &Message{Type: "Blob", Data: body, Bytes: true})
	noErr(t, err)

	t.Run("whole frame", func(t *testing.T) {
		l := &memLedger{}
		d := NewDecoder(&chunkReader{chunks: splitAt(frame, 5, 1000, 70000, 300000)}, nil, 0)
		d.SwitchToBinary()
		d.SetMemory(l.reserve, l.give)
		m, err := d.Next()
		noErr(t, err)
		equalBytes(t, "data", m.Data, body)
		if !m.Owned || len(m.Frame) != len(frame) {
			t.Fatalf("frame not handed out whole: owned %t, %d bytes", m.Owned, len(m.Frame))
		}
		// 64 KiB first, then four times what had arrived, then the whole
		// frame (four times would be more than half of it).
		equal(t, "reserve steps", l.reserves, []int{64 << 10, 256 << 10, len(frame)})
		equal(t, "4 MiB frame steps", []int{GrowStep(5, 4<<20), GrowStep(64<<10, 4<<20), GrowStep(256<<10, 4<<20), GrowStep(1<<20, 4<<20)}, []int{64 << 10, 256 << 10, 1 << 20, 4 << 20})
		equal(t, "held (the handed-out frame)", l.held, len(frame))
		l.give(len(m.Frame))
		_, err = d.Next()
		if !errors.Is(err, io.EOF) {
			t.Fatalf("after the frame: %v", err)
		}
		d.Release()
		equal(t, "held after Release", l.held, 0)
	})
	t.Run("header only", func(t *testing.T) {
		l := &memLedger{}
		d := NewDecoder(bytes.NewReader(frame[:5]), nil, 0)
		d.SwitchToBinary()
		d.SetMemory(l.reserve, l.give)
		_, err := d.Next()
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("header only: %v", err)
		}
		equal(t, "peak held", l.peak, 64<<10)
		d.Release()
		equal(t, "held after the stream ended", l.held, 0)
	})
	t.Run("reserve refuses", func(t *testing.T) {
		refused := errors.New("no budget")
		held := 0
		d := NewDecoder(bytes.NewReader(frame), nil, 0)
		d.SwitchToBinary()
		d.SetMemory(func(have, need int) (int, error) {
			if have > 0 {
				return 0, refused
			}
			held += 64 << 10
			return 64 << 10, nil
		}, func(n int) { held -= n })
		_, err := d.Next()
		if !errors.Is(err, refused) {
			t.Fatalf("Next: %v, want the reserve's error", err)
		}
		equal(t, "held after refusal", held, 0)
	})
	t.Run("long line", func(t *testing.T) {
		// A line longer than the pooled read buffer grows it, reserved
		// whole, and gives it back once drained.
		l := &memLedger{}
		line := `{"type":"Long","data":"` + strings.Repeat("y", 200<<10) + "\"}\n"
		d := NewDecoder(strings.NewReader(line), nil, 0)
		d.SetMemory(l.reserve, l.give)
		m, err := d.Next()
		noErr(t, err)
		equal(t, "type", m.Type, "Long")
		if l.peak == 0 {
			t.Fatal("the grown read buffer was not reserved")
		}
		_, err = d.Next()
		if !errors.Is(err, io.EOF) {
			t.Fatalf("after the line: %v", err)
		}
		d.Release()
		equal(t, "held after Release", l.held, 0)
	})
}
