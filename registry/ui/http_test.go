package ui_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"modelx.io/modelx/client"
	"modelx.io/modelx/registry"
	"modelx.io/modelx/registry/auth"
	"modelx.io/modelx/spec"
)

// TestRootStaysTheAPI: GET / answers the JSON global index to API clients,
// exactly as before, and sends browsers to the UI.
func TestRootStaysTheAPI(t *testing.T) {
	e := startRegistry(t, registry.Options{})
	e.push(t, "nlp/bert:v1", "", map[string][]byte{"modelx.yaml": []byte(bertConfig)})

	for _, accept := range []string{"", "application/json", "*/*", "application/json, text/html", "text/html;q=0.5, application/json"} {
		resp, body := e.get(t, "/", "Accept", accept)
		var idx spec.Index
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") || json.Unmarshal([]byte(body), &idx) != nil {
			t.Fatalf("Accept %q: GET / = %d %s %q, want the JSON index", accept, resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
		if len(idx.Manifests) != 1 || idx.Manifests[0].Name != "nlp/bert" {
			t.Errorf("Accept %q: index = %+v", accept, idx)
		}
	}
	resp, _ := e.get(t, "/", "Accept", browserAccept)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/-/ui/" || !strings.Contains(resp.Header.Get("Vary"), "Accept") {
		t.Errorf("browser GET / = %d Location %q Vary %q, want 303 to /-/ui/, Vary: Accept", resp.StatusCode, resp.Header.Get("Location"), resp.Header.Get("Vary"))
	}
	resp, _ = e.get(t, "/?search=be", "Accept", browserAccept)
	if resp.Header.Get("Location") != "/-/ui/?q=be" {
		t.Errorf("browser GET /?search=be went to %q, want /-/ui/?q=be", resp.Header.Get("Location"))
	}
	resp, _ = e.get(t, "/-/ui", "Accept", browserAccept)
	if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "/-/ui/" {
		t.Errorf("GET /-/ui = %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	// The UI's old pages, under /ui/, redirect to the same page.
	for old, want := range map[string]string{"/ui": "/-/ui/", "/ui/": "/-/ui/", "/ui/?q=be": "/-/ui/?q=be", "/ui/nlp/bert?page=2": "/-/ui/nlp/bert?page=2", "/ui/nlp/bert/v1": "/-/ui/nlp/bert/v1"} {
		resp, _ = e.get(t, old, "Accept", browserAccept)
		if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != want {
			t.Errorf("GET %s = %d %q, want 308 to %s", old, resp.StatusCode, resp.Header.Get("Location"), want)
		}
	}

	off := startRegistry(t, registry.Options{DisableUI: true})
	if resp, _ := off.get(t, "/", "Accept", browserAccept); resp.StatusCode != http.StatusOK {
		t.Errorf("with the UI off, a browser's GET / = %d, want the index", resp.StatusCode)
	}
	for _, path := range []string{"/-/ui/", "/ui/", "/ui/nlp/bert"} {
		if resp, body := off.get(t, path, "Accept", browserAccept); resp.StatusCode < 400 || strings.Contains(body, "<html") {
			t.Errorf("with the UI off, GET %s = %d %q", path, resp.StatusCode, body)
		}
	}
}

// TestRepositoryNamedUI: every route of the API works for a repository
// called "ui", for browsers too; the UI, under its own prefix, shows it.
func TestRepositoryNamedUI(t *testing.T) {
	e := startRegistry(t, registry.Options{})
	e.push(t, "ui/tool:v1", "", map[string][]byte{"modelx.yaml": []byte(bertConfig), "a.txt": []byte("a")})

	for _, accept := range []string{"", browserAccept} {
		resp, body := e.get(t, "/ui/tool/index", "Accept", accept)
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"name":"v1"`) {
			t.Fatalf("API GET /ui/tool/index (Accept %q) = %d %q", accept, resp.StatusCode, body)
		}
		resp, _ = e.get(t, "/ui/tool/manifests/v1", "Accept", accept)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != spec.MediaTypeManifest {
			t.Fatalf("API GET /ui/tool/manifests/v1 (Accept %q) = %d %s", accept, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		resp, body = e.get(t, "/ui/tool/holds", "Accept", accept)
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"holds"`) {
			t.Fatalf("API GET /ui/tool/holds (Accept %q) = %d %q", accept, resp.StatusCode, body)
		}
	}
	ref, _ := client.ParseReference(e.url+"/ui/tool:v1", nil)
	out := filepath.Join(t.TempDir(), "out")
	if _, err := client.New(client.Options{}).Pull(context.Background(), ref, out, client.PullOptions{}); err != nil {
		t.Fatalf("pull ui/tool:v1: %v", err)
	}
	if data, err := os.ReadFile(filepath.Join(out, "a.txt")); err != nil || string(data) != "a" {
		t.Fatalf("pulled a.txt = %q, %v", data, err)
	}
	// A browser asking for /-/ui/tool/index gets the page of the model
	// tool/index, which does not exist.
	resp, body := e.get(t, "/-/ui/tool/index", "Accept", browserAccept)
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(body, "<html") {
		t.Errorf("browser GET /-/ui/tool/index = %d, want the UI's 404 page", resp.StatusCode)
	}
	// And the UI shows the model ui/tool.
	resp, body = e.get(t, "/-/ui/ui/tool", "Accept", browserAccept)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, ">v1</a>") {
		t.Errorf("GET /-/ui/ui/tool = %d", resp.StatusCode)
	}
}

