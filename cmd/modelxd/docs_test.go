package main

import (
	"bytes"
	"flag"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

var updateDocs = flag.Bool("update-docs", false, "write docs/reference/modelxd.md instead of checking it (make docs)")

// referencePath is modelxd's generated reference page.
var referencePath = filepath.Join("..", "..", "docs", "reference", "modelxd.md")

// TestReferenceDocs checks that docs/reference/modelxd.md is what the
// flags make it; with -update-docs (make docs) it writes the page.
func TestReferenceDocs(t *testing.T) {
	var buf bytes.Buffer
	if err := writeReference(&buf, newFlagSet(&settings{})); err != nil {
		t.Fatal(err)
	}
	if *updateDocs {
		if err := os.MkdirAll(filepath.Dir(referencePath), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(referencePath, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	have, err := os.ReadFile(referencePath)
	if err != nil || !bytes.Equal(have, buf.Bytes()) {
		t.Fatalf("docs/reference/modelxd.md is stale: run make docs (%v)", err)
	}
}

// TestReferenceIgnoresEnvironment checks that the help and the reference
// are the same whatever the environment sets: the defaults shown are the
// flags' own.
func TestReferenceIgnoresEnvironment(t *testing.T) {
	var clean, dirty bytes.Buffer
	writeUsage(&clean, newFlagSet(&settings{}))
	t.Setenv("MODELXD_LISTEN", ":1234")
	t.Setenv("MODELXD_GC_GRACE", "5m")
	var s settings
	fs := newFlagSet(&s)
	if err := applyEnv(fs); err != nil || s.cfg.Listen != ":1234" {
		t.Fatalf("applyEnv: %v, listen %q", err, s.cfg.Listen)
	}
	writeUsage(&dirty, newFlagSet(&settings{}))
	if clean.String() != dirty.String() {
		t.Fatal("the help changes with the environment")
	}
}

// envReads lists the environment variables that the module's packages
// modelxd is built from read by name (os.Getenv or os.LookupEnv of a
// string constant), from their source.
func envReads(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", "-f", `{{if not .Standard}}{{.Dir}}{{"\n"}}{{end}}`, ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	modRoot, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, dir := range strings.Fields(string(out)) {
		if !strings.HasPrefix(dir, modRoot+string(filepath.Separator)) {
			continue // another module's
		}
		pkgs, err := parser.ParseDir(token.NewFileSet(), dir, func(fi os.FileInfo) bool { return !strings.HasSuffix(fi.Name(), "_test.go") }, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, pkg := range pkgs {
			consts := map[string]string{}
			ast.Inspect(pkg, func(n ast.Node) bool {
				if vs, ok := n.(*ast.ValueSpec); ok {
					for i, id := range vs.Names {
						if i < len(vs.Values) {
							if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
								consts[id.Name], _ = strconv.Unquote(lit.Value)
							}
						}
					}
				}
				return true
			})
			ast.Inspect(pkg, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok || len(call.Args) != 1 {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok || (sel.Sel.Name != "Getenv" && sel.Sel.Name != "LookupEnv") {
					return true
				}
				if x, ok := sel.X.(*ast.Ident); !ok || x.Name != "os" {
					return true
				}
				switch a := call.Args[0].(type) {
				case *ast.BasicLit:
					s, _ := strconv.Unquote(a.Value)
					names = append(names, s)
				case *ast.Ident:
					if s, ok := consts[a.Name]; ok {
						names = append(names, s)
					}
				}
				return true
			})
		}
	}
	return names
}

// TestHelpAndVersion runs the binary: --help lists every environment
// variable modelxd reads, each flag's among them, and exits 0; --version
// prints the version stamped at build time, as modelx version does.
func TestHelpAndVersion(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "modelxd")
	if out, err := exec.Command("go", "build", "-ldflags", "-X main.version=v9.8.7-test", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil || string(out) != "modelxd v9.8.7-test\n" {
		t.Fatalf("modelxd --version: %v %q", err, out)
	}
	help, err := exec.Command(bin, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("modelxd --help: %v\n%s", err, help)
	}
	want := envReads(t)
	if len(want) == 0 {
		t.Fatal("found no environment variable read in the source")
	}
	newFlagSet(&settings{}).VisitAll(func(f *flag.Flag) {
		if !noEnv[f.Name] {
			want = append(want, envName(f.Name))
		}
	})
	for _, name := range want {
		if !bytes.Contains(help, []byte(name)) {
			t.Errorf("modelxd --help does not name %s", name)
		}
	}
	for _, s := range []string{"Usage:", "modelxd migrate", "Environment:", "AWS_ACCESS_KEY_ID"} {
		if !bytes.Contains(help, []byte(s)) {
			t.Errorf("modelxd --help has no %q:\n%s", s, help)
		}
	}
}
