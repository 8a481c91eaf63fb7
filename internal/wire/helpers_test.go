package wire

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// vectorsDir finds shared/vectors: $SOCKHOP_VECTORS, or the first
// shared/vectors found walking up from the package directory. The vectors
// are the reference, so a missing folder fails the test instead of skipping.
func vectorsDir(t testing.TB) string {
	t.Helper()
	if dir := os.Getenv("SOCKHOP_VECTORS"); dir != "" {
		if _, err := os.Stat(filepath.Join(dir, "binary-frames.jsonl")); err != nil {
			t.Fatalf("SOCKHOP_VECTORS=%s: %v", dir, err)
		}
		return dir
	}
	dir, err := os.Getwd()
	noErr(t, err)
	for {
		cand := filepath.Join(dir, "shared", "vectors")
		if _, err := os.Stat(filepath.Join(cand, "binary-frames.jsonl")); err == nil {
			return cand
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("golden vectors not found: no shared/vectors above the package directory and SOCKHOP_VECTORS unset")
		}
		dir = parent
	}
}

// readJSONL decodes every line of a vectors .jsonl file into a T.
func readJSONL[T any](t testing.TB, name string) []T {
	t.Helper()
	f, err := os.Open(filepath.Join(vectorsDir(t), name))
	noErr(t, err)
	defer f.Close()
	var rows []T
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var r T
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("%s line %d: %v", name, len(rows)+1, err)
		}
		rows = append(rows, r)
	}
	noErr(t, sc.Err())
	if len(rows) == 0 {
		t.Fatalf("%s: no rows", name)
	}
	return rows
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	noErr(t, err)
	return b
}

func noErr(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
}

func equal[T any](t testing.TB, what string, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\n got  %#v\n want %#v", what, got, want)
	}
}

func equalBytes(t testing.TB, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Errorf("%s:\n got  %x\n want %x\n got  %q\n want %q", what, got, want, got, want)
	}
}

// chunkReader returns its chunks one per Read (splitting a chunk only when
// the caller's buffer is smaller), then io.EOF.
type chunkReader struct {
	chunks [][]byte
	read   int64
}

func (r *chunkReader) Read(p []byte) (int, error) {
	for len(r.chunks) > 0 && len(r.chunks[0]) == 0 {
		r.chunks = r.chunks[1:]
	}
	if len(r.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.chunks[0])
	r.chunks[0] = r.chunks[0][n:]
	r.read += int64(n)
	return n, nil
}

// splitAt cuts b at the given increasing offsets.
func splitAt(b []byte, cuts ...int) [][]byte {
	var out [][]byte
	prev := 0
	for _, c := range cuts {
		out = append(out, b[prev:c])
		prev = c
	}
	return append(out, b[prev:])
}

// outcome is one result of Decoder.Next in a comparable form.
type outcome struct {
	Err     string // DecodeError code, or the terminal error's text
	Kind    Kind
	Type    string
	HasType bool
	Data    string
	Bytes   bool
	ID      string
	RawID   string
	Binary  bool
}

func (o outcome) String() string {
	if o.Err != "" {
		return "error " + o.Err
	}
	return fmt.Sprintf("%s bin=%v type=%q(has=%v) bytes=%v data=%q id=%q raw=%q", o.Kind, o.Binary, o.Type, o.HasType, o.Bytes, o.Data, o.ID, o.RawID)
}

func toOutcome(m Message) outcome {
	return outcome{Kind: m.Kind, Type: m.Type, HasType: m.HasType, Data: string(m.Data), Bytes: m.Bytes,
		ID: m.ID, RawID: string(m.RawID), Binary: m.Binary}
}

// decodeAll runs d to the end of its stream and returns every message and
// per-message error, then the terminal error (nil for a clean io.EOF). It
// fails the test if a decoded slice is not a valid view (the properties the
// fuzz targets check too).
func decodeAll(t testing.TB, d *Decoder) ([]outcome, error) {
	t.Helper()
	var out []outcome
	for i := 0; ; i++ {
		if i > 1<<20 {
			t.Fatal("decoder does not terminate")
		}
		m, err := d.Next()
		var de *DecodeError
		switch {
		case err == nil:
			out = append(out, toOutcome(m))
		case errors.As(err, &de):
			if de.Code == "" {
				t.Fatalf("DecodeError without a code: %v", err)
			}
			out = append(out, outcome{Err: de.Code})
		case errors.Is(err, io.EOF):
			return out, nil
		default:
			return out, err
		}
	}
}
