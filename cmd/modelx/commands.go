package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"modelx.io/modelx/client"
	"modelx.io/modelx/client/credentials"
	"modelx.io/modelx/client/reference"
	"modelx.io/modelx/internal/humanize"
	"modelx.io/modelx/spec"
)

const configTemplate = `# modelx.yaml: what this model is and how to serve it.
description: %s
framework: ""        # e.g. pytorch, onnx, tensorflow, sklearn
task: ""             # e.g. text-generation, image-classification
tags: []
maintainers: []
# Files a serving pod needs ("dir/" for a whole directory); empty means all.
modelFiles: []
config:
  inputs: {}
  outputs: {}
`

func (a *app) initCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "init DIR",
		Short: "Write a modelx.yaml and a README stub into DIR",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			cfgPath := filepath.Join(dir, spec.ConfigFileName)
			if _, err := os.Stat(cfgPath); err == nil {
				return fmt.Errorf("%s already exists; edit it, or remove it to start over", cfgPath)
			}
			// "." or "../x/" names the directory by its real name.
			abs, err := filepath.Abs(dir)
			if err != nil {
				return err
			}
			title := filepath.Base(abs)
			if title == string(filepath.Separator) || title == "." {
				title = "model"
			}
			if err := os.WriteFile(cfgPath, fmt.Appendf(nil, configTemplate, strconv.Quote(title+" model")), 0o644); err != nil {
				return err
			}
			readme := filepath.Join(dir, "README.md")
			if _, err := os.Stat(readme); errors.Is(err, os.ErrNotExist) {
				if err := os.WriteFile(readme, fmt.Appendf(nil, "# %s\n\nDescribe the model, its training data and its intended use.\n", title), 0o644); err != nil {
					return err
				}
			}
			name := suggestModelName(title)
			fmt.Fprintf(a.stdout, "wrote %s; fill it in, then:\n  modelx push %s %s\n", cfgPath, shellQuote("REGISTRY/REPOSITORY/"+name+":v1"), shellQuote(dir))
			if name != title {
				fmt.Fprintf(a.stdout, "(%s is a valid model name made from %q: lowercase letters and digits, separated by single '.', '_' or '-')\n", name, title)
			}
			return nil
		},
	}
}

func (a *app) pushCommand() *cobra.Command {
	var metricsFile, from string
	cmd := &cobra.Command{
		Use:   "push REF [DIR]",
		Short: "Push DIR (default .) as the model version REF",
		Long: `push uploads the model in DIR as the version REF, which names a tag: its
modelx.yaml (which "modelx init" writes) and every other file, but .git/,
.modelx/ and what DIR/.modelxignore names. Only what the registry does not hold
for the model is sent, so pushing again after a small change sends only the
change; --from names a model that holds some of the files already. When the tag
named another version, push says that it moved:

    v1: sha256:OLD → sha256:NEW`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, ref, err := a.configAndRef(args[0])
			if err != nil {
				return err
			}
			dir := "."
			if len(args) == 2 {
				dir = args[1]
			}
			var opts client.PushOptions
			if from != "" {
				src, _, err := a.modelArg(cfg, from)
				if err != nil {
					return fmt.Errorf("--from: %w", err)
				}
				if src.Registry != ref.Registry {
					return fmt.Errorf("--from %s is on %s, not on %s: a push can take blobs only from a model of the same registry (use modelx copy across registries)", from, src.Registry, ref.Registry)
				}
				opts.From = src.Model()
			}
			res, err := a.newTransferClient(cfg, "push").PushWithOptions(cmd.Context(), ref, dir, opts)
			var figures *transferFigures
			if res != nil {
				figures = transferred(res.UploadedBytes, res.Transfer)
			}
			if err := a.finishTransfer(cmd.Context(), "push", ref, figures, err, metricsFile); err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(res)
			}
			fmt.Fprintf(a.stdout, "pushed %s\ndigest: %s\n%d files; uploaded %s in %d blobs, skipped %s in %d blobs (%.1fs)\n",
				res.Reference, res.Digest, res.Files, humanize.Bytes(res.UploadedBytes), res.BlobsTransferred, humanize.Bytes(res.SkippedBytes), res.BlobsSkipped, res.DurationSeconds)
			printMove(a.stdout, ref.Tag, res.PreviousDigest, res.Digest)
			return nil
		},
	}
	a.addOutputFlag(cmd)
	a.addConcurrencyFlag(cmd)
	addMetricsFileFlag(cmd, &metricsFile)
	cmd.Flags().StringVar(&from, "from", "", "a model of the same registry (REGISTRY/REPOSITORY/NAME) that holds some of these files and that you may pull: its blobs are linked without sending them")
	return cmd
}

