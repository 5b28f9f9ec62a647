package ui

import (
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"modelx.io/modelx/internal/humanize"
	"modelx.io/modelx/spec"
)

func TestManifestFilesAndTree(t *testing.T) {
	m := &spec.Manifest{
		Config: spec.Descriptor{Name: "modelx.yaml", Digest: digest.Digest("sha256:" + strings.Repeat("c", 64)), Size: 10},
		Blobs: []spec.Descriptor{
			{Name: "weights/model.bin", MediaType: spec.MediaTypeChunkedFile, Size: 3000, Chunks: []spec.Chunk{{Size: 1000}, {Size: 2000}}},
			{Name: "pack-0000", MediaType: spec.MediaTypePack, Size: 99, Files: []spec.PackedFile{
				{Name: "tokenizer/vocab.txt", Size: 7}, {Name: "README.md", Size: 5}, {Name: "tokenizer/sub/merges.txt", Size: 3},
			}},
			{Name: "onnx", MediaType: spec.MediaTypeDirectoryTarGz, Size: 400},
			{Name: "big.safetensors", MediaType: spec.MediaTypeFile, Size: 100},
		},
	}
	files := manifestFiles(m)
	var got []string
	for _, f := range files {
		got = append(got, f.Path)
	}
	want := "README.md big.safetensors modelx.yaml onnx tokenizer/sub/merges.txt tokenizer/vocab.txt weights/model.bin"
	if strings.Join(got, " ") != want {
		t.Fatalf("files = %v, want %s (pack members as files, the pack itself not)", got, want)
	}

	root := buildTree(files, nil)
	if root.Size != 3525 || root.Files != 7 {
		t.Errorf("root size %d files %d, want 3525 and 7", root.Size, root.Files)
	}
	var order []string
	for _, c := range root.Children {
		order = append(order, c.Name)
	}
	if strings.Join(order, " ") != "tokenizer weights README.md big.safetensors modelx.yaml onnx" {
		t.Errorf("top level = %v: want directories first, then files, by name", order)
	}
	tok := root.Children[0]
	if !tok.Dir || tok.Size != 10 || tok.Files != 2 || tok.Children[0].Name != "sub" || tok.Children[0].Children[0].Path != "tokenizer/sub/merges.txt" {
		t.Errorf("tokenizer dir = %+v", tok)
	}
	if !root.Children[5].Archive {
		t.Error("the legacy directory archive is not marked")
	}
}

// TestTreeOfAPage: a page of a version's files shows its directories with
// the totals of the whole version.
func TestTreeOfAPage(t *testing.T) {
	files := []fileEntry{{Path: "a/1", Size: 1}, {Path: "a/2", Size: 2}, {Path: "a/b/3", Size: 4}, {Path: "a/b/4", Size: 8}, {Path: "c", Size: 16}}
	totals := dirTotals(files)
	if totals["a"] != (dirTotal{size: 15, files: 4}) || totals["a/b"] != (dirTotal{size: 12, files: 2}) || len(totals) != 2 {
		t.Fatalf("totals = %+v", totals)
	}
	page := buildTree(files[2:4], totals) // a/b/3 and a/b/4
	a := page.Children[0]
	if a.Name != "a" || a.Size != 15 || a.Files != 4 || len(a.Children) != 1 || a.Children[0].Size != 12 || len(a.Children[0].Children) != 2 {
		t.Errorf("page tree: a = %+v, a/b = %+v", a, a.Children[0])
	}
}

func TestTreeFoldsBigTrees(t *testing.T) {
	var files []fileEntry
	for i := range openTreeFiles + 1 {
		files = append(files, fileEntry{Path: "a/b/" + strings.Repeat("x", i+1), Size: 1})
	}
	root := buildTree(files, nil)
	a := root.Children[0]
	if !a.Open || a.Children[0].Open {
		t.Errorf("a big tree unfolds its top level only: a open %v, a/b open %v", a.Open, a.Children[0].Open)
	}
	small := buildTree(files[:3], nil)
	if !small.Children[0].Children[0].Open {
		t.Error("a small tree unfolds every directory")
	}
}

