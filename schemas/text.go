package schemas

import (
	"strings"
	"unicode/utf8"
)

// Clip bounds user-supplied text echoed in replies, errors and logs: cut to at
// most n bytes at a rune boundary (marked with "…"), with what a terminal
// could act on (control characters, DEL, C1 controls such as U+009B CSI, which
// JSON log lines carry unescaped) replaced by U+FFFD.
func Clip(s string, n int) string {
	if len(s) > n {
		for n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		s = s[:n] + "…"
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r >= 0x7f && r < 0xa0 {
			return utf8.RuneError
		}
		return r
	}, s)
}

// HeaderValue makes s safe as a NATS header value: one line, bounded.
func HeaderValue(s string) string {
	return Clip(strings.NewReplacer("\r", " ", "\n", " ").Replace(s), 300)
}