// transferred returns the figures of a push's or pull's result: moved, its
// uploaded or downloaded bytes, and t, the rest.
func transferred(moved int64, t client.Transfer) *transferFigures {
	return &transferFigures{movedBytes: moved, skippedBytes: t.SkippedBytes, movedBlobs: t.BlobsTransferred, skippedBlobs: t.BlobsSkipped, seconds: t.DurationSeconds}
}

// finishTransfer ends the transfer op of ref (push, pull, copy) with its
// outcome err: the progress display's summary and, with metricsFile, the
// figures in that file. figures are the result's, nil when the transfer
// returned none. It returns err, or else the metrics file's error.
func (a *app) finishTransfer(ctx context.Context, op string, ref client.Reference, figures *transferFigures, err error, metricsFile string) error {
	var f transferFigures
	if figures != nil {
		f = *figures
		a.stopProgress(ctx, err, f.movedBytes, f.skippedBytes)
	}
	a.stopProgress(ctx, err, -1, -1) // no result: no figures to show
	if metricsFile == "" {
		return err
	}
	f.operation, f.reference, f.err = op, ref.String(), err
	if werr := writeMetricsFile(metricsFile, f); werr != nil && err == nil {
		return werr
	}
	return err
}

// addMetricsFileFlag adds --metrics-file to push and pull.
func addMetricsFileFlag(cmd *cobra.Command, p *string) {
	cmd.Flags().StringVar(p, "metrics-file", os.Getenv("MODELX_METRICS_FILE"), "write the transfer's figures to this file in the Prometheus text format, also on failure (env MODELX_METRICS_FILE)")
}

