package wire

import (
	"io"
	"math/rand/v2"
	"testing"
)

// The helpers here feed one byte stream to a Decoder cut in different ways.
// Fragmentation equivalence (RELIABILITY.md R4) is the property that no cut
// changes what the Decoder reads: the transcript test and the fuzz targets
// both rely on them.

// decodeResult is everything a Decoder made of a stream, in comparable form.
type decodeResult struct {
	Outs []outcome
	Err  string // terminal error text; "" for a clean io.EOF
}

// eofChunkReader is a chunkReader that returns io.EOF together with its last
// bytes, as some readers do, instead of on the next call.
type eofChunkReader struct{ chunkReader }

func (r *eofChunkReader) Read(p []byte) (int, error) {
	n, err := r.chunkReader.Read(p)
	if err != nil {
		return n, err
	}
	for _, c := range r.chunks {
		if len(c) > 0 {
			return n, nil
		}
	}
	return n, io.EOF
}

// decodeOpts says how a stream is decoded.
type decodeOpts struct {
	term        []byte // nil: "\n"
	limit       int    // 0: DefaultMaxMessage
	binary      bool   // start in binary mode
	eofWithLast bool   // deliver io.EOF with the last bytes
}

// decodeChunks decodes chunks, one per Read, with a fresh Decoder.
func decodeChunks(t testing.TB, chunks [][]byte, o decodeOpts) decodeResult {
	t.Helper()
	var r io.Reader
	if o.eofWithLast {
		r = &eofChunkReader{chunkReader{chunks: chunks}}
	} else {
		r = &chunkReader{chunks: chunks}
	}
	d := NewDecoder(r, o.term, o.limit)
	if o.binary {
		d.SwitchToBinary()
	}
	outs, err := decodeAll(t, d)
	return decodeResult{Outs: outs, Err: errText(err)}
}

// randomCuts returns increasing offsets in (0, n) cutting n bytes into
// chunks. Each call picks a largest chunk size first, so a series of calls
// mixes byte-sized, small and large chunks.
func randomCuts(rng *rand.Rand, n int) []int {
	maxSizes := [...]int{2, 3, 8, 40, 200, n}
	max := maxSizes[rng.IntN(len(maxSizes))]
	if max < 1 {
		max = 1
	}
	var cuts []int
	for at := 1 + rng.IntN(max); at < n; at += 1 + rng.IntN(max) {
		cuts = append(cuts, at)
	}
	return cuts
}

// stepReader returns b in reads of at most step bytes, then io.EOF. It does
// not allocate, so allocation tests count the Decoder alone.
type stepReader struct {
	b         []byte
	step, off int
}

func (r *stepReader) Read(p []byte) (int, error) {
	if r.off == len(r.b) {
		return 0, io.EOF
	}
	if len(p) > r.step {
		p = p[:r.step]
	}
	n := copy(p, r.b[r.off:])
	r.off += n
	return n, nil
}
