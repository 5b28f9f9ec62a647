package testenv

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestOCIToolVersionsInStep checks that the OCI clients the tests look for
// are the ones the Makefile builds, from the versions tools/NAME/go.mod pin.
func TestOCIToolVersionsInStep(t *testing.T) {
	makefile := readFileString(t, "../../Makefile")
	match := func(text, pattern string) string {
		t.Helper()
		m := regexp.MustCompile(pattern).FindStringSubmatch(text)
		if m == nil {
			t.Fatalf("no match for %s", pattern)
		}
		return m[1]
	}
	for _, c := range []struct{ makeVar, gomod, module, want string }{
		{"OCI_CONFORMANCE_VERSION", "", "", OCIConformanceVersion},
		{"OCI_CONFORMANCE_MODULE_VERSION", "oci-conformance", "github.com/opencontainers/distribution-spec/conformance", OCIConformanceModuleVersion},
		{"ORAS_VERSION", "oras", "oras.land/oras", OrasVersion},
		{"CRANE_VERSION", "crane", "github.com/google/go-containerregistry", CraneVersion},
	} {
		if v := match(makefile, `(?m)^`+c.makeVar+` := (\S+)$`); v != c.want {
			t.Errorf("Makefile %s %s, testenv has %s", c.makeVar, v, c.want)
		}
		if c.gomod == "" {
			continue
		}
		gomod := readFileString(t, "../../tools/"+c.gomod+"/go.mod")
		if v := match(gomod, `(?m)^\s*`+regexp.QuoteMeta(c.module)+` (\S+)`); v != c.want {
			t.Errorf("tools/%s/go.mod pins %s %s, testenv has %s", c.gomod, c.module, v, c.want)
		}
	}
	// v1.1-20260831 names v0.0.0-20260831232431-97274622c111: same commit date.
	date := match(OCIConformanceModuleVersion, `^v0\.0\.0-(\d{8})\d{6}-[0-9a-f]{12}$`)
	if want := "v1.1-" + date; OCIConformanceVersion != want {
		t.Errorf("OCIConformanceVersion %s, but the module's commit date makes it %s", OCIConformanceVersion, want)
	}
}

func TestOrasVersion(t *testing.T) {
	out, err := Oras(t, nil, "version")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^Version:\s+(\S+)$`).FindStringSubmatch(out)
	if m == nil || "v"+m[1] != OrasVersion {
		t.Errorf("oras version says\n%s\nwant Version: %s", out, strings.TrimPrefix(OrasVersion, "v"))
	}
	if _, err := Oras(t, nil, "no-such-command"); err == nil || !strings.Contains(err.Error(), `unknown command "no-such-command"`) {
		t.Errorf("an unknown command: error %v, want one with oras's stderr", err)
	}
}

func TestCraneVersion(t *testing.T) {
	out, err := Crane(t, nil, "version")
	if err != nil {
		t.Fatal(err)
	}
	if v := strings.TrimSpace(out); v != CraneVersion {
		t.Errorf("crane version says %q, want %s", v, CraneVersion)
	}
}

// TestOCIConformanceParsesResults runs the real suite against a server that
// answers 404 to everything, and checks that the results are read: many
// leaf tests, most failed, each failure with its message.
func TestOCIConformanceParsesResults(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	res := RunOCIConformance(t, OCIConformanceOptions{
		Registry: strings.TrimPrefix(srv.URL, "http://"),
		Repo1:    "conformance/one",
		Repo2:    "conformance/two",
		Env:      map[string]string{"OCI_DATA_SHA512": "false"},
	})
	counts := res.Counts()
	t.Logf("counts %v", counts)
	if len(res.Tests) < 300 || counts[OCIFail] < 200 || counts[OCIPass] == 0 {
		t.Errorf("%d tests, %v: want hundreds, most failed", len(res.Tests), counts)
	}
	failed := res.Failed()
	if len(failed) != counts[OCIFail]+counts[OCIError]+counts[OCIUnknown] {
		t.Errorf("Failed() has %d tests, counts %v", len(failed), counts)
	}
	for _, tc := range failed {
		if !strings.HasPrefix(tc.Name, "OCI Conformance Test/") || strings.TrimSpace(tc.Message) == "" || tc.Output == "" {
			t.Errorf("failed test %q: message %q, %d bytes of output", tc.Name, tc.Message, len(tc.Output))
		}
	}
	// Blob upload cancel is off at spec 1.1: the suite reports it disabled,
	// which junit.xml alone calls skipped. OCI_DATA_SHA512=false drops the
	// sha512 tests.
	cancel := "OCI Conformance Test/sha256 blobs/post cancel/blob-post-cancel"
	var sha256, sha512 int
	for _, tc := range res.Tests {
		if tc.Name == cancel && (tc.Status != OCIDisabled || !strings.Contains(tc.Message, "disabled")) {
			t.Errorf("%s: %s %q, want disabled with a reason", tc.Name, tc.Status, tc.Message)
		}
		sha256 += strings.Count(tc.Name, "/sha256 blobs/")
		sha512 += strings.Count(tc.Name, "sha512")
	}
	if sha256 == 0 || sha512 != 0 {
		t.Errorf("%d sha256 and %d sha512 blob tests, want some and none (OCI_DATA_SHA512=false)", sha256, sha512)
	}
	if _, err := os.Stat(res.ReportHTML); err != nil {
		t.Error(err)
	}

	// RequirePass lists the failures not allowed, and allowed names that
	// passed or do not exist.
	var passed string
	var names []string // distinct failed names
	for _, tc := range res.Tests {
		if tc.Status == OCIPass && passed == "" {
			passed = tc.Name
		}
		if tc.failed() && !slices.Contains(names, tc.Name) {
			names = append(names, tc.Name)
		}
	}
	allowed := map[string]string{
		names[0]:                       "a reason",
		passed:                         "a reason",
		"OCI Conformance Test/no-such": "a reason",
		names[len(names)-1]:            " ",
	}
	var message string
	for _, tc := range failed {
		if tc.Name == names[1] {
			message, _, _ = strings.Cut(tc.Message, "\n")
			break
		}
	}
	rec := &recordingTB{TB: t}
	res.RequirePass(rec, allowed)
	report := strings.Join(rec.errors, "\n")
	for _, want := range []string{
		names[1] + ": fail\n\t" + message,
		passed + ": allowed not to pass, but it passed",
		"OCI Conformance Test/no-such: allowed to fail, but the suite has no such test",
		names[len(names)-1] + ": allowed to fail without a reason",
	} {
		if !strings.Contains(report, want) {
			t.Errorf("RequirePass's errors lack %q", want)
		}
	}
	if strings.Contains(report, "\n"+names[0]+": fail") {
		t.Errorf("RequirePass reports the allowed failure %s", names[0])
	}
	if len(rec.errors) != 2 {
		t.Errorf("RequirePass reported %d errors, want the failures and the stale allow list", len(rec.errors))
	}
}

// recordingTB records Errorf instead of failing the test.
type recordingTB struct {
	testing.TB
	errors []string
}

func (r *recordingTB) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func readFileString(t *testing.T, file string) string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return strings.ReplaceAll(string(data), "\\\n", " ")
}
