package ui_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"modelx.io/modelx/registry"
	"modelx.io/modelx/registry/auth"
)

var updateScreenshot = flag.Bool("update-screenshot", false, "write the docs' screenshot, docs/ui-screenshot.png")

// inCI reports whether the tests run in CI, where a missing browser fails
// the run instead of skipping.
func inCI() bool {
	ci := os.Getenv("CI")
	return ci != "" && ci != "false" && ci != "0"
}

// requireChromium returns the path of Debian's chromium. Without it the
// test skips, except in CI, where it fails: CI must never skip silently.
func requireChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if inCI() {
		t.Fatal("chromium is not on PATH; `make chromium` installs it (apt-get install chromium). CI does not skip the browser tests.")
	}
	t.Skip("chromium is not on PATH: run `make chromium` (apt-get install -y chromium) to run the browser tests")
	return ""
}

// browser is one headless Chromium tab, and what its pages said on the
// console: errors, CSP violations, exceptions.
type browser struct {
	t   *testing.T
	ctx context.Context
	mu  sync.Mutex
	log []string
}

func newBrowser(t *testing.T, path string) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // tests run as root in CI
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	b := &browser{t: t, ctx: ctx}
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	if err := chromedp.Listen(ctx, func(ev any) {
		var line string
		switch ev := ev.(type) {
		case *cdplog.EventEntryAdded:
			line = fmt.Sprintf("%s %s: %s (%s)", ev.Entry.Source, ev.Entry.Level, ev.Entry.Text, ev.Entry.URL)
		case *runtime.EventExceptionThrown:
			line = "exception: " + (&chromedp.ExceptionError{ExceptionDetails: ev.ExceptionDetails}).Error()
		default:
			return
		}
		b.mu.Lock()
		b.log = append(b.log, line)
		b.mu.Unlock()
	}); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	if _, err := chromedp.Call(ctx, cdplog.Enable, cdp.Empty{}); err != nil {
		t.Fatalf("enable the log domain: %v", err)
	}
	return b
}

// run runs an action with a time limit, failing the test on error.
func run[T any](b *browser, what string, a chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
	return v
}

// open loads a URL (or runs actions that navigate) and returns the status.
func (b *browser) open(what string, steps ...chromedp.Action[chromedp.Void]) int64 {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, steps...)
	if err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
	return resp.Status
}

func (b *browser) navigate(url string) int64 {
	b.t.Helper()
	return b.open("open "+url, chromedp.Navigate(url))
}

func (b *browser) text(sel string) string {
	b.t.Helper()
	return run(b, "text of "+sel, chromedp.Text(chromedp.CSS(sel)))
}

func (b *browser) eval(expr string) string {
	b.t.Helper()
	return run(b, expr, chromedp.Evaluate[string](expr))
}

func (b *browser) location() string {
	b.t.Helper()
	return run(b, "location", chromedp.Location())
}

// sawCSPViolation waits for a CSP violation on the console, and forgets it
// so checkConsole does not count it.
func (b *browser) sawCSPViolation(wait time.Duration) bool {
	for deadline := time.Now().Add(wait); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		b.mu.Lock()
		i := slices.IndexFunc(b.log, func(l string) bool { return strings.Contains(l, "Content Security Policy") })
		if i >= 0 {
			b.log = slices.Delete(b.log, i, i+1)
		}
		b.mu.Unlock()
		if i >= 0 {
			return true
		}
	}
	return false
}

// checkConsole fails the test if any page broke the CSP or threw.
func (b *browser) checkConsole() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, line := range b.log {
		if strings.Contains(line, "Content Security Policy") || strings.Contains(line, "Refused to") || strings.HasPrefix(line, "exception") {
			b.t.Errorf("browser console: %s", line)
		}
	}
}

// screenshot takes a full-page PNG, checks it, and writes it to dir.
func (b *browser) screenshot(dir, name string) []byte {
	b.t.Helper()
	png := run(b, "screenshot", chromedp.FullScreenshot(100))
	if len(png) < 1000 || !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		b.t.Fatalf("screenshot %s is not a PNG (%d bytes)", name, len(png))
	}
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	return png
}