func (a *app) pullCommand() *cobra.Command {
	var opts client.PullOptions
	var metricsFile string
	cmd := &cobra.Command{
		Use:   "pull REF [DIR]",
		Short: "Pull the model version REF into DIR (default ./NAME)",
		Long: `Pull writes the model into DIR, fetching only files that differ from what is
there, and verifies every byte before a file is moved into place. An
interrupted pull resumes where it stopped. As a storage initializer:

    modelx pull modelx://HOST/REPOSITORY/NAME@sha256:… /mnt/models

modelx://serviceaccount@HOST/... pulls with the pod's projected
service-account token, which MODELX_TOKEN_FILE must name (KServe's
modelx-serviceaccount ClusterStorageContainer sets it; docs/kserve.md).

Pull replaces only files that modelx wrote there (or pushed from there) and
that are unchanged since. Any other file in the way stops the pull before
it writes anything, listing the paths; --force overwrites them. Files modelx
wrote that the version no longer has stay, unless --prune removes them.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, ref, err := a.configAndRef(args[0])
			if err != nil {
				return err
			}
			if ref.ServiceAccount && os.Getenv(credentials.EnvTokenFile) == "" {
				return fmt.Errorf("%s asks for the pod's service-account token (modelx://serviceaccount@...), but %s is not set: mount a projected service-account token and set %s to its path (KServe's modelx-serviceaccount ClusterStorageContainer does both), or drop serviceaccount@ from the URI", ref, credentials.EnvTokenFile, credentials.EnvTokenFile)
			}
			dir := ref.Name
			if len(args) == 2 {
				dir = args[1]
			}
			// A modelx:// URI may carry the selection (storage-initializer form).
			opts.Files = append(opts.Files, ref.Files...)
			opts.ModelFiles = opts.ModelFiles || ref.ModelFiles == "true"
			opts.ModelFilesIfListed = ref.ModelFiles == "auto"
			// The storage-initializer form leaves only the model behind.
			opts.DropState = opts.DropState || strings.HasPrefix(args[0], "modelx://")
			res, err := a.newTransferClient(cfg, "pull").Pull(cmd.Context(), ref, dir, opts)
			var figures *transferFigures
			if res != nil {
				figures = transferred(res.DownloadedBytes, res.Transfer)
			}
			err = a.finishTransfer(cmd.Context(), "pull", ref, figures, err, metricsFile)
			if conflict := (*client.ConflictError)(nil); errors.As(err, &conflict) {
				return a.explainConflict(conflict)
			}
			if err != nil {
				return err
			}
			a.reportStale(res, opts.Prune)
			if a.output == "json" {
				return a.printJSON(res)
			}
			fmt.Fprintf(a.stdout, "pulled %s into %s\ndigest: %s\n%d files; downloaded %s in %d blobs, %s already present (%.1fs)\n",
				res.Reference, dir, res.Digest, res.Files, humanize.Bytes(res.DownloadedBytes), res.BlobsTransferred, humanize.Bytes(res.SkippedBytes), res.DurationSeconds)
			if len(res.Pruned) > 0 {
				fmt.Fprintf(a.stdout, "removed %d %s that this version no longer has\n", len(res.Pruned), humanize.Plural(len(res.Pruned), "file", "files"))
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&opts.Files, "file", nil, "pull only files matching this glob (repeatable; matches the path or its base name)")
	cmd.Flags().BoolVar(&opts.ModelFiles, "model-files", false, "pull only the files modelx.yaml lists in modelFiles")
	cmd.Flags().BoolVar(&opts.DropState, "no-state", false, "remove DIR/.modelx (hash cache) after a successful pull; the default for modelx:// URIs")
	cmd.Flags().BoolVar(&opts.Force, "force", false, "overwrite files in DIR that modelx did not write, or that changed since it wrote them")
	cmd.Flags().BoolVar(&opts.Prune, "prune", false, "also remove the files modelx wrote in DIR that this version no longer has (never files modelx did not write, nor ones changed since)")
	cmd.Flags().BoolVar(&opts.Sync, "sync", false, "flush the files to disk before returning, so they survive a power failure (without it they survive a killed process, and a pull after a crash fetches what was lost)")
	a.addOutputFlag(cmd)
	a.addConcurrencyFlag(cmd)
	addMetricsFileFlag(cmd, &metricsFile)
	return cmd
}

// conflictsListed bounds the paths a refused pull lists.
const conflictsListed = 100

// explainConflict lists the paths that stopped a pull on stderr, and
// returns the error that says how to go on.
func (a *app) explainConflict(e *client.ConflictError) error {
	forceable := 0
	for i, c := range e.Conflicts {
		if c.Forceable {
			forceable++
		}
		if i < conflictsListed {
			fmt.Fprintf(a.stderr, "  %s: %s\n", c.Path, c.Reason)
		}
	}
	if n := len(e.Conflicts); n > conflictsListed {
		fmt.Fprintf(a.stderr, "  … and %d more\n", n-conflictsListed)
	}
	n := len(e.Conflicts)
	what := fmt.Sprintf("%d %s in %s %s in the way (listed above); nothing was written", n, humanize.Plural(n, "path", "paths"), e.Dir, humanize.Plural(n, "is", "are"))
	switch {
	case forceable == n:
		return fmt.Errorf("%s. Pull with --force to overwrite %s, or pull into an empty directory", what, humanize.Plural(n, "it", "them"))
	case forceable == 0:
		return fmt.Errorf("%s. Move the directories away (--force never removes a directory that holds files), or pull into an empty directory", what)
	}
	return fmt.Errorf("%s. Move the directories that hold files away (--force never removes them), then pull with --force to overwrite the rest; or pull into an empty directory", what)
}

// reportStale says on stderr which files modelx wrote that the version no
// longer has are still in the directory.
func (a *app) reportStale(res *client.PullResult, prune bool) {
	n := len(res.Stale)
	if n == 0 {
		return
	}
	names := strings.Join(res.Stale[:min(n, 5)], ", ")
	if n > 5 {
		names += ", …"
	}
	if prune {
		fmt.Fprintf(a.stderr, "modelx: kept %d %s that this version no longer has, because %s changed since modelx wrote %s: %s\n",
			n, humanize.Plural(n, "file", "files"), humanize.Plural(n, "it", "they"), humanize.Plural(n, "it", "them"), names)
		return
	}
	fmt.Fprintf(a.stderr, "modelx: %d %s that modelx wrote here %s not in this version and %s left in place (%s); pull with --prune to remove %s\n",
		n, humanize.Plural(n, "file", "files"), humanize.Plural(n, "is", "are"), humanize.Plural(n, "was", "were"), names, humanize.Plural(n, "it", "them"))
}

// configAndRef checks -o, loads the config and parses the reference
// argument: the start of the commands that name one version (push, pull,
// info, copy).
func (a *app) configAndRef(arg string) (*credentials.Config, client.Reference, error) {
	if err := a.checkOutput(); err != nil {
		return nil, client.Reference{}, err
	}
	cfg, err := a.loadConfig()
	if err != nil {
		return nil, client.Reference{}, err
	}
	ref, err := a.parseRef(cfg, arg)
	return cfg, ref, err
}

// configAndModel checks -o, loads the config and parses a REF argument
// that may name a model without a version (modelArg): the start of the
// commands that act on a model or on its versions.
func (a *app) configAndModel(arg string) (cfg *credentials.Config, ref client.Reference, named bool, err error) {
	if cfg, err = a.outputConfig(); err != nil {
		return nil, client.Reference{}, false, err
	}
	ref, named, err = a.modelArg(cfg, arg)
	return cfg, ref, named, err
}

// configAndRegistry loads the config and parses a REGISTRY argument (a URL
// or an alias): the start of login and logout.
func (a *app) configAndRegistry(arg string) (*credentials.Config, string, error) {
	cfg, err := a.loadConfig()
	if err != nil {
		return nil, "", err
	}
	registry, err := reference.ParseRegistry(arg, cfg)
	return cfg, registry, err
}

// modelArg parses REF, allowing a model without tag; it says whether a
// tag or digest was written.
func (a *app) modelArg(cfg *credentials.Config, s string) (client.Reference, bool, error) {
	ref, err := a.parseRef(cfg, s)
	if err != nil {
		return ref, false, err
	}
	last := s[strings.LastIndex(s, "/")+1:]
	return ref, strings.ContainsAny(last, ":@"), nil
}

func (a *app) listCommand() *cobra.Command {
	var search string
	cmd := &cobra.Command{
		Use:   "list REGISTRY|REPOSITORY-REF",
		Short: "List the models of a registry, or the tags of a model",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := a.outputConfig()
			if err != nil {
				return err
			}
			c := a.newClient(cfg)
			if registry, err := reference.ParseRegistry(args[0], cfg); err == nil {
				idx, err := c.API(registry).Index(cmd.Context(), "", "", search)
				if err != nil {
					return err
				}
				if a.output == "json" {
					return a.printJSON(newModelList(registry, idx))
				}
				for _, m := range idx.Manifests {
					fmt.Fprintln(a.stdout, m.Name)
				}
				return nil
			}
			ref, _, err := a.modelArg(cfg, args[0])
			if err != nil {
				return err
			}
			idx, err := c.API(ref.Registry).Index(cmd.Context(), ref.Repository, ref.Name, search)
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(newTagList(ref.Model(), idx))
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TAG\tDIGEST\tSIZE\tPUSHED")
			for _, m := range idx.Manifests {
				size := "-"
				if n, err := strconv.ParseInt(m.Annotations[spec.AnnotationModelSize], 10, 64); err == nil {
					size = humanize.Bytes(n)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", m.Name, shortDigest(string(m.Digest)), size, m.Modified.Local().Format(time.DateTime))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&search, "search", "", "keep only the models (REPOSITORY/NAME) or tags whose name contains this text")
	a.addOutputFlag(cmd)
	return cmd
}

func shortDigest(d string) string {
	if i := strings.IndexByte(d, ':'); i >= 0 && len(d) > i+13 {
		return d[:i+13]
	}
	return d
}

// fileInfo is one file of a manifest, as info shows it.
type fileInfo struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	Digest string `json:"digest"`
	Kind   string `json:"kind"`
}

func (a *app) infoCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "info REF",
		Short: "Show a model version: digest, metadata, files, and the holds on its model",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, ref, err := a.configAndRef(args[0])
			if err != nil {
				return err
			}
			c := a.newClient(cfg)
			api := c.API(ref.Registry)
			m, _, d, err := api.GetManifest(cmd.Context(), ref.Repository, ref.Name, ref.ManifestRef())
			if err != nil {
				return c.ExplainMissing(cmd.Context(), ref, err)
			}
			config, err := fetchConfig(cmd.Context(), api, ref, m)
			if err != nil {
				return err
			}
			files, total := manifestFiles(m)
			immutable := false
			if ref.Digest == "" {
				if idx, err := api.Index(cmd.Context(), ref.Repository, ref.Name, ""); err == nil {
					if i := idx.Find(ref.ManifestRef()); i >= 0 {
						immutable = idx.Manifests[i].Annotations[spec.AnnotationImmutableTag] == "true"
					}
				}
			}
			// Holds are shown when the registry answers (older ones have none).
			holds, err := api.Holds(cmd.Context(), ref.Repository, ref.Name)
			if err != nil || holds == nil {
				holds = []spec.Hold{}
			}
			if a.output == "json" {
				blobs, stored := manifestBlobs(m)
				return a.printJSON(versionInfo{Reference: ref.String(), Digest: d, Size: total, StoredSize: stored, Immutable: immutable,
					Holds: holds, Config: newConfigInfo(config), Files: files, Blobs: blobs})
			}
			fmt.Fprintf(a.stdout, "reference:   %s\ndigest:      %s\nsize:        %s in %d files\n", ref, d, humanize.Bytes(total), len(files))
			if immutable {
				fmt.Fprintf(a.stdout, "immutable:   tag %s cannot be moved or deleted (registry policy)\n", ref.ManifestRef())
			}
			if config != nil {
				fmt.Fprintf(a.stdout, "description: %s\nframework:   %s\ntask:        %s\n", config.Description, config.Framework, config.Task)
				if len(config.ModelFiles) > 0 {
					fmt.Fprintf(a.stdout, "modelFiles:  %s\n", strings.Join(config.ModelFiles, ", "))
				}
			}
			if len(holds) > 0 {
				fmt.Fprintf(a.stdout, "holds:       %d on versions of %s (modelx hold list)\n", len(holds), ref.Model())
				if err := writeHolds(a.stdout, "  ", holds, d); err != nil {
					return err
				}
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "\nFILE\tSIZE\tKIND\tDIGEST")
			for _, f := range files {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", f.Name, humanize.Bytes(f.Size), f.Kind, shortDigest(f.Digest))
			}
			return tw.Flush()
		},
	}
	a.addOutputFlag(cmd)
	return cmd
}

// fetchConfig reads and parses the modelx.yaml of m, verified against
// its descriptor; one that does not parse is shown as no metadata.
func fetchConfig(ctx context.Context, api *client.API, ref client.Reference, m *spec.Manifest) (*spec.ModelConfig, error) {
	data, err := api.FetchConfig(ctx, ref.Repository, ref.Name, m.Config)
	if err != nil {
		return nil, err
	}
	cfg, err := spec.ParseModelConfig(data)
	if err != nil {
		return nil, nil // shown without metadata; pull still works
	}
	return cfg, nil
}

// manifestFiles lists files, not blobs: packed files one by one.
func manifestFiles(m *spec.Manifest) ([]fileInfo, int64) {
	files := []fileInfo{{Name: m.Config.Name, Size: m.Config.Size, Digest: string(m.Config.Digest), Kind: "config"}}
	for _, b := range m.Blobs {
		switch b.MediaType {
		case spec.MediaTypePack:
			for _, f := range b.Files {
				files = append(files, fileInfo{Name: f.Name, Size: f.Size, Digest: string(f.Digest), Kind: "packed"})
			}
		case spec.MediaTypeChunkedFile:
			files = append(files, fileInfo{Name: b.Name, Size: b.Size, Digest: string(b.Digest), Kind: fmt.Sprintf("chunked (%d)", len(b.Chunks))})
		case spec.MediaTypeDirectoryTarGz:
			files = append(files, fileInfo{Name: b.Name + "/", Size: b.Size, Digest: string(b.Digest), Kind: "directory"})
		default:
			files = append(files, fileInfo{Name: b.Name, Size: b.Size, Digest: string(b.Digest), Kind: "file"})
		}
	}
	var total int64
	for _, f := range files {
		total += f.Size
	}
	return files, total
}

func (a *app) deleteCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "delete REF",
		Short: "Delete a tag (REF:TAG), every tag of a digest (REF@sha256:…), or a whole model (REF without tag)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, ref, tagged, err := a.configAndModel(args[0])
			if err != nil {
				return err
			}
			api := a.newClient(cfg).API(ref.Registry)
			if !tagged {
				if err := api.DeleteIndex(cmd.Context(), ref.Repository, ref.Name); err != nil {
					return err
				}
				if a.output == "json" {
					return a.printJSON(deleted{Reference: ref.Registry + "/" + ref.Model(), Scope: "model"})
				}
				fmt.Fprintf(a.stdout, "deleted every tag of %s; run `modelx gc` to free the space\n", ref.Model())
				return nil
			}
			if err := api.DeleteManifest(cmd.Context(), ref.Repository, ref.Name, ref.ManifestRef()); err != nil {
				return err
			}
			if a.output == "json" {
				scope := "tag"
				if ref.Digest != "" {
					scope = "digest"
				}
				return a.printJSON(deleted{Reference: ref.String(), Scope: scope})
			}
			fmt.Fprintf(a.stdout, "deleted %s\n", ref)
			return nil
		},
	}
	a.addOutputFlag(cmd)
	return cmd
}

func (a *app) gcCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "gc REGISTRY|MODEL",
		Short: "Collect garbage now: a model's untagged versions, or the whole registry",
		Long: `gc MODEL (REGISTRY/REPOSITORY/NAME) deletes the model's untagged versions and
its links to blobs that no remaining version names; it needs delete rights on
the model. gc REGISTRY collects the whole registry and frees the bytes of blobs
that no model holds any more; it needs admin on every model ("*"). Nothing
younger than the registry's grace period (modelxd --gc-grace, default 1h) is
deleted; gc says what it kept for that reason alone.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := a.outputConfig()
			if err != nil {
				return err
			}
			var res spec.GCResult
			if registry, rerr := reference.ParseRegistry(args[0], cfg); rerr == nil {
				res, err = a.newClient(cfg).API(registry).GarbageCollectRegistry(cmd.Context())
			} else {
				ref, _, perr := a.modelArg(cfg, args[0])
				if perr != nil {
					return perr
				}
				res, err = a.newClient(cfg).API(ref.Registry).GarbageCollect(cmd.Context(), ref.Repository, ref.Name)
			}
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(newGCInfo(res))
			}
			fmt.Fprintf(a.stdout, "%s: deleted %d manifests, %d links and %d blobs, freed %s (%.1fs)\n",
				res.Scope, res.ManifestsDeleted, res.LinksDeleted, res.BlobsDeleted, humanize.Bytes(res.BytesFreed), res.DurationSeconds)
			if res.Scope != "registry" && res.LinksDeleted > 0 {
				fmt.Fprintln(a.stdout, "the bytes of blobs no model holds any more are freed by the next collection of the whole registry")
			}
			if line := gcYoungLine(res); line != "" {
				fmt.Fprintln(a.stdout, line)
			}
			for _, p := range res.Problems {
				fmt.Fprintln(a.stderr, "kept whole:", p)
			}
			return nil
		},
	}
	a.addOutputFlag(cmd)
	return cmd
}

