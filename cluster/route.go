package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/sockhop/sockhop-go"
)

// Broadcast sends v to every session of every server of the cluster. It
// is encoded once and published once; each server, this one first, fans it
// out to its own sessions as Server.SendAll does (never waiting; a session
// whose queue is full is cut off as a slow consumer). The broadcasts of one
// server reach every session in the order they were made.
//
// When NATS is unreachable, or v is over NATS's payload limit, this
// server's sessions still get v and the error (ErrUnavailable, or the
// NATS error) says the others did not. Delivery to other servers is
// at most once, as NATS core messaging is.
func (n *Node) Broadcast(ctx context.Context, v any) error {
	e, err := sockhop.Encode(v)
	if err != nil {
		return err
	}
	return n.BroadcastEncoded(ctx, e)
}

// BroadcastEncoded is Broadcast for a body encoded already.
func (n *Node) BroadcastEncoded(ctx context.Context, e *sockhop.Encoded) error {
	srv, err := n.ready()
	if err != nil {
		return err
	}
	// One broadcast at a time from this node, local fan-out and publish
	// together: concurrent broadcasts reach every server in one order.
	n.bmu.Lock()
	defer n.bmu.Unlock()
	if err := srv.SendAllEncoded(ctx, e); err != nil {
		return err
	}
	if !n.nc.IsConnected() {
		return n.unavailable("broadcast reached this server's sessions only")
	}
	if err := n.nc.Publish(n.subj.bcast, encodeBroadcast(n.id, e)); err != nil {
		if errors.Is(err, nats.ErrMaxPayload) {
			return fmt.Errorf("cluster: broadcast of %d bytes reached this server's sessions only: over the NATS server's max_payload (%d): %w", len(e.Data()), n.nc.MaxPayload(), err)
		}
		return n.unavailable(fmt.Sprintf("broadcast reached this server's sessions only (%v)", err))
	}
	n.c.broadcasts.Add(1)
	return nil
}

// onBroadcast fans out another server's broadcast; NATS runs one
// subscription's handler for one message at a time, so order is kept.
func (n *Node) onBroadcast(msg *nats.Msg) {
	origin, e, err := decodeBroadcast(msg.Data)
	if err != nil {
		n.c.bad.Add(1)
		n.report(fmt.Errorf("cluster: undecodable broadcast of %d bytes: %w", len(msg.Data), err))
		return
	}
	if origin == n.id {
		return // fanned out here when it was made
	}
	srv, err := n.ready()
	if err != nil {
		return
	}
	if err := srv.SendAllEncoded(n.ctx, e); err != nil {
		n.report(fmt.Errorf("cluster: broadcast from server %s: %w", origin, err))
		return
	}
	n.c.broadcastsIn.Add(1)
}

// Send sends v to the session with this cluster-wide id, on whichever
// server holds it, as Session.Send would there. It returns when that
// server has queued it. An id no server holds fails at once with
// ErrUnknownSession; without NATS, a session of another server fails at
// once with ErrUnavailable. A ctx without a deadline gets DefaultTimeout.
func (n *Node) Send(ctx context.Context, id string, v any) error {
	e, err := sockhop.Encode(v)
	if err != nil {
		return err
	}
	_, err = n.call(ctx, id, opSend, e)
	return err
}

// SendTyped sends a typed buffer to the session with this id (binary mode
// only, as Session.SendTyped).
func (n *Node) SendTyped(ctx context.Context, id, typ string, b []byte) error {
	e, err := sockhop.EncodeTyped(typ, b)
	if err != nil {
		return err
	}
	_, err = n.call(ctx, id, opSend, e)
	return err
}

// Request sends v as a callback request to the session with this id and
// waits for its reply, as Session.Request would on the session's server;
// the reply crosses NATS back. ctx's deadline bounds the whole round trip
// (DefaultTimeout when it has none). The reply cannot be replied to.
func (n *Node) Request(ctx context.Context, id string, v any) (*sockhop.Message, error) {
	e, err := sockhop.Encode(v)
	if err != nil {
		return nil, err
	}
	return n.call(ctx, id, opRequest, e)
}

// RequestTyped sends a typed buffer as a callback request to the session
// with this id.
func (n *Node) RequestTyped(ctx context.Context, id, typ string, b []byte) (*sockhop.Message, error) {
	e, err := sockhop.EncodeTyped(typ, b)
	if err != nil {
		return nil, err
	}
	return n.call(ctx, id, opRequest, e)
}

