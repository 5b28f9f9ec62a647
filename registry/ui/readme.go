package ui

import (
	"bytes"
	"context"
	"fmt"
	"html/template"
	"io"
	"regexp"
	"strings"

	"github.com/microcosm-cc/bluemonday"
	"github.com/opencontainers/go-digest"
	"github.com/yuin/goldmark"
	"github.com/yuin/goldmark/extension"

	"modelx.io/modelx/client/pack"
	"modelx.io/modelx/content"
	"modelx.io/modelx/internal/humanize"
	"modelx.io/modelx/spec"
)

// maxReadmeSize bounds a README the UI renders; a bigger one is not shown.
const maxReadmeSize = 1 << 20

// maxFrameSize bounds the compressed frame of a packed README read from
// storage: zstd adds a few bytes per block to incompressible data.
const maxFrameSize = maxReadmeSize + 64<<10

// readmeNames are the file names, lowercased, taken for a README at the
// model's root, most preferred first.
var readmeNames = []string{"readme.md", "readme.markdown", "readme"}

// markdown renders CommonMark with GitHub's extensions (tables, task
// lists, strikethrough, autolinks). Without html.WithUnsafe, raw HTML in
// the source is dropped and links with dangerous schemes (javascript:,
// vbscript:, file:, data: other than images) lose their URL.
var markdown = goldmark.New(goldmark.WithExtensions(extension.GFM))

// sanitizer is the second layer: whatever markdown produced, only
// user-content-safe elements and attributes survive (no script, style,
// event handlers or script URLs), and links get rel="nofollow noopener".
var sanitizer = func() *bluemonday.Policy {
	p := bluemonday.UGCPolicy()
	// Task lists ("- [x] done") render as disabled checkboxes.
	p.AllowAttrs("type").Matching(regexp.MustCompile(`^checkbox$`)).OnElements("input")
	p.AllowAttrs("checked", "disabled").Matching(regexp.MustCompile(`^(|checked|disabled)$`)).OnElements("input")
	p.RequireNoFollowOnLinks(true)
	p.AddTargetBlankToFullyQualifiedLinks(true)
	return p
}()

// renderMarkdown turns a README into sanitised HTML.
func renderMarkdown(src []byte) (template.HTML, error) {
	var buf bytes.Buffer
	if err := markdown.Convert(src, &buf); err != nil {
		return "", err
	}
	return template.HTML(sanitizer.SanitizeBytes(buf.Bytes())), nil
}

// readme finds the version's README at its root and renders it. It
// returns the HTML and the file's name, or a message saying why a README
// that exists is not shown; no README at all is three empty strings.
// transient says the README could not be read, which may pass.
func (u *UI) readme(ctx context.Context, repo, model string, m *spec.Manifest) (html template.HTML, name, msg string, transient bool) {
	for _, want := range readmeNames {
		for _, b := range m.Blobs {
			switch b.MediaType {
			case spec.MediaTypeFile:
				if strings.ToLower(b.Name) != want {
					continue
				}
				if b.Size > maxReadmeSize {
					return "", b.Name, tooBig(b.Name, b.Size), false
				}
				return u.renderReadme(ctx, b.Name, func() ([]byte, error) { return u.readVerified(ctx, repo, model, b.Digest, b.Size) })
			case spec.MediaTypePack:
				for _, f := range b.Files {
					if strings.ToLower(f.Name) != want {
						continue
					}
					if f.Size > maxReadmeSize || f.Length > maxFrameSize {
						return "", f.Name, tooBig(f.Name, f.Size), false
					}
					return u.renderReadme(ctx, f.Name, func() ([]byte, error) { return u.readPacked(ctx, repo, model, b.Digest, f) })
				}
			case spec.MediaTypeChunkedFile:
				if strings.ToLower(b.Name) == want {
					return "", b.Name, tooBig(b.Name, b.Size), false
				}
			}
		}
	}
	return "", "", "", false
}

func tooBig(name string, size int64) string {
	return fmt.Sprintf("%s is %s, too big to show here; pull the model to read it.", name, humanize.Bytes(size))
}

func (u *UI) renderReadme(ctx context.Context, name string, read func() ([]byte, error)) (template.HTML, string, string, bool) {
	data, err := read()
	if err == nil {
		var out template.HTML
		if out, err = renderMarkdown(data); err == nil {
			return out, name, "", false
		}
	}
	u.log.WarnContext(ctx, "ui: read README", "file", name, "error", err)
	return "", name, name + " could not be read.", true
}

// readVerified reads a whole blob of the given size and checks its digest.
func (u *UI) readVerified(ctx context.Context, repo, name string, d digest.Digest, size int64) ([]byte, error) {
	rc, err := u.opts.Source.ReadBlob(ctx, repo, name, d, 0, size)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, size+1))
	if err != nil {
		return nil, err
	}
	if err := content.VerifyBytes(data, size, d); err != nil {
		return nil, fmt.Errorf("blob %s: %w", d, err)
	}
	return data, nil
}

// readPacked reads one file's frame from a pack blob with a ranged read,
// and decodes and verifies it.
func (u *UI) readPacked(ctx context.Context, repo, name string, packDigest digest.Digest, f spec.PackedFile) ([]byte, error) {
	if f.Offset < 0 || f.Length <= 0 {
		return nil, fmt.Errorf("packed file %s has no frame", f.Name)
	}
	rc, err := u.opts.Source.ReadBlob(ctx, repo, name, packDigest, f.Offset, f.Length)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	frame, err := io.ReadAll(io.LimitReader(rc, f.Length+1))
	if err != nil {
		return nil, err
	}
	// Frame checks the frame lies within what was read, whole.
	if frame, err = pack.Frame(frame, spec.PackedFile{Name: f.Name, Offset: 0, Length: f.Length}); err != nil {
		return nil, err
	}
	return pack.Decode(frame, f)
}
