package testenv

import (
	"io"
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// WaitFor polls cond every 10 ms until it holds, and fails the test when
// it still does not after timeout; what names the awaited condition.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", timeout, what)
		}
	}
}

// Scrape returns the Prometheus text exposition that baseURL serves at /metrics.
func Scrape(t testing.TB, baseURL string) string {
	t.Helper()
	resp, err := http.Get(baseURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d", resp.StatusCode)
	}
	return string(body)
}

// Metric returns the value of the series name{labels} in a scraped text,
// with labels exactly as exposed (`{result="ok"}`, or "" for none); 0 when
// the series is absent.
func Metric(t testing.TB, text, name, labels string) float64 {
	t.Helper()
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name+labels) + ` (\S+)$`)
	m := re.FindStringSubmatch(text)
	if m == nil {
		return 0
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
