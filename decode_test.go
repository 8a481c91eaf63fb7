package sockhop

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/sockhop/sockhop-go/internal/wire"
)

// TestDecodeDynamic: Decode into a map or an any (the fast path) stores
// what json.Unmarshal stores, and leaves the other cases to it: a map
// that already has keys is added to, null clears a map, an array does not
// go into a map.
func TestDecodeDynamic(t *testing.T) {
	msg := func(data string) *Message {
		return newMessage(nil, &wire.Message{Type: "T", Data: []byte(data)})
	}
	for _, data := range []string{
		`{"seq":1,"name":"widget","vals":[1,2,3.5,-0,1e300],"o":{"k":null,"t":true}}`,
		`{"s":"\u00e9\ud83d\ude00 \ud800 x"}`, `[1,"a",{}]`, `"text"`, `7`, `null`, `{}`,
	} {
		var wantAny, gotAny any
		noErr(t, json.Unmarshal([]byte(data), &wantAny))
		noErr(t, msg(data).Decode(&gotAny))
		if !reflect.DeepEqual(gotAny, wantAny) {
			t.Errorf("any from %s: got %#v, want %#v", data, gotAny, wantAny)
		}
		var wantMap, gotMap map[string]any
		wantErr := json.Unmarshal([]byte(data), &wantMap)
		gotErr := msg(data).Decode(&gotMap)
		if (wantErr == nil) != (gotErr == nil) || !reflect.DeepEqual(gotMap, wantMap) {
			t.Errorf("map from %s: got %#v (%v), want %#v (%v)", data, gotMap, gotErr, wantMap, wantErr)
		}
	}
	// A non-empty map is added to, as json.Unmarshal does.
	m := map[string]any{"kept": true}
	noErr(t, msg(`{"new":1}`).Decode(&m))
	if !reflect.DeepEqual(m, map[string]any{"kept": true, "new": 1.0}) {
		t.Errorf("decoding into a non-empty map gave %#v", m)
	}
	// null into a map clears it.
	m = nil
	noErr(t, msg(`null`).Decode(&m))
	if m != nil {
		t.Errorf("null into a map gave %#v", m)
	}
	// Out of float64's range: json.Unmarshal's error.
	var v any
	if err := msg(`{"n":1e400}`).Decode(&v); err == nil {
		t.Errorf("1e400 decoded to %#v, want an error", v)
	}
}
