package deploy

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"modelx.io/modelx/registry/auth"
)

// TestSchemaFollowsAuthTypes keeps the parts of values.schema.json that
// describe modelxd's own documents (the policy, issuers and robots) in step
// with the Go types modelxd reads them into: a field the registry gains is
// allowed in the values, and a field it drops is refused.
func TestSchemaFollowsAuthTypes(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(chartDir, "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var schema map[string]any
	if err := json.Unmarshal(data, &schema); err != nil {
		t.Fatalf("values.schema.json: %v", err)
	}
	for _, tc := range []struct {
		path []string // through "properties" and "items"
		typ  reflect.Type
	}{
		{[]string{"registry", "policy"}, reflect.TypeFor[auth.Policy]()},
		{[]string{"registry", "policy", "rules", "[]"}, reflect.TypeFor[auth.Rule]()},
		{[]string{"registry", "auth", "issuers", "[]"}, reflect.TypeFor[auth.IssuerConfig]()},
		{[]string{"registry", "auth", "robots", "[]"}, reflect.TypeFor[auth.Robot]()},
	} {
		node := schema
		for _, step := range tc.path {
			var next any
			if step == "[]" {
				next = node["items"]
			} else {
				props, _ := node["properties"].(map[string]any)
				next = props[step]
			}
			var ok bool
			if node, ok = next.(map[string]any); !ok {
				t.Fatalf("values.schema.json has no %s", strings.Join(tc.path, "."))
			}
		}
		var inSchema []string
		for name := range node["properties"].(map[string]any) {
			inSchema = append(inSchema, name)
		}
		var inGo []string
		for f := range tc.typ.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name != "" && name != "-" {
				inGo = append(inGo, name)
			}
		}
		slices.Sort(inSchema)
		slices.Sort(inGo)
		if !slices.Equal(inSchema, inGo) {
			t.Errorf("values.schema.json %s has %v; %s has %v", strings.Join(tc.path, "."), inSchema, tc.typ, inGo)
		}
		if node["additionalProperties"] != false {
			t.Errorf("values.schema.json %s allows unknown keys", strings.Join(tc.path, "."))
		}
	}
}
