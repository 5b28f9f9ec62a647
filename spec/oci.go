package spec

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"
)

// Media types of the OCI distribution API (docs/oci.md): the manifests
// modelxd stores and serves under /v2/, besides modelx's own.
const (
	// MediaTypeOCIManifest is an OCI image manifest: a config and layers.
	MediaTypeOCIManifest = "application/vnd.oci.image.manifest.v1+json"
	// MediaTypeOCIIndex is an OCI image index: a list of manifests.
	MediaTypeOCIIndex = "application/vnd.oci.image.index.v1+json"
	// MediaTypeDockerManifest is Docker's image manifest, schema 2.
	MediaTypeDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	// MediaTypeDockerManifestList is Docker's manifest list, schema 2.
	MediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	// MediaTypeOCIEmpty is the media type of the empty JSON blob "{}" that
	// artifacts without a config name.
	MediaTypeOCIEmpty = "application/vnd.oci.empty.v1+json"
)

// OCIDigestHeader is the response header carrying the digest of the
// manifest or blob an OCI request stored or served.
const OCIDigestHeader = "Docker-Content-Digest"

// ociManifestTypes are the manifest media types modelxd accepts under /v2/,
// and whether each is a list of manifests (an index).
var ociManifestTypes = map[string]bool{
	MediaTypeOCIManifest:        false,
	MediaTypeDockerManifest:     false,
	MediaTypeOCIIndex:           true,
	MediaTypeDockerManifestList: true,
}

// IsOCIManifestType reports whether mediaType is an OCI or Docker schema 2
// manifest or index that modelxd stores.
func IsOCIManifestType(mediaType string) bool {
	_, ok := ociManifestTypes[mediaType]
	return ok
}

// nondistributable are layer media types whose bytes live elsewhere (the
// descriptor's URLs): a manifest may name them without pushing them.
var nondistributable = map[string]bool{
	"application/vnd.oci.image.layer.nondistributable.v1.tar":       true,
	"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip":  true,
	"application/vnd.oci.image.layer.nondistributable.v1.tar+zstd":  true,
	"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip":     true,
	"application/vnd.docker.image.rootfs.foreign.diff.tar":          true,
	"application/vnd.docker.image.rootfs.foreign.diff.tar.zstd":     true,
	"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip+zst": true,
}

// OCIDescriptor points at a blob or manifest in an OCI manifest.
type OCIDescriptor struct {
	MediaType    string            `json:"mediaType"`
	Digest       digest.Digest     `json:"digest"`
	Size         int64             `json:"size"`
	URLs         []string          `json:"urls,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Platform     json.RawMessage   `json:"platform,omitempty"`
	Data         []byte            `json:"data,omitempty"`
}

// OCIManifest is an OCI image manifest or index (or Docker's schema 2
// equivalents), with the fields the registry needs; other fields stay in
// the stored bytes, which are served exactly as pushed.
type OCIManifest struct {
	SchemaVersion int               `json:"schemaVersion"`
	MediaType     string            `json:"mediaType,omitempty"`
	ArtifactType  string            `json:"artifactType,omitempty"`
	Config        *OCIDescriptor    `json:"config,omitempty"`
	Layers        []OCIDescriptor   `json:"layers,omitempty"`
	Manifests     []OCIDescriptor   `json:"manifests,omitempty"`
	Subject       *OCIDescriptor    `json:"subject,omitempty"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}

// IsIndex reports whether the manifest lists manifests rather than layers.
func (m *OCIManifest) IsIndex() bool { return ociManifestTypes[m.MediaType] }

// ParseOCIManifest parses and checks an OCI manifest or index pushed with
// Content-Type contentType. The media type is the document's mediaType
// field, else contentType; when both are set they must agree. It fills
// MediaType in. Only sha256 digests are accepted.
func ParseOCIManifest(data []byte, contentType string) (*OCIManifest, error) {
	invalid := func(format string, args ...any) error {
		return Errorf(ErrorManifestInvalid, format, args...)
	}
	var m OCIManifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, invalid("the manifest is not valid JSON: %v", err)
	}
	contentType, _, _ = strings.Cut(contentType, ";")
	contentType = strings.TrimSpace(contentType)
	switch {
	case m.MediaType != "" && contentType != "" && contentType != m.MediaType && IsOCIManifestType(contentType):
		return nil, invalid("the manifest's mediaType %q differs from its Content-Type %q", m.MediaType, contentType)
	case m.MediaType == "" && IsOCIManifestType(contentType):
		m.MediaType = contentType
	case m.MediaType == "":
		m.MediaType = sniffOCIMediaType(data)
	}
	if !IsOCIManifestType(m.MediaType) {
		return nil, invalid("manifest media type %q is not supported: push an OCI image manifest or index (%s, %s) or Docker schema 2", m.MediaType, MediaTypeOCIManifest, MediaTypeOCIIndex)
	}
	if m.SchemaVersion != 2 {
		return nil, invalid("schemaVersion %d is not supported: want 2", m.SchemaVersion)
	}
	if m.IsIndex() {
		if m.Config != nil || m.Layers != nil {
			return nil, invalid("an index (%s) has manifests, not config or layers", m.MediaType)
		}
		for i, desc := range m.Manifests {
			if err := checkOCIDescriptor(fmt.Sprintf("manifests[%d]", i), desc); err != nil {
				return nil, err
			}
		}
	} else {
		if m.Manifests != nil {
			return nil, invalid("an image manifest (%s) has config and layers, not manifests", m.MediaType)
		}
		if m.Config == nil {
			return nil, invalid("the manifest has no config descriptor")
		}
		if err := checkOCIDescriptor("config", *m.Config); err != nil {
			return nil, err
		}
		for i, desc := range m.Layers {
			if err := checkOCIDescriptor(fmt.Sprintf("layers[%d]", i), desc); err != nil {
				return nil, err
			}
		}
	}
	if m.Subject != nil {
		if err := checkOCIDescriptor("subject", *m.Subject); err != nil {
			return nil, err
		}
	}
	return &m, nil
}

// sniffOCIMediaType tells an index from an image manifest by its fields,
// for documents without a mediaType field pushed without a Content-Type.
func sniffOCIMediaType(data []byte) string {
	var probe struct {
		Manifests json.RawMessage `json:"manifests"`
	}
	if json.Unmarshal(data, &probe) == nil && probe.Manifests != nil {
		return MediaTypeOCIIndex
	}
	return MediaTypeOCIManifest
}

func checkOCIDescriptor(field string, desc OCIDescriptor) error {
	if desc.MediaType == "" {
		return Errorf(ErrorManifestInvalid, "%s has no mediaType", field)
	}
	if desc.Size < 0 {
		return Errorf(ErrorManifestInvalid, "%s has a negative size", field)
	}
	if ValidateDigest(desc.Digest) != nil {
		return Errorf(ErrorManifestInvalid, "%s: digest %q is not supported: modelxd stores sha256 digests only (sha256:<64 lowercase hex digits>)", field, string(desc.Digest))
	}
	return nil
}

// IsNondistributable reports whether a layer of mediaType keeps its bytes
// elsewhere (at the descriptor's URLs), so a manifest may name it without
// the registry holding it.
func IsNondistributable(mediaType string) bool { return nondistributable[mediaType] }

// ArtifactTypeOf is the artifact type the referrers API reports for the
// manifest: its artifactType, else its config's media type.
func (m *OCIManifest) ArtifactTypeOf() string {
	if m.ArtifactType != "" || m.Config == nil {
		return m.ArtifactType
	}
	return m.Config.MediaType
}
