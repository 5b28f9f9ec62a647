// Package server wires modelxd together: it turns a Config (what
// cmd/modelxd's flags say) into a storage backend, an authenticator and
// policy, and a registry.Registry, migrates the storage layout, and serves
// the registry over HTTP until its context ends. The registry package
// itself knows nothing of flags, listeners or which backends exist.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"modelx.io/modelx/registry"
	"modelx.io/modelx/registry/auth"
	"modelx.io/modelx/spec"
	"modelx.io/modelx/storage"
	"modelx.io/modelx/storage/fs"
	"modelx.io/modelx/storage/s3"
)

// Config is everything modelxd needs to serve; cmd/modelxd fills it from flags.
type Config struct {
	// Listen is the TCP address to serve on, e.g. ":8080".
	Listen string
	// DataDir is the local-filesystem backend's directory; used when S3.Endpoint
	// and S3.Bucket are empty.
	DataDir string
	// S3 selects and configures the S3 backend when Endpoint or Bucket is set.
	S3 S3Config
	// TLSCertFile and TLSKeyFile serve HTTPS when both are set.
	TLSCertFile string
	TLSKeyFile  string
	// GCInterval runs garbage collection on a schedule; 0 disables it.
	GCInterval time.Duration
	// ShutdownTimeout bounds the wait for in-flight requests on shutdown.
	ShutdownTimeout time.Duration
	// Auth lists trusted issuers and robots (from --auth-config and --oidc-* flags).
	Auth auth.Config
	// PolicyFile is the authorization policy; without one, DefaultPolicy applies.
	PolicyFile string
	// AnonymousPull lets requests without a token pull (with the default policy).
	AnonymousPull bool
	// Options tune the registry.
	Options registry.Options
}

// S3Config is the S3 backend's settings as the --s3-* flags give them
// (see s3.Config for each).
type S3Config struct {
	Endpoint, Bucket, Region, AccessKey, SecretKey string
	PathStyle                                      bool
}

// backend names the storage backend the configuration selects, and its
// settings.
func (c Config) backend() (string, storage.Params, error) {
	if c.UsesS3() {
		return s3.BackendName, storage.Params{
			s3.ParamEndpoint: c.S3.Endpoint, s3.ParamBucket: c.S3.Bucket, s3.ParamRegion: c.S3.Region,
			s3.ParamAccessKey: c.S3.AccessKey, s3.ParamSecretKey: c.S3.SecretKey, s3.ParamPathStyle: strconv.FormatBool(c.S3.PathStyle),
		}, nil
	}
	if c.DataDir == "" {
		return "", nil, errors.New("no storage configured: set --data-dir, or --s3-url and --s3-bucket")
	}
	return fs.BackendName, storage.Params{fs.ParamDir: c.DataDir}, nil
}

// setupAuth fills the options' authenticator, policy and login issuer.
func setupAuth(cfg *Config) error {
	if !cfg.Auth.Enabled() {
		if cfg.PolicyFile != "" || cfg.AnonymousPull {
			return errors.New("--policy and --anonymous-pull need authentication: set --oidc-issuer and --oidc-audience, or --auth-config")
		}
		return nil
	}
	a, err := auth.New(cfg.Auth, nil)
	if err != nil {
		return fmt.Errorf("auth config: %w", err)
	}
	cfg.Options.Authenticator = a
	if cfg.PolicyFile != "" {
		if cfg.Options.Policy, err = auth.LoadPolicy(cfg.PolicyFile); err != nil {
			return err
		}
		if err := cfg.Options.Policy.CheckClusters(cfg.Auth.Clusters()); err != nil {
			return fmt.Errorf("%s: %w", cfg.PolicyFile, err)
		}
		if cfg.AnonymousPull {
			cfg.Options.Policy.AnonymousPull = true
		}
	} else {
		cfg.Options.Policy = auth.DefaultPolicy(cfg.AnonymousPull)
	}
	if is, ok := cfg.Auth.LoginIssuer(); ok {
		cfg.Options.Login = &spec.OIDCLogin{Issuer: is.Issuer, ClientID: is.Audience, Scopes: []string{"openid", "email", "profile", "groups", "offline_access"}}
	}
	return nil
}

