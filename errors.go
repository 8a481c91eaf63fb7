package sockhop

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/sockhop/sockhop-go/internal/wire"
)

// Error codes. Where the Node reference has a code for the same condition
// the name is the reference's (PROTOCOL.md 12.1); the rest are ours.
const (
	CodeHandshakeTimeout            = "ERR_HANDSHAKE_TIMEOUT"
	CodeHandshakeCompatibilityMode  = "ERR_HANDSHAKE_COMPATIBILITY_MODE"
	CodeMultiConnect                = "ERR_MULTICONNECT"
	CodeSendTypedBufferNoBinaryMode = "ERR_SEND_TYPED_BUFFER_NO_BINARY_MODE"
	CodeSendTypedBufferInvalidType  = "ERR_SEND_TYPED_BUFFER_INVALID_TYPE"
	CodeBadData                     = "ERR_BAD_DATA"
	CodeSocketDestroyed             = "ERR_SOCKET_DESTROYED"
	CodeBadBufferData               = wire.CodeBadBufferData
	CodeNoSchema                    = wire.CodeNoSchema
	CodeDeserializeFailed           = wire.CodeDeserializeFailed
	CodeSerializeFailed             = wire.CodeSerializeFailed
	CodeMessageTooLarge             = wire.CodeMessageTooLarge
	CodeClosed                      = "ERR_CLOSED"
	CodeNotConnected                = "ERR_NOT_CONNECTED"
	CodeUnknownCallback             = "ERR_UNKNOWN_CALLBACK"
	CodeAlreadyReplied              = "ERR_ALREADY_REPLIED"
	CodeNotRequest                  = "ERR_NOT_REQUEST"
	CodeQueueFull                   = "ERR_QUEUE_FULL"
	CodeTooManyRequests             = "ERR_TOO_MANY_REQUESTS"
	CodeProtocol                    = "ERR_PROTOCOL"
	CodePingTimeout                 = "ERR_PING_TIMEOUT"
	CodeSlowConsumer                = "ERR_SLOW_CONSUMER"
	CodeBadOption                   = "ERR_BAD_OPTION"
	CodeIdle                        = "ERR_IDLE"
	CodeTLSHandshake                = "ERR_TLS_HANDSHAKE"
	CodeReservedType                = "ERR_RESERVED_TYPE"
	CodeMaxConnections              = "ERR_MAX_CONNECTIONS"
	CodeInlineRequest               = "ERR_INLINE_REQUEST"
	CodeAutoRehandshakeConnect      = "ERR_AUTO_REHANDSHAKE_CONNECT"
)

// Error is the error type of this package. Code is one of the Code*
// constants; errors.Is matches two *Error values by Code, and an *Error
// against the sentinel with the same code.
type Error struct {
	Code string
	Msg  string // what happened and, where useful, what to do
	Err  error  // the cause, if any
}

func (e *Error) Error() string { return joinText(e.Msg, e.Err) }

// joinText is "sockhop: msg: cause" as one readable line: the cause
// without our own prefix, without what a *net.OpError repeats of the
// operation and address the message already names, and not at all
// repeating msg when the cause already starts with it.
func joinText(msg string, cause error) string {
	if cause == nil {
		return "sockhop: " + msg
	}
	c := causeText(cause)
	if strings.HasPrefix(c, msg) {
		return "sockhop: " + c
	}
	return "sockhop: " + msg + ": " + c
}

func causeText(err error) string {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil && err.Error() == op.Error() {
		err = op.Err
		var sc *os.SyscallError
		if errors.As(err, &sc) && sc.Err != nil {
			err = sc.Err
		}
	}
	return strings.TrimPrefix(err.Error(), "sockhop: ")
}

// wrapError is a cause with what we were doing; errors.Is and As see the
// cause.
type wrapError struct {
	msg string
	err error
}

func (e *wrapError) Error() string { return joinText(e.msg, e.err) }
func (e *wrapError) Unwrap() error { return e.err }

