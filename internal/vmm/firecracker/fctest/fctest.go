// Package fctest serves Firecracker's HTTP API for tests: every request is checked against the
// published API description (paths, methods, required fields, field types, enums) and answered
// the way Firecracker answers (204 without a body; 400 with {"fault_message": ...}). Firecracker
// itself cannot run on the development host (no usable KVM), so this is how the backend is
// proven at the API level.
package fctest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
)

// Field is one property of a request body in the API description.
type Field struct {
	Type     string   // string, integer, boolean, object, array
	Required bool     // listed under "required"
	Enum     []string // allowed values of a string
	Min      *int     // minimum of an integer
	// Fields describe an object's properties, or an array's items' when they are objects; nil
	// leaves them unchecked.
	Fields map[string]Field
}

// Op is one operation: a path template, a method and its body schema.
type Op struct {
	Method string
	Path   string // may hold one {param}
	Body   map[string]Field
	// PathField names the body field that must equal the path parameter (e.g. drive_id).
	PathField string
	Reply     any // 200 body for GETs; nil means 204
}

func atLeast(n int) *int { return &n }

// API is the part of Firecracker's API description ukernel uses, transcribed from
// src/firecracker/swagger/firecracker.yaml of firecracker-microvm/firecracker (info.version
// 1.17.0-dev; the shapes used here are unchanged since v1.0). Unknown fields are refused, as
// Firecracker's serde structs do (deny_unknown_fields).
var API = []Op{
	{Method: "GET", Path: "/", Reply: map[string]any{"app_name": "Firecracker", "id": "anonymous-instance", "state": "Not started", "vmm_version": "1.17.0-dev"}},
	{Method: "PUT", Path: "/logger", Body: map[string]Field{
		"log_path":        {Type: "string"},
		"level":           {Type: "string", Enum: []string{"Error", "Warning", "Info", "Debug", "Trace", "Off"}},
		"show_level":      {Type: "boolean"},
		"show_log_origin": {Type: "boolean"},
		"module":          {Type: "string"},
	}},
	{Method: "PUT", Path: "/metrics", Body: map[string]Field{
		"metrics_path": {Type: "string", Required: true},
	}},
	{Method: "PUT", Path: "/boot-source", Body: map[string]Field{
		"kernel_image_path": {Type: "string", Required: true},
		"initrd_path":       {Type: "string"},
		"boot_args":         {Type: "string"},
	}},
	{Method: "PUT", Path: "/drives/{drive_id}", PathField: "drive_id", Body: map[string]Field{
		"drive_id":       {Type: "string", Required: true},
		"is_root_device": {Type: "boolean", Required: true},
		"partuuid":       {Type: "string"},
		"cache_type":     {Type: "string", Enum: []string{"Unsafe", "Writeback"}},
		"is_read_only":   {Type: "boolean"},
		"path_on_host":   {Type: "string"},
		"rate_limiter":   {Type: "object"},
		"io_engine":      {Type: "string", Enum: []string{"Sync", "Async"}},
		"socket":         {Type: "string"},
	}},
	{Method: "PUT", Path: "/machine-config", Body: map[string]Field{
		"vcpu_count":        {Type: "integer", Required: true, Min: atLeast(1)},
		"mem_size_mib":      {Type: "integer", Required: true},
		"smt":               {Type: "boolean"},
		"track_dirty_pages": {Type: "boolean"},
		"cpu_template":      {Type: "string", Enum: []string{"C3", "T2", "T2S", "T2CL", "T2A", "V1N1", "None"}},
		"huge_pages":        {Type: "string", Enum: []string{"None", "Transparent", "2M"}},
	}},
	{Method: "PUT", Path: "/network-interfaces/{iface_id}", PathField: "iface_id", Body: map[string]Field{
		"iface_id":        {Type: "string", Required: true},
		"host_dev_name":   {Type: "string", Required: true},
		"guest_mac":       {Type: "string"},
		"mtu":             {Type: "integer", Min: atLeast(68)},
		"rx_rate_limiter": {Type: "object"},
		"tx_rate_limiter": {Type: "object"},
	}},
	{Method: "PUT", Path: "/vsock", Body: map[string]Field{
		"guest_cid": {Type: "integer", Required: true, Min: atLeast(3)},
		"uds_path":  {Type: "string", Required: true},
		"vsock_id":  {Type: "string"},
	}},
	{Method: "PUT", Path: "/actions", Body: map[string]Field{
		"action_type": {Type: "string", Required: true, Enum: []string{"FlushMetrics", "InstanceStart", "SendCtrlAltDel"}},
	}},
	{Method: "PATCH", Path: "/vm", Body: map[string]Field{
		"state": {Type: "string", Required: true, Enum: []string{"Paused", "Resumed"}},
	}},
	{Method: "PUT", Path: "/snapshot/create", Body: map[string]Field{
		"mem_file_path": {Type: "string", Required: true},
		"snapshot_path": {Type: "string", Required: true},
		"snapshot_type": {Type: "string", Enum: []string{"Full", "Diff"}},
	}},
	{Method: "PUT", Path: "/snapshot/load", Body: map[string]Field{
		"snapshot_path":         {Type: "string", Required: true},
		"enable_diff_snapshots": {Type: "boolean"},
		"track_dirty_pages":     {Type: "boolean"},
		"mem_file_path":         {Type: "string"},
		"mem_backend": {Type: "object", Fields: map[string]Field{
			"backend_type": {Type: "string", Required: true, Enum: []string{"File", "Uffd"}},
			"backend_path": {Type: "string", Required: true},
		}},
		"resume_vm": {Type: "boolean"},
		"network_overrides": {Type: "array", Fields: map[string]Field{
			"iface_id":      {Type: "string", Required: true},
			"host_dev_name": {Type: "string", Required: true},
		}},
		"vsock_override": {Type: "object", Fields: map[string]Field{
			"uds_path": {Type: "string", Required: true},
		}},
		"clock_realtime": {Type: "boolean"},
		"huge_pages":     {Type: "string", Enum: []string{"Snapshot", "None", "Transparent"}},
	}},
}

