package main

import (
	"context"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"modelx.io/modelx/client"
	"modelx.io/modelx/client/credentials"
	"modelx.io/modelx/client/reference"
)

// completionTimeout bounds what shell completion asks a registry: a
// registry that does not answer by then completes nothing.
const completionTimeout = time.Second

// What an argument names, for completion.
type argKind int

const (
	argNone     argKind = iota // nothing to complete
	argVersion                 // a reference to a version: REGISTRY/REPOSITORY/NAME[:TAG]
	argModel                   // a model, REGISTRY/REPOSITORY/NAME, or a registry
	argDir                     // a local directory
	argAlias                   // a registry alias
	argRegistry                // a registry: an alias (or a URL)
	argSrcTag                  // a tag of the model the first argument names
)

// completions says, by command path, what each positional argument is;
// the last kind repeats for further arguments.
var completions = map[string][]argKind{
	"modelx init":         {argDir, argNone},
	"modelx push":         {argVersion, argDir, argNone},
	"modelx pull":         {argVersion, argDir, argNone},
	"modelx list":         {argModel, argNone},
	"modelx info":         {argVersion, argNone},
	"modelx delete":       {argVersion, argNone},
	"modelx gc":           {argModel, argNone},
	"modelx tag":          {argVersion, argSrcTag, argNone},
	"modelx copy":         {argVersion, argVersion, argNone},
	"modelx hold put":     {argVersion, argNone},
	"modelx hold list":    {argModel, argNone},
	"modelx hold release": {argModel, argNone},
	"modelx repo add":     {argNone},
	"modelx repo list":    {argNone},
	"modelx repo remove":  {argAlias, argNone},
	"modelx login":        {argRegistry, argNone},
	"modelx logout":       {argRegistry, argNone},
	"modelx version":      {argNone},
}

// registerCompletions sets up shell completion of every command's
// arguments, and of the flags that take files, models or a fixed choice.
func (a *app) registerCompletions(root *cobra.Command) {
	var walk func(*cobra.Command)
	walk = func(cmd *cobra.Command) {
		if kinds, ok := completions[cmd.CommandPath()]; ok && cmd.ValidArgsFunction == nil {
			cmd.ValidArgsFunction = func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
				kind := kinds[min(len(args), len(kinds)-1)]
				return a.complete(cmd, kind, args, toComplete)
			}
		}
		if cmd.Flags().Lookup("output") != nil {
			_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]cobra.Completion{"text", "json"}, cobra.ShellCompDirectiveNoFileComp))
		}
		if cmd.Flags().Lookup("from") != nil {
			_ = cmd.RegisterFlagCompletionFunc("from", func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
				return a.complete(cmd, argModel, args, toComplete)
			})
		}
		if cmd.Name() == "pull" && cmd.Flags().Lookup("file") != nil {
			_ = cmd.RegisterFlagCompletionFunc("file", func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
				return a.completeFiles(cmd, args, toComplete)
			})
		}
		if cmd.Flags().Lookup("metrics-file") != nil {
			_ = cmd.MarkFlagFilename("metrics-file")
		}
		for _, c := range cmd.Commands() {
			walk(c)
		}
	}
	walk(root)
	_ = root.MarkPersistentFlagFilename("config", "yaml", "yml")
	_ = root.MarkPersistentFlagFilename("ca-file", "pem", "crt", "cer")
}

