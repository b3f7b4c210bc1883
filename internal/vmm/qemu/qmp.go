package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"time"
)

// QMP is a small client of the QEMU Machine Protocol: JSON objects, one per line, over a unix
// socket. Every call takes its deadline from ctx.
type QMP struct {
	conn net.Conn
	r    *bufio.Reader
	path string
}

// DialQMP connects to the QMP socket at path, reads the greeting and negotiates capabilities.
func DialQMP(ctx context.Context, path string) (*QMP, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("QMP %s: %w", path, err)
	}
	q := &QMP{conn: conn, r: bufio.NewReader(conn), path: path}
	if err := q.setDeadline(ctx); err != nil {
		conn.Close()
		return nil, err
	}
	var greeting struct {
		QMP *json.RawMessage `json:"QMP"`
	}
	if err := q.readMessage(&greeting); err != nil {
		conn.Close()
		return nil, fmt.Errorf("QMP %s: greeting: %w", path, err)
	}
	if greeting.QMP == nil {
		conn.Close()
		return nil, fmt.Errorf("QMP %s: no greeting (is this a QMP socket?)", path)
	}
	if err := q.Execute(ctx, "qmp_capabilities", nil, nil); err != nil {
		conn.Close()
		return nil, err
	}
	return q, nil
}

// Close closes the connection.
func (q *QMP) Close() error { return q.conn.Close() }

func (q *QMP) setDeadline(ctx context.Context) error {
	dl, ok := ctx.Deadline()
	if !ok {
		// Never wait forever on a VMM that stopped answering.
		dl = time.Now().Add(10 * time.Second)
	}
	if err := q.conn.SetDeadline(dl); err != nil {
		return fmt.Errorf("QMP %s: %w", q.path, err)
	}
	return nil
}

type qmpReply struct {
	Return *json.RawMessage `json:"return"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`
	Event string `json:"event"`
}

// maxQMPMessage bounds one message from QEMU. The largest reply ukernel asks for (query-block)
// is a few KiB; without a bound, a VMM that never sends a newline makes the host buffer without end.
const maxQMPMessage = 1 << 20

func (q *QMP) readMessage(v any) error {
	var line []byte
	for {
		frag, err := q.r.ReadSlice('\n')
		if len(line)+len(frag) > maxQMPMessage {
			return fmt.Errorf("message longer than %d bytes, refused", maxQMPMessage)
		}
		line = append(line, frag...)
		if err == nil {
			break
		}
		if err != bufio.ErrBufferFull {
			return err
		}
	}
	return json.Unmarshal(line, v)
}

// Execute runs command with args (nil for none) and decodes its return value into result
// (nil to ignore it). Asynchronous events that arrive meanwhile are skipped.
func (q *QMP) Execute(ctx context.Context, command string, args, result any) error {
	return q.execute(ctx, command, args, result, func(b []byte) error {
		_, err := q.conn.Write(b)
		return err
	})
}

// execute is Execute with the request's bytes written by send.
func (q *QMP) execute(ctx context.Context, command string, args, result any, send func([]byte) error) error {
	if err := q.setDeadline(ctx); err != nil {
		return err
	}
	req := map[string]any{"execute": command}
	if args != nil {
		req["arguments"] = args
	}
	b, err := json.Marshal(req)
	if err != nil {
		return err
	}
	if err := send(append(b, '\n')); err != nil {
		return fmt.Errorf("QMP %s: send %s: %w", q.path, command, err)
	}
	for {
		var rep qmpReply
		if err := q.readMessage(&rep); err != nil {
			return fmt.Errorf("QMP %s: reply to %s: %w", q.path, command, err)
		}
		switch {
		case rep.Event != "":
			continue
		case rep.Error != nil:
			return fmt.Errorf("QMP %s: %s: %s: %s", q.path, command, rep.Error.Class, rep.Error.Desc)
		case rep.Return != nil:
			if result == nil {
				return nil
			}
			if err := json.Unmarshal(*rep.Return, result); err != nil {
				return fmt.Errorf("QMP %s: decode reply to %s: %w", q.path, command, err)
			}
			return nil
		}
	}
}
