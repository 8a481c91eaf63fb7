package cluster

import (
	"bytes"
	"testing"

	"github.com/sockhop/sockhop-go"
)

// Every envelope decodes to what was encoded, and every truncation of it
// and every flipped byte either decodes or fails with an error: bytes
// from the cluster never panic a server.
func TestEnvelopesRoundTripAndTruncation(t *testing.T) {
	bodies := []*sockhop.Encoded{mustEncode(t, Tick{From: "a", N: 1}), mustEncode(t, []byte{0, 1, 2})}
	typed, err := sockhop.EncodeTyped("Frame", []byte("xyz"))
	noErr(t, err)
	bodies = append(bodies, typed)
	same := func(a, b *sockhop.Encoded) bool {
		return a.Type() == b.Type() && a.IsBytes() == b.IsBytes() && bytes.Equal(a.Data(), b.Data())
	}
	for _, e := range bodies {
		b := encodeBroadcast("0123456789abcdef", e)
		origin, got, err := decodeBroadcast(b)
		noErr(t, err)
		if origin != "0123456789abcdef" || !same(got, e) {
			t.Fatalf("broadcast round trip: %q %v", origin, got)
		}
		c := call{op: opRequest, session: 300, timeout: 1500, token: 77, caller: "fedcba9876543210", body: e}
		cb := encodeCall(c)
		gc, err := decodeCall(cb)
		noErr(t, err)
		if gc.op != c.op || gc.session != 300 || gc.timeout != 1500 || gc.token != 77 || gc.caller != c.caller || !same(gc.body, e) {
			t.Fatalf("call round trip: %+v", gc)
		}
		ab := encodeAnswerOK(e)
		ga, err := decodeAnswer(ab)
		noErr(t, err)
		if ga.failed || !same(ga.body, e) {
			t.Fatalf("answer round trip: %+v", ga)
		}
		eb := encodeAnswerErr("ERR_X", "went wrong")
		ge, err := decodeAnswer(eb)
		noErr(t, err)
		if !ge.failed || ge.code != "ERR_X" || ge.msg != "went wrong" {
			t.Fatalf("error answer round trip: %+v", ge)
		}
		caller, token, err := decodeCancel(encodeCancel("fedcba9876543210", 77))
		noErr(t, err)
		if caller != "fedcba9876543210" || token != 77 {
			t.Fatalf("cancel round trip: %q %d", caller, token)
		}
		for _, whole := range [][]byte{b, cb, ab, eb, encodeCancel("x", 1)} {
			for i := range whole {
				_, _, _ = decodeBroadcast(whole[:i])
				_, _ = decodeCall(whole[:i])
				_, _ = decodeAnswer(whole[:i])
				_, _, _ = decodeCancel(whole[:i])
				flipped := bytes.Clone(whole)
				flipped[i] ^= 0xff
				_, _, _ = decodeBroadcast(flipped)
				_, _ = decodeCall(flipped)
				_, _ = decodeAnswer(flipped)
				_, _, _ = decodeCancel(flipped)
			}
		}
	}
	if _, err := decodeCall([]byte{envVersion, 9, 1, 1, 0, 0}); err == nil {
		t.Fatal("a call with an unknown operation was accepted")
	}
	if _, _, err := decodeBroadcast([]byte{2, 0, 0, 0}); err == nil {
		t.Fatal("a broadcast of an unknown version was accepted")
	}
}
