package spec

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"

	yaml3 "go.yaml.in/yaml/v3"
	"sigs.k8s.io/yaml"
)

// ModelConfig is the content of modelx.yaml: what the model is, and what a
// server needs to know to serve it.
type ModelConfig struct {
	Description string   `json:"description,omitempty"`
	Framework   string   `json:"framework,omitempty"`
	Task        string   `json:"task,omitempty"`
	Tags        []string `json:"tags,omitempty"`
	Maintainers []string `json:"maintainers,omitempty"`
	// ModelFiles are the paths a serving pod needs; empty means every file.
	ModelFiles []string `json:"modelFiles,omitempty"`
	// Config describes the model's inputs and outputs.
	Config IOConfig `json:"config,omitzero"`
	// Serving holds hints for deploying the model.
	Serving *ServingHints `json:"serving,omitempty"`
	// Annotations are free-form key/value metadata.
	Annotations map[string]string `json:"annotations,omitempty"`
}

// IOConfig describes a model's inputs and outputs, free-form.
type IOConfig struct {
	Inputs  map[string]any `json:"inputs,omitempty"`
	Outputs map[string]any `json:"outputs,omitempty"`
}

// ServingHints tell a deployer how the model wants to be served.
type ServingHints struct {
	// Server is "mlserver" or "triton".
	Server string `json:"server,omitempty"`
	// Implementation names the server runtime, e.g. "mlserver_sklearn.SKLearnModel".
	Implementation string `json:"implementation,omitempty"`
	// Protocol is the inference protocol, e.g. "v2".
	Protocol string `json:"protocol,omitempty"`
	// GPU asks for this many GPUs.
	GPU int `json:"gpu,omitempty"`
	// Parameters are extra server settings.
	Parameters map[string]string `json:"parameters,omitempty"`
}

// MaxConfigSize bounds modelx.yaml in bytes; clients read at most this much
// of a config blob.
const MaxConfigSize = 1 << 20

// maxAliasExpansion bounds what YAML aliases may add to a modelx.yaml once
// expanded, in bytes of scalars plus aliasNodeCost per node.
const (
	maxAliasExpansion = 1 << 20
	aliasNodeCost     = 8
)

