package main

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	sockhop "github.com/sockhop/sockhop-go"
)

// transcript is the capture format of shared/vectors/transcripts: every
// forwarded read in order, per connection and direction, and each
// direction's bytes concatenated. sniff --record writes it; replay reads
// it (files of shared/vectors included; fields it does not use are kept
// out of the struct).
type transcript struct {
	Scenario      string             `json:"scenario"`
	Description   string             `json:"description"`
	GeneratedWith map[string]string  `json:"generated_with,omitempty"`
	Chunks        []tChunk           `json:"chunks"`
	Streams       map[string]tStream `json:"streams,omitempty"`
	Truncated     bool               `json:"truncated,omitempty"`
}

// tChunk is one read the relay forwarded, or the end of a direction.
type tChunk struct {
	Conn   int     `json:"conn"`
	Dir    string  `json:"dir"`
	TMs    float64 `json:"t_ms"`
	Hex    string  `json:"hex,omitempty"`
	EOF    bool    `json:"eof,omitempty"`
	Reason string  `json:"reason,omitempty"` // why a direction ended, when not by a FIN
}

type tStream struct {
	Hex    string `json:"hex"`
	Length int    `json:"length"`
}

// recordMax bounds the bytes a recording holds in memory (it is written
// when sniff stops).
const recordMax = 64 << 20

// recorder collects a sniff run's chunks for --record.
type recorder struct {
	file  string
	start time.Time

	mu      sync.Mutex
	chunks  []tChunk
	bytes   int
	full    bool
	streams map[string][]byte
	conns   map[uint64]bool
}

func newRecorder(file string, start time.Time) *recorder {
	return &recorder{file: file, start: start, streams: map[string][]byte{}, conns: map[uint64]bool{}}
}

// add records b forwarded in direction dir of relay connection n (counted
// from 1; transcripts count from 0). It reports false once the recording is
// full, the first time only, for sniff to say so.
func (r *recorder) add(n uint64, dir string, b []byte) (filled bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.full {
		return false
	}
	if r.bytes+len(b) > recordMax {
		r.full = true
		return true
	}
	r.bytes += len(b)
	r.conns[n] = true
	r.chunks = append(r.chunks, tChunk{Conn: int(n - 1), Dir: dir, TMs: r.since(), Hex: hex.EncodeToString(b)})
	key := fmt.Sprintf("%d:%s", n-1, dir)
	r.streams[key] = append(r.streams[key], b...)
	return false
}

// end records that direction dir ended; reason is "" for a FIN.
func (r *recorder) end(n uint64, dir, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.full {
		return
	}
	r.conns[n] = true
	r.chunks = append(r.chunks, tChunk{Conn: int(n - 1), Dir: dir, TMs: r.since(), EOF: true, Reason: reason})
}

func (r *recorder) since() float64 {
	return float64(time.Since(r.start).Microseconds()) / 1000
}

// write writes the transcript, through a temporary file so that a reader
// never sees half of it.
func (r *recorder) write(description string) error {
	r.mu.Lock()
	t := transcript{
		Scenario:      strings.TrimSuffix(filepath.Base(r.file), filepath.Ext(r.file)),
		Description:   description,
		GeneratedWith: map[string]string{"sockhop-go": sockhop.Version},
		Chunks:        r.chunks,
		Streams:       map[string]tStream{},
		Truncated:     r.full,
	}
	for key, b := range r.streams {
		conn, dir, _ := strings.Cut(key, ":")
		name := dir
		if len(r.conns) > 1 {
			name = "conn" + conn + ":" + dir
		}
		t.Streams[name] = tStream{Hex: hex.EncodeToString(b), Length: len(b)}
	}
	r.mu.Unlock()
	if t.Chunks == nil {
		t.Chunks = []tChunk{}
	}
	b, err := json.MarshalIndent(&t, "", " ")
	if err != nil {
		return err
	}
	tmp := r.file + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing the --record transcript: %w", err)
	}
	if err := os.Rename(tmp, r.file); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing the --record transcript: %w", err)
	}
	return nil
}
