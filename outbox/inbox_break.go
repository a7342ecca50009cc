//go:build e2ebreak_outbox_inbox

package outbox

// inboxKnown is the bypassed inbox of the end-to-end suite's breaking
// variant (make e2e-break BREAK=outbox-inbox, docs/e2e.md): it takes every
// event for a new one, so a redelivered event takes effect again. Never
// built into a release: only the build tag e2ebreak_outbox_inbox selects
// it.
func inboxKnown(int64) bool { return false }
