package spec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// MaxManifestSize bounds a manifest document in bytes.
const MaxManifestSize = 16 << 20

// knownBlobMediaTypes are the blob media types a manifest may use.
var knownBlobMediaTypes = map[string]bool{
	MediaTypeFile:           true,
	MediaTypeDirectoryTarGz: true,
}

// ParseManifest decodes and validates a manifest document.
func ParseManifest(data []byte) (*Manifest, error) {
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&m); err != nil {
		return nil, Errorf(ErrorManifestInvalid, "manifest is not valid JSON: %v", err)
	}
	if dec.More() {
		return nil, Errorf(ErrorManifestInvalid, "manifest has trailing data after the JSON document")
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// Validate checks the manifest's schema: version and media type, a config
// descriptor, and blob descriptors with sha256 digests, non-negative sizes,
// known media types and clean, unique, non-overlapping relative paths.
func (m *Manifest) Validate() error {
	invalid := func(format string, args ...any) error {
		return Errorf(ErrorManifestInvalid, format, args...)
	}
	if m.SchemaVersion != 0 && m.SchemaVersion != SchemaVersion {
		return invalid("schemaVersion %d is not supported: want %d", m.SchemaVersion, SchemaVersion)
	}
	if m.MediaType != "" && m.MediaType != MediaTypeManifest {
		return invalid("mediaType %q is not a modelx manifest: want %q", m.MediaType, MediaTypeManifest)
	}
	if err := validateDescriptor("config", m.Config); err != nil {
		return invalid("%v", err)
	}
	if m.Config.MediaType != "" && m.Config.MediaType != MediaTypeConfig {
		return invalid("config.mediaType %q is not %q", m.Config.MediaType, MediaTypeConfig)
	}
	names := make([]string, 0, len(m.Blobs)+1)
	names = append(names, m.Config.Name)
	for i, b := range m.Blobs {
		field := fmt.Sprintf("blobs[%d]", i)
		if err := validateDescriptor(field, b); err != nil {
			return invalid("%v", err)
		}
		if !knownBlobMediaTypes[b.MediaType] {
			return invalid("%s (%s): mediaType %q is not supported: use %q", field, b.Name, b.MediaType, MediaTypeFile)
		}
		names = append(names, b.Name)
	}
	return checkPathConflicts(names)
}

func validateDescriptor(field string, d Descriptor) error {
	if err := ValidatePath(d.Name); err != nil {
		return fmt.Errorf("%s.name: %v", field, err)
	}
	if err := ValidateDigest(d.Digest); err != nil {
		return fmt.Errorf("%s (%s).digest: %s", field, d.Name, err.(*Error).Message)
	}
	if d.Size < 0 {
		return fmt.Errorf("%s (%s).size %d is negative", field, d.Name, d.Size)
	}
	return nil
}

// checkPathConflicts rejects duplicate paths and a path that is also the
// directory of another ("a" and "a/b").
func checkPathConflicts(names []string) error {
	sorted := append([]string(nil), names...)
	sort.Strings(sorted)
	for i := 1; i < len(sorted); i++ {
		if sorted[i] == sorted[i-1] {
			return Errorf(ErrorManifestInvalid, "path %q appears more than once", sorted[i])
		}
	}
	set := make(map[string]bool, len(names))
	for _, n := range names {
		set[n] = true
	}
	for _, n := range names {
		for i := strings.IndexByte(n, '/'); i >= 0; {
			if set[n[:i]] {
				return Errorf(ErrorManifestInvalid, "path %q is a file and also the directory of %q", n[:i], n)
			}
			j := strings.IndexByte(n[i+1:], '/')
			if j < 0 {
				break
			}
			i += j + 1
		}
	}
	return nil
}

// Referenced lists the config and every blob descriptor of the manifest.
func (m *Manifest) Referenced() []Descriptor {
	out := make([]Descriptor, 0, len(m.Blobs)+1)
	out = append(out, m.Config)
	return append(out, m.Blobs...)
}