func (a *app) copyCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "copy SRC DST",
		Short: "Copy a model version to another model or registry, keeping its digest",
		Long: `copy reads the version SRC and writes it as DST, byte for byte, so it keeps
its digest. Blobs the DST model holds already are skipped. On one registry no
other byte moves either: each blob is mounted from SRC's model, which you must
be allowed to pull. Across registries each other blob is streamed from SRC,
verified against its digest, and uploaded; each registry gets its own login.
DST without a tag or digest takes SRC's tag. copy prints how many blobs it
skipped, mounted and copied, and, when DST's tag named another version, that
the tag moved:

    v1: sha256:OLD → sha256:NEW`,
		Example: `  modelx copy myreg/team-a/bert:v3 myreg/team-b/bert:v3
  modelx copy myreg/nlp/bert:v3 otherreg/nlp/bert`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, src, err := a.configAndRef(args[0])
			if err != nil {
				return err
			}
			dst, named, err := a.modelArg(cfg, args[1])
			if err != nil {
				return err
			}
			if !named && src.Tag != "" {
				dst.Tag = src.Tag // DST without a version: the same tag
			}
			res, err := a.newTransferClient(cfg, "copy").Copy(cmd.Context(), src, dst)
			var figures *transferFigures
			if res != nil {
				figures = &transferFigures{movedBytes: res.CopiedBytes, skippedBytes: res.SkippedBytes + res.MountedBytes,
					movedBlobs: res.BlobsCopied, skippedBlobs: res.BlobsSkipped + res.BlobsMounted, seconds: res.DurationSeconds}
			}
			if err := a.finishTransfer(cmd.Context(), "copy", dst, figures, err, ""); err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(res)
			}
			fmt.Fprintf(a.stdout, "copied %s\nto %s\ndigest: %s\nskipped %s in %d blobs (held already), mounted %s in %d blobs, copied %s in %d blobs (%.1fs)\n",
				res.Source, res.Destination, res.Digest, humanize.Bytes(res.SkippedBytes), res.BlobsSkipped,
				humanize.Bytes(res.MountedBytes), res.BlobsMounted, humanize.Bytes(res.CopiedBytes), res.BlobsCopied, res.DurationSeconds)
			if dst.Digest == "" {
				printMove(a.stdout, dst.Tag, res.PreviousDigest, res.Digest)
			}
			return nil
		},
	}
	a.addOutputFlag(cmd)
	a.addConcurrencyFlag(cmd)
	return cmd
}

