package service

import (
	"encoding/base64"
	"encoding/binary"
	"strings"

	"github.com/cbkgate/cbkgate/internal/chatbotkit"
)

// A List cursor is cbkgate's own, and this file is the one place that knows
// its form. ChatBotKit's streamed listing carries no cursor per token, and
// its cursors are opaque (they need not be token ids), so a cursor names a
// place the upstream can read from again, an upstream cursor ("" for the
// start of the listing), plus, for a token somewhere after it, that
// token's id (chatbotkit.Position). Resuming reads the listing from the
// upstream cursor and passes over the tokens up to and including that id:
// exact whatever was created or deleted meanwhile, as long as that token
// is still listed (otherwise CURSOR_STALE), and paid for in transfer, not
// round trips. The order it was issued for is in it too, so a cursor
// passed back with the other order is refused rather than misread.
//
// Form: cursorPrefix, then unpadded base64url of: one byte 'a' (ascending)
// or 'd' (descending, the upstream's default), the upstream cursor's length
// as a uvarint, the upstream cursor, and the token id (empty: the position
// is the upstream cursor itself). Opaque to callers; not secret (it holds
// nothing a caller of the listing does not see), and needing no integrity
// check: a forged one can only name a place in the caller's own listing.
//
// A cursor without the prefix is a ChatBotKit page cursor (as cbkgate
// passed on before it had cursors of its own) and goes upstream unchanged.

// cursorPrefix starts every cursor cbkgate issues; the 1 is its version.
const cursorPrefix = "cbk1."

func orderByte(o chatbotkit.Order) byte {
	if o == chatbotkit.OrderAsc {
		return 'a'
	}
	return 'd'
}

// encodeCursor is the cursor of pos in a listing of the given order.
func encodeCursor(order chatbotkit.Order, pos chatbotkit.Position) string {
	raw := make([]byte, 0, 1+binary.MaxVarintLen64+len(pos.Cursor)+len(pos.After))
	raw = append(raw, orderByte(order))
	raw = binary.AppendUvarint(raw, uint64(len(pos.Cursor)))
	raw = append(raw, pos.Cursor...)
	raw = append(raw, pos.After...)
	out := make([]byte, len(cursorPrefix)+base64.RawURLEncoding.EncodedLen(len(raw)))
	copy(out, cursorPrefix)
	base64.RawURLEncoding.Encode(out[len(cursorPrefix):], raw)
	return string(out)
}

// decodeCursor is the position a ListRequest's cursor names (the zero
// Position, the listing's start, for ""), or the INVALID_ARGUMENT error of
// one cbkgate cannot have issued for this order.
func decodeCursor(s string, order chatbotkit.Order) (chatbotkit.Position, error) {
	body, ours := strings.CutPrefix(s, cursorPrefix)
	if !ours {
		return chatbotkit.Position{Cursor: s}, nil
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(body)
	if err != nil || len(raw) < 1 || (raw[0] != 'a' && raw[0] != 'd') {
		return chatbotkit.Position{}, damagedCursor()
	}
	if raw[0] != orderByte(order) {
		want := "descending (ORDER_DESC or ORDER_UNSPECIFIED)"
		if raw[0] == 'a' {
			want = "ascending (ORDER_ASC)"
		}
		return chatbotkit.Position{}, invalidField("cursor", "cursor belongs to a %s listing: pass it back with that order", want)
	}
	n, used := binary.Uvarint(raw[1:])
	rest := raw[1+max(used, 0):]
	if used <= 0 || n > uint64(len(rest)) {
		return chatbotkit.Position{}, damagedCursor()
	}
	return chatbotkit.Position{Cursor: string(rest[:n]), After: string(rest[n:])}, nil
}

func damagedCursor() error {
	return invalidField("cursor", "cursor is damaged: pass back a cursor exactly as a ListResponse carried it")
}
