package spec

import (
	"fmt"
	"slices"
	"strings"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/opencontainers/go-digest"
)

// MaxManifestSize bounds a manifest document in bytes.
const MaxManifestSize = 16 << 20

// knownBlobMediaTypes are the blob media types a manifest may use.
var knownBlobMediaTypes = map[string]bool{
	MediaTypeFile:           true,
	MediaTypeDirectoryTarGz: true,
	MediaTypePack:           true,
	MediaTypeChunkedFile:    true,
}

// ParseManifest decodes and validates a manifest document. Besides what
// Validate checks, the document must read the same in every JSON decoder:
// valid UTF-8, no two keys in one object that are equal or differ only in
// case, no key that matches a field only case-insensitively, no escaped
// half of a surrogate pair (see checkManifestKeys).
func ParseManifest(data []byte) (*Manifest, error) {
	if err := checkManifestKeys(data); err != nil {
		return nil, err
	}
	// Once the keys are known to be unique and exact, the v2 decoder maps
	// them to the same fields as encoding/json, in less than half the time
	// (BenchmarkParseManifest); FuzzParseManifest holds the two to the same
	// answers.
	var m Manifest
	if err := jsonv2.Unmarshal(data, &m, v1Times); err != nil { // also refuses trailing data
		return nil, Errorf(ErrorManifestInvalid, "manifest is not valid JSON: %v", err)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// v1Times decodes times as encoding/json does, with time.Time's own
// UnmarshalJSON: the v2 decoder's RFC 3339 is stricter, and a manifest
// must read alike in both.
var v1Times = jsonv2.WithUnmarshalers(jsonv2.UnmarshalFunc(func(data []byte, t *time.Time) error {
	return t.UnmarshalJSON(data)
}))

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
	packNames := map[string]bool{}
	for i, b := range m.Blobs {
		field := fmt.Sprintf("blobs[%d]", i)
		if !knownBlobMediaTypes[b.MediaType] {
			return invalid("%s (%s): mediaType %q is not supported: use %q", field, b.Name, b.MediaType, MediaTypeFile)
		}
		if b.MediaType == MediaTypePack {
			// A pack's name labels it; the paths are those of its files.
			// The label is shown in progress bars and errors, so it must
			// be as tame as a path (no control characters).
			if b.Name == "" || packNames[b.Name] {
				return invalid("%s: a pack needs a name unique among packs", field)
			}
			if err := ValidatePath(b.Name); err != nil {
				return invalid("%s.name: %v", field, err)
			}
			packNames[b.Name] = true
			if err := validatePack(field, b); err != nil {
				return invalid("%v", err)
			}
			for _, f := range b.Files {
				names = append(names, f.Name)
			}
			continue
		}
		if err := validateDescriptor(field, b); err != nil {
			return invalid("%v", err)
		}
		if b.MediaType == MediaTypeChunkedFile {
			if err := validateChunked(field, b); err != nil {
				return invalid("%v", err)
			}
		} else if len(b.Files) > 0 || len(b.Chunks) > 0 {
			return invalid("%s (%s): only packs list files and only chunked files list chunks", field, b.Name)
		}
		names = append(names, b.Name)
	}
	return checkPathConflicts(names)
}

func validatePack(field string, b Descriptor) error {
	if err := ValidateDigest(b.Digest); err != nil {
		return fmt.Errorf("%s (%s).digest: %s", field, b.Name, err.(*Error).Message)
	}
	if b.Size < 0 {
		return fmt.Errorf("%s (%s).size %d is negative", field, b.Name, b.Size)
	}
	if len(b.Files) == 0 {
		return fmt.Errorf("%s (%s): a pack lists at least one file", field, b.Name)
	}
	var end int64
	for j, f := range b.Files {
		ff := func() string { return fmt.Sprintf("%s (%s).files[%d]", field, b.Name, j) } // only for errors: packs list thousands of files
		if err := validateDescriptor("", Descriptor{Name: f.Name, Digest: f.Digest, Size: f.Size}); err != nil {
			return validateDescriptor(ff(), Descriptor{Name: f.Name, Digest: f.Digest, Size: f.Size})
		}
		// Offset >= end >= 0, so b.Size-f.Offset cannot overflow, where
		// f.Offset+f.Length could (it wrapped to a negative and passed).
		if f.Offset < end || f.Length <= 0 || f.Offset > b.Size || f.Length > b.Size-f.Offset {
			return fmt.Errorf("%s (%s): frame at offset %d, length %d lies outside the pack or overlaps the previous file", ff(), f.Name, f.Offset, f.Length)
		}
		end = f.Offset + f.Length
	}
	return nil
}

func validateChunked(field string, b Descriptor) error {
	if len(b.Chunks) == 0 {
		return fmt.Errorf("%s (%s): a chunked file lists at least one chunk", field, b.Name)
	}
	var total int64
	for j, c := range b.Chunks {
		if err := ValidateDigest(c.Digest); err != nil {
			return fmt.Errorf("%s (%s).chunks[%d].digest: %s", field, b.Name, j, err.(*Error).Message)
		}
		if c.Size <= 0 {
			return fmt.Errorf("%s (%s).chunks[%d].size %d is not positive", field, b.Name, j, c.Size)
		}
		// Chunk sizes are positive, so a sum past b.Size can stop here;
		// unchecked, it could wrap around int64 and add up to b.Size.
		if c.Size > b.Size-total {
			return fmt.Errorf("%s (%s): chunks add up to more than size %d", field, b.Name, b.Size)
		}
		total += c.Size
	}
	if total != b.Size {
		return fmt.Errorf("%s (%s): chunks add up to %d bytes, size says %d", field, b.Name, total, b.Size)
	}
	if want := ChunkListDigest(b.Chunks); b.Digest != want {
		return fmt.Errorf("%s (%s).digest %s is not the digest of its chunk list (%s)", field, b.Name, b.Digest, want)
	}
	return nil
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
// directory of another ("a" and "a/b"). The paths are valid (ValidatePath),
// so none holds a NUL byte.
//
// Sorted with '/' before every other byte, a path's duplicates and the
// paths under it come right after it: anything between "a" and "a/b" in
// that order starts with "a/" (or is "a"). So comparing neighbours finds
// every conflict, with no set of the paths. The order is made by sorting
// copies with each '/' turned into NUL, which compare as plain strings.
func checkPathConflicts(names []string) error {
	var total int
	for _, n := range names {
		total += len(n)
	}
	buf := make([]byte, 0, total)
	for _, n := range names {
		buf = append(buf, n...)
	}
	for j, c := range buf {
		if c == '/' {
			buf[j] = 0
		}
	}
	all, keys := string(buf), make([]string, len(names))
	for i, n := range names {
		keys[i], all = all[:len(n)], all[len(n):]
	}
	slices.Sort(keys)
	path := func(key string) string { return strings.ReplaceAll(key, "\x00", "/") } // for errors only
	for i := 1; i < len(keys); i++ {
		prev, cur := keys[i-1], keys[i]
		if cur == prev {
			return Errorf(ErrorManifestInvalid, "path %q appears more than once", path(cur))
		}
		if len(cur) > len(prev) && cur[len(prev)] == 0 && strings.HasPrefix(cur, prev) {
			return Errorf(ErrorManifestInvalid, "path %q is a file and also the directory of %q", path(prev), path(cur))
		}
	}
	return nil
}

// Referenced lists every stored blob the manifest names: the config, whole
// files, packs, legacy directories, and each chunk of a chunked file (named
// "PATH#INDEX").
func (m *Manifest) Referenced() []Descriptor {
	out := make([]Descriptor, 0, len(m.Blobs)+1)
	out = append(out, m.Config)
	for _, b := range m.Blobs {
		if b.MediaType != MediaTypeChunkedFile {
			out = append(out, b)
			continue
		}
		for i, c := range b.Chunks {
			out = append(out, Descriptor{Name: fmt.Sprintf("%s#%d", b.Name, i), Digest: c.Digest, Size: c.Size})
		}
	}
	return out
}

// ReferencedOnce is Referenced with each digest once: the first
// descriptor that names it.
func (m *Manifest) ReferencedOnce() []Descriptor { return UniqueDigests(m.Referenced()) }

// UniqueDigests is refs with each digest once: the first descriptor that
// names it.
func UniqueDigests(refs []Descriptor) []Descriptor {
	out := refs[:0:0]
	seen := make(map[digest.Digest]bool, len(refs))
	for _, desc := range refs {
		if !seen[desc.Digest] {
			seen[desc.Digest] = true
			out = append(out, desc)
		}
	}
	return out
}

// TotalSize is the size of the version's files: the config, whole and
// chunked files, packed files, and legacy directory archives.
func (m *Manifest) TotalSize() int64 {
	total := m.Config.Size
	for _, b := range m.Blobs {
		if b.MediaType == MediaTypePack {
			for _, f := range b.Files {
				total += f.Size
			}
			continue
		}
		total += b.Size
	}
	return total
}
