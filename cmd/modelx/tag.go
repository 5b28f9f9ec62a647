package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"

	"modelx.io/modelx/client"
	"modelx.io/modelx/client/credentials"
	"modelx.io/modelx/client/reference"
)

func (a *app) tagCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tag SRC NEWTAG",
		Short: "Give the version SRC names another tag, without moving any byte",
		Long: `tag points NEWTAG at the version SRC names (SRC:TAG or SRC@sha256:…): the
version's manifest is stored again under NEWTAG, so it keeps its digest and no
blob moves. NEWTAG is a tag name (v2, prod), or a whole reference to a tag of
the same model. When NEWTAG named another version, it moves, and tag says so:

    prod: sha256:OLD → sha256:NEW

The old version stays reachable by its digest until garbage collection takes
it. A tag the registry's policy makes immutable is not moved. To give a version
a tag on another model or registry, use modelx copy.`,
		Example: `  modelx tag myreg/nlp/bert:v3 prod
  modelx tag myreg/nlp/bert@sha256:… stable`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, src, named, err := a.configAndModel(args[0])
			if err != nil {
				return err
			}
			if !named {
				return fmt.Errorf("SRC %s names no version: give SRC:TAG or SRC@sha256:…", args[0])
			}
			tag, err := a.newTagArg(cfg, src, args[1])
			if err != nil {
				return err
			}
			res, err := a.newClient(cfg).Tag(cmd.Context(), src, tag)
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(res)
			}
			fmt.Fprintf(a.stdout, "tagged %s\ndigest: %s\n", res.Reference, res.Digest)
			printMove(a.stdout, tag, res.PreviousDigest, res.Digest)
			return nil
		},
	}
	a.addOutputFlag(cmd)
	return cmd
}

// newTagArg reads NEWTAG: a tag name, or a reference (with a registry, so
// "://" or two '/') to a tag of src's model.
func (a *app) newTagArg(cfg *credentials.Config, src client.Reference, arg string) (string, error) {
	if !strings.Contains(arg, "://") && strings.Count(arg, "/") < 2 {
		if err := reference.ValidateTag(arg); err != nil {
			return "", fmt.Errorf("NEWTAG: %w", err)
		}
		return arg, nil
	}
	dst, named, err := a.modelArg(cfg, arg)
	if err != nil {
		return "", fmt.Errorf("NEWTAG: %w", err)
	}
	switch {
	case dst.Registry != src.Registry || dst.Model() != src.Model():
		return "", fmt.Errorf("NEWTAG %s is on another model than SRC (%s/%s): tag works within one model; use modelx copy %s %s", arg, src.Registry, src.Model(), src, arg)
	case dst.Digest != "":
		return "", fmt.Errorf("NEWTAG %s names a digest: give a tag name, such as prod", arg)
	case !named:
		return "", fmt.Errorf("NEWTAG %s names no tag: give MODEL:TAG, or the tag name alone", arg)
	}
	return dst.Tag, nil
}

// printMove prints "TAG: sha256:OLD → sha256:NEW" when a command moved a
// tag that named another version.
func printMove(w io.Writer, tag string, previous, current digest.Digest) {
	if line := client.TagMove(tag, previous, current); line != "" {
		fmt.Fprintln(w, line)
	}
}
