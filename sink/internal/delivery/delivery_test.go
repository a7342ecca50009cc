package delivery

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/ficuslabs/ficus/cloudevent"
)

func batchOf(n int) []cloudevent.Event {
	out := make([]cloudevent.Event, n)
	for i := range out {
		out[i] = cloudevent.Event{
			SpecVersion: cloudevent.SpecVersion, ID: fmt.Sprint(i), Source: "/shop", Type: "t",
			Data: []byte(fmt.Sprintf(`{"n":%d}`, i)),
		}
	}
	return out
}

func TestMarshalWritesEveryEventAsMarshalJSONDoes(t *testing.T) {
	t.Parallel()
	batch := batchOf(5)
	got, err := Marshal(batch)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(batch) {
		t.Fatalf("%d bodies for %d events", len(got), len(batch))
	}
	for i, e := range batch {
		want, err := e.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got[i], want) {
			t.Errorf("body %d = %s, want %s", i, got[i], want)
		}
	}
	// The bodies share a buffer: appending to one must not reach the next.
	_ = append(got[0], "garbage"...)
	if want, _ := batch[1].MarshalJSON(); !bytes.Equal(got[1], want) {
		t.Fatalf("appending to body 0 changed body 1 to %s", got[1])
	}
}

func TestAppendLines(t *testing.T) {
	t.Parallel()
	batch := batchOf(3)
	got, err := AppendLines([]byte("kept\n"), batch)
	if err != nil {
		t.Fatal(err)
	}
	want := []byte("kept\n")
	for _, e := range batch {
		b, _ := e.MarshalJSON()
		want = append(append(want, b...), '\n')
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("AppendLines = %s, want %s", got, want)
	}
}

func TestAnInvalidEventRefusesTheBatch(t *testing.T) {
	t.Parallel()
	batch := batchOf(3)
	batch[2].Source = ""
	if _, err := Marshal(batch); !errors.Is(err, ErrInvalidEvent) {
		t.Errorf("Marshal = %v, want ErrInvalidEvent", err)
	}
	got, err := AppendLines([]byte("kept"), batch)
	if !errors.Is(err, ErrInvalidEvent) || string(got) != "kept" {
		t.Errorf("AppendLines = %q, %v; want the buffer as it was and ErrInvalidEvent", got, err)
	}
}

func TestSegmentsIsolateEventsThatMoveKeys(t *testing.T) {
	ev := func(key, old string) cloudevent.Event {
		e := cloudevent.Event{Subject: key, Extensions: map[string]any{PartitionKeyExtension: key}}
		if old != "" {
			e.Extensions[OldPartitionKeyExtension] = old
		}
		return e
	}
	for _, tc := range []struct {
		name  string
		batch []cloudevent.Event
		want  []Segment
	}{
		{"empty", nil, nil},
		{"no moves", []cloudevent.Event{ev("a", ""), ev("b", "")}, []Segment{{0, 2}}},
		{"a move alone", []cloudevent.Event{ev("b", "a")}, []Segment{{0, 1}}},
		{"a move in the middle", []cloudevent.Event{ev("a", ""), ev("b", "a"), ev("a", ""), ev("c", "")},
			[]Segment{{0, 1}, {1, 2}, {2, 4}}},
		{"moves in a row", []cloudevent.Event{ev("b", "a"), ev("c", "b")}, []Segment{{0, 1}, {1, 2}}},
		{"old key equal to the key is no move", []cloudevent.Event{ev("a", "a"), ev("b", "")}, []Segment{{0, 2}}},
	} {
		if got := Segments(tc.batch); fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: segments %v, want %v", tc.name, got, tc.want)
		}
	}
}
