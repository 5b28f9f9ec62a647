package spec

import (
	"fmt"
	"regexp"
	"strings"

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

// ParseModelConfig decodes modelx.yaml strictly: an unknown or mistyped field
// is an error that names it.
func ParseModelConfig(data []byte) (*ModelConfig, error) {
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
