package testenv

import (
	"bytes"
	"cmp"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// The OCI clients the /v2/ API is tested with; keep them in step with
// tools/NAME/go.mod and the Makefile (TestOCIToolVersionsInStep checks).
const (
	// OCIConformanceVersion names the build of the distribution-spec
	// conformance suite: the spec version it tests and the date of its
	// commit, as the suite has no releases.
	OCIConformanceVersion = "v1.1-20260831"
	// OCIConformanceModuleVersion is the pseudo-version of the suite's
	// module that OCIConformanceVersion stands for.
	OCIConformanceModuleVersion = "v0.0.0-20260831232431-97274622c111"
	// OrasVersion is the oras CLI release.
	OrasVersion = "v1.3.6"
	// CraneVersion is the go-containerregistry release crane is built from.
	CraneVersion = "v0.22.1"
)

// OCIConformanceOptions configure RunOCIConformance.
type OCIConformanceOptions struct {
	// Registry is the registry's host:port, spoken to over plain HTTP.
	Registry string
	// Repo1 and Repo2 are the repositories the suite pushes to, e.g.
	// "conformance/one"; the suite's defaults are conformance/repo1 and
	// conformance/repo2.
	Repo1, Repo2 string
	// Username and Password log in; empty is anonymous.
	Username, Password string
	// Env holds further OCI_* settings of the suite, e.g.
	// {"OCI_DATA_SHA512": "false"}. They are set last, so they may also
	// change OCI_VERSION, OCI_LOG or OCI_TLS; OCI_RESULTS_DIR and
	// OCI_CONFIGURATION are the runner's.
	Env map[string]string
	// Timeout bounds the run; default 10 minutes.
	Timeout time.Duration
}

// OCIStatus is the outcome of one conformance test, as the suite names it.
type OCIStatus string

// The statuses of the suite. Unknown is a test that recorded no outcome,
// which the suite counts as an error in its JUnit report.
const (
	OCIPass     OCIStatus = "pass"
	OCIFail     OCIStatus = "fail"
	OCIError    OCIStatus = "error"
	OCISkip     OCIStatus = "skip"
	OCIDisabled OCIStatus = "disabled"
	OCIUnknown  OCIStatus = "unknown"
)

// OCITest is one leaf test of the suite. A name may occur more than once:
// the suite repeats a step (e.g. ".../image/push/blob-post-put") for each
// blob it pushes.
type OCITest struct {
	// Name is the test's path, e.g.
	// "OCI Conformance Test/sha256 blobs/mount/blob-mount".
	Name   string
	Status OCIStatus
	// Message is why a test failed (its errors) or was skipped.
	Message string
	// Output is the suite's log of the test's requests and responses.
	Output string
}

// OCIConformanceResult is the outcome of a conformance run.
type OCIConformanceResult struct {
	// Tests are the leaf tests in the suite's order.
	Tests []OCITest
	// Dir holds the suite's results.yaml, junit.xml and report.html, and
	// its stdout and stderr. It is the test's ArtifactDir: kept with
	// `go test -artifacts`, removed after the test otherwise.
	Dir string
	// ReportHTML is the path of the suite's full report.
	ReportHTML string
}

// RunOCIConformance runs the distribution-spec conformance suite against
// opts.Registry and returns its leaf tests. Failed tests are not an error
// here (see RequirePass); a suite that cannot run or report ends the test.
func RunOCIConformance(t testing.TB, opts OCIConformanceOptions) *OCIConformanceResult {
	t.Helper()
	bin := RequireBinary(t, "oci-conformance", OCIConformanceVersion)
	if opts.Registry == "" {
		t.Fatal("RunOCIConformance: no Registry")
	}
	dir, err := os.MkdirTemp(t.ArtifactDir(), "oci-conformance-")
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{
		"OCI_REGISTRY":    opts.Registry,
		"OCI_TLS":         "disabled",
		"OCI_VERSION":     "1.1",
		"OCI_LOG":         "warn",
		"OCI_REPO1":       opts.Repo1,
		"OCI_REPO2":       opts.Repo2,
		"OCI_USERNAME":    opts.Username,
		"OCI_PASSWORD":    opts.Password,
		"OCI_RESULTS_DIR": dir,
	}
	for k, v := range opts.Env {
		if !strings.HasPrefix(k, "OCI_") || k == "OCI_RESULTS_DIR" || k == "OCI_CONFIGURATION" {
			t.Fatalf("RunOCIConformance: Env may not set %s", k)
		}
		settings[k] = v
	}
	// Only our settings: none inherited, no oci-conformance.yaml read from
	// the working directory (the suite's default configuration file).
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OCI_") {
			env = append(env, kv)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(settings)) {
		if settings[k] != "" {
			env = append(env, k+"="+settings[k])
		}
	}

	timeout := cmp.Or(opts.Timeout, 10*time.Minute)
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	stdoutPath, stderrPath := filepath.Join(dir, "stdout.txt"), filepath.Join(dir, "stderr.txt")
	stdout, err := os.Create(stdoutPath)
	if err != nil {
		t.Fatal(err)
	}
	defer stdout.Close()
	stderr, err := os.Create(stderrPath)
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = dir, env, stdout, stderr
	start := time.Now()
	err = cmd.Run()
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("oci-conformance did not finish in %v: %v\n%s", timeout, ctx.Err(), lastLines(stderrPath))
	case errors.As(err, &exit) && exit.ExitCode() == 1:
		// The suite found failures; they are in the results.
	case err != nil:
		t.Fatalf("oci-conformance: %v\n%s", err, lastLines(stderrPath))
	}
	junit, err := os.ReadFile(filepath.Join(dir, "junit.xml"))
	if err != nil {
		// The suite exits 0 without reports when its configuration is bad.
		t.Fatalf("oci-conformance wrote no report: %v\n%s", err, lastLines(stderrPath))
	}
	report, _ := os.ReadFile(stdoutPath)
	tests, err := parseOCIConformance(junit, report)
	if err != nil {
		t.Fatalf("oci-conformance results in %s: %v", dir, err)
	}
	t.Logf("oci-conformance: %d tests in %v, results in %s", len(tests), time.Since(start).Round(time.Millisecond), dir)
	return &OCIConformanceResult{Tests: tests, Dir: dir, ReportHTML: filepath.Join(dir, "report.html")}
}

