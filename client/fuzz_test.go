package client_test

import (
	"errors"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/bertq/bertq/client"
	"github.com/bertq/bertq/schemas"
)

// FuzzParseReply: whatever comes back on an inbox, ParseReply returns a
// reply or an error, never panics, and an *Error always names its code.
func FuzzParseReply(f *testing.F) {
	f.Add([]byte(`{"v":1,"id":"a","label":"equivalent","label_index":1,"probabilities":[0.2,0.8]}`), "application/json", "")
	f.Add([]byte(`{"v":1,"id":"a","error":{"code":"queue_full","message":"full"}}`), "", "queue_full")
	f.Add([]byte(`{"v":1,"id":"a","error":{"message":"no code"}}`), "", "")
	f.Add([]byte{0x82, 0xa2, 'i', 'd', 0xa1, 'x', 0xa1, 'v', 0x01}, "application/msgpack", "")
	f.Add([]byte{0xdc, 0xff, 0xff}, "application/msgpack", "")
	f.Add([]byte(``), "", "unavailable")
	f.Add([]byte(`[1,2,3]`), "application/json", "")
	f.Fuzz(func(t *testing.T, data []byte, contentType, code string) {
		m := nats.NewMsg("_INBOX.x.1")
		m.Data = data
		if contentType != "" {
			m.Header.Set(schemas.HeaderContentType, contentType)
		}
		if code != "" {
			m.Header.Set(schemas.HeaderErrorCode, code)
		}
		rep, err := client.ParseReply(m)
		var e *client.Error
		switch {
		case err == nil && rep == nil:
			t.Fatal("neither a reply nor an error")
		case errors.As(err, &e) && e.Code == "":
			t.Fatalf("an error without a code: %v", err)
		case err != nil && !errors.As(err, &e) && !errors.Is(err, client.ErrBadReply):
			t.Fatalf("an untyped error: %v", err)
		case err == nil && rep.Error != nil:
			t.Fatalf("an error reply passed as an answer: %+v", rep)
		}
	})
}
