// Command modelxd is the modelx registry server.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"modelx.io/modelx/internal/telemetry"
	"modelx.io/modelx/registry"
	"modelx.io/modelx/registry/auth"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "modelxd:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	cfg, logFormat, err := parseFlags(args)
	if err != nil {
		return err
	}
	var handler slog.Handler = slog.NewJSONHandler(os.Stderr, nil)
	if logFormat == "text" || (logFormat == "auto" && isTerminal(os.Stderr)) {
		handler = slog.NewTextHandler(os.Stderr, nil)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	shutdown, err := telemetry.Setup(ctx, "modelxd")
	if err != nil {
		return fmt.Errorf("tracing: %w", err)
	}
	defer func() {
		flushCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = shutdown(flushCtx)
	}()
	return registry.Run(ctx, cfg, slog.New(handler), nil)
}

// parseFlags reads flags; every flag has an environment equivalent
// MODELXD_<FLAG> (upper case, '-' as '_') that sets its default.
func parseFlags(args []string) (registry.Config, string, error) {
	fs := flag.NewFlagSet("modelxd", flag.ContinueOnError)
	var cfg registry.Config
	var logFormat string
	str := func(p *string, name, def, usage string) { fs.StringVar(p, name, env(name, def), usage) }
	str(&cfg.Listen, "listen", ":8080", "address to serve on")
	str(&cfg.DataDir, "data-dir", "./data", "local filesystem storage directory (used when no S3 is set)")
	str(&cfg.S3.Endpoint, "s3-url", "", "S3 endpoint URL; selects the S3 backend")
	str(&cfg.S3.Bucket, "s3-bucket", "", "S3 bucket (must exist)")
	str(&cfg.S3.Region, "s3-region", "us-east-1", "S3 region")
	str(&cfg.S3.AccessKey, "s3-access-key", "", "S3 access key (default: the AWS credential chain)")
	str(&cfg.S3.SecretKey, "s3-secret-key", "", "S3 secret key; prefer MODELXD_S3_SECRET_KEY, flags show in ps")
	str(&cfg.TLSCertFile, "tls-cert", "", "TLS certificate file (serve HTTPS with --tls-key)")
	str(&cfg.TLSKeyFile, "tls-key", "", "TLS private key file")
	str(&logFormat, "log-format", "auto", "log format: text, json, or auto (text on a terminal, else JSON)")
	var issuer auth.IssuerConfig
	var authConfig string
	str(&issuer.Issuer, "oidc-issuer", "", "trust bearer tokens of this OIDC issuer (and offer it to modelx login)")
	str(&issuer.Audience, "oidc-audience", "", "the audience (client ID) tokens of --oidc-issuer must carry")
	str(&issuer.UsernameClaim, "oidc-username-claim", "email", "the claim that names the user")
	str(&issuer.GroupsClaim, "oidc-groups-claim", "groups", "the claim that lists the user's groups")
	str(&authConfig, "auth-config", "", "YAML file of trusted issuers (people, Kubernetes clusters) and robot tokens")
	str(&cfg.PolicyFile, "policy", "", "YAML authorization policy (default: authenticated users pull and push)")
	boolean := func(p *bool, name string, def bool, usage string) error {
		v, err := envBool(name, def)
		fs.BoolVar(p, name, v, usage)
		return err
	}
	duration := func(p *time.Duration, name string, def time.Duration, usage string) error {
		v, err := envDuration(name, def)
		fs.DurationVar(p, name, v, usage)
		return err
	}
	integer := func(p *int, name string, def int, usage string) error {
		v, err := envInt(name, def)
		fs.IntVar(p, name, v, usage)
		return err
	}
	for _, err := range []error{
		integer(&cfg.Options.MaxUploads, "max-uploads", 64, "blob uploads proxied at once; more get 429 and retry (uploads to presigned URLs are not counted)"),
		duration(&cfg.Options.IOTimeout, "io-timeout", time.Minute, "abort a request whose body or response makes no progress for this long"),
		boolean(&cfg.S3.PathStyle, "s3-path-style", false, "address the bucket in the URL path (most S3-compatible servers)"),
		boolean(&cfg.Options.EnableRedirect, "enable-redirect", false, "answer blob GET/PUT with 302 to a presigned S3 URL"),
		boolean(&cfg.AnonymousPull, "anonymous-pull", false, "let requests without a token pull"),
		boolean(&issuer.AllowUnverifiedEmail, "oidc-allow-unverified-email", false, "accept tokens of --oidc-issuer whose email_verified is not true (for identity providers that never send it)"),
		boolean(&cfg.Options.DisableUI, "disable-ui", false, "serve no web UI at /ui/ (and no redirect of browsers from /)"),
		duration(&cfg.Options.PresignExpiry, "s3-presign-expire", 15*time.Minute, "validity of presigned URLs"),
		duration(&cfg.GCInterval, "gc-interval", 0, "run garbage collection this often (0: only on request)"),
		duration(&cfg.Options.GCGracePeriod, "gc-grace", time.Hour, "never collect blobs or manifests younger than this"),
		duration(&cfg.ShutdownTimeout, "shutdown-timeout", 30*time.Second, "wait this long for requests on SIGTERM"),
	} {
		if err != nil {
			return cfg, "", err
		}
	}
	err := fs.Parse(args)
	if err != nil {
		return cfg, "", err
	}
	if fs.NArg() > 0 {
		return cfg, "", fmt.Errorf("unexpected argument %q: modelxd takes only flags (see --help)", fs.Arg(0))
	}
	if authConfig != "" {
		if cfg.Auth, err = auth.LoadConfig(authConfig); err != nil {
			return cfg, "", err
		}
	}
	if issuer.Issuer != "" || issuer.Audience != "" {
		if issuer.Issuer == "" || issuer.Audience == "" {
			return cfg, "", errors.New("--oidc-issuer and --oidc-audience go together")
		}
		issuer.Login = true
		cfg.Auth.Issuers = append([]auth.IssuerConfig{issuer}, cfg.Auth.Issuers...)
	}
	if logFormat != "text" && logFormat != "json" && logFormat != "auto" {
		return cfg, "", fmt.Errorf("--log-format %q: use text, json or auto", logFormat)
	}
	return cfg, logFormat, nil
}

func envName(flagName string) string {
	return "MODELXD_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func env(flagName, def string) string {
	if v, ok := os.LookupEnv(envName(flagName)); ok {
		return v
	}
	return def
}

func envBool(flagName string, def bool) (bool, error) {
	v, ok := os.LookupEnv(envName(flagName))
	if !ok {
		return def, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return def, fmt.Errorf("%s=%q: want true or false", envName(flagName), v)
	}
	return b, nil
}

func envDuration(flagName string, def time.Duration) (time.Duration, error) {
	v, ok := os.LookupEnv(envName(flagName))
	if !ok {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return def, fmt.Errorf("%s=%q: want a duration such as 15m", envName(flagName), v)
	}
	return d, nil
}

func envInt(flagName string, def int) (int, error) {
	v, ok := os.LookupEnv(envName(flagName))
	if !ok {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return def, fmt.Errorf("%s=%q: want a whole number", envName(flagName), v)
	}
	return n, nil
}

// isTerminal reports whether f is a terminal: logs for people there, JSON
// for log collectors everywhere else.
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
