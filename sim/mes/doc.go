// Package mes simulates the legacy MES: the HTTP API B2B clients and
// operators use to create and read orders, and the slow, single price
// calculator behind it. It is a faithful test double: order creation is not
// idempotent (every POST creates an order), quotes are computed one at a
// time, and faults make the MES crash, fail, slow down or lose orders on
// demand, so a migration to ficus can be rehearsed against it.
//
// # API
//
// All bodies are JSON; errors are {"error": "..."} with a 4xx or 5xx status.
// Request bodies are limited to 1 MiB (413 beyond) and unknown fields are
// refused with 400.
//
//	POST /api/v1/orders        {"client_ref", "customer", "items": [{"model_url", "material", "quantity"}]}
//	                           → 201 Order with Location: /api/v1/orders/{id}
//	GET  /api/v1/orders/{id}   → 200 Order, or 404
//	GET  /api/v1/orders        ?status=&client_ref=&page=1&per_page=50 (max 500)
//	                           → 200 {"orders": [...newest first], "page", "per_page", "total"}
//	POST /api/v1/quotes        {"model_url", "material", "quantity"}
//	                           → 200 {"price": "123.45", "currency": "EUR", "queued_ms", "calc_ms"}
//	GET  /admin/faults         → 200 Faults
//	POST /admin/faults         {"down", "latency_ms", "error_rate", "drop_rate", "stall_rate", "lose_status_rate"}, any subset
//	                           → 200 Faults now in effect
//	GET  /admin/stats          → 200 Stats
//	POST /admin/reset          forget orders, stats and faults → 200 Stats
//
// A quote's model_url is a key of the model store Config.Models, or a URL of
// that store (pricing.Store.Resolve); anything else is a 400. The quote
// holds the single calculator while it reads that model file, estimates it
// with Config.Estimator, prices it with Config.PriceList and takes
// Config.CalcTime doing so; concurrent quotes queue for it, and a request
// whose client goes away leaves the queue. A model that cannot be priced
// (absent, unreadable, larger than the printer, an unknown material) is a
// 422 once its turn comes.
//
// # Faults
//
// Faults apply to /api/ routes only; /admin/ always answers.
//
//   - down: the connection is aborted without a response, as if the MES had
//     crashed.
//   - latency_ms: every answer is delayed by this much after the work is
//     done, so a client that times out and retries creates a duplicate
//     order.
//   - error_rate: with this probability the answer is 500 and nothing is
//     done.
//   - drop_rate: with this probability order creation answers 201 with a
//     well-formed order that is never stored.
//   - stall_rate: this share of orders (chosen by id, the same ones every
//     time) never moves on in production.
//   - lose_status_rate: with this probability a status change production
//     makes is not announced (Config.OnStatus is not called).
//
// # Orders and production
//
// Orders live in memory, or in Postgres with Config.DB (schema "mes", made
// by EnsureSchema), where the list runs the legacy MES's queries
// (ListPageSQL, ListCountSQL: no index serves them). RunProduction moves
// each order through Statuses, one per Config.StageTime, and announces
// each change through Config.OnStatus.
//
// # Metrics
//
// Written to Config.Metrics:
//
//	ficus_sim_mes_requests_total{route,code}    counter    requests answered, by route pattern ("POST /api/v1/orders",
//	                                                       "unmatched" for none) and code class ("2xx", "4xx", "5xx",
//	                                                       "aborted" when down, "canceled" when the client went away)
//	ficus_sim_mes_faults_injected_total{fault}  counter    faults applied to requests: "down", "error", "latency", "drop"
//	ficus_sim_mes_orders_created_total          counter    orders stored
//	ficus_sim_mes_orders_dropped_total          counter    orders answered 201 but never stored
//	ficus_sim_mes_quotes_computed_total         counter    price calculations finished
//	ficus_sim_mes_status_changes_total          counter    status changes production made
//	ficus_sim_mes_quote_queue_depth             gauge      quote requests waiting for the calculator
//	ficus_sim_mes_quote_wait_seconds            histogram  time a quote waited for the calculator
//	ficus_sim_mes_quote_calc_seconds            histogram  time a price calculation took
//
// Histograms are Prometheus histograms (le buckets). Reset clears
// the statistics but not the metrics, which only ever grow.
package mes