func (a *app) repoCommand() *cobra.Command {
	repo := &cobra.Command{Use: "repo", Short: "Manage registry aliases"}
	repo.AddCommand(&cobra.Command{
		Use:   "add NAME URL",
		Short: "Add (or change) a registry alias",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := a.loadConfig()
			if err != nil {
				return err
			}
			if err := cfg.AddRegistry(args[0], args[1]); err != nil {
				return err
			}
			return cfg.Save()
		},
	}, a.repoListCommand(), &cobra.Command{
		Use:   "remove NAME",
		Short: "Remove a registry alias",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := a.loadConfig()
			if err != nil {
				return err
			}
			if err := cfg.RemoveRegistry(args[0]); err != nil {
				return err
			}
			return cfg.Save()
		},
	})
	return repo
}

func (a *app) repoListCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List registry aliases",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := a.outputConfig()
			if err != nil {
				return err
			}
			list := registryList{Registries: []registryItem{}}
			for _, name := range sortedKeys(cfg.Registries) {
				url := cfg.Registries[name].URL
				_, in := cfg.Credentials[url]
				list.Registries = append(list.Registries, registryItem{Name: name, URL: url, LoggedIn: in})
			}
			if a.output == "json" {
				return a.printJSON(list)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tURL\tLOGGED IN")
			for _, r := range list.Registries {
				fmt.Fprintf(tw, "%s\t%s\t%v\n", r.Name, r.URL, r.LoggedIn)
			}
			return tw.Flush()
		},
	}
	a.addOutputFlag(cmd)
	return cmd
}

