package project

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	toml "github.com/pelletier/go-toml/v2"

	"github.com/ukernel-dev/ukernel/internal/suggest"
)

// The TOML library reports a wrong type in Go's terms ("cannot decode TOML string into struct
// field project.RunSection.VCPU of type int") and lets any scalar through a text unmarshaler
// (command = 3 became the program "3"). So the file's plain decoding is checked against the
// schema here, and every problem is told in the file's terms: the key, the type it takes and
// the type it got.

// typeProblem is a value of the wrong type at key.
type typeProblem struct {
	key, want, got, hint string
}

func (p *typeProblem) msg() string {
	m := "expected " + p.want + ", got " + p.got
	if p.hint != "" {
		m += "; " + p.hint
	}
	return m
}

var commandType = reflect.TypeFor[Command]()

// checkTypes walks the plainly decoded value v against the schema type t and returns the
// first value of the wrong type, in key order; key is v's dotted key.
func checkTypes(t reflect.Type, v any, key string) *typeProblem {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	bad := func(hint string) *typeProblem {
		return &typeProblem{key: key, want: typeWords(t), got: valueWords(v), hint: hint}
	}
	if t == commandType {
		if _, ok := v.(string); ok {
			return nil
		}
		arr, ok := v.([]any)
		if !ok {
			return bad("")
		}
		for i, e := range arr {
			if _, ok := e.(string); !ok {
				return &typeProblem{key: key, want: typeWords(t), got: fmt.Sprintf("an array with %s as item %d", valueWords(e), i+1)}
			}
		}
		return nil
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if _, ok := v.(int64); !ok {
			return bad(quoteHint(v, func(s string) bool { _, err := strconv.ParseInt(s, 10, 64); return err == nil }))
		}
	case reflect.Float32, reflect.Float64:
		switch v.(type) {
		case int64, float64:
		default:
			return bad("")
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			return bad(quoteHint(v, func(s string) bool { return s == "true" || s == "false" }))
		}
	case reflect.String:
		if _, ok := v.(string); !ok {
			return bad("")
		}
	case reflect.Slice:
		arr, ok := v.([]any)
		if !ok {
			return bad("")
		}
		for i, e := range arr {
			if p := checkTypes(t.Elem(), e, fmt.Sprintf("%s[%d]", key, i)); p != nil {
				if isTable(t.Elem()) {
					return p
				}
				// An array of scalars is reported as a whole: `publish = [8080]`.
				return &typeProblem{key: key, want: typeWords(t), got: fmt.Sprintf("an array with %s as item %d", valueWords(e), i+1), hint: p.hint}
			}
		}
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			return bad("")
		}
		for _, k := range slices.Sorted(maps.Keys(m)) {
			if p := checkTypes(t.Elem(), m[k], key+"."+k); p != nil {
				return p
			}
		}
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			hint := ""
			if arr, ok := v.([]any); ok && len(arr) > 0 && allTables(arr) {
				hint = fmt.Sprintf("write [%s], with one pair of brackets", key)
			}
			return bad(hint)
		}
		for _, k := range slices.Sorted(maps.Keys(m)) {
			if f, ok := fieldByKey(t, k); ok {
				if p := checkTypes(f.Type, m[k], strings.TrimPrefix(key+"."+k, ".")); p != nil {
					return p
				}
			}
		}
	}
	return nil
}

// quoteHint suggests dropping the quotes from a string that would be right without them.
func quoteHint(v any, fits func(string) bool) string {
	if s, ok := v.(string); ok && fits(strings.TrimSpace(s)) {
		return "write " + strings.TrimSpace(s) + " without quotes"
	}
	return ""
}

func isTable(t reflect.Type) bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t != commandType && (t.Kind() == reflect.Struct || t.Kind() == reflect.Map)
}

func allTables(arr []any) bool {
	for _, e := range arr {
		if _, ok := e.(map[string]any); !ok {
			return false
		}
	}
	return true
}

// tomlName is the key of a struct field in the file; "" for a field the file cannot set.
func tomlName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
	if name == "-" {
		return ""
	}
	if name == "" {
		return f.Name
	}
	return name
}

// typeWords names what a schema type takes, as the file spells it.
func typeWords(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == commandType {
		return "a string or an array of strings"
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "true or false"
	case reflect.String:
		return "a string"
	case reflect.Slice:
		return "an array of " + plural(t.Elem())
	case reflect.Map:
		return "a table of " + plural(t.Elem())
	case reflect.Struct:
		return "a table"
	}
	return "a " + t.Kind().String()
}

func plural(t reflect.Type) string {
	w := typeWords(t)
	switch {
	case t == commandType:
		return "commands"
	case strings.HasPrefix(w, "an "):
		w = strings.TrimPrefix(w, "an ")
	case strings.HasPrefix(w, "a "):
		w = strings.TrimPrefix(w, "a ")
	case w == "true or false":
		return "booleans"
	}
	first, rest, _ := strings.Cut(w, " ")
	return strings.TrimSpace(first + "s " + rest)
}

