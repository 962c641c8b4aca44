package daemon

import (
	"encoding/json"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/auth"
)

// The reference (docs/openapi.json) is generated from the route table
// and routeDocs, the types by reflection: it cannot drift from the code
// (TestOpenAPI compares the file with what the code makes).

// routeDoc is one route's entry in the reference.
type routeDoc struct {
	summary string
	in, out any    // zero values of the body and reply types; nil: none
	reply   string // asJSON, asNDJSON, asText or asUpgrade
	query   string // the query parameters it reads, comma-separated
}

const (
	asJSON    = "json"    // application/json: out
	asNDJSON  = "ndjson"  // application/x-ndjson: a stream of out, one per line
	asText    = "text"    // text/plain
	asUpgrade = "upgrade" // 101: the connection becomes a raw stream
)

// empty is a reply of {}.
type empty struct{}

// oneOf is a reply that is one of several types.
type oneOf []any

type obj = map[string]any

var timeType = reflect.TypeFor[time.Time]()
var rawType = reflect.TypeFor[json.RawMessage]()

// schemaName is a type's name in components/schemas: api's types by
// their name, others qualified by their package ("peer.Signed").
func schemaName(t reflect.Type) string {
	if strings.HasSuffix(t.PkgPath(), "/internal/api") {
		return t.Name()
	}
	return t.PkgPath()[strings.LastIndex(t.PkgPath(), "/")+1:] + "." + t.Name()
}

// schemaOf is t's schema; named structs go to defs and are referenced.
func schemaOf(t reflect.Type, defs obj) obj {
	switch {
	case t == timeType:
		return obj{"type": "string", "format": "date-time"}
	case t == rawType:
		return obj{"description": "any JSON value"}
	}
	switch t.Kind() {
	case reflect.Pointer:
		return schemaOf(t.Elem(), defs)
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return obj{"type": "string", "format": "byte"}
		}
		return obj{"type": "array", "items": schemaOf(t.Elem(), defs)}
	case reflect.Map:
		return obj{"type": "object", "additionalProperties": schemaOf(t.Elem(), defs)}
	case reflect.String:
		return obj{"type": "string"}
	case reflect.Bool:
		return obj{"type": "boolean"}
	case reflect.Int, reflect.Int32, reflect.Uint32, reflect.Uint, reflect.Int8, reflect.Int16, reflect.Uint8, reflect.Uint16:
		return obj{"type": "integer"}
	case reflect.Int64, reflect.Uint64:
		return obj{"type": "integer", "format": "int64"}
	case reflect.Float32, reflect.Float64:
		return obj{"type": "number"}
	case reflect.Struct:
		if t.Name() == "" || t == reflect.TypeFor[empty]() {
			return obj{"type": "object"}
		}
		name := schemaName(t)
		if _, ok := defs[name]; !ok {
			defs[name] = obj{} // a placeholder against recursion
			props, required := obj{}, []string{}
			structFields(t, defs, props, &required)
			s := obj{"type": "object", "properties": props}
			if len(required) > 0 {
				sort.Strings(required)
				s["required"] = required
			}
			defs[name] = s
		}
		return obj{"$ref": "#/components/schemas/" + name}
	}
	return obj{}
}

// structFields adds t's JSON fields (an embedded struct's flattened, as
// encoding/json does) to props; those without omitempty/omitzero are
// required.
func structFields(t reflect.Type, defs, props obj, required *[]string) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if !f.IsExported() || tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			structFields(f.Type, defs, props, required)
			continue
		}
		if name == "" {
			name = f.Name
		}
		props[name] = schemaOf(f.Type, defs)
		if !strings.Contains(opts, "omitempty") && !strings.Contains(opts, "omitzero") {
			*required = append(*required, name)
		}
	}
}

// bodySchema is the schema of v (a zero value, or oneOf of them).
func bodySchema(v any, defs obj) obj {
	if alts, ok := v.(oneOf); ok {
		var out []any
		for _, a := range alts {
			out = append(out, bodySchema(a, defs))
		}
		return obj{"oneOf": out}
	}
	return schemaOf(reflect.TypeOf(v), defs)
}

// pathOperation is one route's entry under its path.
func pathOperation(rt RouteInfo, d routeDoc, defs obj) obj {
	params := []any{}
	for _, m := range paramRE.FindAllStringSubmatch(rt.Path, -1) {
		params = append(params, obj{"name": m[1], "in": "path", "required": true, "schema": obj{"type": "string"}})
	}
	for q := range strings.SplitSeq(d.query, ",") {
		if q != "" {
			params = append(params, obj{"name": q, "in": "query", "schema": obj{"type": "string"}})
		}
	}
	errRef := obj{"$ref": "#/components/responses/Error"}
	op := obj{
		"operationId":  strings.ToLower(rt.Method) + opName(rt.Path),
		"summary":      d.summary,
		"x-permission": string(rt.Perm),
		"responses":    obj{"default": errRef, "403": errRef},
	}
	if len(params) > 0 {
		op["parameters"] = params
	}
	if d.in != nil {
		op["requestBody"] = obj{"content": obj{"application/json": obj{"schema": bodySchema(d.in, defs)}}}
	}
	ok := obj{"description": "success"}
	switch d.reply {
	case asJSON:
		if d.out != nil {
			ok["content"] = obj{"application/json": obj{"schema": bodySchema(d.out, defs)}}
		}
	case asNDJSON:
		ok["content"] = obj{"application/x-ndjson": obj{"schema": bodySchema(d.out, defs)}}
	case asText:
		ok["content"] = obj{"text/plain": obj{"schema": obj{"type": "string"}}}
	}
	code := "200"
	if d.reply == asUpgrade {
		code, ok["description"] = "101", "switching protocols: the connection becomes a raw stream"
	}
	op["responses"].(obj)[code] = ok
	return op
}

// opName makes an operationId's tail of a path: /domains/{name}/mem-set
// -> _domains_name_mem_set.
func opName(path string) string {
	if path == "" {
		return "_api"
	}
	r := strings.NewReplacer("/", "_", "{", "", "}", "", "-", "_")
	return r.Replace(path)
}

// openAPI is the reference for routes, documented by docs.
func openAPI(routes []RouteInfo, docs map[string]routeDoc) obj {
	defs := obj{}
	schemaOf(reflect.TypeFor[api.ErrorBody](), defs)
	paths := obj{}
	for _, rt := range routes {
		d, ok := docs[rt.Method+" "+rt.Path]
		if !ok {
			continue // TestOpenAPI names it
		}
		p := api.Version + rt.Path
		if paths[p] == nil {
			paths[p] = obj{}
		}
		paths[p].(obj)[strings.ToLower(rt.Method)] = pathOperation(rt, d, defs)
	}
	perms := []string{}
	for _, p := range auth.Perms() {
		perms = append(perms, string(p))
	}
	return obj{
		"openapi": "3.0.3",
		"info": obj{"title": "Ringfence API", "version": api.Version[1:],
			"description": "The JSON API of `ringfence serve` (the unix socket; the peer listener serves the peer routes). " +
				"Every operation's x-permission is the permission its caller's role must hold: " + strings.Join(perms, ", ") + ". " +
				"Generated from internal/daemon's route table: `go test ./internal/daemon -run TestOpenAPI -update`."},
		"paths": paths,
		"components": obj{
			"schemas": defs,
			"responses": obj{"Error": obj{"description": "an error: its class matches the status (api.StatusOf)",
				"content": obj{"application/json": obj{"schema": obj{"$ref": "#/components/schemas/ErrorBody"}}}}},
		},
	}
}