// Match finds the operation for method and path and returns the path parameter.
func Match(method, path string) (*Op, string, bool) {
	for i := range API {
		op := &API[i]
		if op.Method != method {
			continue
		}
		prefix, _, templ := strings.Cut(op.Path, "{")
		if !templ {
			if path == op.Path {
				return op, "", true
			}
			continue
		}
		if param, ok := strings.CutPrefix(path, prefix); ok && param != "" && !strings.Contains(param, "/") {
			return op, param, true
		}
	}
	return nil, "", false
}

// Check validates a request body against op: JSON object, no unknown fields, required fields
// present, types and enums and minimums respected, path parameter equal to its body field.
func Check(op *Op, param string, body []byte) error {
	if op.Body == nil {
		if len(bytes.TrimSpace(body)) > 0 {
			return fmt.Errorf("%s %s takes no body", op.Method, op.Path)
		}
		return nil
	}
	var obj map[string]any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&obj); err != nil || obj == nil {
		return fmt.Errorf("body is not a JSON object: %v", err)
	}
	if err := checkObject(op.Body, obj); err != nil {
		return err
	}
	if op.PathField != "" && obj[op.PathField] != param {
		return fmt.Errorf("the id from the path (%s) does not match the id from the body (%v)", param, obj[op.PathField])
	}
	return nil
}

// checkObject checks obj against fields: no unknown field, required ones present, each of its
// type.
func checkObject(fields map[string]Field, obj map[string]any) error {
	var names []string
	for k := range obj {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		f, ok := fields[k]
		if !ok {
			return fmt.Errorf("unknown field `%s`", k)
		}
		if err := checkType(k, f, obj[k]); err != nil {
			return err
		}
	}
	for k, f := range fields {
		if _, ok := obj[k]; f.Required && !ok {
			return fmt.Errorf("missing field `%s`", k)
		}
	}
	return nil
}

