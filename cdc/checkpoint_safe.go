//go:build !e2ebreak_cdc_checkpoint

package cdc

// confirmOnRead does nothing: the reader confirms a transaction only after
// every sink acknowledged it (deliver). The build tag
// e2ebreak_cdc_checkpoint swaps in checkpoint_break.go, a deliberately
// broken reader for the end-to-end suite (docs/e2e.md).
func (r *Reader) confirmOnRead(Tx) {}
