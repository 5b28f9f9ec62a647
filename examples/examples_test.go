// Package examples_test checks the example models: modelx.yaml parses and
// names files that exist; each server's own files are where the server looks
// for them once Seldon has pulled the model into /mnt/models, under the name
// Seldon's executor calls; deploy.yaml is a valid ModelDeployment that the
// controller can render; and the Python compiles and passes its tests.
package examples_test

import (
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"modelx.io/modelx/deploy-controller/api/v1alpha1"
	"modelx.io/modelx/deploy-controller/render"
	"modelx.io/modelx/spec"
)

// example is one example directory, loaded.
type example struct {
	dir    string
	config *spec.ModelConfig
	// files are the paths modelFiles selects, slash-separated, relative to dir.
	files []string
}

// exampleDirs are the directories holding a modelx.yaml.
func exampleDirs(t *testing.T) []string {
	t.Helper()
	configs, err := filepath.Glob(filepath.Join("*", spec.ConfigFileName))
	if err != nil {
		t.Fatal(err)
	}
	if len(configs) == 0 {
		t.Fatalf("no example directory holds a %s", spec.ConfigFileName)
	}
	var dirs []string
	for _, c := range configs {
		dirs = append(dirs, filepath.Dir(c))
	}
	return dirs
}

func TestExamples(t *testing.T) {
	for _, dir := range exampleDirs(t) {
		t.Run(dir, func(t *testing.T) {
			ex := loadExample(t, dir)
			checkJSONFiles(t, dir)
			md := loadDeployment(t, dir)
			node := graphNodeName(t, md)
			checkDeploymentMatchesConfig(t, md, ex.config)
			switch ex.config.Serving.Server {
			case "mlserver":
				checkMLServer(t, ex, md, node)
			case "triton":
				checkTriton(t, ex, node)
			}
		})
	}
}

// loadExample parses modelx.yaml strictly, as push and pull do, and checks
// that every modelFiles entry exists: "dir/" a directory, anything else a
// regular file.
func loadExample(t *testing.T, dir string) example {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, spec.ConfigFileName))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := spec.ParseModelConfig(data)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Serving == nil || cfg.Serving.Server == "" {
		t.Fatalf("%s: serving.server is not set; an example names its server", spec.ConfigFileName)
	}
	if len(cfg.ModelFiles) == 0 {
		t.Fatalf("%s: modelFiles is empty; an example names the files its server needs", spec.ConfigFileName)
	}
	ex := example{dir: dir, config: cfg}
	for _, entry := range cfg.ModelFiles {
		name := strings.TrimSuffix(entry, "/")
		st, err := os.Stat(filepath.Join(dir, filepath.FromSlash(name)))
		switch {
		case err != nil:
			t.Errorf("modelFiles entry %q: %v", entry, err)
			continue
		case strings.HasSuffix(entry, "/") && !st.IsDir():
			t.Errorf("modelFiles entry %q names a directory, but %s is a file", entry, name)
			continue
		case !strings.HasSuffix(entry, "/") && !st.Mode().IsRegular():
			t.Errorf("modelFiles entry %q is not a regular file (a directory is written %q)", entry, name+"/")
			continue
		}
		if !st.IsDir() {
			ex.files = append(ex.files, name)
			continue
		}
		err = filepath.WalkDir(filepath.Join(dir, filepath.FromSlash(name)), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			rel, err := filepath.Rel(dir, p)
			ex.files = append(ex.files, filepath.ToSlash(rel))
			return err
		})
		if err != nil {
			t.Error(err)
		}
	}
	return ex
}

// pulled reports whether the serving pod gets the file name (relative to the
// example), that is whether modelFiles selects it.
func (ex example) pulled(name string) bool {
	return slices.Contains(ex.files, name)
}

