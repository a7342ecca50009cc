package checker

import (
	"fmt"
	"strings"
	"sync"
	"testing"
)

func TestCleanRun(t *testing.T) {
	c := New(Config{Name: "orders"})
	for i := range 100 {
		id := fmt.Sprint(i)
		c.Send(id, "")
		c.Ack(id)
		c.Receive(id)
	}
	v := c.Verdict()
	if !v.OK() || v.Err() != nil {
		t.Fatalf("clean run judged bad: %v", v.Err())
	}
	if v.Sent != 100 || v.Acked != 100 || v.Arrived != 100 {
		t.Fatalf("counts: %s", v)
	}
	if want := "orders: 100 sent (100 acked, 0 failed, 0 indeterminate, 0 recovered), 100 arrived: 0 lost, 0 duplicated, 0 unexpected, 0 out of order"; v.String() != want {
		t.Fatalf("String:\n got %s\nwant %s", v, want)
	}
}

func TestLostDuplicatedUnexpected(t *testing.T) {
	c := New(Config{Name: "q"})
	c.Send("a", "")
	c.Ack("a") // never arrives: lost
	c.Send("b", "")
	c.Ack("b")
	c.Receive("b")
	c.Receive("b") // duplicated
	c.Send("c", "")
	c.Fail("c")
	c.Receive("c")  // refused yet arrived: unexpected
	c.Receive("zz") // never sent: unexpected
	c.Send("d", "") // indeterminate, never arrives: fine
	c.Send("e", "") // indeterminate, arrives: recovered
	c.Receive("e")
	v := c.Verdict()
	if v.OK() {
		t.Fatal("bad run judged OK")
	}
	if len(v.Lost) != 1 || v.Lost[0] != "a" {
		t.Errorf("lost: %v", v.Lost)
	}
	if v.Duplicated["b"] != 2 || len(v.Duplicated) != 1 {
		t.Errorf("duplicated: %v", v.Duplicated)
	}
	if strings.Join(v.Unexpected, ",") != "c,zz" {
		t.Errorf("unexpected: %v", v.Unexpected)
	}
	if v.Indeterminate != 2 || v.Recovered != 1 || v.Failed != 1 || v.Acked != 2 {
		t.Errorf("counts: %s", v)
	}
	msg := v.Err().Error()
	for _, want := range []string{"1 lost", "a", "1 duplicated: b×2", "2 unexpected", "zz"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
}

func TestAllowDuplicates(t *testing.T) {
	c := New(Config{AllowDuplicates: true})
	c.Send("a", "")
	c.Ack("a")
	c.Receive("a")
	c.Receive("a")
	v := c.Verdict()
	if !v.OK() {
		t.Fatalf("allowed duplicate judged bad: %v", v.Err())
	}
	if !strings.Contains(v.String(), "1 duplicated (allowed)") {
		t.Fatalf("String: %s", v)
	}
}

func TestAckWinsOverFailure(t *testing.T) {
	c := New(Config{})
	c.Send("a", "")
	c.Fail("a") // first try refused (503), the retry acknowledged
	c.Ack("a")
	c.Fail("a") // a late failure of another try does not undo it
	c.Receive("a")
	if v := c.Verdict(); !v.OK() || v.Acked != 1 {
		t.Fatalf("%v", v.Err())
	}
}

func TestPerKeyOrderOnFirstArrivals(t *testing.T) {
	send := func(c *Checker, key string, ids ...string) {
		for _, id := range ids {
			c.Send(id, key)
			c.Ack(id)
		}
	}
	// Redelivery after a restart: 1 2 3 2 3 4 is in order.
	c := New(Config{AllowDuplicates: true})
	send(c, "order-1", "1", "2", "3", "4")
	for _, id := range []string{"1", "2", "3", "2", "3", "4"} {
		c.Receive(id)
	}
	if v := c.Verdict(); !v.OK() {
		t.Fatalf("redelivery judged out of order: %v", v.Err())
	}
	// 1 3 2 is not; another key's messages interleave freely.
	c = New(Config{})
	send(c, "order-1", "1", "2", "3")
	send(c, "order-2", "x", "y")
	for _, id := range []string{"y", "1", "3", "x", "2"} {
		c.Receive(id)
	}
	v := c.Verdict()
	if len(v.OrderViolations) != 2 {
		t.Fatalf("violations: %+v", v.OrderViolations)
	}
	got := fmt.Sprint(v.OrderViolations)
	if got != "[{order-2 x y} {order-1 2 3}]" { // in arrival order
		t.Fatalf("violations: %s", got)
	}
	if !strings.Contains(v.Err().Error(), "order-1: 2 after 3") {
		t.Fatalf("error: %v", v.Err())
	}
}

func TestRetriedSendKeepsItsPosition(t *testing.T) {
	c := New(Config{})
	c.Send("1", "k")
	c.Send("2", "k")
	c.Send("1", "k") // a client's retry of 1
	c.Ack("1")
	c.Ack("2")
	c.Receive("1")
	c.Receive("2")
	if v := c.Verdict(); !v.OK() || v.Sent != 2 {
		t.Fatalf("%s %v", v, v.Err())
	}
}

func TestConcurrentUse(t *testing.T) {
	c := New(Config{})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 500 {
				id := fmt.Sprintf("%d-%d", w, i)
				c.Send(id, fmt.Sprint(w))
				c.Ack(id)
				c.Receive(id)
			}
		})
	}
	wg.Wait()
	if v := c.Verdict(); !v.OK() || v.Arrived != 4000 {
		t.Fatalf("%s %v", v, v.Err())
	}
}