func (n *Node) call(ctx context.Context, id string, op byte, e *sockhop.Encoded) (*sockhop.Message, error) {
	if _, err := n.ready(); err != nil {
		return nil, err
	}
	server, num, ok := parseID(id)
	if !ok {
		n.c.unknown.Add(1)
		return nil, fmt.Errorf("%w: %q is not a session id (ids look like <server>-<number>; see Node.Sessions)", ErrUnknownSession, id)
	}
	if server == n.id {
		n.mu.Lock()
		ls := n.local[num]
		n.mu.Unlock()
		if ls == nil {
			n.c.unknown.Add(1)
			return nil, fmt.Errorf("%w: %s: this server has no such session (it may have left)", ErrUnknownSession, id)
		}
		return callLocal(ctx, ls.s, op, e)
	}
	if !n.nc.IsConnected() {
		return nil, n.unavailable(fmt.Sprintf("cannot reach server %s holding session %s", server, id))
	}
	if _, known := n.Lookup(id); !known {
		n.c.unknown.Add(1)
		return nil, fmt.Errorf("%w: %s: no server of cluster %q lists it (it may have left)", ErrUnknownSession, id, n.o.Name)
	}
	c := call{op: op, session: num, body: e, token: n.tokens.Add(1), caller: n.id}
	if dl, ok := ctx.Deadline(); ok {
		c.timeout = uint64(max(time.Until(dl).Milliseconds(), 1))
	} else {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, n.o.DefaultTimeout)
		defer cancel()
		c.timeout = uint64(n.o.DefaultTimeout.Milliseconds())
	}
	n.c.routed.Add(1)
	msg, err := n.nc.RequestWithContext(ctx, n.subj.call(server), encodeCall(c))
	switch {
	case err == nil:
	case errors.Is(err, nats.ErrNoResponders):
		n.c.unknown.Add(1)
		return nil, fmt.Errorf("%w: %s: its server %s does not answer: it has left the cluster", ErrUnknownSession, id, server)
	case ctx.Err() != nil || errors.Is(err, nats.ErrTimeout):
		n.c.remoteErrors.Add(1)
		if errors.Is(ctx.Err(), context.Canceled) && n.nc.IsConnected() {
			// The far side would wait for the deadline: tell it.
			_ = n.nc.Publish(n.subj.cancel(server), encodeCancel(n.id, c.token))
		}
		return nil, fmt.Errorf("cluster: no answer from server %s for session %s before the ctx ended: %w", server, id, orErr(ctx.Err(), context.DeadlineExceeded))
	case errors.Is(err, nats.ErrMaxPayload):
		return nil, fmt.Errorf("cluster: a message of %d bytes for session %s is over the NATS server's max_payload (%d): %w", len(e.Data()), id, n.nc.MaxPayload(), err)
	default:
		return nil, n.unavailable(fmt.Sprintf("call to server %s for session %s failed (%v)", server, id, err))
	}
	a, err := decodeAnswer(msg.Data)
	if err == nil && !a.failed && op == opRequest && a.body == nil {
		err = fmt.Errorf("a request's answer without a reply")
	}
	if err != nil {
		n.c.bad.Add(1)
		return nil, fmt.Errorf("cluster: undecodable answer from server %s: %w", server, err)
	}
	if a.failed {
		return nil, n.remoteError(server, a)
	}
	if op == opSend {
		return nil, nil
	}
	return a.body.Message(), nil
}

func orErr(err, otherwise error) error {
	if err != nil {
		return err
	}
	return otherwise
}

// callLocal runs a call on a session of this server.
func callLocal(ctx context.Context, s *sockhop.Session, op byte, e *sockhop.Encoded) (*sockhop.Message, error) {
	if op == opSend {
		return nil, s.SendEncoded(ctx, e)
	}
	return s.RequestEncoded(ctx, e)
}

