package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/sockhop/sockhop-go"
)

// The payloads servers exchange over NATS. Messages carry a Sockhop body
// as its parts (sockhop.Encoded): the type name, a flag for bytes, and the
// data as sent, so that nothing is decoded and encoded again on the way.
// Presence messages are small and rare, and are JSON (presence.go).
//
//	body      = flags(1) typeLen(uvarint) type data     flags bit 0: bytes
//	broadcast = version(1) originLen(1) origin body
//	call      = version(1) op(1) session(uvarint) timeoutMillis(uvarint) token(uvarint) callerLen(1) caller body
//	cancel    = version(1) token(uvarint) caller
//	answer    = version(1) status(1) (body | codeLen(uvarint) code msg)

const envVersion = 1

// Operations of a call.
const (
	opSend byte = iota + 1
	opRequest
)

// Statuses of an answer.
const (
	stOK byte = iota
	stErr
)

var errShort = errors.New("truncated")

func appendBody(dst []byte, e *sockhop.Encoded) []byte {
	var flags byte
	if e.IsBytes() {
		flags = 1
	}
	dst = append(dst, flags)
	dst = binary.AppendUvarint(dst, uint64(len(e.Type())))
	dst = append(dst, e.Type()...)
	return append(dst, e.Data()...)
}

// readBody checks what another server sent as a value would be checked
// (sockhop.NewEncoded): a peer of the cluster is trusted no more than a
// socket is. The data aliases b.
func readBody(b []byte) (*sockhop.Encoded, error) {
	if len(b) < 1 {
		return nil, errShort
	}
	flags := b[0]
	n, k := binary.Uvarint(b[1:])
	if k <= 0 || n > uint64(len(b)-1-k) {
		return nil, errShort
	}
	rest := b[1+k:]
	return sockhop.NewEncoded(string(rest[:n]), rest[n:], flags&1 != 0)
}

func encodeBroadcast(origin string, e *sockhop.Encoded) []byte {
	b := make([]byte, 0, 2+len(origin)+2+len(e.Type())+len(e.Data())+4)
	b = append(b, envVersion, byte(len(origin)))
	b = append(b, origin...)
	return appendBody(b, e)
}

func decodeBroadcast(b []byte) (origin string, e *sockhop.Encoded, err error) {
	if len(b) < 2 || b[0] != envVersion || len(b) < 2+int(b[1]) {
		return "", nil, fmt.Errorf("broadcast: %w or of an unknown version", errShort)
	}
	origin = string(b[2 : 2+b[1]])
	e, err = readBody(b[2+b[1]:])
	return origin, e, err
}

// call is one Send or Request routed to the server holding the session.
type call struct {
	op      byte
	session uint64
	timeout uint64 // milliseconds the caller waits; 0: no deadline
	token   uint64 // the caller's number for the call, to cancel it
	caller  string // the calling server's id
	body    *sockhop.Encoded
}

func encodeCall(c call) []byte {
	b := make([]byte, 0, 24+len(c.body.Type())+len(c.body.Data()))
	b = append(b, envVersion, c.op)
	b = binary.AppendUvarint(b, c.session)
	b = binary.AppendUvarint(b, c.timeout)
	b = binary.AppendUvarint(b, c.token)
	b = append(b, byte(len(c.caller)))
	b = append(b, c.caller...)
	return appendBody(b, c.body)
}

func decodeCall(b []byte) (call, error) {
	var c call
	if len(b) < 2 || b[0] != envVersion {
		return c, fmt.Errorf("call: %w or of an unknown version", errShort)
	}
	c.op = b[1]
	if c.op != opSend && c.op != opRequest {
		return c, fmt.Errorf("call: unknown operation %d", c.op)
	}
	b = b[2:]
	var k int
	if c.session, k = binary.Uvarint(b); k <= 0 {
		return c, fmt.Errorf("call: %w", errShort)
	}
	b = b[k:]
	if c.timeout, k = binary.Uvarint(b); k <= 0 {
		return c, fmt.Errorf("call: %w", errShort)
	}
	b = b[k:]
	if c.token, k = binary.Uvarint(b); k <= 0 {
		return c, fmt.Errorf("call: %w", errShort)
	}
	b = b[k:]
	if len(b) < 1 || len(b) < 1+int(b[0]) {
		return c, fmt.Errorf("call: %w", errShort)
	}
	c.caller, k = string(b[1:1+b[0]]), 1+int(b[0])
	var err error
	c.body, err = readBody(b[k:])
	return c, err
}

// A cancel tells the server serving a call that its caller gave up
// (its ctx was cancelled): the call stops there too, which frees its
// MaxInflight slot before the deadline.
func encodeCancel(caller string, token uint64) []byte {
	b := binary.AppendUvarint([]byte{envVersion}, token)
	return append(b, caller...)
}

func decodeCancel(b []byte) (caller string, token uint64, err error) {
	if len(b) < 2 || b[0] != envVersion {
		return "", 0, fmt.Errorf("cancel: %w or of an unknown version", errShort)
	}
	token, k := binary.Uvarint(b[1:])
	if k <= 0 {
		return "", 0, fmt.Errorf("cancel: %w", errShort)
	}
	return string(b[1+k:]), token, nil
}

// answer is a call's outcome: the reply of a Request, nothing for a Send,
// or the error with its code.
type answer struct {
	body      *sockhop.Encoded
	code, msg string
	failed    bool
}

func encodeAnswerOK(reply *sockhop.Encoded) []byte {
	b := []byte{envVersion, stOK}
	if reply != nil {
		b = appendBody(b, reply)
	}
	return b
}

func encodeAnswerErr(code, msg string) []byte {
	b := make([]byte, 0, 4+len(code)+len(msg))
	b = append(b, envVersion, stErr)
	b = binary.AppendUvarint(b, uint64(len(code)))
	b = append(b, code...)
	return append(b, msg...)
}

func decodeAnswer(b []byte) (answer, error) {
	var a answer
	if len(b) < 2 || b[0] != envVersion {
		return a, fmt.Errorf("answer: %w or of an unknown version", errShort)
	}
	switch b[1] {
	case stOK:
		if len(b) == 2 {
			return a, nil
		}
		var err error
		a.body, err = readBody(b[2:])
		return a, err
	case stErr:
		n, k := binary.Uvarint(b[2:])
		if k <= 0 || n > uint64(len(b)-2-k) {
			return a, fmt.Errorf("answer: %w", errShort)
		}
		rest := b[2+k:]
		a.failed, a.code, a.msg = true, string(rest[:n]), string(rest[n:])
		return a, nil
	}
	return a, fmt.Errorf("answer: unknown status %d", b[1])
}
