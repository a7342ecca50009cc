package shop

import (
	"fmt"
	"strings"
)

// The shop's customers are drawn from a small fixed pool so that most orders
// come from returning customers, as in a real shop.
var (
	firstNames = [...]string{"Anna", "Boris", "Dmitry", "Ekaterina", "Ivan", "Irina", "Maria", "Nikolai", "Olga", "Pavel", "Sergei", "Tatiana"}
	lastNames  = [...]string{"Ivanov", "Petrova", "Smirnov", "Kuznetsova", "Popov", "Sokolova", "Lebedev", "Kozlova", "Novikov", "Morozova"}
	notes      = [...]string{
		"please deliver after 6 pm",
		"gift wrap, no invoice in the box",
		"call before delivery",
		"matte finish if possible",
		"urgent: needed for an exhibition",
	}
)

// material is what a part can be made of, with its price range per unit in
// minor currency units (kopecks).
type material struct {
	name               string
	minPrice, maxPrice int64
}

var materials = [...]material{
	{"PLA", 15_000, 300_000},
	{"PETG", 20_000, 400_000},
	{"ASA", 20_000, 450_000},
	{"PA12", 60_000, 900_000},
}

// customer is one fake shop customer.
type customer struct {
	email, name string
}

// fakeCustomer returns the i-th customer of the pool. Different i give
// different emails.
func fakeCustomer(i int) customer {
	first := firstNames[i%len(firstNames)]
	last := lastNames[(i/len(firstNames))%len(lastNames)]
	return customer{
		email: fmt.Sprintf("%s.%s.%d@example.com", strings.ToLower(first), strings.ToLower(last), i),
		name:  first + " " + last,
	}
}

// item is one line of an order; unitPrice is in minor currency units.
type item struct {
	modelURL  string
	material  string
	quantity  int
	unitPrice int64
}

// orderDraft is everything random about a new order, drawn before its
// transaction starts.
type orderDraft struct {
	customer customer
	note     string // empty means no note
	items    []item
}

// totalMinor is the order total in minor currency units.
func (d orderDraft) totalMinor() int64 {
	var sum int64
	for _, it := range d.items {
		sum += int64(it.quantity) * it.unitPrice
	}
	return sum
}

// draftOrder draws a new order from rnd (which returns values in [0, 1)):
// a customer out of a pool of customers, one to four items of the models
// named by keys, and sometimes a note.
func draftOrder(rnd func() float64, customers int, keys []string) orderDraft {
	d := orderDraft{customer: fakeCustomer(intn(rnd, customers))}
	if rnd() < 0.2 {
		d.note = notes[intn(rnd, len(notes))]
	}
	n := 1 + intn(rnd, 4)
	d.items = make([]item, n)
	for i := range d.items {
		m := materials[intn(rnd, len(materials))]
		r := rnd()
		d.items[i] = item{
			modelURL: keys[intn(rnd, len(keys))],
			material: m.name,
			// Mostly single parts, sometimes a batch of up to 10.
			quantity:  1 + int(r*r*10),
			unitPrice: m.minPrice + int64(rnd()*float64(m.maxPrice-m.minPrice)),
		}
	}
	return d
}

// intn returns a value in [0, n) drawn from rnd, tolerating an rnd that
// strays out of [0, 1).
func intn(rnd func() float64, n int) int {
	if n <= 1 {
		return 0
	}
	v := int(rnd() * float64(n))
	return min(max(v, 0), n-1)
}
