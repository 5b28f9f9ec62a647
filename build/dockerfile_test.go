package build

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// images are the Dockerfiles in this directory and what each must build.
var images = []struct {
	dockerfile string
	// binary is the program: built from ./cmd/<binary>, named <binary>.
	binary string
	// entrypoint is the exact ENTRYPOINT of the final stage.
	entrypoint []string
	expose     []string
	volumes    []string
}{
	{dockerfile: "modelxd.Dockerfile", binary: "modelxd", entrypoint: []string{"/usr/local/bin/modelxd"}, expose: []string{"8080"}, volumes: []string{"/data"}},
	// Seldon runs the storage initializer with the arguments URI DEST only,
	// so the entrypoint carries the subcommand: `modelx pull URI DEST`.
	{dockerfile: "modelx.Dockerfile", binary: "modelx", entrypoint: []string{"/usr/local/bin/modelx", "pull"}},
	{dockerfile: "modelx-controller.Dockerfile", binary: "modelx-controller", entrypoint: []string{"/usr/local/bin/modelx-controller"}},
}

// TestDockerfilesListed checks that the table above, the Dockerfiles on
// disk and the Makefile's IMAGES agree, so `make images` builds them all.
func TestDockerfilesListed(t *testing.T) {
	onDisk, err := filepath.Glob("*.Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var listed, names []string
	for _, img := range images {
		listed = append(listed, img.dockerfile)
		names = append(names, img.binary)
	}
	slices.Sort(onDisk)
	slices.Sort(listed)
	if !slices.Equal(onDisk, listed) {
		t.Errorf("Dockerfiles on disk %v, tested %v: add the new one to the table", onDisk, listed)
	}
	makefile, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	var made []string
	for line := range strings.Lines(string(makefile)) {
		if rest, ok := strings.CutPrefix(line, "IMAGES :="); ok {
			made = strings.Fields(rest)
		}
	}
	slices.Sort(made)
	slices.Sort(names)
	if !slices.Equal(made, names) {
		t.Errorf("Makefile IMAGES = %v, want %v", made, names)
	}
}

func TestDockerfiles(t *testing.T) {
	goMinor := goDirective(t)
	for _, img := range images {
		t.Run(img.dockerfile, func(t *testing.T) {
			stages := parseDockerfile(t, img.dockerfile)
			if len(stages) < 2 {
				t.Fatalf("%d stages, want a builder and a runtime stage", len(stages))
			}
			builder, final := stages[0], stages[len(stages)-1]

			// The builder is the Go image of go.mod's release, pinned.
			if want := "golang:" + goMinor; builder.image != want {
				t.Errorf("builder image %q, want %q (go.mod says go %s)", builder.image, want, goMinor)
			}
			if strings.HasPrefix(final.image, "golang") {
				t.Errorf("final stage is %q: the runtime image must not carry the toolchain", final.image)
			}

			// Exactly one static, trimmed, stripped build of ./cmd/<binary>.
			builds := goBuilds(builder)
			if len(builds) != 1 {
				t.Fatalf("%d `go build` commands in the builder, want 1", len(builds))
			}
			b := builds[0]
			if want := []string{"./cmd/" + img.binary}; !slices.Equal(b.packages, want) {
				t.Errorf("go build packages %v, want %v", b.packages, want)
			}
			for _, p := range b.packages {
				readGoFiles(t, filepath.Join("..", p))
				if name := goList(t, "{{.Name}}", p); name != "main" {
					t.Errorf("go build %s: package %q, want a main package", p, name)
				}
			}
			if path.Base(b.output) != img.binary {
				t.Errorf("go build -o %q, want a file named %s", b.output, img.binary)
			}
			if !b.cgoDisabled {
				t.Error("go build without CGO_ENABLED=0: the runtime image has no C library")
			}
			if !b.trimpath {
				t.Error("go build without -trimpath")
			}
			if f := strings.Fields(b.ldflags); !slices.Contains(f, "-s") || !slices.Contains(f, "-w") {
				t.Errorf("go build -ldflags %q, want -s -w", b.ldflags)
			}

			// Every COPY --from names an earlier stage.
			for i, st := range stages {
				for _, c := range st.copies() {
					if c.from == "" {
						continue
					}
					if !slices.ContainsFunc(stages[:i], func(s stage) bool { return s.name == c.from }) {
						t.Errorf("stage %d: COPY --from=%s names no earlier stage", i, c.from)
					}
				}
			}

			// The final stage runs the built binary as a numeric non-root
			// user (the kubelet can check runAsNonRoot only for a number).
			user := final.last("USER")
			uid, _, _ := strings.Cut(user, ":")
			if n, err := strconv.Atoi(uid); err != nil || n == 0 {
				t.Errorf("final USER %q, want a numeric non-root uid", user)
			}
			var entrypoint []string
			if err := json.Unmarshal([]byte(final.last("ENTRYPOINT")), &entrypoint); err != nil {
				t.Fatalf("final ENTRYPOINT %q: want the exec (JSON) form: %v", final.last("ENTRYPOINT"), err)
			}
			if !slices.Equal(entrypoint, img.entrypoint) {
				t.Errorf("ENTRYPOINT %q, want %q", entrypoint, img.entrypoint)
			}
			if !slices.ContainsFunc(final.copies(), func(c copyInstr) bool {
				return c.from == builder.name && slices.Contains(c.sources, b.output) && c.dest == entrypoint[0]
			}) {
				t.Errorf("the final stage does not COPY --from=%s %s %s: the ENTRYPOINT is not the built binary", builder.name, b.output, entrypoint[0])
			}

			// CA certificates, for HTTPS to registries, identity providers
			// and S3: the builder gathers them, the final stage copies /etc.
			if !strings.Contains(builder.text(), "/etc/ssl/certs/ca-certificates.crt") ||
				!slices.ContainsFunc(final.copies(), func(c copyInstr) bool { return c.dest == "/etc" || strings.HasPrefix(c.dest, "/etc/ssl/certs") }) {
				t.Error("no CA certificates in the final stage")
			}

			if got := final.all("EXPOSE"); !slices.Equal(got, img.expose) {
				t.Errorf("EXPOSE %v, want %v", got, img.expose)
			}
			if got := final.all("VOLUME"); !slices.Equal(got, img.volumes) {
				t.Errorf("VOLUME %v, want %v", got, img.volumes)
			}
		})
	}
}

// TestDockerignore checks that the build context keeps every file the
// builds need: go.mod, go.sum and the Go and embedded files of every
// package of this module that the programs import.
func TestDockerignore(t *testing.T) {
	patterns := readDockerignore(t, "../.dockerignore")
	root := goList(t, "{{.Dir}}", "-m")
	needed := []string{"go.mod", "go.sum"}
	for _, img := range images {
		out := goList(t, `{{if and .Module .Module.Main}}{{.Dir}}{{range .GoFiles}} {{.}}{{end}}{{range .EmbedFiles}} {{.}}{{end}}{{"\n"}}{{end}}`, "-deps", "./cmd/"+img.binary)
		for line := range strings.Lines(out) {
			f := strings.Fields(line)
			if len(f) == 0 {
				continue
			}
			dir, err := filepath.Rel(root, f[0])
			if err != nil {
				t.Fatal(err)
			}
			for _, name := range f[1:] {
				needed = append(needed, filepath.ToSlash(filepath.Join(dir, name)))
			}
		}
	}
	if len(needed) < 10 {
		t.Fatalf("only %d files found to check: %v", len(needed), needed)
	}
	for _, f := range needed {
		// Reading the file also makes go test's cache see it.
		if _, err := os.ReadFile(filepath.Join("..", f)); err != nil {
			t.Error(err)
		}
		if ignored(patterns, f) {
			t.Errorf(".dockerignore leaves out %s, which the images need", f)
		}
	}
	// And it does leave out what must never reach an image.
	for _, f := range []string{".git/config", "data/blobs/x", "bin/modelxd", "registry/server_test.go"} {
		if !ignored(patterns, f) {
			t.Errorf(".dockerignore keeps %s", f)
		}
	}
}

// goDirective returns go.mod's go version as MAJOR.MINOR, the tag of the
// Go image that builds it.
func goDirective(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "go "); ok {
			parts := strings.Split(strings.TrimSpace(v), ".")
			if len(parts) < 2 {
				t.Fatalf("go.mod: go %q", v)
			}
			return parts[0] + "." + parts[1]
		}
	}
	t.Fatal("go.mod has no go directive")
	return ""
}