func checkType(name string, f Field, v any) error {
	switch f.Type {
	case "string":
		s, ok := v.(string)
		if !ok {
			return fmt.Errorf("field `%s`: invalid type, expected a string", name)
		}
		if len(f.Enum) > 0 {
			for _, e := range f.Enum {
				if s == e {
					return nil
				}
			}
			return fmt.Errorf("field `%s`: unknown variant `%s`, expected one of %v", name, s, f.Enum)
		}
	case "integer":
		n, ok := v.(json.Number)
		if !ok {
			return fmt.Errorf("field `%s`: invalid type, expected an integer", name)
		}
		i, err := n.Int64()
		if err != nil {
			return fmt.Errorf("field `%s`: invalid type, expected an integer", name)
		}
		if f.Min != nil && i < int64(*f.Min) {
			return fmt.Errorf("field `%s`: %d is below the minimum %d", name, i, *f.Min)
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			return fmt.Errorf("field `%s`: invalid type, expected a boolean", name)
		}
	case "object":
		o, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("field `%s`: invalid type, expected an object", name)
		}
		if f.Fields != nil {
			if err := checkObject(f.Fields, o); err != nil {
				return fmt.Errorf("field `%s`: %w", name, err)
			}
		}
	case "array":
		items, ok := v.([]any)
		if !ok {
			return fmt.Errorf("field `%s`: invalid type, expected an array", name)
		}
		for _, it := range items {
			if f.Fields == nil {
				break
			}
			o, ok := it.(map[string]any)
			if !ok {
				return fmt.Errorf("field `%s`: invalid type, expected an array of objects", name)
			}
			if err := checkObject(f.Fields, o); err != nil {
				return fmt.Errorf("field `%s`: %w", name, err)
			}
		}
	}
	return nil
}

// Request is one request the server received.
type Request struct {
	Method string          `json:"method"`
	Path   string          `json:"path"`
	Body   json.RawMessage `json:"body,omitempty"`
	Status int             `json:"status"`
}

// Server is a Firecracker API that checks and records requests.
type Server struct {
	mu       sync.Mutex
	requests []Request
	started  bool // booted (InstanceStart) or loaded from a snapshot
	paused   bool // loaded and not resumed yet, or paused (PATCH /vm)
	booting  bool // a boot resource was configured: a snapshot may no longer be loaded
	// Fail makes the request "METHOD PATH" fail with this fault message (as Firecracker does
	// for, e.g., a kernel path it cannot open).
	Fail map[string]string
	// OnAction is called after an accepted PUT /actions with its action_type; OnVsock after an
	// accepted PUT /vsock with its body.
	OnAction func(action string)
	OnVsock  func(v map[string]any)
	// Open is called for an accepted pre-boot PUT with its path and body: Firecracker opens
	// the files a request names (logger, metrics, kernel, initrd, drives) when it gets it.
	// An error is answered with its message, as Firecracker answers a file it cannot open.
	Open func(path string, body map[string]any) error
	// Create is called for an accepted PUT /snapshot/create with its body, Load for an
	// accepted PUT /snapshot/load: an error is answered with its message. OnVM is called
	// for an accepted PATCH /vm with the state asked for.
	Create, Load func(body map[string]any) error
	OnVM         func(state string)
}

// state is GET /'s state: Not started, Running or Paused.
func (s *Server) state() string {
	switch {
	case !s.started:
		return "Not started"
	case s.paused:
		return "Paused"
	}
	return "Running"
}

// bootResource reports whether a request configures the boot path, after which Firecracker
// refuses to load a snapshot.
func bootResource(path string) bool {
	return path == "/boot-source" || path == "/machine-config" || path == "/vsock" ||
		strings.HasPrefix(path, "/drives/") || strings.HasPrefix(path, "/network-interfaces/")
}

// Requests returns the requests received so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

func fault(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"fault_message": msg})
}

// ServeHTTP answers one request as Firecracker does.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body bytes.Buffer
	body.ReadFrom(r.Body)
	rec := Request{Method: r.Method, Path: r.URL.Path}
	if body.Len() > 0 {
		rec.Body = json.RawMessage(bytes.Clone(body.Bytes()))
	}
	status := s.answer(w, r, body.Bytes())
	rec.Status = status
	s.mu.Lock()
	s.requests = append(s.requests, rec)
	s.mu.Unlock()
}

