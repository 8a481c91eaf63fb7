package sockhop

import (
	"encoding/json"
	"fmt"
	"reflect"
	"time"

	"github.com/sockhop/sockhop-go/internal/wire"
)

// Typer lets a Go type choose the Sockhop type name it is sent with, e.g. the
// name of the JavaScript class a Node peer expects.
type Typer interface {
	SockhopType() string
}

// Named sends Data with an explicit type name, for talking to Node classes
// without declaring a Go type: Named{"Widget", json.RawMessage(`{"id":7}`)}.
// Data may be any value Send accepts except []byte; a json.RawMessage is
// sent as is.
type Named struct {
	Type string
	Data any
}

// TypeName returns the type name v is sent with (PROTOCOL.md 2.2): the
// Typer's name if v implements it; "String", "Number", "Boolean", "Array",
// "Object" for the basic kinds, maps and anonymous structs; "Buffer" for
// []byte; "Date" for time.Time; a named struct's Go type name otherwise.
func TypeName(v any) string {
	switch x := v.(type) {
	case Typer:
		return x.SockhopType()
	case Named:
		return x.Type
	case *Named:
		return x.Type
	case []byte:
		return wire.TypeBuffer
	case json.RawMessage:
		return rawTypeName(x)
	case time.Time, *time.Time:
		return "Date"
	case nil:
		return ""
	}
	t := reflect.TypeOf(v)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "String"
	case reflect.Bool:
		return "Boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64:
		return "Number"
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 && t.Kind() == reflect.Slice {
			return wire.TypeBuffer
		}
		return "Array"
	case reflect.Map, reflect.Interface:
		return "Object"
	case reflect.Struct:
		if t.Name() == "" {
			return "Object"
		}
		return t.Name()
	}
	return "Object"
}

// rawTypeName names raw JSON by its first byte, as a Node sender would name
// the parsed value.
func rawTypeName(b json.RawMessage) string {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		case '{':
			return "Object"
		case '[':
			return "Array"
		case '"':
			return "String"
		case 't', 'f':
			return "Boolean"
		case 'n':
			return ""
		default:
			return "Number"
		}
	}
	return ""
}

// encodeValue turns a user value into an outgoing message body: the type
// name and either JSON text or bytes.
func encodeValue(v any) (wire.Message, error) {
	var m wire.Message
	switch x := v.(type) {
	case nil:
		return m, newError(CodeBadData, "cannot send nil: a Node peer cannot send null either (PROTOCOL.md 2.2); send a value or use Named with a JSON null", nil)
	case []byte:
		m.Type, m.Data, m.Bytes = wire.TypeBuffer, x, true
		return m, nil
	case Named:
		return encodeNamed(&x)
	case *Named:
		if x == nil {
			return m, newError(CodeBadData, "cannot send a nil *Named", nil)
		}
		return encodeNamed(x)
	case time.Time:
		m.Type, m.Data = "Date", wire.AppendString(nil, wire.ISODate(x))
		return m, nil
	}
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Pointer && rv.IsNil() {
		return m, newError(CodeBadData, fmt.Sprintf("cannot send a nil %T", v), nil)
	}
	m.Type = TypeName(v)
	if err := checkTypeName(m.Type); err != nil {
		return m, err
	}
	if raw, ok := v.(json.RawMessage); ok && m.Type == "" {
		return m, newError(CodeBadData, fmt.Sprintf("cannot send raw JSON %.20q without a type name; wrap it in Named", raw), nil)
	}
	data, err := wire.Marshal(v)
	if err != nil {
		return m, newError(CodeBadData, fmt.Sprintf("cannot encode %T", v), err)
	}
	m.Data = data
	return m, nil
}

// checkTypeName refuses the four type names a 2.x peer reserves for the
// protocol (PROTOCOL.md 2.3): a message sent under one would be taken as a
// handshake, transition, ping or pong.
func checkTypeName(typ string) error {
	m := wire.Message{Type: typ, HasType: true}
	if m.Reserved() {
		return newError(CodeReservedType, fmt.Sprintf("type name %q is reserved for the Sockhop protocol; choose another", typ), nil)
	}
	return nil
}

func encodeNamed(n *Named) (wire.Message, error) {
	if err := checkTypeName(n.Type); err != nil {
		return wire.Message{}, err
	}
	if _, isBytes := n.Data.([]byte); isBytes {
		return wire.Message{}, newError(CodeBadData, "Named cannot carry []byte; use SendTyped for a typed buffer", nil)
	}
	var data []byte
	var err error
	if n.Data == nil {
		data = []byte("null")
	} else if data, err = wire.Marshal(n.Data); err != nil {
		return wire.Message{}, newError(CodeBadData, fmt.Sprintf("cannot encode %T", n.Data), err)
	}
	return wire.Message{Type: n.Type, Data: data}, nil
}
