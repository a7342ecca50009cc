package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	_ "gocloud.dev/blob/s3blob" // s3:// model stores

	"github.com/ficuslabs/ficus/pricing"
	"github.com/ficuslabs/ficus/pricing/instant"
	"github.com/ficuslabs/ficus/pricing/legacy"
	"github.com/ficuslabs/ficus/pricing/slicer"
)

// defaultModelStore is where the model files live unless --models says
// otherwise: one directory shared by every command on this machine, so
// that ficus sim shop, ficus sim mes and ficus pricing quote see the same
// files.
func defaultModelStore() string {
	return "file://" + filepath.ToSlash(filepath.Join(os.TempDir(), "ficus-models")) + "?create_dir=1"
}

// builtinEstimator returns the estimator behind the estimator-backed
// calculator of that name: "mesh" (the instant estimate, fitted against
// the slicer) or "slicer" (PrusaSlicer).
func builtinEstimator(name string) (pricing.Estimator, error) {
	switch name {
	case "mesh":
		return instant.New(instant.Config{})
	case "slicer":
		return slicer.New(slicer.Config{})
	}
	return nil, fmt.Errorf("calculator %q: want mesh, slicer or legacy", name)
}

// estimatorFor returns the named estimator: the app's own when a test
// set one, else the built-in one.
func (a *app) estimatorFor(name string) (pricing.Estimator, error) {
	if a.estimator != nil {
		return a.estimator(name)
	}
	return builtinEstimator(name)
}

// simEstimator is the estimator the simulated MES prices with (ficus sim
// mes, ficus demo).
func (a *app) simEstimator() (pricing.Estimator, error) {
	if a.estimator != nil {
		if e, err := a.estimator("mesh"); err == nil {
			return e, nil
		}
	}
	return instant.New(instant.Config{})
}

// newCalculator builds the calculator named: legacy asks the MES at
// mesURL, mesh and slicer price the store's models with pl.
func (a *app) newCalculator(name string, store *pricing.Store, pl *pricing.PriceList, mesURL string, mesTimeout time.Duration) (pricing.Calculator, error) {
	switch name {
	case "legacy":
		if mesURL == "" {
			return nil, usageError{errors.New("--calculator legacy needs --mes-url, the MES's base URL")}
		}
		calc, err := legacy.New(legacy.Config{BaseURL: mesURL, Timeout: mesTimeout})
		if err != nil {
			return nil, usageError{fmt.Errorf("--mes-url: %w", err)}
		}
		return calc, nil
	case "mesh", "slicer":
		est, err := a.estimatorFor(name)
		if err != nil {
			return nil, err
		}
		return pricing.NewCalculator(pricing.CalculatorConfig{Name: name, Store: store, PriceList: pl, Estimator: est})
	}
	return nil, usageError{fmt.Errorf("--calculator %q: want mesh, slicer or legacy", name)}
}

// loadPriceList reads --price-list, or the embedded default when empty.
func loadPriceList(path string) (*pricing.PriceList, error) {
	if path == "" {
		return pricing.DefaultPriceList(), nil
	}
	pl, err := pricing.LoadPriceList(path)
	if err != nil {
		return nil, usageError{fmt.Errorf("--price-list: %w", err)}
	}
	return pl, nil
}

func (a *app) pricingCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pricing",
		Short: "Price customers' models: one quote, or the pricing fleet",
		Long: `Prices a customer's 3D model with a price list and a calculator: mesh (an
instant estimate from the geometry), slicer (PrusaSlicer) or legacy (the
MES's own quote endpoint). See docs/pricing.md.`,
	}
	cmd.AddCommand(a.pricingQuoteCommand(), a.pricingWorkerCommand(), a.pricingAPICommand())
	return cmd
}

