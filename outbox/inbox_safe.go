//go:build !e2ebreak_outbox_inbox

package outbox

// inboxKnown reports whether the inbox already had the event: its insert
// of (consumer, event id) added no row. The build tag e2ebreak_outbox_inbox
// swaps in inbox_break.go, a deliberately broken inbox for the end-to-end
// suite (docs/e2e.md).
func inboxKnown(rowsAdded int64) bool { return rowsAdded == 0 }
