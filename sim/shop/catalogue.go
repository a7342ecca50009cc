package shop

import (
	"context"
	"fmt"

	"github.com/ficuslabs/ficus/pricing"
	"github.com/ficuslabs/ficus/pricing/solids"
)

// cataloguePrefix starts the key of every model the shop sells.
const cataloguePrefix = "shop/"

// CatalogueKeys returns the model store keys of the parts the shop sells
// (solids.Catalogue under "shop/"), the keys its order items name.
func CatalogueKeys() []string {
	parts := solids.Catalogue()
	keys := make([]string, len(parts))
	for i, p := range parts {
		keys[i] = cataloguePrefix + p.Name
	}
	return keys
}

// WriteCatalogue writes the model file of every part the shop sells into
// the model store, at CatalogueKeys, and returns the keys.
func WriteCatalogue(ctx context.Context, models *pricing.Store) ([]string, error) {
	var keys []string
	for _, p := range solids.Catalogue() {
		key := cataloguePrefix + p.Name
		if err := models.Put(ctx, key, p.STL); err != nil {
			return nil, fmt.Errorf("shop catalogue: %w", err)
		}
		keys = append(keys, key)
	}
	return keys, nil
}
