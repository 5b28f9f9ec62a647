package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"

	"modelx.io/modelx/client"
	"modelx.io/modelx/spec"
)

func (a *app) holdCommand() *cobra.Command {
	hold := &cobra.Command{
		Use:   "hold",
		Short: "Keep versions of a model from garbage collection: put, list and release holds",
		Long: `A hold is a named reference to versions of a model that the registry's garbage
collection respects until it expires, whether or not a tag points to them. A
deploy controller holds the versions it serves; anyone with hold rights (push,
delete and admin imply them) can hold a version by hand. A held version cannot
be deleted, nor its model, until its holds are released or expire.`,
	}
	hold.AddCommand(a.holdPutCommand(), a.holdListCommand(), a.holdReleaseCommand())
	return hold
}

func (a *app) holdPutCommand() *cobra.Command {
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "put REF HOLDER [DIGEST...]",
		Short: "Put or renew the hold HOLDER on the version REF names (or on DIGESTs of REF's model)",
		Long: `put holds the version REF names (REF:TAG, REF@sha256:…; the tag latest when
REF names none) under the name HOLDER, or, with DIGEST arguments, those versions
of REF's model (then REF names no version). Putting a hold again replaces its
versions and expiry. HOLDER is letters, digits, '.', '_', ':' and '-', starting
with a letter or digit, at most 253 characters; a hold names at most 8 versions.`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, ref, named, err := a.configAndModel(args[0])
			if err != nil {
				return err
			}
			holder, digests := args[1], args[2:]
			if err := spec.ValidateHolder(holder); err != nil {
				return err
			}
			api := a.newClient(cfg).API(ref.Registry)
			switch {
			case len(digests) > 0 && named:
				return fmt.Errorf("%s names a version and DIGEST arguments name others: give one or the other", args[0])
			case len(digests) > 0:
				for _, d := range digests {
					if err := spec.ValidateDigest(digest.Digest(d)); err != nil {
						return err
					}
				}
			case ref.Digest != "":
				digests = []string{string(ref.Digest)}
			default:
				_, _, d, err := api.GetManifest(cmd.Context(), ref.Repository, ref.Name, ref.ManifestRef())
				if err != nil {
					return err
				}
				digests = []string{string(d)}
			}
			h, err := api.PutHold(cmd.Context(), ref.Repository, ref.Name, holder, digests, ttl)
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(h)
			}
			fmt.Fprintf(a.stdout, "held %s by %s until %s: %s\n", ref.Model(), h.Holder, h.Expires.Local().Format(time.DateTime), shortDigests(h.Digests, ""))
			return nil
		},
	}
	cmd.Flags().DurationVar(&ttl, "ttl", 0, "how long the hold lasts unless put again (default: the registry's, 7 days; at most its --max-hold-ttl, 720h by default)")
	a.addOutputFlag(cmd)
	return cmd
}

func (a *app) holdListCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list REF",
		Short: "List the unexpired holds on the versions of REF's model",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, ref, _, err := a.configAndModel(args[0])
			if err != nil {
				return err
			}
			holds, err := a.newClient(cfg).API(ref.Registry).Holds(cmd.Context(), ref.Repository, ref.Name)
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(spec.HoldList{Holds: holds})
			}
			if len(holds) == 0 {
				fmt.Fprintf(a.stdout, "%s has no holds\n", ref.Model())
				return nil
			}
			return writeHolds(a.stdout, "", holds, "")
		},
	}
	a.addOutputFlag(cmd)
	return cmd
}

func (a *app) holdReleaseCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "release REF HOLDER",
		Short: "Release the hold HOLDER on the versions of REF's model",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, ref, _, err := a.configAndModel(args[0])
			if err != nil {
				return err
			}
			err = a.newClient(cfg).API(ref.Registry).ReleaseHold(cmd.Context(), ref.Repository, ref.Name, args[1])
			if errors.Is(err, client.ErrHoldUnknown) {
				return fmt.Errorf("%w; `modelx hold list %s/%s` lists the holds", err, ref.Registry, ref.Model())
			}
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(released{Model: ref.Model(), Holder: args[1]})
			}
			fmt.Fprintf(a.stdout, "released the hold %s on %s\n", args[1], ref.Model())
			return nil
		},
	}
	a.addOutputFlag(cmd)
	return cmd
}

// writeHolds prints holds as a table, each line starting with indent; the
// digest this, if set, is marked as this version.
func writeHolds(w io.Writer, indent string, holds []spec.Hold, this digest.Digest) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "%sHOLDER\tDIGESTS\tEXPIRES\n", indent)
	for _, h := range holds {
		fmt.Fprintf(tw, "%s%s\t%s\t%s\n", indent, h.Holder, shortDigests(h.Digests, this), h.Expires.Local().Format(time.DateTime))
	}
	return tw.Flush()
}

// shortDigests lists digests shortened, marking this.
func shortDigests(digests []digest.Digest, this digest.Digest) string {
	out := make([]string, len(digests))
	for i, d := range digests {
		out[i] = shortDigest(string(d))
		if d == this {
			out[i] += " (this version)"
		}
	}
	return strings.Join(out, ", ")
}
