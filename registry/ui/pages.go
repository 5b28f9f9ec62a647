package ui

import (
	"cmp"
	"context"
	"fmt"
	"html/template"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"modelx.io/modelx/internal/humanize"
	"modelx.io/modelx/spec"
)

// maxQueryLen bounds the search text.
const maxQueryLen = 256

// pager is one page of a long list, with links to its neighbours.
type pager struct {
	Page, Pages, Total int
	From, To           int // 1-based positions shown, To inclusive
	Prev, Next         string
}

// paginate picks page (1-based, clamped) of total items, size a page;
// link makes the URL of another page.
func paginate(total, page, size int, link func(page int) string) (pager, int, int) {
	pages := max(1, (total+size-1)/size)
	page = min(max(page, 1), pages)
	lo, hi := (page-1)*size, min(page*size, total)
	p := pager{Page: page, Pages: pages, Total: total, From: lo + 1, To: hi}
	if page > 1 {
		p.Prev = link(page - 1)
	}
	if page < pages {
		p.Next = link(page + 1)
	}
	return p, lo, hi
}

func pageParam(r *http.Request) int {
	n, err := strconv.Atoi(r.URL.Query().Get("page"))
	if err != nil {
		return 1
	}
	return n
}

// modelRow is one model in the list.
type modelRow struct {
	Repository, Name string
	Link             string
	Listed           time.Time
}

type listData struct {
	Query  string
	Models []modelRow
	Pager  pager
	// Hidden is set when an anonymous viewer sees nothing and could log in.
	Hidden bool
}

// listPage lists the models the viewer may pull whose "REPOSITORY/NAME"
// contains ?q=, a page at a time, from the global index alone.
func (u *UI) listPage(w http.ResponseWriter, r *http.Request, v viewer) error {
	q := strings.ToLower(strings.TrimSpace(r.URL.Query().Get("q")))
	if len(q) > maxQueryLen {
		q = q[:maxQueryLen]
	}
	idx, err := u.opts.Source.GlobalIndex(r.Context())
	if err != nil {
		return err
	}
	var shown []spec.Descriptor
	for _, d := range idx.Manifests {
		if strings.Contains(d.Name, q) && u.canSee(v, d.Name) {
			shown = append(shown, d)
		}
	}
	slices.SortStableFunc(shown, func(a, b spec.Descriptor) int { return strings.Compare(a.Name, b.Name) })
	p, lo, hi := paginate(len(shown), pageParam(r), u.opts.PageSize, func(page int) string {
		vals := url.Values{}
		if q != "" {
			vals.Set("q", q)
		}
		vals.Set("page", strconv.Itoa(page))
		return Prefix + "?" + vals.Encode()
	})
	data := listData{Query: q, Pager: p, Hidden: len(idx.Manifests) > 0 && len(shown) == 0 && q == "" && v.id == nil && u.opts.Authenticator != nil}
	for _, d := range shown[lo:hi] {
		repo, name, _ := strings.Cut(d.Name, "/")
		data.Models = append(data.Models, modelRow{Repository: repo, Name: name, Link: modelLink(repo, name), Listed: d.Modified})
	}
	title := "Models"
	if q != "" {
		title = fmt.Sprintf("Models matching %q", q)
	}
	u.render(w, r, v, http.StatusOK, "list", title, data)
	return nil
}

func modelLink(repo, name string) string { return Prefix + repo + "/" + name }

func versionLink(repo, name, ref string) string { return modelLink(repo, name) + "/" + ref }

// modelParams validates the model of the path and checks the viewer may
// see it. A model they may not see is "not found", like one that does not
// exist, so its existence is not revealed.
func (u *UI) modelParams(r *http.Request, v viewer) (repo, name string, err error) {
	repo, name = r.PathValue("repo"), r.PathValue("name")
	if spec.ValidateRepository(repo) != nil || spec.ValidateComponent("name", name) != nil || !u.canSee(v, repo+"/"+name) {
		return "", "", notFound("There is no such model, or you may not see it.")
	}
	return repo, name, nil
}

// tagRow is one tag of a model.
type tagRow struct {
	Tag      string
	Link     string
	Digest   string
	Short    string
	Size     string
	Modified time.Time
}

type modelData struct {
	Repository, Name string
	Tags             []tagRow
	Pager            pager
	Latest           string
	Pull             string
}

// modelPage lists a model's tags, newest first, a page at a time.
func (u *UI) modelPage(w http.ResponseWriter, r *http.Request, v viewer) error {
	repo, name, err := u.modelParams(r, v)
	if err != nil {
		return err
	}
	idx, err := u.opts.Source.ModelIndex(r.Context(), repo, name)
	if err != nil {
		return err
	}
	if len(idx.Manifests) == 0 {
		return notFound("There is no such model, or you may not see it.")
	}
	tags := slices.Clone(idx.Manifests)
	slices.SortStableFunc(tags, func(a, b spec.Descriptor) int {
		return cmp.Or(b.Modified.Compare(a.Modified), strings.Compare(a.Name, b.Name))
	})
	p, lo, hi := paginate(len(tags), pageParam(r), u.opts.PageSize, func(page int) string {
		return modelLink(repo, name) + "?page=" + strconv.Itoa(page)
	})
	data := modelData{Repository: repo, Name: name, Pager: p, Latest: tags[0].Name,
		Pull: pullCommand(r, repo, name, spec.Reference{Tag: tags[0].Name})}
	for _, t := range tags[lo:hi] {
		data.Tags = append(data.Tags, tagRow{
			Tag: t.Name, Link: versionLink(repo, name, t.Name), Digest: string(t.Digest), Short: shortDigest(t.Digest),
			Size: annotatedSize(t), Modified: t.Modified,
		})
	}
	u.render(w, r, v, http.StatusOK, "model", repo+"/"+name, data)
	return nil
}

