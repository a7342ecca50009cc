package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"
)

// The CRDs in testdata/crds are copied from the projects' Go modules, as
// the module proxy serves them (go mod download -json MODULE@VERSION):
//
//	keda.sh_scaledobjects.yaml                  github.com/kedacore/keda/v2@v2.18.0, config/crd/bases/
//	monitoring.coreos.com_servicemonitors.yaml  github.com/prometheus-operator/prometheus-operator@v0.85.0, example/prometheus-operator-crd/

// crdSchemas validates custom resources against the openAPIV3Schema of
// their CRDs, the way the API server does with strict field validation:
// unknown fields fail (unless the schema preserves them), types and enums
// are checked.
type crdSchemas map[string]*jsonschema.Schema // "group/version, Kind=kind" → schema

func loadCRDSchemas(dir string) (crdSchemas, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("no CRDs in %s: %v", dir, err)
	}
	out := crdSchemas{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var crd struct {
			Spec struct {
				Group string `yaml:"group"`
				Names struct {
					Kind string `yaml:"kind"`
				} `yaml:"names"`
				Versions []struct {
					Name   string `yaml:"name"`
					Schema struct {
						OpenAPIV3Schema any `yaml:"openAPIV3Schema"`
					} `yaml:"schema"`
				} `yaml:"versions"`
			} `yaml:"spec"`
		}
		if err := yaml.Unmarshal(b, &crd); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		for _, v := range crd.Spec.Versions {
			doc, err := jsonValue(v.Schema.OpenAPIV3Schema)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", f, err)
			}
			structural(doc)
			key := fmt.Sprintf("%s/%s, Kind=%s", crd.Spec.Group, v.Name, crd.Spec.Names.Kind)
			c := jsonschema.NewCompiler()
			url := "mem://" + strings.NewReplacer("/", "_", ", ", "_", "=", "_").Replace(key) + ".json"
			if err := c.AddResource(url, doc); err != nil {
				return nil, fmt.Errorf("%s: %w", f, err)
			}
			s, err := c.Compile(url)
			if err != nil {
				return nil, fmt.Errorf("%s: %s: %w", f, key, err)
			}
			out[key] = s
		}
	}
	return out, nil
}

// validate checks obj (a custom resource as JSON) against the schema of
// its group, version and kind.
func (c crdSchemas) validate(gvk string, obj []byte) error {
	s, ok := c[gvk]
	if !ok {
		return fmt.Errorf("no CRD schema for %s in testdata/crds", gvk)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(obj))
	if err != nil {
		return err
	}
	return s.Validate(inst)
}

// jsonValue turns a YAML value into the JSON value jsonschema expects.
func jsonValue(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return jsonschema.UnmarshalJSON(bytes.NewReader(b))
}

// structural makes an OpenAPI v3 schema of a CRD a JSON Schema with the
// API server's meaning: an object with properties rejects others (the
// server prunes or, with strict field validation, rejects them) unless it
// is x-kubernetes-preserve-unknown-fields; x-kubernetes-int-or-string
// takes an integer or a string; nullable admits null.
func structural(v any) {
	switch n := v.(type) {
	case []any:
		for _, e := range n {
			structural(e)
		}
	case map[string]any:
		for k, e := range n {
			if k == "properties" || k == "patternProperties" {
				if props, ok := e.(map[string]any); ok {
					for _, p := range props {
						structural(p)
					}
				}
				continue
			}
			structural(e)
		}
		if n["x-kubernetes-int-or-string"] == true {
			delete(n, "type")
			if _, ok := n["anyOf"]; !ok {
				n["anyOf"] = []any{map[string]any{"type": "integer"}, map[string]any{"type": "string"}}
			}
		}
		if n["nullable"] == true {
			if t, ok := n["type"].(string); ok {
				n["type"] = []any{t, "null"}
			}
		}
		_, hasProps := n["properties"]
		_, hasAdditional := n["additionalProperties"]
		if hasProps && !hasAdditional && n["x-kubernetes-preserve-unknown-fields"] != true {
			n["additionalProperties"] = false
		}
	}
}
