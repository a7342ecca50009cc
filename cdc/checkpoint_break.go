//go:build e2ebreak_cdc_checkpoint

package cdc

// confirmOnRead is the broken checkpoint of the end-to-end suite's breaking
// variant (make e2e-break BREAK=cdc-checkpoint, docs/e2e.md): it counts a
// transaction as acknowledged as soon as it is read, before the sink has
// it, so a crash loses what was read and not yet delivered. Never built
// into a release: only the build tag e2ebreak_cdc_checkpoint selects it.
func (r *Reader) confirmOnRead(tx Tx) { storeMax(&r.acked, uint64(tx.EndLSN)) }
