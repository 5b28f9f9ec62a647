package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// complete runs cobra's hidden __complete command, as the shell scripts of
// modelx completion do, and returns the candidates and the directive.
func complete(t *testing.T, args ...string) ([]string, cobra.ShellCompDirective) {
	t.Helper()
	out, errOut, err := run(t, "", append([]string{cobra.ShellCompRequestCmd}, args...)...)
	if err != nil {
		t.Fatalf("modelx __complete %q: %v\n%s", args, err, errOut)
	}
	// cobra reports the directive on stderr too; anything else there is
	// output completion must not make.
	for _, line := range strings.Split(strings.TrimSpace(errOut), "\n") {
		if !strings.HasPrefix(line, "Completion ended with directive:") {
			t.Errorf("modelx __complete %q printed to stderr: %q", args, line)
		}
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var directive cobra.ShellCompDirective
	if _, err := fmt.Sscanf(lines[len(lines)-1], ":%d", &directive); err != nil {
		t.Fatalf("modelx __complete %q: no directive in %q", args, out)
	}
	return lines[:len(lines)-1], directive
}

// TestCompletion completes commands, flags, aliases, and, from a real
// registry, models and tags; a registry that does not answer completes
// nothing and prints nothing.
func TestCompletion(t *testing.T) {
	t.Setenv("MODELX_CONFIG", filepath.Join(t.TempDir(), "config.yaml"))
	t.Setenv("MODELX_TOKEN", "")
	url := startRegistry(t)
	mustRun(t, "repo", "add", "local", url)
	mustRun(t, "repo", "add", "lab", url)
	mustRun(t, "repo", "add", "down", "http://127.0.0.1:1")
	model := filepath.Join(t.TempDir(), "bert")
	mustRun(t, "init", model)
	os.WriteFile(filepath.Join(model, "weights.bin"), []byte("weights"), 0o644)
	mustRun(t, "push", "local/nlp/bert:v1", model)
	mustRun(t, "push", "local/nlp/bart:v1", model)
	mustRun(t, "push", "local/cv/resnet:v1", model)
	mustRun(t, "tag", "local/nlp/bert:v1", "prod")

	const noFiles, noSpace = cobra.ShellCompDirectiveNoFileComp, cobra.ShellCompDirectiveNoSpace
	for _, tc := range []struct {
		args      []string
		want      []string
		directive cobra.ShellCompDirective
	}{
		{[]string{"ta"}, []string{"tag\tGive the version SRC names another tag, without moving any byte"}, noFiles},
		{[]string{"completion", "b"}, []string{"bash\tGenerate the autocompletion script for bash"}, noFiles},
		{[]string{"push", "--met"}, []string{"--metrics-file\twrite the transfer's figures to this file in the Prometheus text format, also on failure (env MODELX_METRICS_FILE)"}, noFiles},
		{[]string{"pull", "l"}, []string{"lab/", "local/"}, noFiles | noSpace},
		{[]string{"pull", "local/"}, []string{"local/cv/resnet", "local/nlp/bart", "local/nlp/bert"}, noFiles | noSpace},
		{[]string{"pull", "local/nlp/b"}, []string{"local/nlp/bart", "local/nlp/bert"}, noFiles | noSpace},
		{[]string{"info", "local/nlp/bert:"}, []string{"local/nlp/bert:v1", "local/nlp/bert:prod"}, noFiles},
		{[]string{"info", "local/nlp/bert@p"}, []string{"local/nlp/bert@prod"}, noFiles},
		{[]string{"copy", "local/nlp/bert:v1", url + "/cv/"}, []string{url + "/cv/resnet"}, noFiles | noSpace},
		{[]string{"gc", "local/c"}, []string{"local/cv/resnet"}, noFiles},
		{[]string{"gc", "local/cv/resnet:"}, nil, noFiles},
		{[]string{"push", "--from", "local/nlp/bar"}, []string{"local/nlp/bart"}, noFiles},
		{[]string{"tag", "local/nlp/bert:v1", ""}, []string{"v1", "prod"}, noFiles},
		{[]string{"repo", "remove", "lo"}, []string{"local"}, noFiles},
		{[]string{"login", ""}, []string{"down", "lab", "local"}, noFiles},
		{[]string{"pull", "local/nlp/bert:v1", ""}, nil, cobra.ShellCompDirectiveFilterDirs},
		{[]string{"list", "-o", ""}, []string{"text", "json"}, noFiles},
		{[]string{"--config", ""}, []string{"yaml", "yml"}, cobra.ShellCompDirectiveFilterFileExt},
		{[]string{"pull", "--metrics-file", ""}, nil, cobra.ShellCompDirectiveDefault},
		{[]string{"pull", "local/nlp/bert:v1", "--file", ""}, []string{"README.md", "weights.bin"}, noFiles},
		{[]string{"pull", "local/nlp/bert:v1", "--file", "w"}, []string{"weights.bin"}, noFiles},
		// A registry that does not answer, and a reference that is no
		// reference, complete nothing.
		{[]string{"pull", "down/"}, nil, noFiles},
		{[]string{"pull", "down/nlp/bert:"}, nil, noFiles},
		{[]string{"pull", "nowhere/nlp/"}, nil, noFiles},
	} {
		got, directive := complete(t, tc.args...)
		if strings.Join(got, "\n") != strings.Join(tc.want, "\n") || directive != tc.directive {
			t.Errorf("modelx __complete %q:\n got %q, directive %d\nwant %q, directive %d", tc.args, got, directive, tc.want, tc.directive)
		}
	}
}
