package abi

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
)

// EncodeConfigDrive encodes cfg as the host writes the run-time config drive: ConfigMagic, the
// JSON's length as 8 bytes little-endian, the JSON, zero padding to a multiple of 4096 (a whole
// number of sectors for the block device). The guest decodes it with guest.ReadConfig.
func EncodeConfigDrive(cfg *BootConfig) ([]byte, error) {
	body, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("config drive: %w", err)
	}
	var buf bytes.Buffer
	buf.WriteString(ConfigMagic)
	binary.Write(&buf, binary.LittleEndian, uint64(len(body)))
	buf.Write(body)
	if pad := buf.Len() % 4096; pad != 0 {
		buf.Write(make([]byte, 4096-pad))
	}
	return buf.Bytes(), nil
}