// complete completes one argument of the given kind. Whatever fails (no
// config, a registry that is down, slow or refuses) completes nothing and
// prints nothing.
func (a *app) complete(cmd *cobra.Command, kind argKind, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	const none = cobra.ShellCompDirectiveNoFileComp
	switch kind {
	case argDir:
		return nil, cobra.ShellCompDirectiveFilterDirs
	case argNone:
		return nil, none
	}
	a.stderr = io.Discard // completion prints results only
	cfg, err := a.loadConfig()
	if err != nil {
		return nil, none
	}
	aliases := slices.Sorted(maps.Keys(cfg.Registries))
	switch kind {
	case argAlias, argRegistry:
		return withPrefix(aliases, toComplete, ""), none
	case argSrcTag:
		if len(args) == 0 {
			return nil, none
		}
		ref, err := a.parseRef(cfg, args[0])
		if err != nil {
			return nil, none
		}
		return withPrefix(a.tagsOf(cmd, cfg, ref.Registry, ref.Repository, ref.Name), toComplete, ""), none
	}
	// A reference: the alias first, then the model, then the tag.
	registry, rest, ok := splitRegistry(cfg, toComplete)
	if !ok {
		if strings.Contains(toComplete, "/") {
			return nil, none // a URL's host, or an unknown alias
		}
		return withPrefix(aliases, toComplete, "/"), none | cobra.ShellCompDirectiveNoSpace
	}
	prefix := toComplete[:len(toComplete)-len(rest)]
	if i := strings.IndexAny(rest, ":@"); i >= 0 && strings.Contains(rest[:i], "/") {
		if kind != argVersion {
			return nil, none
		}
		repo, name, _ := strings.Cut(rest[:i], "/")
		var refs []string
		for _, tag := range a.tagsOf(cmd, cfg, registry, repo, name) {
			refs = append(refs, prefix+rest[:i+1]+tag)
		}
		return withPrefix(refs, toComplete, ""), none
	}
	ctx, cancel := a.completionContext(cmd)
	defer cancel()
	idx, err := a.completionClient(ctx, cfg).API(registry).Index(ctx, "", "", rest)
	if err != nil {
		return nil, none
	}
	var models []string
	for _, m := range idx.Manifests {
		models = append(models, prefix+m.Name)
	}
	if kind == argVersion {
		return withPrefix(models, toComplete, ""), none | cobra.ShellCompDirectiveNoSpace // a tag may follow
	}
	return withPrefix(models, toComplete, ""), none
}

// completeFiles completes pull's --file with the files of the version the
// first argument names.
func (a *app) completeFiles(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	const none = cobra.ShellCompDirectiveNoFileComp
	if len(args) == 0 {
		return nil, none
	}
	a.stderr = io.Discard
	cfg, err := a.loadConfig()
	if err != nil {
		return nil, none
	}
	ref, err := a.parseRef(cfg, args[0])
	if err != nil {
		return nil, none
	}
	ctx, cancel := a.completionContext(cmd)
	defer cancel()
	m, _, _, err := a.completionClient(ctx, cfg).API(ref.Registry).GetManifest(ctx, ref.Repository, ref.Name, ref.ManifestRef())
	if err != nil {
		return nil, none
	}
	files, _ := manifestFiles(m)
	names := make([]string, 0, len(files))
	for _, f := range files[1:] { // modelx.yaml always comes along
		names = append(names, f.Name)
	}
	return withPrefix(names, toComplete, ""), none
}

// tagsOf lists the tags of a model, or nothing when the registry does not
// answer in time.
func (a *app) tagsOf(cmd *cobra.Command, cfg *credentials.Config, registry, repo, name string) []string {
	ctx, cancel := a.completionContext(cmd)
	defer cancel()
	idx, err := a.completionClient(ctx, cfg).API(registry).Index(ctx, repo, name, "")
	if err != nil {
		return nil
	}
	tags := make([]string, 0, len(idx.Manifests))
	for _, m := range idx.Manifests {
		tags = append(tags, m.Name)
	}
	return tags
}

func (a *app) completionContext(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	return context.WithTimeout(ctx, completionTimeout)
}

// completionClient is a client whose requests, and token refreshes, end
// with ctx, and which shows no progress.
func (a *app) completionClient(ctx context.Context, cfg *credentials.Config) *client.Client {
	hc := *a.hc
	hc.Timeout = completionTimeout
	return client.New(client.Options{HTTPClient: &hc, Keychain: credentials.Default(cfg, &hc), StallTimeout: completionTimeout})
}

// splitRegistry splits a reference being typed into its registry and the
// rest (REPOSITORY/NAME…), once the registry is complete: "ALIAS/" with a
// known alias, or "http(s)://HOST[:PORT]/".
func splitRegistry(cfg *credentials.Config, s string) (registry, rest string, ok bool) {
	n := 0 // slashes of the registry part
	if strings.Contains(s, "://") {
		n = 2
	}
	i := -1
	for range n + 1 {
		j := strings.IndexByte(s[i+1:], '/')
		if j < 0 {
			return "", "", false
		}
		i += j + 1
	}
	registry, err := reference.ParseRegistry(s[:i], cfg)
	if err != nil {
		return "", "", false
	}
	return registry, s[i+1:], true
}

// withPrefix returns the elements of what, each followed by suffix, that
// start with prefix.
func withPrefix(what []string, prefix, suffix string) []cobra.Completion {
	var out []cobra.Completion
	for _, w := range what {
		if strings.HasPrefix(w+suffix, prefix) {
			out = append(out, w+suffix)
		}
	}
	return out
}