// remoteError rebuilds the error of a call that failed on another server,
// so that errors.Is works as for a local call.
func (n *Node) remoteError(server string, a answer) error {
	msg := strings.TrimPrefix(a.msg, "sockhop: ")
	switch a.code {
	case codeUnknown:
		n.c.unknown.Add(1)
		return fmt.Errorf("%w: %s", ErrUnknownSession, msg)
	case codeBusy:
		n.c.remoteErrors.Add(1)
		return fmt.Errorf("%w: server %s: %s", ErrBusy, server, msg)
	}
	n.c.remoteErrors.Add(1)
	switch a.code {
	case codeDeadline:
		return fmt.Errorf("cluster: on server %s: %s: %w", server, msg, context.DeadlineExceeded)
	case codeCanceled:
		return fmt.Errorf("cluster: on server %s: %s: %w", server, msg, context.Canceled)
	case codeOther:
		return fmt.Errorf("cluster: on server %s: %s", server, msg)
	}
	return &sockhop.Error{Code: a.code, Msg: "on server " + server + ": " + msg}
}

// errorCode names an error for an answer.
func errorCode(err error) string {
	var se *sockhop.Error
	switch {
	case errors.As(err, &se):
		return se.Code
	case errors.Is(err, sockhop.ErrClosed):
		return sockhop.CodeClosed
	case errors.Is(err, context.DeadlineExceeded):
		return codeDeadline
	case errors.Is(err, context.Canceled):
		return codeCanceled
	}
	return codeOther
}

// onCall serves another server's call on one of our sessions, on a
// goroutine of its own (a request waits for its peer), MaxInflight at
// most.
func (n *Node) onCall(msg *nats.Msg) {
	select {
	case n.inflight <- struct{}{}:
	default:
		n.c.busy.Add(1)
		_ = msg.Respond(encodeAnswerErr(codeBusy, fmt.Sprintf("%d calls of other servers are running here (MaxInflight)", n.o.MaxInflight)))
		return
	}
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		<-n.inflight
		_ = msg.Respond(encodeAnswerErr(sockhop.CodeClosed, "server "+n.id+" is leaving the cluster"))
		return
	}
	n.wg.Add(1)
	n.mu.Unlock()
	go func() {
		defer n.wg.Done()
		defer func() { <-n.inflight }()
		ans := n.serve(msg.Data)
		if err := msg.Respond(ans); errors.Is(err, nats.ErrMaxPayload) {
			// The caller would wait for its deadline: say why instead.
			_ = msg.Respond(encodeAnswerErr(codeOther, fmt.Sprintf("the reply of %d bytes is over the NATS server's max_payload (%d)", len(ans), n.nc.MaxPayload())))
		}
	}()
}

func (n *Node) serve(data []byte) []byte {
	c, err := decodeCall(data)
	if err != nil {
		n.c.bad.Add(1)
		return encodeAnswerErr(codeOther, "undecodable call: "+err.Error())
	}
	n.mu.Lock()
	ls := n.local[c.session]
	n.mu.Unlock()
	if ls == nil {
		return encodeAnswerErr(codeUnknown, fmt.Sprintf("%s-%d: server %s has no such session (it has left)", n.id, c.session, n.id))
	}
	n.c.served.Add(1)
	ctx, cancel := contextWithTimeout(n.ctx, time.Duration(c.timeout)*time.Millisecond)
	defer cancel()
	key := callKey{c.caller, c.token}
	n.mu.Lock()
	n.serving[key] = cancel
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		delete(n.serving, key)
		n.mu.Unlock()
	}()
	reply, err := callLocal(ctx, ls.s, c.op, c.body)
	if err != nil {
		return encodeAnswerErr(errorCode(err), err.Error())
	}
	if reply == nil {
		return encodeAnswerOK(nil)
	}
	data = reply.Bytes()
	if !reply.IsBytes() {
		if data = reply.JSON(); data == nil {
			data = []byte("null") // a reply line without data
		}
	}
	e, err := sockhop.NewEncoded(reply.Type, data, reply.IsBytes())
	if err != nil {
		return encodeAnswerErr(errorCode(err), "the peer's reply: "+err.Error())
	}
	return encodeAnswerOK(e)
}

// callKey names a call served here: its caller and the caller's number.
type callKey struct {
	caller string
	token  uint64
}

// onCancel stops a call whose caller gave up. A cancel that overtakes its
// call (they travel on different subscriptions) finds nothing; that call
// then runs until its deadline, as it would without a cancel.
func (n *Node) onCancel(msg *nats.Msg) {
	caller, token, err := decodeCancel(msg.Data)
	if err != nil {
		n.c.bad.Add(1)
		return
	}
	n.mu.Lock()
	cancel := n.serving[callKey{caller, token}]
	n.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// contextWithTimeout is context.WithTimeout, without one for d == 0.
func contextWithTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}