// Failed returns the tests that failed, errored or recorded no outcome.
func (r *OCIConformanceResult) Failed() []OCITest {
	var failed []OCITest
	for _, tc := range r.Tests {
		if tc.failed() {
			failed = append(failed, tc)
		}
	}
	return failed
}

// Counts returns how many tests ended with each status.
func (r *OCIConformanceResult) Counts() map[OCIStatus]int {
	counts := map[OCIStatus]int{}
	for _, tc := range r.Tests {
		counts[tc.Status]++
	}
	return counts
}

// RequirePass fails the test for every test that did not pass (failed,
// or was skipped by the suite because the registry lacks what it tests)
// whose name is not in allowed (name → why); tests the configuration
// turned off do not count. It also fails for every allowed name that
// passed or does not exist, so the list stays true. It logs the counts per status and, on failure, the report's path.
func (r *OCIConformanceResult) RequirePass(t testing.TB, allowed map[string]string) {
	t.Helper()
	counts := r.Counts()
	var parts []string
	for _, s := range []OCIStatus{OCIPass, OCIFail, OCIError, OCIUnknown, OCISkip, OCIDisabled} {
		if counts[s] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[s], s))
		}
	}
	t.Logf("oci-conformance: %s", strings.Join(parts, ", "))

	seen := map[string][]OCIStatus{}
	var unexpected []string
	for _, tc := range r.Tests {
		seen[tc.Name] = append(seen[tc.Name], tc.Status)
		if _, ok := allowed[tc.Name]; tc.notPassed() && !ok {
			unexpected = append(unexpected, fmt.Sprintf("%s: %s\n\t%s", tc.Name, tc.Status,
				strings.ReplaceAll(strings.TrimSpace(tc.Message), "\n", "\n\t")))
		}
	}
	var stale []string
	for _, name := range slices.Sorted(maps.Keys(allowed)) {
		statuses, ok := seen[name]
		switch {
		case strings.TrimSpace(allowed[name]) == "":
			stale = append(stale, name+": allowed to fail without a reason")
		case !ok:
			stale = append(stale, name+": allowed to fail, but the suite has no such test")
		case !slices.ContainsFunc(statuses, func(s OCIStatus) bool { return OCITest{Status: s}.notPassed() }):
			stale = append(stale, fmt.Sprintf("%s: allowed not to pass, but it passed (%v)", name, statuses))
		}
	}
	if len(unexpected) > 0 {
		t.Errorf("%d conformance tests did not pass:\n%s", len(unexpected), strings.Join(unexpected, "\n"))
	}
	if len(stale) > 0 {
		t.Errorf("the allow list is out of date:\n%s", strings.Join(stale, "\n"))
	}
	if len(unexpected) > 0 || len(stale) > 0 {
		t.Logf("oci-conformance report: %s (kept with go test -artifacts)", r.ReportHTML)
	}
}

// notPassed says the test neither passed nor was turned off by the
// configuration: it failed, or the suite skipped it because the registry
// lacks what it tests.
func (tc OCITest) notPassed() bool { return tc.failed() || tc.Status == OCISkip }

func (tc OCITest) failed() bool {
	return tc.Status == OCIFail || tc.Status == OCIError || tc.Status == OCIUnknown
}

