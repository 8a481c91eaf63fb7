package main

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// terminalSafe escapes everything in s that a terminal would act on rather
// than show: C0 and C1 control characters (a newline that forges a line,
// ESC starting a sequence that sets the title or moves the cursor, BEL),
// DEL, Unicode line separators and the bidirectional overrides that
// reorder what follows, and bytes that are not UTF-8. They come out as Go
// escapes (\n, \x1b, \u202e), so the line stays one line and shows what
// the peer sent. Type names, data, versions and error texts from peers
// pass through it in every human-readable output.
func terminalSafe(s string) string {
	if !needsEscape(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		case unsafeRune(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

func needsEscape(s string) bool {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r < 0x20 || r == 0x7f || (r == utf8.RuneError && size == 1) || unsafeRune(r) {
			return true
		}
		i += size
	}
	return false
}

// unsafeRune: C1 controls (0x9b is a one-byte CSI for some terminals),
// line and paragraph separators, and bidirectional formatting characters.
func unsafeRune(r rune) bool {
	return (r >= 0x80 && r <= 0x9f) || r == 0x2028 || r == 0x2029 ||
		r == 0x200e || r == 0x200f || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069)
}

// terminalSafeLines escapes each line of a multi-line text of ours whose
// parts come from peers, keeping its own line breaks.
func terminalSafeLines(s string) string {
	lines := strings.SplitAfter(s, "\n")
	for i, l := range lines {
		body, nl := strings.CutSuffix(l, "\n")
		lines[i] = terminalSafe(body)
		if nl {
			lines[i] += "\n"
		}
	}
	return strings.Join(lines, "")
}
