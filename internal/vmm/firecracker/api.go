package firecracker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// The request bodies of Firecracker's API (src/firecracker/swagger/firecracker.yaml, v1.x).
// Optional fields are omitted when empty; the fields the swagger marks required never are.

// BootSource is PUT /boot-source.
type BootSource struct {
	KernelImagePath string `json:"kernel_image_path"`
	InitrdPath      string `json:"initrd_path,omitempty"`
	BootArgs        string `json:"boot_args,omitempty"`
}

// Drive is PUT /drives/{drive_id}.
type Drive struct {
	DriveID      string `json:"drive_id"`
	PathOnHost   string `json:"path_on_host"`
	IsRootDevice bool   `json:"is_root_device"`
	IsReadOnly   bool   `json:"is_read_only"`
}

// MachineConfig is PUT /machine-config.
type MachineConfig struct {
	VCPUCount       int  `json:"vcpu_count"`
	MemSizeMib      int  `json:"mem_size_mib"`
	TrackDirtyPages bool `json:"track_dirty_pages,omitempty"`
}

// NetworkInterface is PUT /network-interfaces/{iface_id}.
type NetworkInterface struct {
	IfaceID     string `json:"iface_id"`
	HostDevName string `json:"host_dev_name"`
	GuestMAC    string `json:"guest_mac,omitempty"`
}

// Vsock is PUT /vsock.
type Vsock struct {
	GuestCID int    `json:"guest_cid"`
	UDSPath  string `json:"uds_path"`
}

// Logger is PUT /logger.
type Logger struct {
	LogPath       string `json:"log_path"`
	Level         string `json:"level,omitempty"`
	ShowLevel     bool   `json:"show_level,omitempty"`
	ShowLogOrigin bool   `json:"show_log_origin,omitempty"`
}

// Metrics is PUT /metrics.
type Metrics struct {
	MetricsPath string `json:"metrics_path"`
}

// Action is PUT /actions.
type Action struct {
	ActionType string `json:"action_type"`
}

// Actions.
const (
	ActionInstanceStart  = "InstanceStart"
	ActionSendCtrlAltDel = "SendCtrlAltDel"
	ActionFlushMetrics   = "FlushMetrics"
)

// VMState is PATCH /vm.
type VMState struct {
	State string `json:"state"`
}

// VM states.
const (
	StatePaused  = "Paused"
	StateResumed = "Resumed"
)

// SnapshotCreate is PUT /snapshot/create.
type SnapshotCreate struct {
	SnapshotPath string `json:"snapshot_path"`
	MemFilePath  string `json:"mem_file_path"`
	SnapshotType string `json:"snapshot_type,omitempty"` // Full (default) or Diff
}

// SnapshotLoad is PUT /snapshot/load. resume_vm is never set: the guest is resumed (PATCH /vm)
// once the host is ready to send it its restore message. vsock_override (v1.16) is not needed:
// the vsock socket has the same path in every chroot (jail).
type SnapshotLoad struct {
	SnapshotPath string         `json:"snapshot_path"`
	MemBackend   *MemoryBackend `json:"mem_backend,omitempty"`
	// NetworkOverrides give a restored guest's interfaces this run's tap devices in place of
	// the ones recorded in the snapshot (v1.12 and later).
	NetworkOverrides []NetworkOverride `json:"network_overrides,omitempty"`
}

// NetworkOverride is one item of SnapshotLoad.NetworkOverrides.
type NetworkOverride struct {
	IfaceID     string `json:"iface_id"`
	HostDevName string `json:"host_dev_name"`
}

// MemoryBackend says where a snapshot's guest memory comes from.
type MemoryBackend struct {
	BackendType string `json:"backend_type"` // File or Uffd
	BackendPath string `json:"backend_path"`
}

// InstanceInfo is GET /.
type InstanceInfo struct {
	AppName    string `json:"app_name"`
	ID         string `json:"id"`
	State      string `json:"state"`
	VMMVersion string `json:"vmm_version"`
}

// APIError is a request Firecracker refused, with its fault_message.
type APIError struct {
	Method, Path string
	Status       int
	Fault        string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("firecracker: %s %s: %d: %s", e.Method, e.Path, e.Status, e.Fault)
}

// Client talks to one Firecracker API socket.
type Client struct {
	Socket string
	hc     *http.Client
}

// NewClient returns a client for the API socket at path.
func NewClient(socket string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		DisableKeepAlives: true,
	}
	return &Client{Socket: socket, hc: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

// Do sends one request with body encoded as JSON (none when nil) and decodes a 200 answer into
// out. A 204 is success without a body; anything else becomes an *APIError.
func (c *Client) Do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("firecracker: %s %s: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	// The host part is ignored: the transport always dials the unix socket.
	req, err := http.NewRequestWithContext(ctx, method, "http://localhost"+path, rd)
	if err != nil {
		return fmt.Errorf("firecracker: %s %s: %w", method, path, err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("firecracker: %s %s on %s: %w", method, path, c.Socket, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("firecracker: %s %s: read answer: %w", method, path, err)
	}
	switch {
	case resp.StatusCode == http.StatusNoContent:
		return nil
	case resp.StatusCode == http.StatusOK:
		if out == nil {
			return nil
		}
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("firecracker: %s %s: answer is not the expected JSON: %w", method, path, err)
		}
		return nil
	}
	var fault struct {
		FaultMessage string `json:"fault_message"`
	}
	msg := strings.TrimSpace(string(data))
	if json.Unmarshal(data, &fault) == nil && fault.FaultMessage != "" {
		msg = fault.FaultMessage
	}
	if msg == "" {
		msg = http.StatusText(resp.StatusCode)
	}
	return &APIError{Method: method, Path: path, Status: resp.StatusCode, Fault: msg}
}

// Put sends PUT path with body.
func (c *Client) Put(ctx context.Context, path string, body any) error {
	return c.Do(ctx, http.MethodPut, path, body, nil)
}

// Patch sends PATCH path with body.
func (c *Client) Patch(ctx context.Context, path string, body any) error {
	return c.Do(ctx, http.MethodPatch, path, body, nil)
}

// Info returns GET /.
func (c *Client) Info(ctx context.Context) (InstanceInfo, error) {
	var info InstanceInfo
	err := c.Do(ctx, http.MethodGet, "/", nil, &info)
	return info, err
}