// ParseModelConfig decodes modelx.yaml strictly: an unknown or mistyped field
// is an error that names it.
func ParseModelConfig(data []byte) (*ModelConfig, error) {
	if len(data) > MaxConfigSize {
		return nil, fmt.Errorf("%s is %d bytes: at most %d are allowed", ConfigFileName, len(data), MaxConfigSize)
	}
	if err := checkAliases(data); err != nil {
		return nil, fmt.Errorf("%s: %s", ConfigFileName, cleanYAMLError(err))
	}
	var c ModelConfig
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		return nil, fmt.Errorf("%s: %s", ConfigFileName, cleanYAMLError(err))
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Validate checks field values that the YAML types alone do not.
func (c *ModelConfig) Validate() error {
	for i, f := range c.ModelFiles {
		// "dir/" names a whole directory.
		if err := ValidatePath(strings.TrimSuffix(f, "/")); err != nil {
			return fmt.Errorf("%s: modelFiles[%d]: %v", ConfigFileName, i, err)
		}
	}
	for i, t := range c.Tags {
		if strings.TrimSpace(t) == "" {
			return fmt.Errorf("%s: tags[%d] is empty", ConfigFileName, i)
		}
	}
	if c.Serving != nil {
		switch c.Serving.Server {
		case "", "mlserver", "triton":
		default:
			return fmt.Errorf("%s: serving.server %q is not supported: use \"mlserver\" or \"triton\"", ConfigFileName, c.Serving.Server)
		}
		if c.Serving.GPU < 0 {
			return fmt.Errorf("%s: serving.gpu %d is negative", ConfigFileName, c.Serving.GPU)
		}
	}
	return nil
}

// cleanYAMLError strips the JSON-decoder prefixes sigs.k8s.io/yaml adds, so
// the message reads as a statement about the YAML field.
func cleanYAMLError(err error) string {
	msg := err.Error()
	for _, p := range []string{"error unmarshaling JSON: ", "while decoding JSON: ", "json: "} {
		msg = strings.ReplaceAll(msg, p, "")
	}
	msg = strings.ReplaceAll(msg, "error converting YAML to JSON: yaml: ", "invalid YAML: ")
	return goStructField.ReplaceAllString(msg, "field ")
}

var goStructField = regexp.MustCompile(`Go struct field [A-Za-z]+\.`)

// checkAliases refuses a document whose aliases would expand to more than
// maxAliasExpansion. sigs.k8s.io/yaml expands every alias into a copy
// before it converts the document to JSON, and go.yaml.in/yaml/v2 bounds
// only the number of nodes aliases add, not their size: 56 KB that alias one
// 40 KB scalar 4,000 times made 1.1 GB of allocations, and 1 MiB could make
// hundreds of GB ("billion laughs" with long strings). Here the document is
// parsed once more, into nodes whose aliases stay pointers, and the expanded
// size of each anchored node is computed once. A document without '*' has
// no aliases and is not parsed twice.
func checkAliases(data []byte) error {
	if !bytes.ContainsRune(data, '*') {
		return nil
	}
	var doc yaml3.Node
	if err := yaml3.Unmarshal(data, &doc); err != nil {
		return err
	}
	errTooMuch := fmt.Errorf("yaml: aliases expand to more than %d bytes", maxAliasExpansion)
	sizes := map[*yaml3.Node]int64{} // expanded size of each node measured; -1 while measuring it
	// expanded returns n's size with every alias in it expanded, or an
	// error past the bound or for an alias inside its own anchor.
	var expanded func(n *yaml3.Node) (int64, error)
	expanded = func(n *yaml3.Node) (int64, error) {
		if s, ok := sizes[n]; ok {
			if s < 0 {
				return 0, fmt.Errorf("yaml: anchor %q value contains itself", n.Anchor)
			}
			return s, nil
		}
		sizes[n] = -1
		size := int64(len(n.Value)) + aliasNodeCost
		if n.Kind == yaml3.AliasNode && n.Alias != nil {
			s, err := expanded(n.Alias)
			if err != nil {
				return 0, err
			}
			size += s
		}
		for _, c := range n.Content {
			s, err := expanded(c)
			if err != nil {
				return 0, err
			}
			if size += s; size > maxAliasExpansion+MaxConfigSize*aliasNodeCost {
				return 0, errTooMuch // past any document's own size: stop before int64 could overflow
			}
		}
		sizes[n] = size
		return size, nil
	}
	// What the aliases add: the expanded size of every alias node in the
	// document as written (aliases within anchors count in their anchor's
	// expanded size, and again where that anchor is aliased).
	var added int64
	var walk func(n *yaml3.Node) error
	walk = func(n *yaml3.Node) error {
		if n.Kind == yaml3.AliasNode {
			s, err := expanded(n)
			if err != nil {
				return err
			}
			if added += s; added > maxAliasExpansion {
				return errTooMuch
			}
			return nil
		}
		for _, c := range n.Content {
			if err := walk(c); err != nil {
				return err
			}
		}
		return nil
	}
	return walk(&doc)
}

// UnmatchedModelFiles returns the entries of modelFiles that name none of
// files (slash-separated paths of a version's files): an entry matches a
// file of its path, or, with or without a trailing "/", every file under
// the directory it names. dirs are directories whose files are not listed
// one by one (legacy archives): an entry matches one of them, anything
// under one, or a directory that holds one.
func UnmatchedModelFiles(modelFiles, files, dirs []string) []string {
	var unmatched []string
	for _, entry := range modelFiles {
		e := strings.TrimSuffix(entry, "/")
		matched := false
		for _, f := range files {
			if f == e || strings.HasPrefix(f, e+"/") {
				matched = true
				break
			}
		}
		for _, d := range dirs {
			if matched {
				break
			}
			matched = d == e || strings.HasPrefix(e, d+"/") || strings.HasPrefix(d, e+"/")
		}
		if !matched {
			unmatched = append(unmatched, entry)
		}
	}
	return unmatched
}

// FileNames lists the paths of the version's files, the config's
// included, and the directories of its legacy archives, whose files it
// does not list.
func (m *Manifest) FileNames() (files, dirs []string) {
	files = append(files, m.Config.Name)
	for _, b := range m.Blobs {
		switch b.MediaType {
		case MediaTypePack:
			for _, f := range b.Files {
				files = append(files, f.Name)
			}
		case MediaTypeDirectoryTarGz:
			dirs = append(dirs, b.Name)
		default:
			files = append(files, b.Name)
		}
	}
	return files, dirs
}
