package queuecheck

import "testing"

func TestChecker(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		run   func(c *Checker)
		want  Result
		valid bool
	}{
		{"all delivered once", func(c *Checker) {
			c.Ack("a", "1", 1)
			c.Ack("a", "2", 2)
			c.Deliver("1")
			c.Deliver("2")
		}, Result{Attempted: 2, Acknowledged: 2, Deliveries: 2, Delivered: 2}, true},
		{"lost", func(c *Checker) {
			c.Ack("a", "1", 1)
			c.Ack("a", "2", 2)
			c.Deliver("1")
		}, Result{Attempted: 2, Acknowledged: 2, Deliveries: 1, Delivered: 1, Lost: 1}, false},
		{"duplicates replayed after a crash keep order", func(c *Checker) {
			c.Ack("a", "1", 1)
			c.Ack("a", "2", 2)
			c.Ack("a", "3", 3)
			c.Deliver("1")
			c.Deliver("2")
			c.Deliver("1")
			c.Deliver("2")
			c.Deliver("3")
		}, Result{Attempted: 3, Acknowledged: 3, Deliveries: 5, Delivered: 3, Duplicated: 2}, true},
		{"out of order", func(c *Checker) {
			c.Ack("a", "1", 1)
			c.Ack("a", "2", 2)
			c.Ack("b", "3", 1)
			c.Deliver("2")
			c.Deliver("3")
			c.Deliver("1")
		}, Result{Attempted: 3, Acknowledged: 3, Deliveries: 3, Delivered: 3, OutOfOrder: 1}, false},
		{"unexpected", func(c *Checker) {
			c.Deliver("x")
		}, Result{Deliveries: 1, Delivered: 1, Unexpected: 1}, false},
		{"unknown outcome may be lost or recovered", func(c *Checker) {
			c.Attempt("a", "1", 1)
			c.Attempt("a", "2", 2)
			c.Deliver("2")
		}, Result{Attempted: 2, Deliveries: 1, Delivered: 1, Recovered: 1}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := New()
			tc.run(c)
			got := c.Result()
			if got.Valid() != tc.valid {
				t.Errorf("Valid() = %v, want %v: %s", got.Valid(), tc.valid, got)
			}
			got.Examples = nil
			if got.String() != tc.want.String() {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}