func (s *Server) answer(w http.ResponseWriter, r *http.Request, body []byte) int {
	op, param, ok := Match(r.Method, r.URL.Path)
	if !ok {
		fault(w, http.StatusBadRequest, fmt.Sprintf("Invalid request method and/or path: %s %s.", r.Method, r.URL.Path))
		return http.StatusBadRequest
	}
	if op.Body != nil && !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		fault(w, http.StatusBadRequest, "Content-Type must be application/json")
		return http.StatusBadRequest
	}
	if err := Check(op, param, body); err != nil {
		fault(w, http.StatusBadRequest, "An error occurred when deserializing the json body of a request: "+err.Error()+".")
		return http.StatusBadRequest
	}
	if msg, ok := s.Fail[r.Method+" "+r.URL.Path]; ok {
		fault(w, http.StatusBadRequest, msg)
		return http.StatusBadRequest
	}
	var obj map[string]any
	json.Unmarshal(body, &obj)
	s.mu.Lock()
	preBoot := op.Path != "/" && op.Path != "/actions" && op.Path != "/vm" && op.Path != "/snapshot/create"
	if preBoot && s.started {
		s.mu.Unlock()
		fault(w, http.StatusBadRequest, "The requested operation is not supported after starting the microVM.")
		return http.StatusBadRequest
	}
	if op.Path == "/actions" && obj["action_type"] == "InstanceStart" {
		if s.started {
			s.mu.Unlock()
			fault(w, http.StatusBadRequest, "The requested operation is not supported after starting the microVM.")
			return http.StatusBadRequest
		}
		s.started = true
	}
	if op.Path == "/snapshot/load" && s.booting {
		s.mu.Unlock()
		fault(w, http.StatusBadRequest, "Loading a microVM snapshot not allowed after configuring boot-specific resources.")
		return http.StatusBadRequest
	}
	if (op.Path == "/vm" || op.Path == "/snapshot/create") && !s.started {
		s.mu.Unlock()
		fault(w, http.StatusBadRequest, "The requested operation is not supported before starting the microVM.")
		return http.StatusBadRequest
	}
	if bootResource(r.URL.Path) {
		s.booting = true
	}
	if op.Path == "/snapshot/load" {
		s.started, s.paused = true, true
	}
	if op.Path == "/vm" {
		s.paused = obj["state"] == "Paused"
	}
	s.mu.Unlock()
	hook := func(f func(map[string]any) error) bool {
		if f == nil {
			return true
		}
		if err := f(obj); err != nil {
			fault(w, http.StatusBadRequest, err.Error())
			return false
		}
		return true
	}
	switch {
	case op.Path == "/snapshot/create" && !hook(s.Create), op.Path == "/snapshot/load" && !hook(s.Load):
		return http.StatusBadRequest
	case op.Path == "/vm" && s.OnVM != nil:
		s.OnVM(obj["state"].(string))
	}
	if preBoot && op.Path != "/snapshot/load" && r.Method == http.MethodPut && s.Open != nil {
		if err := s.Open(r.URL.Path, obj); err != nil {
			fault(w, http.StatusBadRequest, err.Error())
			return http.StatusBadRequest
		}
	}
	if op.Path == "/vsock" && s.OnVsock != nil {
		s.OnVsock(obj)
	}
	if op.Path == "/actions" && s.OnAction != nil {
		s.OnAction(obj["action_type"].(string))
	}
	if op.Reply != nil {
		reply := op.Reply
		if op.Path == "/" {
			info := map[string]any{}
			for k, v := range op.Reply.(map[string]any) {
				info[k] = v
			}
			s.mu.Lock()
			info["state"] = s.state()
			s.mu.Unlock()
			reply = info
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		json.NewEncoder(w).Encode(reply)
		return http.StatusOK
	}
	w.WriteHeader(http.StatusNoContent)
	return http.StatusNoContent
}
