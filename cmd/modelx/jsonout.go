package main

import (
	"strconv"
	"time"

	"github.com/opencontainers/go-digest"

	"modelx.io/modelx/spec"
)

// What -o json prints. Every key is snake_case; keys that are data (the
// names of annotations, and of modelx.yaml's inputs, outputs and serving
// parameters) are printed as they are. The registry's wire types (package
// spec) keep their own camelCase names: these types are the CLI's, and
// docs/cli.md documents them.

// modelList is list REGISTRY.
type modelList struct {
	Registry string      `json:"registry"`
	Models   []modelItem `json:"models"`
}

// modelItem is one model of a registry.
type modelItem struct {
	Name string `json:"name"` // REPOSITORY/NAME
}

// tagList is list MODEL.
type tagList struct {
	Model string    `json:"model"` // REPOSITORY/NAME
	Tags  []tagItem `json:"tags"`
}

// tagItem is one tag of a model.
type tagItem struct {
	Name   string        `json:"name"`
	Digest digest.Digest `json:"digest"`
	// Size is the version's files' total, when the registry recorded it.
	Size        int64             `json:"size,omitempty"`
	Modified    time.Time         `json:"modified"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

func newModelList(registry string, idx spec.Index) modelList {
	out := modelList{Registry: registry, Models: []modelItem{}}
	for _, m := range idx.Manifests {
		out.Models = append(out.Models, modelItem{Name: m.Name})
	}
	return out
}

func newTagList(model string, idx spec.Index) tagList {
	out := tagList{Model: model, Tags: []tagItem{}}
	for _, m := range idx.Manifests {
		size, _ := strconv.ParseInt(m.Annotations[spec.AnnotationModelSize], 10, 64)
		out.Tags = append(out.Tags, tagItem{Name: m.Name, Digest: m.Digest, Size: size, Modified: m.Modified, Annotations: m.Annotations})
	}
	return out
}

// versionInfo is info REF.
type versionInfo struct {
	Reference string        `json:"reference"`
	Digest    digest.Digest `json:"digest"`
	// Size is the files' total; StoredSize the blobs' (packs compressed).
	Size       int64       `json:"size"`
	StoredSize int64       `json:"stored_size"`
	Immutable  bool        `json:"immutable"`
	Holds      []spec.Hold `json:"holds"`
	Config     *configInfo `json:"config"`
	Files      []fileInfo  `json:"files"`
	Blobs      []blobInfo  `json:"blobs"`
}

// configInfo is modelx.yaml, as info shows it (null when it does not parse).
type configInfo struct {
	Description string            `json:"description,omitempty"`
	Framework   string            `json:"framework,omitempty"`
	Task        string            `json:"task,omitempty"`
	Tags        []string          `json:"tags,omitempty"`
	Maintainers []string          `json:"maintainers,omitempty"`
	ModelFiles  []string          `json:"model_files,omitempty"`
	Inputs      map[string]any    `json:"inputs,omitempty"`
	Outputs     map[string]any    `json:"outputs,omitempty"`
	Serving     *servingInfo      `json:"serving,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// servingInfo is the serving section of modelx.yaml.
type servingInfo struct {
	Server         string            `json:"server,omitempty"`
	Implementation string            `json:"implementation,omitempty"`
	Protocol       string            `json:"protocol,omitempty"`
	GPU            int               `json:"gpu,omitempty"`
	Parameters     map[string]string `json:"parameters,omitempty"`
}

// blobInfo is one stored blob of a version.
type blobInfo struct {
	Name      string        `json:"name"`
	MediaType string        `json:"media_type"`
	Digest    digest.Digest `json:"digest"`
	Size      int64         `json:"size"`
	// Files counts the files of a pack; Chunks the chunks of a chunked file.
	Files  int `json:"files,omitempty"`
	Chunks int `json:"chunks,omitempty"`
}

func newConfigInfo(c *spec.ModelConfig) *configInfo {
	if c == nil {
		return nil
	}
	out := &configInfo{Description: c.Description, Framework: c.Framework, Task: c.Task, Tags: c.Tags, Maintainers: c.Maintainers,
		ModelFiles: c.ModelFiles, Inputs: c.Config.Inputs, Outputs: c.Config.Outputs, Annotations: c.Annotations}
	if s := c.Serving; s != nil {
		out.Serving = &servingInfo{Server: s.Server, Implementation: s.Implementation, Protocol: s.Protocol, GPU: s.GPU, Parameters: s.Parameters}
	}
	return out
}

// manifestBlobs lists the stored blobs of a manifest, the config first,
// and their total size.
func manifestBlobs(m *spec.Manifest) ([]blobInfo, int64) {
	out := make([]blobInfo, 0, len(m.Blobs)+1)
	for _, b := range append([]spec.Descriptor{m.Config}, m.Blobs...) {
		out = append(out, blobInfo{Name: b.Name, MediaType: b.MediaType, Digest: b.Digest, Size: b.Size, Files: len(b.Files), Chunks: len(b.Chunks)})
	}
	var stored int64
	for _, b := range m.ReferencedOnce() {
		stored += b.Size
	}
	return out, stored
}

// gcInfo is gc's result.
type gcInfo struct {
	Scope            string   `json:"scope"`
	ManifestsKept    int      `json:"manifests_kept"`
	ManifestsDeleted int      `json:"manifests_deleted"`
	ManifestsHeld    int      `json:"manifests_held"`
	HoldsExpired     int      `json:"holds_expired"`
	LinksKept        int      `json:"links_kept"`
	LinksDeleted     int      `json:"links_deleted"`
	BlobsKept        int      `json:"blobs_kept"`
	BlobsDeleted     int      `json:"blobs_deleted"`
	BytesFreed       int64    `json:"bytes_freed"`
	ModelsSkipped    int      `json:"models_skipped"`
	Problems         []string `json:"problems"`
	DurationSeconds  float64  `json:"duration_seconds"`
	// The garbage kept only because it is younger than the grace period.
	ManifestsYoung     int     `json:"manifests_young"`
	LinksYoung         int     `json:"links_young"`
	BlobsYoung         int     `json:"blobs_young"`
	BytesYoung         int64   `json:"bytes_young"`
	GracePeriodSeconds float64 `json:"grace_period_seconds"`
}

func newGCInfo(r spec.GCResult) gcInfo {
	problems := r.Problems
	if problems == nil {
		problems = []string{}
	}
	return gcInfo{Scope: r.Scope, ManifestsKept: r.ManifestsKept, ManifestsDeleted: r.ManifestsDeleted, ManifestsHeld: r.ManifestsHeld,
		HoldsExpired: r.HoldsExpired, LinksKept: r.LinksKept, LinksDeleted: r.LinksDeleted, BlobsKept: r.BlobsKept, BlobsDeleted: r.BlobsDeleted,
		BytesFreed: r.BytesFreed, ModelsSkipped: r.ModelsSkipped, Problems: problems, DurationSeconds: r.DurationSeconds,
		ManifestsYoung: r.ManifestsYoung, LinksYoung: r.LinksYoung, BlobsYoung: r.BlobsYoung, BytesYoung: r.BytesYoung, GracePeriodSeconds: r.GracePeriodSeconds}
}

// deleted is delete's result.
type deleted struct {
	// Reference is what was deleted: a tag, a digest, or a model (without
	// a version).
	Reference string `json:"reference"`
	// Scope is "tag", "digest" or "model".
	Scope string `json:"scope"`
}

// registryList is repo list.
type registryList struct {
	Registries []registryItem `json:"registries"`
}

// registryItem is one alias.
type registryItem struct {
	Name     string `json:"name"`
	URL      string `json:"url"`
	LoggedIn bool   `json:"logged_in"`
}

// released is hold release's result.
type released struct {
	Model  string `json:"model"`
	Holder string `json:"holder"`
}

// versionOutput is version's result.
type versionOutput struct {
	Version string `json:"version"`
}