// TestHeaders: every UI answer carries the CSP and friends; pages are not
// cached, static files are.
func TestHeaders(t *testing.T) {
	e := startRegistry(t, registry.Options{})
	e.push(t, "nlp/bert:v1", "", bertFiles("1"))
	for _, path := range []string{"/-/ui/", "/-/ui/?q=x&page=3", "/-/ui/nlp/bert", "/-/ui/nlp/bert/v1", "/-/ui/nlp/bert/v9", "/-/ui/nope/nope", "/-/ui/a/b/c/d", "/-/ui/login", "/-/ui/-/style.css", "/-/ui/-/copy.js", "/-/ui/-/nothing.js"} {
		resp, body := e.get(t, path, "Accept", browserAccept)
		h := resp.Header
		csp := h.Get("Content-Security-Policy")
		if !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") {
			t.Errorf("%s: CSP %q", path, csp)
		}
		if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("X-Frame-Options") != "DENY" {
			t.Errorf("%s: missing nosniff or frame headers: %v", path, h)
		}
		switch {
		case strings.HasPrefix(path, "/-/ui/-/") && resp.StatusCode == http.StatusOK:
			if !strings.Contains(h.Get("Cache-Control"), "max-age") {
				t.Errorf("%s: Cache-Control %q", path, h.Get("Cache-Control"))
			}
		case strings.HasPrefix(path, "/-/ui/-/"):
		default:
			if h.Get("Cache-Control") != "no-store" || h.Get("Content-Type") != "text/html; charset=utf-8" {
				t.Errorf("%s: Cache-Control %q Content-Type %q", path, h.Get("Cache-Control"), h.Get("Content-Type"))
			}
			if strings.Contains(body, "<script>") || strings.Contains(body, " style=") {
				t.Errorf("%s: the page has inline script or style", path)
			}
		}
	}
	for path, want := range map[string]int{"/-/ui/nlp/bert/v9": 404, "/-/ui/nope/nope": 404, "/-/ui/NLP/bert": 404, "/-/ui/nlp/bert/bad:ref": 404, "/-/ui/a/b/c/d": 404, "/-/ui/-/nothing.js": 404} {
		if resp, _ := e.get(t, path, "Accept", browserAccept); resp.StatusCode != want {
			t.Errorf("GET %s = %d, want %d", path, resp.StatusCode, want)
		}
	}
	resp, body := e.get(t, "/-/ui/-/copy.js")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/javascript") || !strings.Contains(body, "data-copy") {
		t.Errorf("copy.js = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if resp, _ := e.get(t, "/-/ui/-/copy.js", "If-None-Match", resp.Header.Get("ETag")); resp.StatusCode != http.StatusNotModified {
		t.Errorf("copy.js with its ETag = %d, want 304", resp.StatusCode)
	}
}

