package wire

import (
	"bytes"
	"encoding/json"
	"testing"
)

// Benchmarks for the per-message cost of the codecs. The aim (DESIGN.md)
// is that framing a small object costs json.Marshal plus under 60 ns and no
// allocation beyond Marshal's, that decoding a small message allocates
// nothing, and that a large typed buffer is copied at most once either way.
// BenchmarkJSONMarshalSmall is the baseline the encode numbers compare to.

// smallObject is the typical application message of the benchmarks.
type smallObject struct {
	Seq  int    `json:"seq"`
	Name string `json:"name"`
	Vals []int  `json:"vals"`
}

var small = smallObject{Seq: 1, Name: "widget", Vals: []int{1, 2, 3}}

// replayReader returns its bytes over and over without allocating.
type replayReader struct {
	b   []byte
	off int
}

func (r *replayReader) Read(p []byte) (int, error) {
	n := copy(p, r.b[r.off:])
	if r.off += n; r.off == len(r.b) {
		r.off = 0
	}
	return n, nil
}

// repeated returns msg repeated to fill about 64 KiB (whole messages).
func repeated(msg []byte) []byte {
	n := (64 << 10) / len(msg)
	if n < 1 {
		n = 1
	}
	return bytes.Repeat(msg, n)
}

func smallData(b *testing.B) []byte {
	data, err := Marshal(&small)
	if err != nil {
		b.Fatal(err)
	}
	return data
}

func BenchmarkJSONMarshalSmall(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(smallData(b))))
	for b.Loop() {
		if _, err := json.Marshal(&small); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMarshalSmall(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(smallData(b))))
	for b.Loop() {
		if _, err := Marshal(&small); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeSmallBinary(b *testing.B) {
	b.ReportAllocs()
	var buf []byte
	for b.Loop() {
		data, err := Marshal(&small)
		if err != nil {
			b.Fatal(err)
		}
		buf, err = AppendFrame(buf[:0], &Message{Type: "Object", Data: data})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkEncodeSmallJSONLine(b *testing.B) {
	b.ReportAllocs()
	term := []byte("\n")
	var buf []byte
	for b.Loop() {
		data, err := Marshal(&small)
		if err != nil {
			b.Fatal(err)
		}
		buf = AppendJSONLine(buf[:0], &Message{Type: "Object", Data: data}, term)
	}
	b.SetBytes(int64(len(buf)))
}

// BenchmarkAppendFrameSmall and BenchmarkAppendJSONLineSmall isolate the
// framing cost: the part of an encode that is not Marshal.
func BenchmarkAppendFrameSmall(b *testing.B) {
	b.ReportAllocs()
	m := &Message{Type: "Object", Data: smallData(b)}
	var buf []byte
	for b.Loop() {
		var err error
		if buf, err = AppendFrame(buf[:0], m); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkAppendJSONLineSmall(b *testing.B) {
	b.ReportAllocs()
	m := &Message{Type: "Object", Data: smallData(b)}
	term := []byte("\n")
	var buf []byte
	for b.Loop() {
		buf = AppendJSONLine(buf[:0], m, term)
	}
	b.SetBytes(int64(len(buf)))
}

// BenchmarkEncodeSmallBinaryAppend marshals into the frame buffer's tail
// (AppendMarshal) instead: no allocation at all per message.
func BenchmarkEncodeSmallBinaryAppend(b *testing.B) {
	b.ReportAllocs()
	var data, buf []byte
	for b.Loop() {
		var err error
		data, err = AppendMarshal(data[:0], &small)
		if err != nil {
			b.Fatal(err)
		}
		buf, err = AppendFrame(buf[:0], &Message{Type: "Object", Data: data})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(buf)))
}

func smallFrame(b *testing.B) []byte {
	f, err := AppendFrame(nil, &Message{Type: "Object", Data: smallData(b)})
	if err != nil {
		b.Fatal(err)
	}
	return f
}

func smallLine(b *testing.B) []byte {
	return AppendJSONLine(nil, &Message{Type: "Object", Data: smallData(b)}, []byte("\n"))
}

// benchDecode reads b.N messages from msg repeated.
func benchDecode(b *testing.B, msg []byte, binary bool, unmarshal bool) {
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	d := NewDecoder(&replayReader{b: repeated(msg)}, nil, 0)
	if binary {
		d.SwitchToBinary()
	}
	var obj smallObject
	for b.Loop() {
		m, err := d.Next()
		if err != nil {
			b.Fatal(err)
		}
		if unmarshal {
			if err := json.Unmarshal(m.Data, &obj); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func BenchmarkDecodeSmallBinary(b *testing.B)   { benchDecode(b, smallFrame(b), true, false) }
func BenchmarkDecodeSmallJSONLine(b *testing.B) { benchDecode(b, smallLine(b), false, false) }

// The ...ToStruct benchmarks add the application's json.Unmarshal.
func BenchmarkDecodeSmallBinaryToStruct(b *testing.B)   { benchDecode(b, smallFrame(b), true, true) }
func BenchmarkDecodeSmallJSONLineToStruct(b *testing.B) { benchDecode(b, smallLine(b), false, true) }

const bigSize = 1 << 20

var bigData = bytes.Repeat([]byte{0x5a}, bigSize)

// BenchmarkEncode1MiBHeader writes only the fixed part of a 1 MiB typed
// buffer's frame; the payload goes to the socket from its own buffer
// (net.Buffers), so the MB/s counts the payload that was not copied.
func BenchmarkEncode1MiBHeader(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(bigSize)
	m := &Message{Type: "Blob", Bytes: true}
	buf := make([]byte, 0, 64)
	for b.Loop() {
		buf = AppendFrameHeader(buf[:0], m, len(bigData))
	}
}

// BenchmarkEncode1MiBFrame copies the payload into a reused frame buffer.
func BenchmarkEncode1MiBFrame(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(bigSize)
	m := &Message{Type: "Blob", Bytes: true, Data: bigData}
	var buf []byte
	for b.Loop() {
		var err error
		if buf, err = AppendFrame(buf[:0], m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecode1MiB reads 1 MiB typed buffers: one allocation of the
// frame's size per message, filled straight from the reader.
func BenchmarkDecode1MiB(b *testing.B) {
	frame, err := AppendFrame(nil, &Message{Type: "Blob", Bytes: true, Data: bigData})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(bigSize)
	d := NewDecoder(&replayReader{b: frame}, nil, 0)
	d.SwitchToBinary()
	for b.Loop() {
		m, err := d.Next()
		if err != nil || len(m.Data) != bigSize {
			b.Fatal(len(m.Data), err)
		}
	}
}