func (a *app) loginCommand() *cobra.Command {
	var token string
	var fromStdin, prompt bool
	cmd := &cobra.Command{
		Use:   "login REGISTRY",
		Short: "Log in to a registry (OIDC device flow, or a static token)",
		Long: `login stores a token for REGISTRY (a URL or an alias) in the config file.
Without flags it runs the OIDC device flow of the identity provider the
registry names: open the URL it prints and confirm the code. A registry
without OIDC takes a static token from its administrator: --token-stdin reads
it from standard input, --prompt asks for it on the terminal without echo, and
--token takes it on the command line (where shell history keeps it). A static
token is checked against the registry before it is stored. MODELX_TOKEN and
MODELX_TOKEN_FILE, when set, win over stored logins.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, registry, err := a.configAndRegistry(args[0])
			if err != nil {
				return err
			}
			switch {
			case fromStdin:
				data, err := io.ReadAll(io.LimitReader(a.stdin, 1<<20))
				if err != nil {
					return err
				}
				token = strings.TrimSpace(string(data))
			case token == "" && !prompt:
				return a.deviceLogin(cmd.Context(), cfg, registry)
			case token == "":
				if token, err = a.promptToken(registry); err != nil {
					return err
				}
			}
			if token == "" {
				return errors.New("the token is empty")
			}
			// Check the token before storing it.
			api := client.NewAPI(registry, a.hc, credentials.Static(token))
			if _, err := api.Index(cmd.Context(), "", "", ""); err != nil {
				return fmt.Errorf("the registry refused the token: %w", err)
			}
			cfg.SetCredential(registry, credentials.Credential{Token: token})
			if err := cfg.Save(); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "logged in to %s\n", registry)
			return nil
		},
	}
	cmd.Flags().StringVar(&token, "token", "", "a static token (visible in shell history; prefer --token-stdin)")
	cmd.Flags().BoolVar(&fromStdin, "token-stdin", false, "read a static token from standard input")
	cmd.Flags().BoolVar(&prompt, "prompt", false, "type a static token at a prompt instead of the browser login")
	return cmd
}

// deviceLogin logs in through the registry's identity provider: the user
// opens a URL, enters a code, and the token lands in the config.
func (a *app) deviceLogin(ctx context.Context, cfg *credentials.Config, registry string) error {
	conf, err := client.NewAPI(registry, a.hc, nil).Configuration(ctx)
	if err != nil {
		return fmt.Errorf("learn how to log in to %s: %w", registry, err)
	}
	if conf.OIDC == nil {
		if !conf.AuthRequired {
			fmt.Fprintf(a.stdout, "%s does not require login\n", registry)
			return nil
		}
		return fmt.Errorf("%s offers no OIDC login; log in with --token-stdin and a token from its administrator", registry)
	}
	cred, err := credentials.DeviceLogin(ctx, a.hc, *conf.OIDC, func(dc credentials.DeviceCode) {
		url := dc.VerificationURIComplete
		if url == "" {
			url = dc.VerificationURI
		}
		fmt.Fprintf(a.stderr, "To log in to %s, open\n\n    %s\n\nand confirm the code %s. Waiting…\n", registry, url, dc.UserCode)
	})
	if errors.Is(err, credentials.ErrNoDeviceFlow) {
		return fmt.Errorf("%w; log in with --token", err)
	}
	if err != nil {
		return err
	}
	cfg.SetCredential(registry, cred)
	if err := cfg.Save(); err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "logged in to %s\n", registry)
	return nil
}

func (a *app) promptToken(registry string) (string, error) {
	f, ok := a.stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return "", errors.New("no token given: use --token-stdin (or --token) when not on a terminal")
	}
	fmt.Fprintf(a.stderr, "Token for %s: ", registry)
	b, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(a.stderr)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

func (a *app) logoutCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "logout REGISTRY",
		Short: "Forget the stored token of a registry",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, registry, err := a.configAndRegistry(args[0])
			if err != nil {
				return err
			}
			if !cfg.DeleteCredential(registry) {
				return fmt.Errorf("not logged in to %s", registry)
			}
			if err := cfg.Save(); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "logged out of %s\n", registry)
			return nil
		},
	}
}
