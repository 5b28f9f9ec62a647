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
	modelxversion "modelx.io/modelx/internal/version"
	"modelx.io/modelx/registry"
	"modelx.io/modelx/registry/auth"
	"modelx.io/modelx/server"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = ""

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
	if errors.Is(err, errVersion) {
		_, err = fmt.Printf("modelxd %s\n", modelxversion.String(version))
		return err
	}
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
	return server.Run(ctx, cfg, slog.New(handler), nil)
}

// runMigrate upgrades the storage layout and prints what it did.
func runMigrate(ctx context.Context, cfg server.Config, log *slog.Logger) error {
	res, err := server.Migrate(ctx, cfg, log)
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

// errVersion is what parseFlags returns for --version: run prints the
// version and exits.
var errVersion = errors.New("version requested")

// settings are what modelxd's flags set.
type settings struct {
	cfg            server.Config
	logFormat      string
	issuer         auth.IssuerConfig
	authConfig     string
	minUploadRate  int64
	trustedProxies string
	version        bool
}

// parseFlags reads the environment and then the flags: every flag has an
// environment variable MODELXD_<FLAG> (upper case, '-' as '_') that
// replaces its default.
func parseFlags(args []string) (server.Config, string, error) {
	var s settings
	fs := newFlagSet(&s)
	if err := applyEnv(fs); err != nil {
		return s.cfg, "", err
	}
	if err := fs.Parse(args); err != nil {
		return s.cfg, "", err
	}
	if s.version {
		return s.cfg, "", errVersion
	}
	cfg := s.cfg
	if fs.NArg() > 0 {
		return cfg, "", fmt.Errorf("unexpected argument %q: modelxd takes flags, or `modelxd migrate` and the storage flags (see --help)", fs.Arg(0))
	}
	cfg.Options.MinUploadRate = s.minUploadRate
	if s.minUploadRate == 0 {
		cfg.Options.MinUploadRate = -1 // off
	}
	var err error
	if cfg.Options.TrustedProxies, err = parsePrefixes(s.trustedProxies); err != nil {
		return cfg, "", fmt.Errorf("--trusted-proxies: %w", err)
	}
	if s.authConfig != "" {
		if cfg.Auth, err = auth.LoadConfig(s.authConfig); err != nil {
			return cfg, "", err
		}
	}
	issuer := s.issuer
	if issuer.Issuer != "" || issuer.Audience != "" {
		if issuer.Issuer == "" || issuer.Audience == "" {
			return cfg, "", errors.New("--oidc-issuer and --oidc-audience go together")
		}
		issuer.Login = true
		cfg.Auth.Issuers = append([]auth.IssuerConfig{issuer}, cfg.Auth.Issuers...)
	}
	if s.logFormat != "text" && s.logFormat != "json" && s.logFormat != "auto" {
		return cfg, "", fmt.Errorf("--log-format %q: use text, json or auto", s.logFormat)
	}
	return cfg, s.logFormat, nil
}

func envName(flagName string) string {
	return "MODELXD_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
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