func TestRenderMarkdownSanitizes(t *testing.T) {
	src := "# Title\n\nSome **bold** and a [link](https://example.com/x).\n\n" +
		"<script>window.pwned = 1</script>\n\n" +
		"<img src=x onerror=\"window.pwned=2\">\n\n" +
		"[x](javascript:window.pwned=3) [y](JAVASCRIPT:alert(1)) [z](vbscript:msgbox) [w](data:text/html,<script>alert(1)</script>)\n\n" +
		"<a href=\"javascript:alert(1)\">raw</a> inline <b onclick=\"x()\">b</b>\n\n" +
		"<iframe src=\"https://evil.example\"></iframe><style>body{display:none}</style>\n\n" +
		"| a | b |\n|---|---|\n| 1 | 2 |\n\n" +
		"![alt](https://example.com/i.png)\n"
	out, err := renderMarkdown([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	html := strings.ToLower(string(out))
	for _, bad := range []string{"<script", "onerror", "onclick", "javascript:", "vbscript:", "data:text/html", "<iframe", "<style", "window.pwned"} {
		if strings.Contains(html, bad) {
			t.Errorf("rendered README contains %q:\n%s", bad, out)
		}
	}
	for _, good := range []string{"<h1>title</h1>", "<strong>bold</strong>", `href="https://example.com/x"`, `rel="nofollow noopener"`, "<table>", `<img src="https://example.com/i.png"`} {
		if !strings.Contains(html, good) {
			t.Errorf("rendered README lacks %q:\n%s", good, out)
		}
	}
}

func TestRenderMarkdownTaskList(t *testing.T) {
	out, err := renderMarkdown([]byte("- [x] done\n- [ ] todo\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), `<input checked="" disabled="" type="checkbox"`) || !strings.Contains(string(out), `<input disabled="" type="checkbox"`) {
		t.Errorf("task list = %s", out)
	}
	// The second layer alone: inputs other than checkboxes go, whatever
	// the first layer let through.
	for _, in := range []string{`<input type="text" name="password">`, `<input>`, `<input type="checkbox" onclick="x()" formaction="javascript:x()">`} {
		got := sanitizer.Sanitize(in)
		if strings.Contains(got, "text") || strings.Contains(got, "onclick") || strings.Contains(got, "javascript") || (got != "" && got != `<input type="checkbox">`) {
			t.Errorf("sanitize %s = %s", in, got)
		}
	}
}

func TestCookieToken(t *testing.T) {
	for _, token := range []string{"eyJhbGciOi.eyJpc3Mi.c2lnbmF0dXJl", "mxr_ci_0123", "~tilde", "with space", `semi;colon,comma"quote\\back`, "ünïcode"} {
		v := encodeCookieToken(token)
		for i := range len(v) {
			if b := v[i]; b <= 0x20 || b >= 0x7f || strings.IndexByte(`";\,`, b) >= 0 {
				t.Errorf("cookie value %q of %q has byte %q", v, token, b)
			}
		}
		if got, ok := decodeCookieToken(v); !ok || got != token {
			t.Errorf("round trip of %q: %q, %v", token, got, ok)
		}
	}
	if encodeCookieToken("mxr_ci_0123") != "mxr_ci_0123" {
		t.Error("a cookie-safe token is encoded")
	}
	if _, ok := decodeCookieToken("~!!"); ok {
		t.Error("a broken encoded value decodes")
	}
}

func TestSafeNext(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", "/-/ui/"},
		{"/-/ui/nlp/bert?page=2", "/-/ui/nlp/bert?page=2"},
		{"/-/ui/nlp/bert/sha256:" + strings.Repeat("a", 64), "/-/ui/nlp/bert/sha256:" + strings.Repeat("a", 64)},
		{"https://evil.example/-/ui/", "/-/ui/"},
		{"//evil.example/-/ui/", "/-/ui/"},
		{"/-/ui/\\evil", "/-/ui/"},
		{"/-/ui/../../etc", "/-/ui/../../etc"}, // a path on this site; the mux cleans it
		{"/nlp/bert/index", "/-/ui/"},
		{"/ui/nlp/bert", "/-/ui/"}, // the UI's old place: not a page of the UI
		{"javascript:alert(1)", "/-/ui/"},
		{"/-/ui/x\r\nSet-Cookie: a=b", "/-/ui/"},
	} {
		if got := safeNext(c.in); got != c.want {
			t.Errorf("safeNext(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestPaginate(t *testing.T) {
	link := func(p int) string { return "p" + strings.Repeat("+", p) }
	for _, c := range []struct {
		total, page, size  int
		wantPage, lo, hi   int
		wantPrev, wantNext bool
	}{
		{0, 1, 50, 1, 0, 0, false, false},
		{10, 1, 50, 1, 0, 10, false, false},
		{120, 2, 50, 2, 50, 100, true, true},
		{120, 3, 50, 3, 100, 120, true, false},
		{120, 99, 50, 3, 100, 120, true, false},
		{120, -4, 50, 1, 0, 50, false, true},
	} {
		p, lo, hi := paginate(c.total, c.page, c.size, link)
		if p.Page != c.wantPage || lo != c.lo || hi != c.hi || (p.Prev != "") != c.wantPrev || (p.Next != "") != c.wantNext {
			t.Errorf("paginate(%d, %d, %d) = %+v [%d:%d]", c.total, c.page, c.size, p, lo, hi)
		}
	}
}

func TestHumanSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 600 << 10: "600.0 KiB", 3 << 30: "3.0 GiB"} {
		if got := humanize.Bytes(n); got != want {
			t.Errorf("humanize.Bytes(%d) = %q, want %q", n, got, want)
		}
	}
}