// The suite's JUnit report: one testcase per leaf test, its errors in
// system-out and its request log in system-err.
type junitReport struct {
	Suites []struct {
		Cases []struct {
			Name      string `xml:"name,attr"`
			Status    string `xml:"status,attr"`
			SystemOut string `xml:"system-out"`
			SystemErr string `xml:"system-err"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

// junitStatus maps the suite's JUnit statuses; skip and disabled share
// "skipped", and error and unknown share "error".
var junitStatus = map[string]OCIStatus{"passed": OCIPass, "failure": OCIFail, "error": OCIError, "skipped": OCISkip}

// The suite's own status names, printed on stdout as "NAME: STATUS" for
// each test (ReportWalkErr): they tell skip from disabled, error from unknown.
var (
	walkLine   = regexp.MustCompile(`^\s*(.+): (Pass|FAIL|Error|Unknown|Skip|Disabled)$`)
	walkStatus = map[string]OCIStatus{"Pass": OCIPass, "FAIL": OCIFail, "Error": OCIError, "Unknown": OCIUnknown, "Skip": OCISkip, "Disabled": OCIDisabled}
	junitOf    = map[OCIStatus]OCIStatus{OCIUnknown: OCIError, OCIDisabled: OCISkip}
)

// parseOCIConformance reads the leaf tests from the suite's junit.xml and
// takes the finer statuses from its stdout report where the two agree.
func parseOCIConformance(junit, stdout []byte) ([]OCITest, error) {
	var rep junitReport
	if err := xml.Unmarshal(junit, &rep); err != nil {
		return nil, fmt.Errorf("junit.xml: %w", err)
	}
	walked := map[string][]OCIStatus{} // name → statuses in report order
	for line := range strings.Lines(string(stdout)) {
		if m := walkLine.FindStringSubmatch(strings.TrimRight(line, "\n")); m != nil {
			walked[m[1]] = append(walked[m[1]], walkStatus[m[2]])
		}
	}
	var tests []OCITest
	for _, s := range rep.Suites {
		for _, c := range s.Cases {
			status, ok := junitStatus[c.Status]
			if !ok {
				return nil, fmt.Errorf("test %q: unknown status %q", c.Name, c.Status)
			}
			if w := walked[c.Name]; len(w) > 0 {
				walked[c.Name] = w[1:]
				if cmp.Or(junitOf[w[0]], w[0]) == status {
					status = w[0]
				}
			}
			msg := strings.TrimSpace(c.SystemOut)
			if msg == "" {
				msg = skipReason(c.Name, c.SystemErr)
			}
			tests = append(tests, OCITest{Name: c.Name, Status: status, Message: msg, Output: c.SystemErr})
		}
	}
	if len(tests) == 0 {
		return nil, errors.New("no tests in junit.xml")
	}
	return tests, nil
}

// skipReason finds "NAME: skipping test:" in a test's log and returns the
// indented lines after it.
func skipReason(name, log string) string {
	_, after, ok := strings.Cut(log, name+": skipping test:\n")
	if !ok {
		return ""
	}
	var reason []string
	for line := range strings.Lines(after) {
		if !strings.HasPrefix(line, "  ") {
			break
		}
		reason = append(reason, strings.TrimSpace(line))
	}
	return strings.Join(reason, "\n")
}

// Oras runs the oras CLI with args and returns its stdout. See Crane for
// the environment; oras needs --plain-http for an http registry.
func Oras(t testing.TB, env []string, args ...string) (stdout string, err error) {
	t.Helper()
	return runOCIClient(t, RequireBinary(t, "oras", OrasVersion), "", env, args)
}

// OrasIn is Oras run in directory dir: oras push names each file by the
// relative path it is given, and oras pull writes there.
func OrasIn(t testing.TB, dir string, env []string, args ...string) (stdout string, err error) {
	t.Helper()
	return runOCIClient(t, RequireBinary(t, "oras", OrasVersion), dir, env, args)
}

// Crane runs crane with args and returns its stdout; an error carries its
// stdout and stderr. Each call has a fresh empty HOME, DOCKER_CONFIG and
// XDG_CONFIG_HOME, so no user configuration or login leaks in; env is
// added last (pass DOCKER_CONFIG=DIR to share a login between calls).
// crane needs --insecure for an http registry.
func Crane(t testing.TB, env []string, args ...string) (stdout string, err error) {
	t.Helper()
	return runOCIClient(t, RequireBinary(t, "crane", CraneVersion), "", env, args)
}

// runOCIClient runs an OCI client binary in dir (its fresh HOME when dir
// is "") for at most 5 minutes.
func runOCIClient(t testing.TB, bin, dir string, env, args []string) (string, error) {
	t.Helper()
	home := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = cmp.Or(dir, home)
	cmd.Env = append(os.Environ(),
		"HOME="+home,
		"DOCKER_CONFIG="+filepath.Join(home, ".docker"),
		"XDG_CONFIG_HOME="+filepath.Join(home, ".config"))
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		// Only the subcommand: other arguments may hold a password.
		return stdout.String(), fmt.Errorf("%s %s: %w\nstdout:\n%s\nstderr:\n%s",
			filepath.Base(bin), strings.Join(args[:min(1, len(args))], " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

// lastLines returns the last lines of a file, for an error message.
func lastLines(path string) string {
	data, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-20):], "\n")
}
