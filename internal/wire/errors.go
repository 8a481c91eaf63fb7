package wire

import (
	"errors"
	"fmt"
)

// Error codes of the reference (PROTOCOL.md 12.1) for problems local to one
// message.
const (
	CodeBadBufferData      = "ERR_OBJECTBUFFER_BAD_BUFFER_DATA"
	CodeNoSchema           = "ERR_OBJECTBUFFER_NO_SCHEMA"
	CodeDeserializeFailed  = "ERR_OBJECTBUFFER_DESERIALIZE_FAILED"
	CodeSerializeFailed    = "ERR_OBJECTBUFFER_SERIALIZE_FAILED"
	CodeMessageTooLarge    = "ERR_MESSAGE_TOO_LARGE"
	codeMessagePrefixLimit = 64
)

// DecodeError reports one message that could not be decoded. The stream
// stays in sync: the Decoder skipped exactly that message and Next may be
// called again.
type DecodeError struct {
	Code string // one of the Code* constants
	Msg  string
}

func (e *DecodeError) Error() string { return "sockhop: " + e.Msg + " (" + e.Code + ")" }

// ErrMessageTooLarge is matched by errors.Is for every *SizeError.
var ErrMessageTooLarge = errors.New("sockhop: message too large")

// SizeError reports a message over the size limit. It is fatal for the
// stream: the Decoder stopped reading before buffering the message.
type SizeError struct {
	Size int64 // announced frame payload size, or the line's length
	// AtLeast: Size is a lower bound, limit + 1, for a line whose
	// terminator has not come: how much more was seen depends on how its
	// bytes were split into reads, so it is not reported.
	AtLeast bool
	Limit   int
	Binary  bool
	// Option names the setting whose limit it is ("MaxMessageSize" when
	// empty), so that the error says which one to raise.
	Option string
}

func (e *SizeError) Error() string {
	what, size := "frame payload", fmt.Sprintf("%d bytes", e.Size)
	if !e.Binary {
		what = "JSON line"
	}
	if e.AtLeast {
		size = "at least " + size
	}
	opt, advice := e.Option, ""
	switch opt {
	case "":
		opt = "MaxMessageSize"
	case "MaxPreHandshakeSize":
		advice = ", or leave it 0 to use MaxMessageSize before the handshake too"
	}
	return fmt.Sprintf("sockhop: %s of %s exceeds %s (%d bytes); raise %s if the peer is trusted%s", what, size, opt, e.Limit, opt, advice)
}

// Is makes errors.Is(err, ErrMessageTooLarge) true.
func (e *SizeError) Is(target error) bool { return target == ErrMessageTooLarge }

// EncodeError reports a message that cannot be put into a binary frame.
type EncodeError struct{ Msg string }

func (e *EncodeError) Error() string {
	return "sockhop: " + e.Msg + " (" + CodeSerializeFailed + ")"
}