// resnetReadme is a README big enough to be stored as a whole file.
var resnetReadme = "# ResNet-50 image classifier\n\nTrained on a small synthetic dataset for the UI tests.\n\n" +
	"## Usage\n\n```sh\nmodelx pull http://localhost:8080/vision/resnet:v1 ./resnet\n```\n\n" +
	"## Classes\n\n| id | label |\n|---|---|\n| 0 | cat |\n| 1 | dog |\n\n" +
	"- [x] exported to ONNX\n- [ ] quantized\n\n" +
	"See the [paper](https://arxiv.org/abs/1512.03385).\n\n" +
	// Raw HTML is not rendered: this comment only makes the file big
	// enough (4 KiB) to be pushed as a whole file rather than packed.
	"<!-- " + strings.Repeat("padding ", 520) + "-->\n"

// TestBrowser drives headless Chromium through the UI of a registry with
// pushed models and no authentication: list, search, tags, a version's
// metadata, files and README, and that a hostile README runs nothing.
func TestBrowser(t *testing.T) {
	chromium := requireChromium(t)
	e := startRegistry(t, registry.Options{})
	e.push(t, "nlp/bert:v1", "", bertFiles("1"))
	e.push(t, "nlp/bert:v2", "", bertFiles("2"))
	e.push(t, "nlp/gpt2:latest", "", map[string][]byte{"modelx.yaml": []byte("framework: transformers\ntask: text-generation\n"), "model.bin": randBytes(5000)})
	e.push(t, "vision/resnet:v1", "", map[string][]byte{
		"modelx.yaml": []byte("description: ResNet-50 trained for the UI tests.\nframework: onnx\ntask: image-classification\n" +
			"tags: [vision, resnet]\nmaintainers: [vision-team@example.com]\nserving:\n  server: triton\n  gpu: 1\n"),
		"README.md":        []byte(resnetReadme),
		"model.onnx":       randBytes(200 << 10),
		"labels.txt":       []byte("cat\ndog\n"),
		"preprocess/a.py":  []byte("import numpy\n"),
		"preprocess/b.py":  []byte("import torch\n"),
		"config/norm.json": []byte(`{"mean": [0.485, 0.456, 0.406]}`),
	})
	shots := t.TempDir()
	if dir := os.Getenv("MODELX_UI_SCREENSHOTS"); dir != "" {
		shots = dir // keep them to look at
	}
	b := newBrowser(t, chromium)

	// A browser at / lands on the model list.
	if status := b.navigate(e.url + "/"); status != 200 || b.location() != e.url+"/-/ui/" {
		t.Fatalf("GET / in a browser: %d at %s, want the UI", status, b.location())
	}
	list := b.text("#models")
	for _, m := range []string{"nlp/bert", "nlp/gpt2", "vision/resnet"} {
		if !strings.Contains(list, m) {
			t.Errorf("the list lacks %s: %q", m, list)
		}
	}
	if got := b.text("#count"); got != "3 models" {
		t.Errorf("count = %q", got)
	}
	// The stylesheet loaded under the CSP.
	if d := b.eval(`getComputedStyle(document.querySelector('header.top')).display`); d != "flex" {
		t.Errorf("header display = %q: the stylesheet did not apply", d)
	}
	b.screenshot(shots, "list.png")

	// Search from the box in the header.
	b.open("search", chromedp.SendKeys(chromedp.CSS(`input[name=q]`), "nlp\n"))
	if loc := b.location(); !strings.HasSuffix(loc, "/-/ui/?q=nlp") {
		t.Errorf("search went to %s", loc)
	}
	list = b.text("#models")
	if !strings.Contains(list, "nlp/bert") || !strings.Contains(list, "nlp/gpt2") || strings.Contains(list, "resnet") {
		t.Errorf("search nlp lists %q", list)
	}

	// The model page: tags, newest first, with digests and sizes.
	b.open("open bert", chromedp.Click(chromedp.CSS(`a.model[href="/-/ui/nlp/bert"]`)))
	b.screenshot(shots, "model.png")
	tags := b.text("#tags tbody")
	if !strings.HasPrefix(strings.TrimSpace(tags), "v2") || !strings.Contains(tags, "v1") || !strings.Contains(tags, "sha256:") || !strings.Contains(tags, "KiB") {
		t.Errorf("tags table = %q", tags)
	}
	if pull := b.text("#pull"); pull != "modelx pull "+e.url+"/nlp/bert:v2 ./bert" {
		t.Errorf("pull command on the model page = %q", pull)
	}

	// The version page.
	b.open("open v1", chromedp.Click(chromedp.CSS(`a.tag[href="/-/ui/nlp/bert/v1"]`)))
	// A window to watch in: a handler a README smuggled in would fire (or its
	// refusal reach the console) within it. What must not happen cannot be
	// waited for, so this sleep is the observation itself.
	time.Sleep(300 * time.Millisecond)
	b.screenshot(shots, "hostile-readme.png")
	for sel, want := range map[string]string{
		"#framework": "pytorch", "#task": "text-classification", "#model-tags": "nlp bert sentiment",
		"#maintainers": "alice@example.com, bob@example.com", "#description": "BERT base, uncased, fine-tuned for sentiment.",
		"#pull": "modelx pull " + e.url + "/nlp/bert:v1 ./bert",
	} {
		if got := strings.Join(strings.Fields(b.text(sel)), " "); got != want {
			t.Errorf("%s = %q, want %q", sel, got, want)
		}
	}
	files := b.eval(`[...document.querySelectorAll('#files li.file')].map(li => li.dataset.path + '=' + li.querySelector('.size').textContent).join(' ')`)
	for _, want := range []string{"README.md=", "config.json=", "modelx.yaml=", "tokenizer/vocab.txt=720 B", "tokenizer/merges.txt=8 B", "weights/model.safetensors=300.0 KiB", "weights/optimizer/state.pt=2.0 KiB"} {
		if !strings.Contains(files, want) {
			t.Errorf("the file tree lacks %s: %s", want, files)
		}
	}
	if strings.Contains(files, "pack-") {
		t.Errorf("the file tree shows a pack, not its files: %s", files)
	}
	// The README is rendered Markdown ...
	if h := b.text("#readme h1"); h != "BERT sentiment" {
		t.Errorf("README heading = %q", h)
	}
	if cell := b.text("#readme table td"); cell != "accuracy" {
		t.Errorf("README table cell = %q", cell)
	}
	if code := b.text("#readme pre code"); !strings.Contains(code, "model = load('bert')") {
		t.Errorf("README code = %q", code)
	}
	// ... and nothing in it ran or survived as script.
	for _, c := range []struct{ expr, want string }{
		{`typeof window.pwned + ':' + typeof window.parent.pwned`, "undefined:undefined"},
		{`document.title`, "nlp/bert:v1 · modelx"},
		{`String(document.querySelectorAll('#readme script, #readme iframe, #readme svg, #readme style, #readme object, #readme embed').length)`, "0"},
		{`String(document.querySelectorAll('#readme [onerror], #readme [onload], #readme [onclick], #readme img').length)`, "0"},
		{`String([...document.querySelectorAll('main a, main [src], main [href]')].filter(el => /^\s*(javascript|vbscript|data):/i.test(el.getAttribute('href') || el.getAttribute('src') || '')).length)`, "0"},
		{`[...document.scripts].map(s => new URL(s.src).pathname).join(' ')`, "/-/ui/-/copy.js"},
	} {
		if got := b.eval(c.expr); got != c.want {
			t.Errorf("%s = %q, want %q (README HTML: %s)", c.expr, got, c.want, b.eval(`document.querySelector('#readme').innerHTML`))
		}
	}
	// The copy button works: the script loaded under the CSP.
	run(b, "click copy", chromedp.Click(chromedp.CSS(`.pull button.copy`)))
	if state := run(b, "copy state", chromedp.Poll[string](`document.querySelector('.pull button.copy').dataset.state`, chromedp.WithPollingTimeout(5*time.Second))); state != "copied" && state != "failed" {
		t.Errorf("copy button state = %q", state)
	}

	// Belt and braces: had script reached the page, the CSP would stop it.
	b.eval(`(() => { const s = document.createElement('script'); s.textContent = 'window.inlineRan = true'; document.body.appendChild(s); return '' })()`)
	if !b.sawCSPViolation(5 * time.Second) {
		t.Error("the browser reported no CSP violation for an inline script")
	}
	if got := b.eval(`typeof window.inlineRan`); got != "undefined" {
		t.Error("an inline script ran: the CSP is not enforced")
	}

	// By digest, with a shareable URL.
	digest := b.text("#digest")
	if status := b.navigate(e.url + "/-/ui/nlp/bert/" + digest); status != 200 || !strings.Contains(b.text("#pull"), "/nlp/bert@"+digest+" ./bert") {
		t.Errorf("by digest: %d, pull %q", status, b.text("#pull"))
	}

	// A README stored as a whole file, a serving hint, and the docs' screenshot.
	if status := b.navigate(e.url + "/-/ui/vision/resnet/v1"); status != 200 {
		t.Fatalf("resnet v1: %d", status)
	}
	if h := b.text("#readme h1"); h != "ResNet-50 image classifier" {
		t.Errorf("resnet README heading = %q", h)
	}
	if got := b.eval(`document.querySelector('#readme a[href^="https://arxiv.org"]').rel`); got != "nofollow noopener" {
		t.Errorf("README link rel = %q", got)
	}
	files = b.eval(`[...document.querySelectorAll('#files li.file')].map(li => li.dataset.path).join(' ')`)
	if files != "config/norm.json preprocess/a.py preprocess/b.py README.md labels.txt model.onnx modelx.yaml" {
		t.Errorf("resnet files = %q", files)
	}
	png := b.screenshot(shots, "version.png")
	if *updateScreenshot {
		if err := os.WriteFile(filepath.Join("..", "..", "docs", "ui-screenshot.png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// A model without README, and pages that do not exist.
	if status := b.navigate(e.url + "/-/ui/nlp/gpt2/latest"); status != 200 || b.eval(`String(document.querySelector('#readme') === null)`) != "true" {
		t.Errorf("gpt2: %d", status)
	}
	for _, path := range []string{"/-/ui/nlp/nope", "/-/ui/nlp/bert/v9", "/-/ui/nlp/bert/sha256:" + strings.Repeat("0", 64)} {
		if status := b.navigate(e.url + path); status != 404 {
			t.Errorf("%s: %d, want 404", path, status)
		}
	}

	// A version with more files than a page lists: 500 a page, and a link
	// to the next page, which lists the rest.
	images := map[string][]byte{"modelx.yaml": []byte("description: many small files\n")}
	for i := range 540 {
		images[fmt.Sprintf("images/%03d.txt", i)] = []byte(fmt.Sprintf("image %d\n", i))
	}
	e.push(t, "data/images:v1", "", images)
	if status := b.navigate(e.url + "/-/ui/data/images/v1"); status != 200 {
		t.Fatalf("images v1: %d", status)
	}
	listed := func() []string {
		return strings.Fields(b.eval(`[...document.querySelectorAll('#files li.file')].map(li => li.dataset.path).join(' ')`))
	}
	first := listed()
	if len(first) != 500 || first[0] != "images/000.txt" || first[499] != "images/499.txt" {
		t.Errorf("the first page lists %d files, %v … %v", len(first), first[:min(1, len(first))], first[max(0, len(first)-1):])
	}
	if got := b.text("#files-shown"); !strings.HasPrefix(got, "Files 1–500 of 541") {
		t.Errorf("files shown = %q", got)
	}
	b.open("next page of files", chromedp.Click(chromedp.CSS(`#files nav.pager a[rel=next]`)))
	if loc := b.location(); !strings.HasSuffix(loc, "/-/ui/data/images/v1?page=2#files") {
		t.Errorf("the next page is at %s", loc)
	}
	second := listed()
	if len(second) != 41 || second[0] != "images/500.txt" || second[len(second)-1] != "modelx.yaml" {
		t.Errorf("the second page lists %d files: %v", len(second), second)
	}
	// The directory row counts all its files, not only this page's.
	if size := b.eval(`document.querySelector('#files li.dir .size').textContent`); size != "5.2 KiB" {
		t.Errorf("images/ on the second page is %s", size)
	}
	if where := b.text("#files nav.pager .where"); where != "Page 2 of 2 · 501–541 of 541" {
		t.Errorf("pager = %q", where)
	}
	b.screenshot(shots, "files-page-2.png")
	b.checkConsole()
}

// TestBrowserAuth: with authentication on, anonymous viewers see only what
// they may pull, and a viewer who logs in through the form sees more.
func TestBrowserAuth(t *testing.T) {
	chromium := requireChromium(t)
	alice, aliceRobot := robotToken("alice")
	pusher, pusherRobot := robotToken("pusher")
	authn, err := auth.New(auth.Config{Robots: []auth.Robot{aliceRobot, pusherRobot}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	policy := &auth.Policy{
		AnonymousRepositories: []string{"public/*"},
		Rules: []auth.Rule{
			{Repositories: []string{"*"}, Actions: []auth.Action{auth.Push}, Robots: []string{"pusher"}},
			{Repositories: []string{"private/*"}, Actions: []auth.Action{auth.Pull}, Robots: []string{"alice"}},
		},
	}
	e := startRegistry(t, registry.Options{Authenticator: authn, Policy: policy})
	e.push(t, "public/open:v1", pusher, map[string][]byte{"modelx.yaml": []byte("description: everyone may pull this\n")})
	e.push(t, "private/secret:v1", pusher, map[string][]byte{"modelx.yaml": []byte("description: only alice may pull this\n"), "README.md": []byte("# Secret model\n")})
	b := newBrowser(t, chromium)

	// Anonymous: the private model is in neither the list nor the search,
	// and its pages are 404s, like a model that does not exist.
	b.navigate(e.url + "/-/ui/")
	if list := b.text("main"); !strings.Contains(list, "public/open") || strings.Contains(list, "secret") || !strings.Contains(list, "1 model") {
		t.Errorf("anonymous list = %q", list)
	}
	b.navigate(e.url + "/-/ui/?q=secret")
	if list := b.text("main"); strings.Contains(list, "private/") {
		t.Errorf("anonymous search shows the private model: %q", list)
	}
	for _, path := range []string{"/-/ui/private/secret/v1", "/-/ui/private/secret"} {
		if status := b.navigate(e.url + path); status != 404 || strings.Contains(b.text("main"), "only alice") {
			t.Errorf("anonymous %s: %d", path, status)
		}
	}
	missing := b.text("main")
	b.navigate(e.url + "/-/ui/private/nothing-here")
	if b.text("main") != missing {
		t.Error("the 404 of a hidden model differs from that of a missing one")
	}

	// A wrong token is refused, and not shown back.
	b.navigate(e.url + "/-/ui/private/secret")
	b.open("go to login", chromedp.Click(chromedp.CSS(`main a[href^="/-/ui/login"]`)))
	run(b, "type a wrong token", chromedp.SendKeys(chromedp.ID("token"), "mxr_wrong_token"))
	if status := b.open("submit a wrong token", chromedp.Click(chromedp.ID("login-submit"))); status != 401 || !strings.Contains(b.text("#login-error"), "did not accept") {
		t.Errorf("wrong token: %d", status)
	}
	if strings.Contains(b.eval(`document.documentElement.outerHTML`), "mxr_wrong_token") {
		t.Error("the login page shows the refused token")
	}

	// Alice logs in through the form and lands on the page she asked for.
	run(b, "type alice's token", chromedp.SendKeys(chromedp.ID("token"), alice))
	if status := b.open("log in", chromedp.Click(chromedp.ID("login-submit"))); status != 200 {
		t.Fatalf("login: %d at %s", status, b.location())
	}
	if loc := b.location(); loc != e.url+"/-/ui/private/secret" {
		t.Errorf("after login: at %s", loc)
	}
	if got := b.text("#viewer"); got != "robot alice" {
		t.Errorf("viewer = %q", got)
	}
	if tags := b.text("#tags"); !strings.Contains(tags, "v1") {
		t.Errorf("alice sees tags %q", tags)
	}
	if b.eval(`document.cookie`) != "" {
		t.Error("the session cookie is readable by script")
	}
	b.navigate(e.url + "/-/ui/private/secret/v1")
	if d := b.text("#description"); d != "only alice may pull this" {
		t.Errorf("alice's version page: %q", d)
	}
	b.navigate(e.url + "/-/ui/")
	if list := b.text("#models"); !strings.Contains(list, "private/secret") || !strings.Contains(list, "public/open") {
		t.Errorf("alice's list = %q", list)
	}
	if strings.Contains(b.location(), alice) {
		t.Error("the token is in a URL")
	}

	// Logging out hides the private model again.
	b.open("log out", chromedp.Click(chromedp.ID("logout")))
	if list := b.text("#models"); strings.Contains(list, "private/secret") {
		t.Errorf("after logout the list shows %q", list)
	}
	if status := b.navigate(e.url + "/-/ui/private/secret"); status != 404 {
		t.Errorf("after logout the private model is %d", status)
	}
	b.checkConsole()
	logs := e.logs.String()
	for _, secret := range []string{alice, pusher} {
		if strings.Contains(logs, secret) {
			t.Error("a token is in the registry log")
		}
	}
	if !slices.ContainsFunc(strings.Split(logs, "\n"), func(l string) bool { return strings.Contains(l, "ui login") && strings.Contains(l, "robot alice") }) {
		t.Error("the login is not in the log")
	}
}
