package reference_test

import (
	"strings"
	"testing"

	"modelx.io/modelx/client/reference"
)

// TestSuggestTag turns names that are no tag into tags, and gives up on
// names with nothing of a tag in them.
func TestSuggestTag(t *testing.T) {
	for in, want := range map[string]string{
		"v1":                     "v1",
		"release/2":              "release-2",
		"v1 beta  rc":            "v1-beta-rc",
		".hidden":                "hidden",
		"-x-":                    "x",
		"naïve":                  "na-ve",
		"bert:v2":                "bert-v2",
		"///":                    "",
		"":                       "",
		strings.Repeat("a", 200): strings.Repeat("a", 128),
	} {
		got := reference.SuggestTag(in)
		if got != want {
			t.Errorf("SuggestTag(%q) = %q, want %q", in, got, want)
		}
		if got != "" && reference.ValidateTag(got) != nil {
			t.Errorf("SuggestTag(%q) = %q, which is no valid tag", in, got)
		}
	}
	err := reference.ValidateTag("release/2")
	if err == nil || !strings.Contains(err.Error(), `for example "release-2"`) || !strings.Contains(err.Error(), "use letters, digits") {
		t.Fatalf("ValidateTag(release/2): %v", err)
	}
}