// wrapf returns err with a message of ours in front (fmt.Errorf's %w,
// printed as one clean line).
func wrapf(err error, format string, args ...any) error {
	return &wrapError{msg: fmt.Sprintf(format, args...), err: err}
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Is reports whether target is an *Error with the same Code, or
// ErrMessageTooLarge for the code CodeMessageTooLarge.
func (e *Error) Is(target error) bool {
	if target == ErrMessageTooLarge {
		return e.Code == CodeMessageTooLarge
	}
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// overSendLimit refuses m when, sent in the given mode, it is over limit
// (MaxSendSize; <= 0: none), counted as the peer's limit counts it.
func overSendLimit(m *wire.Message, limit int, binary bool) error {
	if limit <= 0 {
		return nil
	}
	if n := wire.SentSize(m, binary); n > limit {
		return tooLargeToSend(m.Type, n, limit, binary)
	}
	return nil
}

// tooLargeToSend is the error of a message over MaxSendSize; size is what
// the peer's limit would see in the mode it was checked for.
func tooLargeToSend(typ string, size, limit int, binary bool) error {
	form := "a JSON line"
	if binary {
		form = "a frame payload"
	}
	return newError(CodeMessageTooLarge, fmt.Sprintf("%q message of %d bytes (as %s) is over MaxSendSize (%d bytes); nothing was sent. A peer with the default MaxMessageSize would drop the connection: send it in parts, or raise MaxSendSize if the peer accepts more (Node has no limit)", typ, size, form, limit), nil)
}

// Sentinels for errors.Is. Errors returned by this package wrap them or are
// *Error values with the same Code.
var (
	// ErrClosed: the Client, Server, Session or connection was closed. Errors
	// with this code also match net.ErrClosed.
	ErrClosed = &Error{Code: CodeClosed, Msg: "closed"}
	// ErrNotConnected: a Send while the client has no connection.
	ErrNotConnected = &Error{Code: CodeNotConnected, Msg: "not connected; call Connect or Start first"}
	// ErrDisconnected: the connection ended while a request waited for its
	// reply, or while a send was queued.
	ErrDisconnected = &Error{Code: CodeSocketDestroyed, Msg: "connection ended"}
	// ErrHandshakeTimeout: the peer did not complete the handshake in time
	// (a 1.x peer or one in compatibility mode never does).
	ErrHandshakeTimeout = &Error{Code: CodeHandshakeTimeout, Msg: "timeout exceeded waiting for handshake"}
	// ErrNoBinaryMode: a typed buffer needs binary mode on this connection.
	ErrNoBinaryMode = &Error{Code: CodeSendTypedBufferNoBinaryMode, Msg: "typed buffers need binary mode, and this connection's transmit side is in JSON mode"}
	// ErrMessageTooLarge: a message over the size limit, sent or received.
	ErrMessageTooLarge = wire.ErrMessageTooLarge
	// ErrQueueFull: the outbound queue stayed full until the ctx ended.
	ErrQueueFull = &Error{Code: CodeQueueFull, Msg: "outbound queue full"}
	// ErrInlineRequest: a handler running on its connection's reading
	// goroutine (ConnOptions.InlineHandlers) made a Request on that same
	// connection, whose reply could never be read while it waits.
	ErrInlineRequest = &Error{Code: CodeInlineRequest, Msg: "a handler running on the connection's reader (InlineHandlers) cannot wait for a reply on that connection; send the request from another goroutine, or turn InlineHandlers off"}
	// ErrAlreadyReplied: Reply called twice for one request.
	ErrAlreadyReplied = &Error{Code: CodeAlreadyReplied, Msg: "request already answered"}
	// ErrPingTimeout: the peer answered none of the last four pings.
	ErrPingTimeout = &Error{Code: CodePingTimeout, Msg: "peer answered none of the last 4 pings"}
	// ErrSlowConsumer: the peer did not read what was queued for it.
	ErrSlowConsumer = &Error{Code: CodeSlowConsumer, Msg: "slow consumer"}
	// ErrIdle: nothing arrived for IdleTimeout.
	ErrIdle = &Error{Code: CodeIdle, Msg: "idle"}
	// ErrTLSHandshake: a TLS handshake failed (the cause is wrapped).
	ErrTLSHandshake = &Error{Code: CodeTLSHandshake, Msg: "TLS handshake failed"}
	// ErrNotRequest: Reply on a message whose sender did not ask for one.
	ErrNotRequest = &Error{Code: CodeNotRequest, Msg: "message is not a request; only requests can be answered"}
)

// closedError is what operations on a closed object return: it matches both
// ErrClosed and net.ErrClosed.
type closedError struct{ msg string }

func (e closedError) Error() string { return "sockhop: " + e.msg }
func (e closedError) Is(target error) bool {
	return target == ErrClosed || target == net.ErrClosed || errors.Is(ErrClosed, target)
}

func errClosed(what string) error { return closedError{msg: what + " is closed"} }

func newError(code, msg string, err error) *Error { return &Error{Code: code, Msg: msg, Err: err} }