// TestPaging: the list and the tags come a page at a time, with search.
func TestPaging(t *testing.T) {
	e := startRegistry(t, registry.Options{})
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "modelx.yaml"), []byte("framework: onnx\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "m.onnx"), []byte("onnx"), 0o644)
	var wg sync.WaitGroup
	for i := range 57 {
		wg.Go(func() {
			repo := "team-a"
			if i%3 == 0 {
				repo = "team-b"
			}
			e.pushDir(t, fmt.Sprintf("%s/model-%03d:v1", repo, i), "", dir)
		})
	}
	wg.Go(func() {
		for i := range 53 {
			e.pushDir(t, fmt.Sprintf("tags/many:t%03d", i), "", dir)
		}
	})
	wg.Wait()

	_, body := e.get(t, "/-/ui/")
	if !strings.Contains(body, "58 models") || strings.Count(body, `class="model"`) != 50 || !strings.Contains(body, "Page 1 of 2") {
		t.Fatalf("page 1 of the list: want 58 models, 50 shown, page 1 of 2:\n%s", body)
	}
	_, body = e.get(t, "/-/ui/?page=2")
	if strings.Count(body, `class="model"`) != 8 || !strings.Contains(body, "51–58 of 58") || !strings.Contains(body, `href="/-/ui/?page=1"`) {
		t.Errorf("page 2 of the list:\n%s", body)
	}
	_, body = e.get(t, "/-/ui/?q=team-b&page=1")
	if !strings.Contains(body, "19 models match") || strings.Count(body, `class="model"`) != 19 || strings.Contains(body, "team-a/") {
		t.Errorf("search team-b:\n%s", body)
	}
	_, body = e.get(t, "/-/ui/?q="+url.QueryEscape("MODEL-00"))
	if !strings.Contains(body, "10 models match") {
		t.Errorf("search is case-insensitive: %s", body)
	}
	_, body = e.get(t, "/-/ui/?q=nothing-like-this")
	if !strings.Contains(body, "No models match") {
		t.Errorf("an empty search says so: %s", body)
	}
	_, body = e.get(t, "/-/ui/tags/many")
	if strings.Count(body, `class="tag"`) != 50 || !strings.Contains(body, "53 tags") || !strings.Contains(body, ">t052</a>") || strings.Contains(body, ">t000</a>") {
		t.Errorf("tags page 1 (newest first):\n%s", body)
	}
	_, body = e.get(t, "/-/ui/tags/many?page=2")
	if strings.Count(body, `class="tag"`) != 3 || !strings.Contains(body, ">t000</a>") {
		t.Errorf("tags page 2:\n%s", body)
	}
}