func (a *app) pricingQuoteCommand() *cobra.Command {
	var (
		material, calculator, priceList, storeURL, mesURL string
		quantity                                          int
		mesTimeout                                        time.Duration
		asJSON                                            bool
	)
	cmd := &cobra.Command{
		Use:   "quote FILE",
		Short: "Print the quote for one model file",
		Long: `Copies FILE (binary STL; OBJ and 3MF as the parser learns them) into the model
store as quotes/<sha256 of its bytes><ext> and prices it with the chosen
calculator: a table with the itemised breakdown and any warnings (an open
mesh, for one), or the quote as JSON with --json.

--calculator legacy asks the MES at --mes-url, which must read the same
model store (ficus sim mes uses the same default store).

Exit codes: 0 priced, 1 not priced (the reason is printed), 2 usage.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError{fmt.Errorf("pricing quote takes one FILE, got %d arguments", len(args))}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if quantity < 1 || quantity > pricing.MaxQuantity {
				return usageError{fmt.Errorf("--quantity %d: want 1 to %d", quantity, pricing.MaxQuantity)}
			}
			if calculator != "mesh" && calculator != "slicer" && calculator != "legacy" {
				return usageError{fmt.Errorf("--calculator %q: want mesh, slicer or legacy", calculator)}
			}
			if calculator == "legacy" && mesURL == "" {
				return usageError{errors.New("--calculator legacy needs --mes-url, the MES's base URL")}
			}
			pl, err := loadPriceList(priceList)
			if err != nil {
				return err
			}
			store, err := pricing.OpenStore(ctx, storeURL, pricing.StoreConfig{})
			if err != nil {
				return usageError{fmt.Errorf("--models: %w", err)}
			}
			defer store.Close()
			key, err := putFile(ctx, store, args[0])
			if err != nil {
				return err
			}
			calc, err := a.newCalculator(calculator, store, pl, mesURL, mesTimeout)
			if err != nil {
				return err
			}
			q, err := calc.Quote(ctx, pricing.Request{ModelKey: key, Material: material, Quantity: quantity})
			if err != nil {
				return fmt.Errorf("quote %s: %w", args[0], err)
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(q)
			}
			return printQuote(cmd.OutOrStdout(), args[0], q)
		},
	}
	f := cmd.Flags()
	f.StringVar(&material, "material", "PLA", "material of the price list")
	f.IntVar(&quantity, "quantity", 1, "number of pieces")
	f.StringVar(&calculator, "calculator", "mesh", "mesh, slicer or legacy")
	f.StringVar(&priceList, "price-list", "", "price list YAML file (default: the embedded one, docs/pricelist.example.yaml)")
	f.StringVar(&storeURL, "models", defaultModelStore(), "model store URL: file:///dir or s3://bucket")
	f.StringVar(&mesURL, "mes-url", "", "the MES's base URL, for --calculator legacy")
	f.DurationVar(&mesTimeout, "mes-timeout", legacy.DefaultTimeout, "how long to wait for the MES's quote")
	f.BoolVar(&asJSON, "json", false, "print the quote as JSON")
	return cmd
}

// putFile copies a model file into the store under a key named after
// its content, and returns the key.
func putFile(ctx context.Context, store *pricing.Store, path string) (string, error) {
	ext := strings.ToLower(filepath.Ext(path))
	if ext == "" || strings.Trim(ext[1:], "abcdefghijklmnopqrstuvwxyz0123456789") != "" {
		return "", usageError{fmt.Errorf("%s: name a model file ending in .stl, .obj or .3mf", path)}
	}
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, pricing.DefaultMaxModelBytes+1))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	sum := sha256.Sum256(data)
	key := "quotes/" + hex.EncodeToString(sum[:16]) + ext
	if err := store.Put(ctx, key, data); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return key, nil
}

// printQuote writes a quote as a table.
func printQuote(w io.Writer, file string, q *pricing.Quote) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "model\t%s (%s)\n", file, q.ModelKey)
	fmt.Fprintf(tw, "calculator\t%s\n", q.Calculator)
	fmt.Fprintf(tw, "material\t%s × %d\n", q.Material, q.Quantity)
	if q.Estimate != (pricing.Estimate{}) {
		fmt.Fprintf(tw, "per piece\t%s printing, %.2f g\n", q.Estimate.PrintTime.Round(time.Second), q.Estimate.FilamentGrams)
	}
	tw.Flush()
	fmt.Fprintln(w)
	width := len(q.Price.StringFixed(2))
	for _, l := range q.Breakdown {
		width = max(width, len(l.Amount.StringFixed(2)))
	}
	for _, l := range q.Breakdown {
		fmt.Fprintf(w, "  %-18s %*s  %s\n", l.Item, width, l.Amount.StringFixed(2), l.Detail)
	}
	fmt.Fprintf(w, "  %-18s %*s  %s\n", "total", width, q.Price.StringFixed(2), q.Currency)
	for _, warn := range q.Warnings {
		fmt.Fprintf(w, "\nwarning: %s\n", warn)
	}
	return nil
}