// UsesS3 reports whether the configuration selects the S3 backend.
func (c Config) UsesS3() bool { return c.S3.Endpoint != "" || c.S3.Bucket != "" }

// OpenBackend opens the storage backend the configuration selects, and
// returns it with its name.
func OpenBackend(ctx context.Context, cfg Config) (registry.Backend, string, error) {
	name, params, err := cfg.backend()
	if err != nil {
		return nil, "", err
	}
	st, err := storage.Open(ctx, name, params)
	if err != nil {
		return nil, "", err
	}
	b, ok := st.(registry.Backend)
	if !ok {
		return nil, "", fmt.Errorf("the %s storage backend cannot write conditionally, which the registry needs to update indexes", name)
	}
	return b, name, nil
}

// migrateOnStart upgrades an older storage layout before the registry
// serves (docs/operations.md, "Upgrades"), and records the layout of a new
// store.
func migrateOnStart(ctx context.Context, reg *registry.Registry, log *slog.Logger) error {
	res, err := reg.Migrate(ctx)
	if err != nil {
		return fmt.Errorf("storage layout: %w", err)
	}
	if res.From < registry.LayoutVersion {
		log.Info("storage migrated (modelxd migrate does the same ahead of an upgrade)", "from", res.From, "to", registry.LayoutVersion,
			"manifests", res.Manifests, "links_written", res.LinksWritten, "problems", len(res.Problems))
	}
	return nil
}

// Migrate opens the configured storage and upgrades its layout: `modelxd migrate`.
func Migrate(ctx context.Context, cfg Config, log *slog.Logger) (registry.MigrationResult, error) {
	if log == nil {
		log = slog.Default()
	}
	cfg.Options.Logger = log
	cfg.Options.EnableRedirect = false // migration moves no bytes
	store, _, err := OpenBackend(ctx, cfg)
	if err != nil {
		return registry.MigrationResult{}, err
	}
	reg, err := registry.New(store, cfg.Options)
	if err != nil {
		return registry.MigrationResult{}, err
	}
	return reg.Migrate(ctx)
}

// Run serves the registry until ctx ends, then shuts down gracefully.
// ready, if not nil, receives the bound address once the server listens.
func Run(ctx context.Context, cfg Config, log *slog.Logger, ready func(addr net.Addr)) error {
	if log == nil {
		log = slog.Default()
	}
	cfg.Options.Logger = log
	if (cfg.TLSCertFile == "") != (cfg.TLSKeyFile == "") {
		return errors.New("TLS needs both --tls-cert and --tls-key")
	}
	if cfg.Options.EnableRedirect && !cfg.UsesS3() {
		return errors.New("--enable-redirect needs the S3 backend (--s3-url and --s3-bucket): the local filesystem cannot presign URLs")
	}
	if err := setupAuth(&cfg); err != nil {
		return err
	}
	store, kind, err := OpenBackend(ctx, cfg)
	if err != nil {
		return err
	}
	reg, err := registry.New(store, cfg.Options)
	if err != nil {
		return err
	}
	if err := migrateOnStart(ctx, reg, log); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	srv := &http.Server{
		Handler:           reg.Handler(),
		ReadHeaderTimeout: 10 * time.Second, // slow loris: headers must arrive promptly
		MaxHeaderBytes:    64 << 10,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	log.Info("modelxd serving", "addr", ln.Addr().String(), "storage", kind,
		"redirect", cfg.Options.EnableRedirect, "tls", cfg.TLSCertFile != "", "auth", cfg.Auth.Enabled())
	if ready != nil {
		ready(ln.Addr())
	}
	gcCtx, stopGC := context.WithCancel(ctx)
	defer stopGC()
	if cfg.GCInterval > 0 {
		go reg.RunGC(gcCtx, cfg.GCInterval)
	}
	errc := make(chan error, 1)
	go func() {
		if cfg.TLSCertFile != "" {
			errc <- srv.ServeTLS(ln, cfg.TLSCertFile, cfg.TLSKeyFile)
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	timeout := cfg.ShutdownTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	log.Info("modelxd shutting down", "timeout", timeout.String())
	shutdownCtx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("graceful shutdown: %w", err)
	}
	return nil
}
