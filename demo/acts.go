package demo

import "context"

// An act is one part of the story told after the legacy world's timeline:
// it uses the world the timeline ran in (the shop's database, the MES,
// the proxy's listener and the model store), prints its own lines and its
// summary to cfg.Out, and fills its part of the report. Acts run one after
// the other, in the order listed here; each one adds its own file.
type act func(ctx context.Context, w *world, r *Report) error

// acts returns the acts of a run, in order.
func (w *world) acts() []act {
	return []act{
		actOrders,
		actOutbox,
		actFleet,
		actCutover,
	}
}

// runActs runs every act in turn; the first failure ends the run.
func (w *world) runActs(ctx context.Context, r *Report) error {
	for _, a := range w.acts() {
		if err := a(ctx, w, r); err != nil {
			return ignoreEnd(err)
		}
	}
	return nil
}
