package main

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"modelx.io/modelx/client"
	"modelx.io/modelx/internal/humanize"
	"modelx.io/modelx/spec"
)

// suggestModelName turns a directory's name into a valid model name (see
// spec.ValidateComponent): lowercase, every run of other characters one
// '-', no separator at either end; "model" when nothing is left.
func suggestModelName(dirName string) string {
	if spec.ValidateComponent("name", dirName) == nil {
		return dirName
	}
	var b strings.Builder
	sep := false // a separator is pending
	for _, r := range strings.ToLower(dirName) {
		switch {
		case 'a' <= r && r <= 'z', '0' <= r && r <= '9':
			if sep && b.Len() > 0 {
				b.WriteByte('-')
			}
			sep = false
			b.WriteRune(r)
		default:
			sep = true
		}
	}
	name := b.String()
	if len(name) > spec.MaxComponentLength {
		name = strings.TrimRight(name[:spec.MaxComponentLength], "-")
	}
	if name == "" {
		return "model"
	}
	return name
}

// shellQuote returns s as one POSIX shell word: as it is when it holds
// only characters no shell treats specially, else in single quotes.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || strings.ContainsRune("_@%+=:,./-", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// explainErrors wraps the RunE of cmd and of its subcommands with
// explainError, so every command's errors get the same hints.
func explainErrors(cmd *cobra.Command) {
	for _, c := range cmd.Commands() {
		explainErrors(c)
	}
	if run := cmd.RunE; run != nil {
		cmd.RunE = func(c *cobra.Command, args []string) error { return explainError(args, run(c, args)) }
	}
}

// insecureParam is the insecure parameter of a modelx:// URI's query.
var insecureParam = regexp.MustCompile(`([?&])insecure=[^&#]*`)

// explainError rewrites the library's hint where the command line shapes
// the fix: an untrusted CA is given with --ca-file; a modelx:// URI to a
// plain HTTP registry needs ?insecure=true, not an http:// URL.
func explainError(args []string, err error) error {
	var option *client.OptionError
	if errors.As(err, &option) {
		if flag, ok := optionFlags[option.Option]; ok {
			return &hintedError{msg: flag.name + ": " + option.Err.Error() + flag.hint, err: err}
		}
	}
	var untrusted *client.UntrustedCAError
	if errors.As(err, &untrusted) {
		return &hintedError{
			msg: strings.Replace(err.Error(), untrusted.Error(), untrusted.Advise("give the CA's certificate with --ca-file (or MODELX_CA_FILE)"), 1),
			err: err,
		}
	}
	var plain *client.PlainHTTPError
	if err == nil || !errors.As(err, &plain) {
		return err
	}
	for _, arg := range args {
		if len(arg) < len("modelx://") || !strings.EqualFold(arg[:len("modelx://")], "modelx://") {
			continue
		}
		var fixed string
		switch {
		case insecureParam.MatchString(arg): // insecure=false
			fixed = insecureParam.ReplaceAllString(arg, "${1}insecure=true")
		case strings.Contains(arg, "?"):
			fixed = arg + "&insecure=true"
		default:
			fixed = arg + "?insecure=true"
		}
		return fmt.Errorf("registry %s answers in plain HTTP, but a modelx:// URI means HTTPS unless it says otherwise: use %s, or turn TLS on at the registry (insecure=true means plain, unencrypted HTTP: anyone on the path can read and change the traffic, so use it only inside a trusted network such as a cluster's)",
			strings.TrimPrefix(plain.Registry, "https://"), shellQuote(fixed))
	}
	return err
}

// hintedError is a library error whose message the CLI rewrote to name
// its flags; it still wraps the library's error.
// optionFlags are the flags that set the library's push and pull options,
// with what to do when one is refused.
var optionFlags = map[string]struct{ name, hint string }{
	"PushOptions.From":       {name: "--from"},
	"PullOptions.Files":      {name: "--file"},
	"PullOptions.ModelFiles": {name: "--model-files", hint: "; pull without --model-files, or name files with --file"},
}

// hintedError is an error whose message the CLI rewrote to name its own
// flags; errors.As still finds the library's error below.
type hintedError struct {
	msg string
	err error
}

func (e *hintedError) Error() string { return e.msg }
func (e *hintedError) Unwrap() error { return e.err }

// gcYoungLine says what a collection kept only because it is younger than
// the registry's grace period, or "" when it kept nothing for that reason
// (or the registry does not say).
func gcYoungLine(res spec.GCResult) string {
	if res.ManifestsYoung+res.LinksYoung+res.BlobsYoung == 0 {
		return ""
	}
	var parts []string
	for _, c := range []struct {
		n         int
		one, many string
	}{{res.ManifestsYoung, "manifest", "manifests"}, {res.LinksYoung, "link", "links"}, {res.BlobsYoung, "blob", "blobs"}} {
		if c.n == 1 {
			parts = append(parts, "1 "+c.one)
		} else if c.n > 1 {
			parts = append(parts, fmt.Sprintf("%d %s", c.n, c.many))
		}
	}
	what := strings.Join(parts, ", ")
	if len(parts) > 1 {
		what = strings.Join(parts[:len(parts)-1], ", ") + " and " + parts[len(parts)-1]
	}
	if res.BytesYoung > 0 {
		what += fmt.Sprintf(" (%s)", humanize.Bytes(res.BytesYoung))
	}
	grace := "the grace period"
	if res.GracePeriodSeconds > 0 {
		grace += " of " + time.Duration(res.GracePeriodSeconds*float64(time.Second)).String()
	}
	lead := "also kept"
	if res.ManifestsDeleted+res.LinksDeleted+res.BlobsDeleted == 0 {
		lead = "nothing was deleted: kept"
	}
	return fmt.Sprintf("%s %s only because they are younger than %s (modelxd --gc-grace), which keeps what pushes in flight uploaded; a collection after that deletes them", lead, what, grace)
}
