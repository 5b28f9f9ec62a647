package main

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"modelx.io/modelx/client"
)

// TestOptionErrorsNameFlags: the library names its own options when one
// is refused (client.OptionError); the CLI says which flag that is and
// what to do instead.
func TestOptionErrorsNameFlags(t *testing.T) {
	t.Setenv("MODELX_CONFIG", filepath.Join(t.TempDir(), "config.yaml"))
	t.Setenv("MODELX_TOKEN", "")
	url := startRegistry(t)
	model := filepath.Join(t.TempDir(), "bert")
	mustRun(t, "init", model)
	mustRun(t, "push", url+"/nlp/bert:v1", model)

	for _, tc := range []struct {
		args          []string
		option, want  string
		alsoInMessage string
	}{
		{[]string{"--model-files"}, "PullOptions.ModelFiles", "--model-files: modelx.yaml of ", "; pull without --model-files, or name files with --file"},
		{[]string{"--file", "["}, "PullOptions.Files", `--file: "[" is not a valid pattern`, ""},
	} {
		args := append([]string{"pull", url + "/nlp/bert:v1", filepath.Join(t.TempDir(), "out")}, tc.args...)
		_, _, err := run(t, "", args...)
		var opt *client.OptionError
		if err == nil || !errors.As(err, &opt) || opt.Option != tc.option {
			t.Fatalf("%v: got %v, want a client.OptionError for %s", tc.args, err, tc.option)
		}
		if msg := err.Error(); !strings.HasPrefix(msg, tc.want) || !strings.Contains(msg, tc.alsoInMessage) || strings.Contains(msg, tc.option) {
			t.Errorf("%v: message %q: want it to start %q, hold %q and not name %s", tc.args, msg, tc.want, tc.alsoInMessage, tc.option)
		}
		if lib := opt.Error(); !strings.HasPrefix(lib, tc.option+": ") || strings.Contains(lib, "--") {
			t.Errorf("library message %q names a flag or not its option", lib)
		}
	}
}
