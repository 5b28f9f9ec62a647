// Command modelxd is the modelx registry server.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
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
	migrate := len(args) > 0 && args[0] == "migrate"
	if migrate {
		args = args[1:]
	}
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
	if migrate {
		return runMigrate(ctx, cfg, slog.New(handler))
	}
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

// runMigrate upgrades the storage layout and prints what it did.
func runMigrate(ctx context.Context, cfg registry.Config, log *slog.Logger) error {
	res, err := registry.Migrate(ctx, cfg, log)
	if err != nil {
		return err
	}
	if res.From == registry.LayoutVersion {
		fmt.Printf("storage layout is version %d already: nothing to do\n", registry.LayoutVersion)
		return nil
	}
	fmt.Printf("migrated storage layout %d to %d: %d manifests read, %d links written\n", res.From, registry.LayoutVersion, res.Manifests, res.LinksWritten)
	for _, p := range res.Problems {
		fmt.Println("problem:", p)
	}
	return nil
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
	size := func(p *int64, name string, def int64, usage string) error {
		v, err := envSize(name, def)
		*p = v
		fs.Var((*byteSize)(p), name, usage)
		return err
	}
	var minUploadRate int64
	var trustedProxies string
	str(&trustedProxies, "trusted-proxies", "", "comma-separated addresses or CIDR ranges of proxies whose X-Forwarded-For names the client, for --max-uploads-per-identity")
	for _, err := range []error{
		integer(&cfg.Options.MaxUploads, "max-uploads", 64, "blob uploads proxied at once; more get 429 and retry (uploads to presigned URLs are not counted)"),
		integer(&cfg.Options.MaxUploadsPerIdentity, "max-uploads-per-identity", 16, "blob uploads proxied at once for one identity, or one client address when anonymous; more get 429 and retry"),
		size(&minUploadRate, "min-upload-rate", 64<<10, "cut a proxied upload whose body arrives slower than `bytes` per second (e.g. 64KiB); 0 turns the floor off"),
		size(&cfg.Options.ManifestParseMemory, "manifest-parse-memory", 256<<20, "memory that manifest PUTs being read and parsed may take at once, each counted as 4× its size; more wait, then get 429"),
		duration(&cfg.Options.IOTimeout, "io-timeout", time.Minute, "abort a request whose body or response makes no progress for this long"),
		boolean(&cfg.S3.PathStyle, "s3-path-style", false, "address the bucket in the URL path (most S3-compatible servers)"),
		boolean(&cfg.Options.EnableRedirect, "enable-redirect", false, "answer blob GET/PUT with 302 to a presigned S3 URL"),
		boolean(&cfg.AnonymousPull, "anonymous-pull", false, "let requests without a token pull"),
		boolean(&issuer.AllowUnverifiedEmail, "oidc-allow-unverified-email", false, "accept tokens of --oidc-issuer whose email_verified is not true (for identity providers that never send it)"),
		boolean(&cfg.Options.DisableUI, "disable-ui", false, "serve no web UI at /ui/ (and no redirect of browsers from /)"),
		duration(&cfg.Options.PresignExpiry, "s3-presign-expire", 15*time.Minute, "validity of presigned URLs"),
		duration(&cfg.GCInterval, "gc-interval", 0, "run garbage collection this often (0: only on request)"),
		duration(&cfg.Options.GCGracePeriod, "gc-grace", time.Hour, "never collect blobs or manifests younger than this"),
		duration(&cfg.Options.MaxHoldTTL, "max-hold-ttl", registry.DefaultMaxHoldTTL, "the longest a hold may last; a hold asking for more is refused (holders renew before expiry)"),
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
		return cfg, "", fmt.Errorf("unexpected argument %q: modelxd takes flags, or `modelxd migrate` and the storage flags (see --help)", fs.Arg(0))
	}
	cfg.Options.MinUploadRate = minUploadRate
	if minUploadRate == 0 {
		cfg.Options.MinUploadRate = -1 // off
	}
	if cfg.Options.TrustedProxies, err = parsePrefixes(trustedProxies); err != nil {
		return cfg, "", fmt.Errorf("--trusted-proxies: %w", err)
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

func envSize(flagName string, def int64) (int64, error) {
	v, ok := os.LookupEnv(envName(flagName))
	if !ok {
		return def, nil
	}
	n, err := parseSize(v)
	if err != nil {
		return def, fmt.Errorf("%s=%q: %w", envName(flagName), v, err)
	}
	return n, nil
}

// sizeUnits are the units a size may end in, powers of 1024.
var sizeUnits = []struct {
	suffix string
	bytes  int64
}{{"gib", 1 << 30}, {"mib", 1 << 20}, {"kib", 1 << 10}, {"g", 1 << 30}, {"m", 1 << 20}, {"k", 1 << 10}, {"b", 1}}

// parseSize reads a byte count: a whole number, optionally followed by
// B, K or KiB, M or MiB, G or GiB (powers of 1024).
func parseSize(s string) (int64, error) {
	num, unit := strings.TrimSpace(s), int64(1)
	for _, u := range sizeUnits {
		if n, ok := strings.CutSuffix(strings.ToLower(num), u.suffix); ok {
			num, unit = strings.TrimSpace(n), u.bytes
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/unit {
		return 0, errors.New("want a size such as 64KiB or 256MiB")
	}
	return n * unit, nil
}

// byteSize is a flag holding a size in bytes, written as parseSize reads it.
type byteSize int64

func (b *byteSize) String() string {
	n := int64(*b)
	for _, u := range []struct {
		suffix string
		bytes  int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n != 0 && n%u.bytes == 0 {
			return strconv.FormatInt(n/u.bytes, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

func (b *byteSize) Set(s string) error {
	n, err := parseSize(s)
	*b = byteSize(n)
	return err
}

// parsePrefixes reads a comma-separated list of addresses and CIDR ranges.
func parsePrefixes(list string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for item := range strings.SplitSeq(list, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if p, err := netip.ParsePrefix(item); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(item)
		if err != nil {
			return nil, fmt.Errorf("%q is not an address or a CIDR range such as 10.0.0.0/8", item)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

// isTerminal reports whether f is a terminal: logs for people there, JSON
// for log collectors everywhere else.
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