// versionData is what a version page shows.
type versionData struct {
	Repository, Name string
	Reference        string
	RefLabel         string
	Digest           string
	Short            string
	Tags             []string
	Modified         time.Time
	Size             string
	Pull             string
	ModelLink        string
	Config           *spec.ModelConfig
	ConfigError      string
	Annotations      []keyValue
	Tree             *treeNode
	FileCount        int
	FilePager        pager
	README           template.HTML
	READMEName       string
	READMEError      string
}

type keyValue struct{ Key, Value string }

// versionPage shows one version, by tag or digest: metadata from
// modelx.yaml, a page of the file tree, the README, and how to pull it.
// What does not depend on the page comes prepared from the version cache,
// so a page costs what it shows, however many files the version has.
func (u *UI) versionPage(w http.ResponseWriter, r *http.Request, v viewer) error {
	repo, name, err := u.modelParams(r, v)
	if err != nil {
		return err
	}
	ref, err := spec.ParseReference(r.PathValue("ref"))
	if err != nil {
		return notFound("There is no such version.")
	}
	ctx := r.Context()
	idx, err := u.opts.Source.ModelIndex(ctx, repo, name)
	if err != nil {
		return err
	}
	data := versionData{Repository: repo, Name: name, Reference: ref.String(), ModelLink: modelLink(repo, name)}
	d := ref.Digest
	if ref.Tag != "" {
		i := idx.Find(ref.Tag)
		if i < 0 {
			return notFound(fmt.Sprintf("%s/%s has no tag %q.", repo, name, ref.Tag))
		}
		d = idx.Manifests[i].Digest
		data.Modified, data.Size = idx.Manifests[i].Modified, annotatedSize(idx.Manifests[i])
	}
	for _, t := range idx.Manifests {
		if t.Digest == d {
			data.Tags = append(data.Tags, t.Name)
		}
	}
	slices.Sort(data.Tags)
	// A version a tag names is kept: garbage collection will not remove it.
	ver, err := u.version(ctx, repo, name, d, len(data.Tags) > 0)
	if err != nil {
		return err
	}
	m := ver.manifest
	data.Digest, data.Short = string(d), shortDigest(d)
	data.RefLabel = data.refLabel()
	data.Pull = pullCommand(r, repo, name, ref)
	if data.Size == "" {
		data.Size = humanize.Bytes(ver.totalSize)
	}
	for _, k := range slices.Sorted(maps.Keys(m.Annotations)) {
		data.Annotations = append(data.Annotations, keyValue{k, m.Annotations[k]})
	}
	data.Config, data.ConfigError = ver.config, ver.configError
	data.FileCount = len(ver.files)
	var lo, hi int
	data.FilePager, lo, hi = paginate(len(ver.files), pageParam(r), u.opts.FilesPerPage, func(page int) string {
		return versionLink(repo, name, ref.String()) + "?page=" + strconv.Itoa(page) + "#files"
	})
	data.Tree = buildTree(ver.files[lo:hi], ver.dirs)
	data.README, data.READMEName, data.READMEError = ver.readme, ver.readmeName, ver.readmeError
	u.render(w, r, v, http.StatusOK, "version", repo+"/"+name+data.RefLabel, data)
	return nil
}

// refLabel is ":TAG" or "@SHORT-DIGEST", as the title shows the version.
func (d versionData) refLabel() string {
	if strings.HasPrefix(d.Reference, "sha256:") {
		return "@" + d.Short
	}
	return ":" + d.Reference
}

// readConfig fetches and parses the version's modelx.yaml. A config that
// cannot be read or parsed is shown as a message, not a failed page;
// transient says it could not be read, which may pass.
func (u *UI) readConfig(ctx context.Context, repo, name string, m *spec.Manifest) (cfg *spec.ModelConfig, msg string, transient bool) {
	c := m.Config
	if c.Digest == "" {
		return nil, "This version has no " + spec.ConfigFileName + ".", false
	}
	if c.Size > spec.MaxConfigSize {
		return nil, fmt.Sprintf("%s is %d bytes, over the limit of %d.", spec.ConfigFileName, c.Size, spec.MaxConfigSize), false
	}
	data, err := u.readVerified(ctx, repo, name, c.Digest, c.Size)
	if err != nil {
		u.log.WarnContext(ctx, "ui: read config", "digest", c.Digest, "error", err)
		return nil, spec.ConfigFileName + " could not be read.", true
	}
	cfg, err = spec.ParseModelConfig(data)
	if err != nil {
		return nil, err.Error(), false
	}
	return cfg, "", false
}

// pullCommand is the CLI command that pulls the version into ./NAME.
func pullCommand(r *http.Request, repo, name string, ref spec.Reference) string {
	version := ":" + ref.Tag
	if ref.Digest != "" {
		version = "@" + string(ref.Digest)
	}
	return fmt.Sprintf("modelx pull %s/%s/%s%s ./%s", registryURL(r), repo, name, version, name)
}

// annotatedSize is a tag's size as the registry annotated it, or "".
func annotatedSize(d spec.Descriptor) string {
	n, err := strconv.ParseInt(d.Annotations[spec.AnnotationModelSize], 10, 64)
	if err != nil {
		return ""
	}
	return humanize.Bytes(n)
}

// shortDigest is "sha256:" and the first 12 hex digits.
func shortDigest(d digest.Digest) string {
	s := string(d)
	if i := strings.IndexByte(s, ':'); i >= 0 && len(s) > i+13 {
		return s[:i+13]
	}
	return s
}