// TestLoginForm: the login form's cookie, its refusals, and that no token
// reaches a page, a URL or the log.
func TestLoginForm(t *testing.T) {
	alice, aliceRobot := robotToken("alice")
	pusher, pusherRobot := robotToken("pusher")
	odd := `odd token; with,"quotes" and \ ~` // not a valid cookie value as it is
	oddSum := sha256.Sum256([]byte(odd))
	authn, err := auth.New(auth.Config{Robots: []auth.Robot{aliceRobot, pusherRobot, {Name: "odd", TokenSHA256: hex.EncodeToString(oddSum[:])}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	policy := &auth.Policy{
		AnonymousRepositories: []string{"public/*"},
		Rules: []auth.Rule{
			{Repositories: []string{"*"}, Actions: []auth.Action{auth.Push}, Robots: []string{"pusher"}},
			{Repositories: []string{"private/*"}, Actions: []auth.Action{auth.Pull}, Robots: []string{"alice", "odd"}},
		},
	}
	e := startRegistry(t, registry.Options{Authenticator: authn, Policy: policy})
	e.push(t, "private/secret:v1", pusher, bertFiles("1"))
	e.push(t, "public/open:v1", pusher, map[string][]byte{"modelx.yaml": []byte(bertConfig)})

	form := func(token, next string) string {
		return url.Values{"token": {token}, "next": {next}}.Encode()
	}
	post := func(body string, header ...string) (*http.Response, string) {
		return e.do(t, http.MethodPost, "/-/ui/login", strings.NewReader(body), append([]string{"Content-Type", "application/x-www-form-urlencoded"}, header...)...)
	}

	// A good token: a strict, HttpOnly cookie, and back to next.
	resp, _ := post(form(alice, "/-/ui/private/secret"))
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/-/ui/private/secret" {
		t.Fatalf("login = %d → %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	cookie := sessionCookieOf(t, resp)
	if !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode || cookie.Path != "/-/ui/" || cookie.Secure || cookie.MaxAge <= 0 {
		t.Errorf("session cookie = %+v: want HttpOnly, SameSite=Strict, Path=/-/ui/, not Secure over http", cookie)
	}
	if strings.Contains(resp.Header.Get("Location"), alice) {
		t.Error("the token is in the redirect")
	}
	withCookie := []string{"Cookie", cookie.Name + "=" + cookie.Value, "Accept", browserAccept}
	if resp, body := e.get(t, "/-/ui/private/secret", withCookie...); resp.StatusCode != http.StatusOK || !strings.Contains(body, "robot alice") {
		t.Errorf("logged in, the private model = %d", resp.StatusCode)
	}
	if resp, _ := e.get(t, "/-/ui/private/secret", "Accept", browserAccept); resp.StatusCode != http.StatusNotFound {
		t.Errorf("anonymous, the private model = %d, want 404", resp.StatusCode)
	}

	// A token with bytes a cookie cannot hold as they are still works.
	resp, _ = post(form(odd, "/-/ui/private/secret"))
	c := sessionCookieOf(t, resp)
	if resp, body := e.get(t, "/-/ui/private/secret", "Cookie", c.Name+"="+c.Value); resp.StatusCode != http.StatusOK || !strings.Contains(body, "robot odd") {
		t.Errorf("logged in with an odd token, the private model = %d", resp.StatusCode)
	}

	// Secure behind a TLS-terminating proxy.
	resp, _ = post(form(alice, ""), "X-Forwarded-Proto", "https")
	if c := sessionCookieOf(t, resp); !c.Secure {
		t.Errorf("cookie behind https = %+v, want Secure", c)
	}
	// A login link cannot send the browser elsewhere.
	resp, _ = post(form(alice, "https://evil.example/"))
	if resp.Header.Get("Location") != "/-/ui/" {
		t.Errorf("login with an outside next went to %q", resp.Header.Get("Location"))
	}
	// A bad token: 401, the form again, the token not echoed, no cookie.
	bad := "mxr_wrong_" + strings.Repeat("z", 20)
	resp, body := post(form(bad, "/-/ui/"))
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "did not accept") || strings.Contains(body, bad) || len(resp.Cookies()) != 0 {
		t.Errorf("bad token: %d cookies %v body:\n%s", resp.StatusCode, resp.Cookies(), body)
	}
	// Another site's form is refused.
	for _, h := range [][]string{{"Origin", "https://evil.example"}, {"Sec-Fetch-Site", "cross-site"}} {
		resp, _ := post(form(alice, "/-/ui/"), h...)
		if resp.StatusCode != http.StatusForbidden || len(resp.Cookies()) != 0 {
			t.Errorf("cross-origin login (%s) = %d cookies %v, want 403 and no cookie", h[0], resp.StatusCode, resp.Cookies())
		}
	}
	// A cookie whose token stopped working: anonymous again, told so, cookie cleared.
	resp, body = e.get(t, "/-/ui/", "Cookie", "modelx_ui_token="+bad, "Accept", browserAccept)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "session has ended") || sessionCookieOf(t, resp).MaxAge >= 0 {
		t.Errorf("stale cookie: %d %v", resp.StatusCode, resp.Cookies())
	}
	// Logout clears the cookie.
	resp, _ = e.do(t, http.MethodPost, "/-/ui/logout", nil, withCookie...)
	if resp.StatusCode != http.StatusSeeOther || sessionCookieOf(t, resp).MaxAge >= 0 {
		t.Errorf("logout = %d %v", resp.StatusCode, resp.Cookies())
	}
	// A token in the query string is not a login.
	if _, body := e.get(t, "/-/ui/?token="+alice); strings.Contains(body, "private/secret") {
		t.Error("a token in the URL was honoured")
	}
	for _, secret := range []string{alice, pusher, bad} {
		if strings.Contains(e.logs.String(), secret) {
			t.Errorf("the registry log holds a token")
		}
	}
}

func sessionCookieOf(t *testing.T, resp *http.Response) *http.Cookie {
	t.Helper()
	for _, c := range resp.Cookies() {
		if c.Name == "modelx_ui_token" {
			return c
		}
	}
	t.Fatalf("no session cookie in %d answer: %v", resp.StatusCode, resp.Header.Values("Set-Cookie"))
	return nil
}

// TestAuthOffLogin: with authentication off there is nothing to log in to.
func TestAuthOffLogin(t *testing.T) {
	e := startRegistry(t, registry.Options{})
	if resp, body := e.get(t, "/-/ui/login"); resp.StatusCode != http.StatusNotFound || !strings.Contains(body, "authentication is off") {
		t.Errorf("GET /-/ui/login with auth off = %d", resp.StatusCode)
	}
	if _, body := e.get(t, "/-/ui/"); strings.Contains(body, `id="login"`) {
		t.Error("the header offers a login with auth off")
	}
}

// TestPullCommandPulls: the command a version page offers pulls that version.
func TestPullCommandPulls(t *testing.T) {
	e := startRegistry(t, registry.Options{})
	e.push(t, "nlp/bert:v1", "", bertFiles("1"))
	_, page := e.get(t, "/-/ui/nlp/bert/v1")
	digest := between(t, page, `<code id="digest">`, `</code>`)
	for _, path := range []string{"/-/ui/nlp/bert/v1", "/-/ui/nlp/bert/" + digest} {
		_, page := e.get(t, path)
		cmd := html.UnescapeString(between(t, page, `<code id="pull">`, `</code>`))
		args := strings.Fields(cmd)
		if len(args) != 4 || args[0] != "modelx" || args[1] != "pull" || args[3] != "./bert" {
			t.Fatalf("%s: pull command %q", path, cmd)
		}
		ref, err := client.ParseReference(args[2], nil)
		if err != nil {
			t.Fatalf("%s: the CLI cannot parse %q: %v", path, args[2], err)
		}
		out := filepath.Join(t.TempDir(), "bert")
		if _, err := client.New(client.Options{}).Pull(context.Background(), ref, out, client.PullOptions{}); err != nil {
			t.Fatalf("%s: %s: %v", path, cmd, err)
		}
		if data, err := os.ReadFile(filepath.Join(out, "README.md")); err != nil || string(data) != hostileReadme {
			t.Errorf("%s: pulled README.md = %q, %v", path, data, err)
		}
	}
}

func between(t *testing.T, s, start, end string) string {
	t.Helper()
	_, rest, ok := strings.Cut(s, start)
	if ok {
		var found bool
		if rest, _, found = strings.Cut(rest, end); found {
			return rest
		}
	}
	t.Fatalf("no %s…%s in the page", start, end)
	return ""
}

// storageReads scrapes the registry's count of storage reads: manifests,
// blobs, and indexes the registry has not read before (it revalidates the
// ones it has, which are not counted here).
func (e *env) storageReads(t *testing.T) int {
	t.Helper()
	_, body := e.get(t, "/metrics")
	for line := range strings.SplitSeq(body, "\n") {
		if v, ok := strings.CutPrefix(line, `modelxd_storage_operation_duration_seconds_count{op="read"} `); ok {
			var n int
			fmt.Sscan(v, &n)
			return n
		}
	}
	return 0
}

// TestVersionPagesPrepareOnce: twenty concurrent views of a version with
// thousands of files read its manifest, modelx.yaml and README once, and
// later pages of it read nothing; each page lists one page of files.
func TestVersionPagesPrepareOnce(t *testing.T) {
	e := startRegistry(t, registry.Options{})
	files := map[string][]byte{"modelx.yaml": []byte(bertConfig), "README.md": []byte("# Many files\n")}
	for i := range 1200 {
		files[fmt.Sprintf("shards/%02d/part-%04d.txt", i%7, i)] = []byte(fmt.Sprintf("part %d\n", i))
	}
	e.push(t, "data/many:v1", "", files)
	e.get(t, "/-/ui/data/many", "Accept", browserAccept) // reads the model's index
	before := e.storageReads(t)

	var wg sync.WaitGroup
	pages := make([]string, 20)
	for i := range pages {
		wg.Go(func() {
			resp, body := e.get(t, "/-/ui/data/many/v1", "Accept", browserAccept)
			if resp.StatusCode != http.StatusOK {
				t.Errorf("view %d: %d", i, resp.StatusCode)
			}
			pages[i] = body
		})
	}
	wg.Wait()
	if reads := e.storageReads(t) - before; reads != 3 {
		t.Errorf("20 concurrent views made %d storage reads, want 3 (the manifest, modelx.yaml and the README; the model's links to those blobs, known since the push, cost a stat each)", reads)
	}
	for i, p := range pages {
		if p != pages[0] {
			t.Fatalf("view %d differs from view 0", i)
		}
	}
	if n := strings.Count(pages[0], `<li class="file"`); n != 500 {
		t.Errorf("the first page lists %d files, want 500", n)
	}
	if !strings.Contains(pages[0], "Files 1–500 of 1202") || !strings.Contains(pages[0], `href="/-/ui/data/many/v1?page=2#files"`) {
		t.Errorf("the first page does not say which files it lists, or does not link the next page")
	}
	before = e.storageReads(t)
	_, last := e.get(t, "/-/ui/data/many/v1?page=3", "Accept", browserAccept)
	if n := strings.Count(last, `<li class="file"`); n != 202 || !strings.Contains(last, "Files 1001–1202 of 1202") {
		t.Errorf("the last page lists %d files", n)
	}
	if reads := e.storageReads(t) - before; reads != 0 {
		t.Errorf("a later page made %d storage reads, want none", reads)
	}

	// The version is kept for its model only: under another model, its
	// digest is no version at all.
	resp, _ := e.get(t, "/data/many/manifests/v1")
	d := resp.Header.Get(spec.DigestHeader)
	if resp, _ := e.get(t, "/-/ui/data/other/"+d, "Accept", browserAccept); resp.StatusCode != http.StatusNotFound {
		t.Errorf("another model's page of the digest: %d, want 404", resp.StatusCode)
	}
	if resp, _ := e.get(t, "/-/ui/data/many/"+d+"?page=2", "Accept", browserAccept); resp.StatusCode != http.StatusOK {
		t.Errorf("the version by digest: %d", resp.StatusCode)
	}
}
