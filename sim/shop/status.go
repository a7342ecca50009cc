package shop

// The statuses of an order, in the order an order moves through them.
const (
	StatusNew          = "new"
	StatusPriced       = "priced"
	StatusPaid         = "paid"
	StatusInProduction = "in_production"
	StatusShipped      = "shipped"
)

// Statuses lists every order status in the order an order moves through
// them; the last one, shipped, is final. Treat it as read-only: Next and
// Index do not depend on it.
var Statuses = []string{StatusNew, StatusPriced, StatusPaid, StatusInProduction, StatusShipped}

// statusOrder is the private copy of Statuses the package itself relies on.
var statusOrder = [...]string{StatusNew, StatusPriced, StatusPaid, StatusInProduction, StatusShipped}

// Index returns the position of status in Statuses (0 for new, 4 for
// shipped), or -1 when status is not an order status.
func Index(status string) int {
	for i, s := range statusOrder {
		if s == status {
			return i
		}
	}
	return -1
}

// Next returns the status that follows status. It reports false when status
// is final (shipped) or not an order status.
func Next(status string) (string, bool) {
	i := Index(status)
	if i < 0 || i == len(statusOrder)-1 {
		return "", false
	}
	return statusOrder[i+1], true
}