// checkJSONFiles parses every .json file of dir.
func checkJSONFiles(t *testing.T, dir string) {
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(p) != ".json" {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if !json.Valid(data) {
			t.Errorf("%s is not valid JSON", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// loadDeployment decodes deploy.yaml strictly: an unknown field is an error.
func loadDeployment(t *testing.T, dir string) *v1alpha1.ModelDeployment {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "deploy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var md v1alpha1.ModelDeployment
	if err := yaml.UnmarshalStrict(data, &md); err != nil {
		t.Fatalf("deploy.yaml: %v", err)
	}
	if md.APIVersion != v1alpha1.GroupVersion.String() || md.Kind != "ModelDeployment" {
		t.Fatalf("deploy.yaml is %s %s, want %s ModelDeployment", md.APIVersion, md.Kind, v1alpha1.GroupVersion)
	}
	if md.Name == "" || md.Namespace == "" {
		t.Errorf("deploy.yaml: metadata.name %q and metadata.namespace %q must both be set", md.Name, md.Namespace)
	}
	return &md
}

// graphNodeName renders md as the controller would and returns the name of
// its graph node: Seldon's executor sends V2 inference requests to
// /v2/models/<that name>/infer, so the server must serve a model of that name.
func graphNodeName(t *testing.T, md *v1alpha1.ModelDeployment) string {
	t.Helper()
	digest := "sha256:" + strings.Repeat("0", 64)
	sd, err := render.RenderSeldonDeployment(md, render.Inputs{Versions: []render.Version{{Digest: digest, Traffic: 100}}, InitializerImage: "modelx"})
	if err != nil {
		t.Fatalf("deploy.yaml does not render: %v", err)
	}
	if len(sd.Spec.Predictors) != 1 {
		t.Fatalf("deploy.yaml renders %d predictors, want 1", len(sd.Spec.Predictors))
	}
	graph := sd.Spec.Predictors[0].Graph
	if !strings.HasPrefix(graph.ModelURI, "modelx://") {
		t.Errorf("rendered modelUri %q is not a modelx:// URI", graph.ModelURI)
	}
	return graph.Name
}

// checkDeploymentMatchesConfig checks that deploy.yaml serves the model the
// way modelx.yaml asks.
func checkDeploymentMatchesConfig(t *testing.T, md *v1alpha1.ModelDeployment, cfg *spec.ModelConfig) {
	s := md.Spec
	if string(s.Server.Type) != cfg.Serving.Server {
		t.Errorf("deploy.yaml: server.type %q, but modelx.yaml serving.server is %q", s.Server.Type, cfg.Serving.Server)
	}
	if s.Server.Implementation != "" && s.Server.Implementation != cfg.Serving.Implementation {
		t.Errorf("deploy.yaml: server.implementation %q, but modelx.yaml serving.implementation is %q", s.Server.Implementation, cfg.Serving.Implementation)
	}
	if s.Server.Protocol != "" && cfg.Serving.Protocol != "" && s.Server.Protocol != cfg.Serving.Protocol {
		t.Errorf("deploy.yaml: server.protocol %q, but modelx.yaml serving.protocol is %q", s.Server.Protocol, cfg.Serving.Protocol)
	}
	if int(s.Resources.GPU) < cfg.Serving.GPU {
		t.Errorf("deploy.yaml: resources.gpu %d, but modelx.yaml serving.gpu asks for %d", s.Resources.GPU, cfg.Serving.GPU)
	}
	if s.FollowTag != nil && s.FollowTag.Enabled && s.Model.Tag == "" {
		t.Errorf("deploy.yaml: followTag is enabled without model.tag")
	}
	if s.Model.Tag != "" && s.Model.Digest != "" {
		t.Errorf("deploy.yaml: set model.tag or model.digest, not both")
	}
}

// modelSettings is the part of MLServer's model-settings.json we check.
type modelSettings struct {
	Name           string `json:"name"`
	Implementation string `json:"implementation"`
	Parameters     *struct {
		URI     string `json:"uri"`
		Version string `json:"version"`
	} `json:"parameters"`
}

// checkMLServer: the MLServer container runs `mlserver start /mnt/models`
// (MLSERVER_MODELS_DIR), which reads model-settings.json there; its
// implementation is a module.Class that MLServer imports from the model
// directory, and parameters.uri names the weights relative to
// model-settings.json. deploy.yaml names no implementation of its own: the
// file's would win (render.ImplementationIgnored).
func checkMLServer(t *testing.T, ex example, md *v1alpha1.ModelDeployment, node string) {
	if render.ImplementationIgnored(ex.files, md.Spec.Server.Implementation) {
		t.Errorf("deploy.yaml: server.implementation %q, but the model ships model-settings.json, whose implementation MLServer takes instead: remove it", md.Spec.Server.Implementation)
	}
	const settingsFile = "model-settings.json"
	if !ex.pulled(settingsFile) {
		t.Fatalf("modelFiles does not select %s, so MLServer would not find it in /mnt/models", settingsFile)
	}
	data, err := os.ReadFile(filepath.Join(ex.dir, settingsFile))
	if err != nil {
		t.Fatal(err)
	}
	var ms modelSettings
	if err := json.Unmarshal(data, &ms); err != nil {
		t.Fatalf("%s: %v", settingsFile, err)
	}
	if ms.Name != node {
		t.Errorf("%s: name %q, but the controller's graph node is %q, the model Seldon's executor calls", settingsFile, ms.Name, node)
	}
	if ms.Implementation != ex.config.Serving.Implementation {
		t.Errorf("%s: implementation %q, but modelx.yaml serving.implementation is %q", settingsFile, ms.Implementation, ex.config.Serving.Implementation)
	}
	module, class, ok := strings.Cut(ms.Implementation, ".")
	if !ok || strings.Contains(class, ".") {
		t.Fatalf("%s: implementation %q is not module.Class", settingsFile, ms.Implementation)
	}
	source := module + ".py"
	if !ex.pulled(source) {
		t.Errorf("modelFiles does not select %s, which implementation %q imports", source, ms.Implementation)
	} else if code, err := os.ReadFile(filepath.Join(ex.dir, source)); err != nil {
		t.Error(err)
	} else if !regexp.MustCompile(`(?m)^class ` + regexp.QuoteMeta(class) + `\b`).Match(code) {
		t.Errorf("%s defines no class %s", source, class)
	}
	if ms.Parameters == nil || ms.Parameters.URI == "" {
		t.Fatalf("%s: parameters.uri is not set", settingsFile)
	}
	weights := path.Clean(ms.Parameters.URI)
	if path.IsAbs(weights) || strings.HasPrefix(weights, "../") {
		t.Errorf("%s: parameters.uri %q must be relative to the model directory", settingsFile, ms.Parameters.URI)
	} else if !ex.pulled(weights) {
		t.Errorf("%s: parameters.uri %q is not selected by modelFiles", settingsFile, ms.Parameters.URI)
	}
}

var (
	pbtxtName    = regexp.MustCompile(`(?m)^\s*name\s*:\s*"([^"]*)"`)
	pbtxtBackend = regexp.MustCompile(`(?m)^\s*backend\s*:\s*"([^"]*)"`)
)

// checkTriton: Seldon starts Triton with --model-repository=/mnt/models, so
// every Triton model is a top-level directory NAME/config.pbtxt with numeric
// version directories, and one of them must be named after the graph node.
func checkTriton(t *testing.T, ex example, node string) {
	models := map[string]bool{}
	for _, f := range ex.files {
		if path.Base(f) != "config.pbtxt" {
			continue
		}
		modelDir := path.Dir(f)
		if strings.Contains(modelDir, "/") || modelDir == "." {
			t.Errorf("%s is not NAME/config.pbtxt at the top of the model: Triton's model repository is /mnt/models itself", f)
			continue
		}
		models[modelDir] = true
		checkTritonModel(t, ex, modelDir)
	}
	if len(models) == 0 {
		t.Fatal("modelFiles selects no NAME/config.pbtxt")
	}
	if !models[node] {
		t.Errorf("no Triton model is named %q, the controller's graph node that Seldon's executor calls; models: %v", node, models)
	}
}

func checkTritonModel(t *testing.T, ex example, name string) {
	config, err := os.ReadFile(filepath.Join(ex.dir, name, "config.pbtxt"))
	if err != nil {
		t.Fatal(err)
	}
	if m := pbtxtName.FindSubmatch(config); m != nil && string(m[1]) != name {
		t.Errorf("%s/config.pbtxt: name %q differs from its directory", name, m[1])
	}
	var versions []string
	for _, f := range ex.files {
		rest, ok := strings.CutPrefix(f, name+"/")
		if !ok {
			continue
		}
		if v, _, ok := strings.Cut(rest, "/"); ok {
			if n, err := strconv.Atoi(v); err == nil && n > 0 && !strings.HasPrefix(v, "0") && !slices.Contains(versions, v) {
				versions = append(versions, v)
			}
		}
	}
	if len(versions) == 0 {
		t.Errorf("%s has no version directory (1/, 2/, …)", name)
	}
	if m := pbtxtBackend.FindSubmatch(config); m != nil && string(m[1]) == "python" {
		for _, v := range versions {
			if !ex.pulled(name + "/" + v + "/model.py") {
				t.Errorf("%s/config.pbtxt uses the Python backend, but %s/%s/model.py is not selected", name, name, v)
			}
		}
	}
}

// TestPython compiles every .py of the examples and runs each test_models.py.
// Without python3 it skips, or fails when CI=true.
func TestPython(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("python3 is not on PATH; CI needs it to check the examples' Python")
		}
		t.Skip("python3 is not on PATH; skipping the examples' Python checks")
	}
	var sources []string
	err = filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "__pycache__" || d.Name() == ".modelx") {
			return filepath.SkipDir
		}
		if !d.IsDir() && filepath.Ext(p) == ".py" {
			sources = append(sources, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(sources) == 0 {
		t.Fatal("the examples hold no .py file")
	}
	// The byte code goes to a temporary directory, not into the examples.
	run(t, python, ".", []string{"PYTHONPYCACHEPREFIX=" + t.TempDir()}, append([]string{"-m", "py_compile"}, sources...)...)

	tests, err := filepath.Glob(filepath.Join("*", "test_models.py"))
	if err != nil {
		t.Fatal(err)
	}
	for _, test := range tests {
		t.Run(filepath.Dir(test), func(t *testing.T) {
			run(t, python, filepath.Dir(test), []string{"PYTHONDONTWRITEBYTECODE=1"}, "-B", filepath.Base(test))
		})
	}
}

// run runs python with args in dir, failing the test with its output.
func run(t *testing.T, python, dir string, env []string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python3 %s (in %s): %v\n%s", strings.Join(args, " "), dir, err, out)
	}
}
