package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"

	"github.com/spf13/cobra"

	"modelx.io/modelx/client"
	"modelx.io/modelx/client/credentials"
	"modelx.io/modelx/client/reference"
	modelxversion "modelx.io/modelx/internal/version"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = ""

// app holds what every command shares: streams, global flags, config.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	configPath     string
	output         string
	quiet          bool
	concurrency    int
	caFile         string
	insecure       bool
	stop           func(err error, interrupted bool, moved, skipped int64) // ends the progress display
	hc             *http.Client
}

func newRootCommand(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:   "modelx",
		Short: "Push and pull machine-learning models to and from a modelx registry",
		Long: `modelx moves models between a directory and a modelx registry, incrementally:
only files that changed are sent, only files that differ are fetched, and every
byte pulled is verified against its sha256 digest.

References look like http://HOST:PORT/REPOSITORY/NAME:TAG (or @TAG, or
@sha256:DIGEST), or ALIAS/REPOSITORY/NAME:TAG with an alias from "modelx repo
add"; without a tag or digest, the tag is latest. The guide to references,
transfers, .modelxignore, logins and -o json is docs/cli.md.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	pf := root.PersistentFlags()
	pf.StringVar(&a.configPath, "config", "", "config file (default: $MODELX_CONFIG or the user config dir)")
	pf.BoolVarP(&a.quiet, "quiet", "q", false, "print no progress")
	pf.StringVar(&a.caFile, "ca-file", os.Getenv("MODELX_CA_FILE"), "PEM file of CA certificates to trust besides the system's, for a registry or identity provider with a private CA (env MODELX_CA_FILE)")
	pf.BoolVar(&a.insecure, "insecure", envTrue("MODELX_INSECURE"), "do not verify TLS certificates (testing only: anyone on the path can read and change the traffic; env MODELX_INSECURE=true)")
	root.AddCommand(
		a.initCommand(), a.pushCommand(), a.pullCommand(), a.listCommand(), a.infoCommand(),
		a.deleteCommand(), a.gcCommand(), a.holdCommand(), a.copyCommand(), a.tagCommand(), a.repoCommand(), a.loginCommand(), a.logoutCommand(),
		a.versionCommand(),
	)
	a.registerCompletions(root)
	explainErrors(root)
	return root
}

// addOutputFlag adds -o text|json to a command.
func (a *app) addOutputFlag(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&a.output, "output", "o", "text", "output format: text or json")
}

func (a *app) addConcurrencyFlag(cmd *cobra.Command) {
	cmd.Flags().IntVarP(&a.concurrency, "jobs", "j", 0, "transfers (and, for push, hashes) run at once (default: twice the CPUs, at least 4, at most 8)")
}

func (a *app) checkOutput() error {
	if a.output != "text" && a.output != "json" {
		return fmt.Errorf("-o %q: use text or json", a.output)
	}
	return nil
}

func (a *app) printJSON(v any) error {
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// outputConfig checks -o and loads the config: how a command that prints
// a result starts.
func (a *app) outputConfig() (*credentials.Config, error) {
	if err := a.checkOutput(); err != nil {
		return nil, err
	}
	return a.loadConfig()
}

// loadConfig loads the config file and sets up the HTTP client (its
// --ca-file is read here, so a bad one fails every command early).
func (a *app) loadConfig() (*credentials.Config, error) {
	if _, err := a.httpClient(); err != nil {
		return nil, err
	}
	p := a.configPath
	if p == "" {
		var err error
		if p, err = credentials.DefaultConfigPath(); err != nil {
			return nil, err
		}
	}
	return credentials.LoadConfig(p)
}

// newClient builds the library client with tokens from the config and
// environment; newTransferClient adds progress on stderr.
func (a *app) newClient(cfg *credentials.Config) *client.Client {
	return a.clientWith(cfg, nil)
}

func (a *app) clientWith(cfg *credentials.Config, progress client.Progress) *client.Client {
	return client.New(client.Options{
		HTTPClient:  a.hc, // set up by loadConfig
		Keychain:    credentials.Default(cfg, a.hc),
		Concurrency: a.concurrency,
		Progress:    progress,
	})
}

// httpClient carries every request of the command: to registries, object
// stores and identity providers. --ca-file adds CAs to the system's;
// --insecure turns verification off.
func (a *app) httpClient() (*http.Client, error) {
	if a.hc != nil {
		return a.hc, nil
	}
	hc := client.DefaultHTTPClient()
	t := hc.Transport.(*http.Transport)
	if a.caFile != "" || a.insecure {
		t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if a.caFile != "" {
		pem, err := os.ReadFile(a.caFile)
		if err != nil {
			return nil, fmt.Errorf("--ca-file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca-file %s holds no PEM certificate: give the CA's certificate in PEM form (-----BEGIN CERTIFICATE-----)", a.caFile)
		}
		t.TLSClientConfig.RootCAs = pool
	}
	if a.insecure {
		t.TLSClientConfig.InsecureSkipVerify = true
		fmt.Fprintln(a.stderr, "modelx: warning: --insecure: TLS certificates are not verified")
	}
	a.hc = hc
	return hc, nil
}

func (a *app) parseRef(cfg *credentials.Config, s string) (client.Reference, error) {
	return reference.ParseReference(s, cfg)
}

func (a *app) versionCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the modelx version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := a.checkOutput(); err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(versionOutput{Version: buildVersion()})
			}
			_, err := fmt.Fprintf(a.stdout, "modelx %s\n", buildVersion())
			return err
		},
	}
	a.addOutputFlag(cmd)
	return cmd
}

func buildVersion() string { return modelxversion.String(version) }

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// envTrue reads a boolean environment variable as strconv.ParseBool does
// (1, t, true, TRUE, …); unset or unparsable is false.
func envTrue(name string) bool {
	v, err := strconv.ParseBool(os.Getenv(name))
	return err == nil && v
}