// readGoFiles reads the Go files of a directory, if it exists, so that go
// test's cache, which sees only the files the test process opens, sees
// the package that `go list` reads.
func readGoFiles(t *testing.T, dir string) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
	for _, f := range files {
		if _, err := os.ReadFile(f); err != nil {
			t.Error(err)
		}
	}
}

// goList runs `go list -f format args...` at the repository root.
func goList(t *testing.T, format string, args ...string) string {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list", "-f", format}, args...)...)
	cmd.Dir = ".."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %v: %v\n%s", args, err, stderr.Bytes())
	}
	return strings.TrimSpace(string(out))
}

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper case: FROM, RUN, COPY, ...
	args string
}

// stage is one FROM and the instructions under it.
type stage struct {
	image string // the base image, e.g. golang:1.26 or scratch
	name  string // the AS name, if any
	instr []instruction
}

// parseDockerfile splits a Dockerfile into stages. It knows what these
// Dockerfiles use: comments, continuation lines, FROM [--platform] IMAGE [AS NAME].
func parseDockerfile(t *testing.T, file string) []stage {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var stages []stage
	var cur strings.Builder
	flush := func() {
		line := strings.TrimSpace(cur.String())
		cur.Reset()
		if line == "" {
			return
		}
		cmd, args, _ := strings.Cut(line, " ")
		in := instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)}
		if in.cmd == "FROM" {
			var words []string
			for _, w := range strings.Fields(in.args) {
				if !strings.HasPrefix(w, "--") {
					words = append(words, w)
				}
			}
			st := stage{image: words[0]}
			if len(words) == 3 && strings.EqualFold(words[1], "AS") {
				st.name = words[2]
			}
			stages = append(stages, st)
			return
		}
		if len(stages) == 0 {
			t.Fatalf("%s: %s before FROM", file, in.cmd)
		}
		stages[len(stages)-1].instr = append(stages[len(stages)-1].instr, in)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") {
			continue // a comment, also between continuation lines
		}
		if rest, ok := strings.CutSuffix(line, `\`); ok {
			cur.WriteString(rest + " ")
			continue
		}
		cur.WriteString(line)
		flush()
	}
	flush()
	return stages
}

// last returns the arguments of the stage's last cmd instruction, or "".
func (s stage) last(cmd string) string {
	for _, in := range slices.Backward(s.instr) {
		if in.cmd == cmd {
			return in.args
		}
	}
	return ""
}

// all returns the words of every cmd instruction, in order.
func (s stage) all(cmd string) []string {
	var out []string
	for _, in := range s.instr {
		if in.cmd == cmd {
			out = append(out, strings.Fields(in.args)...)
		}
	}
	return out
}

// text is the stage's instructions as one string.
func (s stage) text() string {
	var b strings.Builder
	for _, in := range s.instr {
		b.WriteString(in.cmd + " " + in.args + "\n")
	}
	return b.String()
}

// copyInstr is a COPY: its --from stage, sources and destination.
type copyInstr struct {
	from    string
	sources []string
	dest    string
}

func (s stage) copies() []copyInstr {
	var out []copyInstr
	for _, in := range s.instr {
		if in.cmd != "COPY" {
			continue
		}
		var c copyInstr
		var paths []string
		for _, w := range strings.Fields(in.args) {
			if from, ok := strings.CutPrefix(w, "--from="); ok {
				c.from = from
			} else if !strings.HasPrefix(w, "--") {
				paths = append(paths, w)
			}
		}
		if len(paths) >= 2 {
			c.sources, c.dest = paths[:len(paths)-1], paths[len(paths)-1]
		}
		out = append(out, c)
	}
	return out
}

// goBuild is one `go build` in a RUN instruction.
type goBuild struct {
	packages    []string
	output      string
	ldflags     string
	trimpath    bool
	cgoDisabled bool
}

// goBuilds finds the `go build` commands of a stage's RUN instructions.
func goBuilds(s stage) []goBuild {
	var out []goBuild
	for _, in := range s.instr {
		if in.cmd != "RUN" {
			continue
		}
		words := shellWords(in.args)
		for i := 0; i+1 < len(words); i++ {
			if words[i] != "go" || words[i+1] != "build" {
				continue
			}
			b := goBuild{cgoDisabled: slices.Contains(words[:i], "CGO_ENABLED=0")}
			for j := i + 2; j < len(words); j++ {
				w := words[j]
				if w == "&&" || w == ";" || w == "|" {
					break
				}
				name, value, hasValue := strings.Cut(w, "=")
				takesValue := slices.Contains([]string{"-o", "-ldflags", "-tags", "-gcflags", "-asmflags", "-buildmode", "-mod", "-p"}, name)
				switch {
				case takesValue && !hasValue && j+1 < len(words):
					j++
					value = words[j]
				case !strings.HasPrefix(w, "-"):
					b.packages = append(b.packages, w)
					continue
				}
				switch name {
				case "-o":
					b.output = value
				case "-ldflags":
					b.ldflags = value
				case "-trimpath":
					b.trimpath = true
				}
			}
			out = append(out, b)
		}
	}
	return out
}

// shellWords splits a shell command into words: whitespace separates them,
// single and double quotes group them (no expansion, which these
// Dockerfiles' go build lines do not need to be understood).
func shellWords(s string) []string {
	var words []string
	var cur strings.Builder
	inWord := false
	var quote rune
	for _, r := range s {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '"' || r == '\'':
			quote, inWord = r, true
		case r == ' ' || r == '\t' || r == '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

// dockerignorePattern is one line of .dockerignore.
type dockerignorePattern struct {
	segments []string
	exclude  bool // a "!" line: keep what matches
}

func readDockerignore(t *testing.T, file string) []dockerignorePattern {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []dockerignorePattern
	for line := range strings.Lines(string(data)) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		p := dockerignorePattern{}
		if rest, ok := strings.CutPrefix(line, "!"); ok {
			p.exclude, line = true, rest
		}
		line = strings.Trim(path.Clean(line), "/")
		p.segments = strings.Split(line, "/")
		out = append(out, p)
	}
	return out
}

// ignored reports whether the build context leaves out file (a slash path
// relative to the root), as Docker decides: the last matching line wins,
// and a pattern that matches a directory matches everything under it.
func ignored(patterns []dockerignorePattern, file string) bool {
	parts := strings.Split(file, "/")
	out := false
	for _, p := range patterns {
		if matchSegments(p.segments, parts) {
			out = !p.exclude
		}
	}
	return out
}

// matchSegments matches path segments against pattern segments ("**"
// matches any number of segments); matching a leading part of the path (a
// parent directory) is a match.
func matchSegments(pattern, parts []string) bool {
	if len(pattern) == 0 {
		return true
	}
	if pattern[0] == "**" {
		for i := 0; i <= len(parts); i++ {
			if matchSegments(pattern[1:], parts[i:]) {
				return true
			}
		}
		return false
	}
	if len(parts) == 0 {
		return false
	}
	ok, err := path.Match(pattern[0], parts[0])
	return err == nil && ok && matchSegments(pattern[1:], parts[1:])
}
