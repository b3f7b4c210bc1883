package project

// DecodeStrict decodes a TOML file of another schema (the user configuration) with the checks
// project files get: unknown keys and wrong types are errors at their line, named with name.
func DecodeStrict(name string, data []byte, v any) error { return decodeStrict(name, data, v) }