// valueWords names the type of a plainly decoded TOML value, with the value when it is short.
func valueWords(v any) string {
	switch x := v.(type) {
	case string:
		if len(x) > 40 {
			return "a string"
		}
		return fmt.Sprintf("a string (%q)", x)
	case int64:
		return fmt.Sprintf("an integer (%d)", x)
	case float64:
		return fmt.Sprintf("a float (%v)", x)
	case bool:
		return fmt.Sprintf("a boolean (%v)", x)
	case []any:
		if len(x) > 0 && allTables(x) {
			return "an array of tables"
		}
		return "an array"
	case map[string]any:
		return "a table"
	case time.Time, toml.LocalDateTime:
		return "a date-time"
	case toml.LocalDate:
		return "a date"
	case toml.LocalTime:
		return "a time"
	}
	return fmt.Sprintf("a %T", v)
}

// fieldNames lists the keys a table of type t takes, for suggestions.
func fieldNames(t reflect.Type) []string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	var names []string
	for i := range t.NumField() {
		if n := tomlName(t.Field(i)); n != "" {
			names = append(names, n)
		}
	}
	return names
}

// typeAt is the schema type at a key path of t, following tables and the values of maps.
func typeAt(t reflect.Type, path []string) (reflect.Type, bool) {
	for _, k := range path {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		switch t.Kind() {
		case reflect.Map:
			t = t.Elem()
		case reflect.Struct:
			f, ok := fieldByKey(t, k)
			if !ok {
				return nil, false
			}
			t = f.Type
		default:
			return nil, false
		}
	}
	return t, true
}

// fieldByKey finds the field a key sets: its exact name, else (as the TOML library matches)
// the name in any case.
func fieldByKey(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		if f := t.Field(i); tomlName(f) == key {
			return f, true
		}
	}
	for i := range t.NumField() {
		if f := t.Field(i); tomlName(f) != "" && strings.EqualFold(tomlName(f), key) {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// valueAt is the plainly decoded value at a key path.
func valueAt(doc map[string]any, path []string) (any, bool) {
	var v any = doc
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = m[k]; !ok {
			return nil, false
		}
	}
	return v, true
}

// unknownKeys turns the library's list of keys the schema lacks into one problem each, with
// the nearest known keys of the same table as suggestions.
func unknownKeys(name string, schema reflect.Type, sm *toml.StrictMissingError) error {
	var errs []error
	for _, de := range sm.Errors {
		row, _ := de.Position()
		key := de.Key()
		msg := "unknown key"
		if len(key) > 0 {
			if t, ok := typeAt(schema, key[:len(key)-1]); ok {
				if hint := suggest.Phrase(suggest.Closest(key[len(key)-1], fieldNames(t)), func(s string) string { return s }); hint != "" {
					msg += "; " + hint
				}
			}
		}
		msg += " (docs/CONFIG.md lists every key)"
		errs = append(errs, &Error{File: name, Line: row, Key: strings.Join(key, "."), Msg: msg})
	}
	return errors.Join(errs...)
}

// decodeStrict decodes a project file into v (a pointer to its schema), refusing unknown keys
// and values of the wrong type, each reported at its line.
func decodeStrict(name string, data []byte, v any) error {
	// The plain decoding first: a file that is no TOML at all is reported as such, not by
	// whatever wrong type the typed decoding met before the broken line.
	var doc map[string]any
	if err := toml.Unmarshal(data, &doc); err != nil {
		return tomlError(name, err)
	}
	dec := toml.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	schema := reflect.TypeOf(v)
	var sm *toml.StrictMissingError
	if errors.As(err, &sm) && len(sm.Errors) > 0 {
		return unknownKeys(name, schema, sm)
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		row, _ := de.Position()
		key := de.Key()
		val, okv := valueAt(doc, key)
		t, okt := typeAt(schema, key)
		if okv && okt {
			if p := checkTypes(t, val, strings.Join(key, ".")); p != nil {
				return &Error{File: name, Line: row, Key: p.key, Msg: p.msg()}
			}
		}
	}
	if err != nil {
		return tomlError(name, err)
	}
	if p := checkTypes(schema, doc, ""); p != nil {
		return &Error{File: name, Line: lineOf(data, p.key), Key: p.key, Msg: p.msg()}
	}
	return nil
}

// tomlError places an error of the TOML library at its line.
func tomlError(name string, err error) error {
	var de *toml.DecodeError
	if !errors.As(err, &de) {
		return &Error{File: name, Msg: err.Error()}
	}
	row, _ := de.Position()
	return &Error{File: name, Line: row, Key: strings.Join(de.Key(), "."), Msg: strings.TrimPrefix(de.Error(), "toml: ")}
}
