package spec

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

func TestValidateHolder(t *testing.T) {
	for _, ok := range []string{"ctl", "modelx-controller:prod:serving:bert", "A.b_c-d:9", "0", strings.Repeat("h", MaxHolderLength)} {
		if err := ValidateHolder(ok); err != nil {
			t.Errorf("ValidateHolder(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".", "..", "-x", ":x", "_x", "a/b", "a b", "a%2Fb", "hä", "a\x00b", "a\nb", "<script>", strings.Repeat("h", MaxHolderLength+1)} {
		err := ValidateHolder(bad)
		var e *Error
		if !errors.As(err, &e) || e.Code != ErrorNameInvalid {
			t.Errorf("ValidateHolder(%q) = %v, want NAME_INVALID", bad, err)
			continue
		}
		if bad != "" && !strings.Contains(e.Message, "starting with a letter or digit (at most 253 characters)") {
			t.Errorf("ValidateHolder(%q): %q does not name the rule", bad, e.Message)
		}
		if len(e.Message) > 400 {
			t.Errorf("ValidateHolder of %d bytes: a message of %d bytes", len(bad), len(e.Message))
		}
	}
}

func TestParseHoldRequest(t *testing.T) {
	d1, d2 := digest.FromString("one"), digest.FromString("two")
	many := make([]string, MaxHoldDigests+1)
	for i := range many {
		many[i] = `"` + string(digest.FromString(fmt.Sprint(i))) + `"`
	}
	for _, tc := range []struct {
		body    string
		digests []digest.Digest
		ttl     time.Duration
		code    ErrorCode
	}{
		{body: `{"digests":["` + string(d1) + `"]}`, digests: []digest.Digest{d1}},
		{body: `{"digests":["` + string(d1) + `","` + string(d2) + `","` + string(d1) + `"],"ttl":"90m"}`, digests: []digest.Digest{d1, d2}, ttl: 90 * time.Minute},
		{body: `{"digests":[` + strings.Join(many[:MaxHoldDigests], ",") + `],"ttl":"1h"}`, ttl: time.Hour},
		{body: `{"digests":[` + strings.Join(many, ",") + `]}`, code: ErrorHoldInvalid},
		{body: `{"digests":[]}`, code: ErrorHoldInvalid},
		{body: `{}`, code: ErrorHoldInvalid},
		{body: `null`, code: ErrorHoldInvalid},
		{body: ``, code: ErrorHoldInvalid},
		{body: `{"digests":["` + string(d1) + `"],"ttl":"0s"}`, code: ErrorHoldInvalid},
		{body: `{"digests":["` + string(d1) + `"],"ttl":"-5m"}`, code: ErrorHoldInvalid},
		{body: `{"digests":["` + string(d1) + `"],"ttl":86400}`, code: ErrorHoldInvalid},
		{body: `{"digests":["` + string(d1) + `"],"ttl":"1y"}`, code: ErrorHoldInvalid},
		{body: `{"digests":["` + string(d1) + `"],"expires":"2099-01-01T00:00:00Z"}`, code: ErrorHoldInvalid},
		{body: `{"digests":["` + string(d1) + `"]} {}`, code: ErrorHoldInvalid},
		{body: `{"digests":["sha512:abc"]}`, code: ErrorDigestInvalid},
		{body: `{"digests":["` + strings.ToUpper(string(d1)) + `"]}`, code: ErrorDigestInvalid},
		{body: `{"digests":"` + string(d1) + `"}`, code: ErrorHoldInvalid},
	} {
		digests, ttl, err := ParseHoldRequest([]byte(tc.body))
		if tc.code != "" {
			var e *Error
			if !errors.As(err, &e) || e.Code != tc.code {
				t.Errorf("ParseHoldRequest(%.80s) = %v, want %s", tc.body, err, tc.code)
			}
			continue
		}
		if err != nil || ttl != tc.ttl || (tc.digests != nil && fmt.Sprint(digests) != fmt.Sprint(tc.digests)) {
			t.Errorf("ParseHoldRequest(%.80s) = %v, %v, %v; want %v, %v", tc.body, digests, ttl, err, tc.digests, tc.ttl)
		}
	}
}

func TestHoldExpiry(t *testing.T) {
	now := time.Now()
	d := digest.FromString("v")
	h := Hold{Holder: "x", Digests: []digest.Digest{d}, Expires: now.Add(time.Minute)}
	if h.Expired(now) || !h.Holds(d, now) || h.Holds(digest.FromString("w"), now) {
		t.Error("an unexpired hold holds its digests, and only those")
	}
	if !h.Expired(now.Add(time.Minute)) || h.Holds(d, now.Add(time.Hour)) {
		t.Error("an expired hold holds nothing")
	}
}
