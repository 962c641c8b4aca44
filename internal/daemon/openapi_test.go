package daemon

import (
	"bytes"
	"encoding/json"
	"flag"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/ringfence/ringfence/internal/api"
)

var update = flag.Bool("update", false, "rewrite docs/openapi.json from the route table and routeDocs")

const openAPIFile = "../../docs/openapi.json"

// notOnRoutes are internal/api's wire types no route's body or reply
// names, and why.
var notOnRoutes = map[string]string{
	"RemoteError":        "the client's error value, not a body (ErrorBody is)",
	"ExportResult":       "the result inside an export's Operation (json.RawMessage)",
	"MigrationResult":    "the result inside a migration's Operation (json.RawMessage)",
	"DumpCoreResult":     "the result inside a dump-core Operation (json.RawMessage)",
	"HostShutdownResult": "the result inside a host shutdown's Operation (json.RawMessage)",
	"UsageRecord":        "the usage ledger's stored record; GET /usage serves it as a UsageRow",
	"Evacuation":         "the result inside an evacuation's Operation (json.RawMessage)",
	"EvacuatedMove":      "a part of Evacuation",
	"HAFenced":           "the JSON Detail of an ha.fenced event on the event stream",
	"HATakeover":         "the JSON Detail of an ha.takeover event on the event stream",
	"HARefused":          "the JSON Detail of an ha.refused event on the event stream",
	"Image":              "OS images are built, listed and deleted by the CLI on the host (image build|list|delete), not over the API",
}

// TestOpenAPI checks the reference both ways: every registered route is
// documented with its permission and every documented operation is
// registered; every schema is a type of internal/api (or internal/peer
// for the peer routes) with the same JSON fields, and every api type is
// in the document; and the file is what the code generates now.
func TestOpenAPI(t *testing.T) {
	routes := Routes()
	for _, rt := range routes {
		if _, ok := routeDocs[rt.Method+" "+rt.Path]; !ok {
			t.Errorf("%s %s has no line in routeDocs (openapi_routes_test.go)", rt.Method, rt.Path)
		}
	}
	for k := range routeDocs {
		if !slices.ContainsFunc(routes, func(rt RouteInfo) bool { return rt.Method+" "+rt.Path == k }) {
			t.Errorf("routeDocs documents %q, which is not a route", k)
		}
	}
	gen, err := json.MarshalIndent(openAPI(routes, routeDocs), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	gen = append(gen, '\n')
	if *update {
		if err := os.WriteFile(openAPIFile, gen, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	file, err := os.ReadFile(openAPIFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(file, gen) {
		t.Errorf("docs/openapi.json is not what the route table makes: run go test ./internal/daemon -run TestOpenAPI -update")
	}
	var doc openAPIDoc
	if err := json.Unmarshal(file, &doc); err != nil {
		t.Fatal(err)
	}
	checkPaths(t, doc, routes)
	checkSchemas(t, doc, file)
}

type openAPIDoc struct {
	Paths map[string]map[string]struct {
		Permission string `json:"x-permission"`
		Parameters []struct {
			Name, In string
		} `json:"parameters"`
	} `json:"paths"`
	Components struct {
		Schemas map[string]struct {
			Properties map[string]json.RawMessage `json:"properties"`
		} `json:"schemas"`
	} `json:"components"`
}

// checkPaths: the document's operations are exactly the routes, with
// their permissions and path parameters.
func checkPaths(t *testing.T, doc openAPIDoc, routes []RouteInfo) {
	seen := map[string]bool{}
	for _, rt := range routes {
		key := strings.ToLower(rt.Method) + " " + api.Version + rt.Path
		seen[key] = true
		op, ok := doc.Paths[api.Version+rt.Path][strings.ToLower(rt.Method)]
		if !ok {
			t.Errorf("%s is not in docs/openapi.json", key)
			continue
		}
		if op.Permission != string(rt.Perm) {
			t.Errorf("%s: x-permission %q, the route needs %q", key, op.Permission, rt.Perm)
		}
		for _, m := range paramRE.FindAllStringSubmatch(rt.Path, -1) {
			if !slices.ContainsFunc(op.Parameters, func(p struct{ Name, In string }) bool { return p.Name == m[1] && p.In == "path" }) {
				t.Errorf("%s: path parameter %s is not documented", key, m[1])
			}
		}
	}
	for p, ops := range doc.Paths {
		for m := range ops {
			if !seen[m+" "+p] {
				t.Errorf("docs/openapi.json documents %s %s, which is not a route", m, p)
			}
		}
	}
}

// checkSchemas: every schema is a Go type of internal/api (or
// internal/peer, "peer.X") with the same JSON field names, read from the
// source rather than by the reflection that wrote the document; every
// api struct is in the document (or in notOnRoutes); every $ref resolves.
func checkSchemas(t *testing.T, doc openAPIDoc, file []byte) {
	types := map[string][]string{}
	parseTypes(t, "../api", "", types)
	parseTypes(t, "../peer", "peer.", types)
	for name, s := range doc.Components.Schemas {
		fields, ok := types[name]
		if !ok {
			t.Errorf("schema %s is not a type of internal/api (or internal/peer)", name)
			continue
		}
		var props []string
		for p := range s.Properties {
			props = append(props, p)
		}
		sort.Strings(props)
		if !slices.Equal(props, fields) {
			t.Errorf("schema %s has fields %v, the Go type %v", name, props, fields)
		}
	}
	for name := range types {
		_, documented := doc.Components.Schemas[name]
		if !strings.Contains(name, ".") && !documented && notOnRoutes[name] == "" {
			t.Errorf("api.%s is in no route's body or reply: document the route that uses it, or add it to notOnRoutes with the reason", name)
		}
	}
	for _, m := range refRE.FindAllSubmatch(file, -1) {
		if _, ok := doc.Components.Schemas[string(m[1])]; !ok && string(m[1]) != "Error" {
			t.Errorf("$ref to %s, which is not in components/schemas", m[1])
		}
	}
}

// parseTypes reads the exported struct types of the package in dir and
// their JSON field names (embedded structs flattened), sorted.
func parseTypes(t *testing.T, dir, qual string, out map[string][]string) {
	fset := token.NewFileSet()
	structs := map[string]*ast.StructType{}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, dir+"/"+e.Name(), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if ts, ok := n.(*ast.TypeSpec); ok && ts.Name.IsExported() {
				if st, ok := ts.Type.(*ast.StructType); ok {
					structs[ts.Name.Name] = st
				}
			}
			return true
		})
	}
	for name, st := range structs {
		fields := jsonFields(st, structs)
		sort.Strings(fields)
		out[qual+name] = fields
	}
}

func jsonFields(st *ast.StructType, structs map[string]*ast.StructType) []string {
	var out []string
	for _, f := range st.Fields.List {
		tag := ""
		if f.Tag != nil {
			s, _ := strconv.Unquote(f.Tag.Value)
			tag, _, _ = strings.Cut(reflect.StructTag(s).Get("json"), ",")
		}
		if tag == "-" {
			continue
		}
		if len(f.Names) == 0 {
			if id, ok := f.Type.(*ast.Ident); ok && tag == "" && structs[id.Name] != nil {
				out = append(out, jsonFields(structs[id.Name], structs)...)
			}
			continue
		}
		for _, n := range f.Names {
			if !n.IsExported() {
				continue
			}
			if tag != "" {
				out = append(out, tag)
			} else {
				out = append(out, n.Name)
			}
		}
	}
	return out
}

var refRE = regexp.MustCompile(`"\$ref": "#/components/(?:schemas|responses)/([^"]+)"`)
