package orders

import (
	"bytes"
	_ "embed"
	"html/template"
	"net/http"
	"time"
)

//go:embed page.html
var pageHTML string

var pageTemplate = template.Must(template.New("page").Funcs(template.FuncMap{
	"when": func(t *time.Time) string {
		if t == nil {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04")
	},
	"at": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04") },
}).Parse(pageHTML))

// pageData is what the operators' page shows.
type pageData struct {
	Tab      string
	Statuses []string
	Status   string
	Source   string
	Orders   []MESOrder
	Total    int64
	Next     string
	Overdue  []Overdue
	Drift    []Drift
	Err      string
}

// page serves the operators' page: ?tab=orders (default; status=, cursor=),
// overdue or drift. It is server-rendered HTML with no script, readable on
// a laptop and a tablet.
func (h *Handler) page(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	d := pageData{Tab: q.Get("tab"), Status: q.Get("status"), Source: h.view.cfg.Mirror}
	if d.Tab == "" {
		d.Tab = "orders"
	}
	ctx := r.Context()
	var err error
	switch d.Tab {
	case "orders":
		d.Statuses, err = h.view.Statuses(ctx, d.Source)
		if err == nil {
			var p Page
			p, err = h.view.List(ctx, ListQuery{Source: d.Source, Status: d.Status, PerPage: DefaultPerPage, Cursor: q.Get("cursor")})
			d.Total, d.Next = p.Total, p.Next
			for _, o := range p.Orders {
				m, merr := mesOrder(o)
				if merr != nil {
					err = merr
					break
				}
				d.Orders = append(d.Orders, m)
			}
		}
	case "overdue":
		d.Overdue, err = h.view.Overdue(ctx, maxListed)
	case "drift":
		d.Drift, err = h.view.Drift(ctx, maxListed)
	default:
		http.Error(w, "unknown tab", http.StatusNotFound)
		return
	}
	status := http.StatusOK
	if err != nil {
		h.log.Error("operators' page failed", "err", err)
		d.Err = err.Error()
		status = http.StatusInternalServerError
	}
	var b bytes.Buffer
	if err := pageTemplate.Execute(&b, d); err != nil {
		h.log.Error("render the operators' page", "err", err)
		http.Error(w, "cannot render the page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(b.Bytes())
}
