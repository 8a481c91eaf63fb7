package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
)

// reporter writes serve's events one line each: a JSON object for
// programs, readable text for people. Each line goes out in one Write under
// a lock, so events of concurrent sessions never interleave, and unbuffered,
// so a program reading a pipe sees each event as it happens.
type reporter struct {
	mu   sync.Mutex
	w    io.Writer
	json bool
}

// event is one line of serve's output. Field order is the JSON key order.
type event struct {
	Event       string `json:"event"`
	Session     uint64 `json:"session,omitempty"`
	Addr        string `json:"addr,omitempty"`
	Unix        string `json:"unix,omitempty"`
	Remote      string `json:"remote,omitempty"`
	Success     *bool  `json:"success,omitempty"`
	BinaryRx    *bool  `json:"binary_rx,omitempty"`
	BinaryTx    *bool  `json:"binary_tx,omitempty"`
	PeerVersion string `json:"peer_version,omitempty"`
	*shown             // type, data, base64 of a receive
	Request     bool   `json:"request,omitempty"`
	Error       string `json:"error,omitempty"`
}

func (r *reporter) emit(ev event) {
	var line []byte
	if r.json {
		line, _ = json.Marshal(ev) // nothing in an event can fail to encode
	} else {
		line = []byte(terminalSafe(readable(&ev)))
	}
	line = append(line, '\n')
	r.mu.Lock()
	defer r.mu.Unlock()
	_, _ = r.w.Write(line)
}

// readable renders an event for a person.
func readable(ev *event) string {
	who := ""
	if ev.Session != 0 {
		who = fmt.Sprintf("[%d] ", ev.Session)
	}
	switch ev.Event {
	case "listening":
		if ev.Unix != "" {
			return "listening on unix socket " + ev.Unix
		}
		return "listening on " + ev.Addr
	case "connect":
		return who + "connect from " + ev.Remote
	case "handshake":
		if !*ev.Success {
			return who + "handshake failed, staying in JSON mode: " + ev.Error
		}
		s := who + "handshake ok, " + modes(*ev.BinaryRx, *ev.BinaryTx)
		if ev.PeerVersion != "" {
			s += ", peer version " + ev.PeerVersion
		}
		return s
	case "binary":
		return who + "now " + modes(*ev.BinaryRx, *ev.BinaryTx)
	case "receive":
		s := who + "receive "
		if ev.Request {
			s = who + "request "
		}
		s += typeName(ev.Type)
		if ev.Base64 != nil {
			b, _ := base64.StdEncoding.DecodeString(*ev.Base64)
			return fmt.Sprintf("%s (%d bytes) %s", s, len(b), *ev.Base64)
		}
		if ev.Data == nil {
			return s + " (no data)"
		}
		return s + " " + string(ev.Data)
	case "disconnect":
		if ev.Error != "" {
			return who + "disconnect: " + ev.Error
		}
		return who + "disconnect"
	case "error":
		return who + "error: " + ev.Error
	}
	return who + ev.Event
}

// typeName shows a type name bare unless it would be ambiguous.
func typeName(t string) string {
	if t == "" || strings.ContainsAny(t, " \t\"{[") {
		return fmt.Sprintf("%q", t)
	}
	return t
}

func modes(rx, tx bool) string {
	name := map[bool]string{false: "JSON", true: "binary"}
	if rx == tx {
		return name[rx] + " mode both ways"
	}
	return fmt.Sprintf("receiving %s, sending %s", name[rx], name[tx])
}

// remoteName is a session's peer address, "unix" for a Unix socket (whose
// clients have no name).
func remoteName(a net.Addr) string {
	switch a := a.(type) {
	case nil, *net.UnixAddr:
		return "unix"
	default:
		return a.String()
	}
}

// isTerminal reports whether w is a terminal, where people rather than
// programs read serve's output.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
