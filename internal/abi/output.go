package abi

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// The workload's output channel: init copies the stdout and stderr of the entry and of every
// service to the host in frames, on a channel of its own, apart from the kernel's console (which
// carries whatever the kernel prints, in between the workload's lines) and from the events.
//
// A frame is a 5-byte header, the service's name and the data:
//
//	magic 'O' | kind (1 byte) | name length (1 byte) | data length (2 bytes, big endian) | name | data
//
// The entry's frames have an empty name. A FrameHello frame, the first one init writes, carries
// the guest's ABI version as its data: it is the host's first sign that init runs.
const (
	FrameMagic  = 'O'
	FrameHello  = 0
	FrameStdout = 1
	FrameStderr = 2
	// MaxFrameData bounds the data of one frame; longer output is cut into several frames.
	MaxFrameData = 1<<16 - 1
	// MaxFrameName bounds a service's name in a frame.
	MaxFrameName = 255
	frameHeader  = 5
)

// The output channel's transport under each VMM.
const (
	// OutputSerialFlag on the kernel command line tells init to write the frames to the second
	// serial port, /dev/ttyS1 (QEMU connects it to the host's socket). A UART, unlike a
	// virtio-serial port, is built into the kernel: no module stands between the workload's
	// start and its first line (QEMU's virtio-serial module costs a TCG boot about 50 ms).
	OutputSerialFlag = "ukernel.output=ttyS1"
	// OutputSerialDevice is the device init writes the frames to under OutputSerialFlag.
	OutputSerialDevice = "/dev/ttyS1"
	// OutputPortFlag on the kernel command line tells init to write the frames to the
	// virtio-serial port OutputPort instead: for a workload with a root process
	// (Manifest.RootWorkload), which could open the UART beside init and forge frames, while a
	// virtio-serial port opens only once. Its module is loaded before such a workload starts
	// anyway (the events port is claimed then too).
	OutputPortFlag = "ukernel.output=vport"
	OutputPort     = "ukernel.output"
	// OutputVsockPort is the host's vsock port for the frames where the VMM has no second
	// serial port (Firecracker: the guest connects to the host, CID 2).
	OutputVsockPort = 1026
)

// Frame is one piece of the workload's output.
type Frame struct {
	Kind    byte   // FrameHello, FrameStdout or FrameStderr
	Service string // "" for the entry
	Data    []byte
}

// AppendFrames appends f to dst as one frame, or several when its data is longer than
// MaxFrameData (a hello or an empty data makes one frame). The name must fit MaxFrameName.
func AppendFrames(dst []byte, f Frame) ([]byte, error) {
	if len(f.Service) > MaxFrameName {
		return dst, fmt.Errorf("output frame: service name of %d bytes; at most %d", len(f.Service), MaxFrameName)
	}
	if f.Kind != FrameHello && f.Kind != FrameStdout && f.Kind != FrameStderr {
		return dst, fmt.Errorf("output frame: unknown kind %d", f.Kind)
	}
	data := f.Data
	for {
		n := min(len(data), MaxFrameData)
		dst = append(dst, FrameMagic, f.Kind, byte(len(f.Service)))
		dst = binary.BigEndian.AppendUint16(dst, uint16(n))
		dst = append(dst, f.Service...)
		dst = append(dst, data[:n]...)
		data = data[n:]
		if len(data) == 0 {
			return dst, nil
		}
	}
}

// ErrBadFrame is a frame the decoder cannot read: the stream is not a frame stream, or is
// corrupt. Nothing after it can be trusted to be in step.
var ErrBadFrame = errors.New("output channel: bad frame")

// FrameReader decodes frames from a stream.
type FrameReader struct {
	r   *bufio.Reader
	hdr [frameHeader]byte
}

// NewFrameReader reads frames from r.
func NewFrameReader(r io.Reader) *FrameReader {
	return &FrameReader{r: bufio.NewReaderSize(r, 64<<10)}
}

// Next returns the next frame. Its Data is a new slice. At a clean end of the stream it returns
// io.EOF; a stream cut inside a frame gives io.ErrUnexpectedEOF.
func (fr *FrameReader) Next() (Frame, error) {
	if _, err := io.ReadFull(fr.r, fr.hdr[:]); err != nil {
		return Frame{}, err
	}
	h := fr.hdr
	if h[0] != FrameMagic {
		return Frame{}, fmt.Errorf("%w: byte 0x%02x where a frame starts", ErrBadFrame, h[0])
	}
	if h[1] != FrameHello && h[1] != FrameStdout && h[1] != FrameStderr {
		return Frame{}, fmt.Errorf("%w: unknown kind %d", ErrBadFrame, h[1])
	}
	nameLen, dataLen := int(h[2]), int(binary.BigEndian.Uint16(h[3:5]))
	body := make([]byte, nameLen+dataLen)
	if _, err := io.ReadFull(fr.r, body); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, err
	}
	f := Frame{Kind: h[1], Service: string(body[:nameLen])}
	if dataLen > 0 {
		f.Data = body[nameLen:]
	}
	return f, nil
}
