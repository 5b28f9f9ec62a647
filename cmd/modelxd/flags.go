package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"modelx.io/modelx/registry"
)

// synopsis opens modelxd's help and its reference page.
const synopsis = `modelxd serves a modelx registry over HTTP: the API, the web UI at /-/ui/,
Prometheus metrics at /metrics, and /healthz and /readyz, all on --listen. It
stores in a local directory (--data-dir), or in an S3 bucket (--s3-url,
--s3-bucket). "modelxd migrate" upgrades the storage layout and exits; it takes
the storage flags.`

// usageLines are the ways to run modelxd.
var usageLines = []string{"modelxd [flags]", "modelxd migrate [flags]", "modelxd --version"}

// newFlagSet defines modelxd's flags on s. Defaults here are the same on
// every machine: applyEnv then sets what the environment says.
func newFlagSet(s *settings) *flag.FlagSet {
	fs := flag.NewFlagSet("modelxd", flag.ContinueOnError)
	cfg := &s.cfg
	fs.StringVar(&cfg.Listen, "listen", ":8080", "address to serve on")
	fs.StringVar(&cfg.DataDir, "data-dir", "./data", "local filesystem storage directory (used when no S3 is set)")
	fs.StringVar(&cfg.S3.Endpoint, "s3-url", "", "S3 endpoint URL; selects the S3 backend")
	fs.StringVar(&cfg.S3.Bucket, "s3-bucket", "", "S3 bucket (must exist)")
	fs.StringVar(&cfg.S3.Region, "s3-region", "us-east-1", "S3 region")
	fs.StringVar(&cfg.S3.AccessKey, "s3-access-key", "", "S3 access key (default: the AWS credential chain)")
	fs.StringVar(&cfg.S3.SecretKey, "s3-secret-key", "", "S3 secret key; prefer MODELXD_S3_SECRET_KEY, flags show in ps")
	fs.BoolVar(&cfg.S3.PathStyle, "s3-path-style", false, "address the bucket in the URL path (most S3-compatible servers)")
	fs.BoolVar(&cfg.Options.EnableRedirect, "enable-redirect", false, "answer blob GET/PUT with 302 to a presigned S3 URL")
	fs.DurationVar(&cfg.Options.PresignExpiry, "s3-presign-expire", 15*time.Minute, "validity of presigned URLs")
	fs.StringVar(&cfg.TLSCertFile, "tls-cert", "", "TLS certificate file (serve HTTPS with --tls-key)")
	fs.StringVar(&cfg.TLSKeyFile, "tls-key", "", "TLS private key file")
	fs.StringVar(&s.logFormat, "log-format", "auto", "log format: text, json, or auto (text on a terminal, else JSON)")
	fs.StringVar(&s.issuer.Issuer, "oidc-issuer", "", "trust bearer tokens of this OIDC issuer (and offer it to modelx login)")
	fs.StringVar(&s.issuer.Audience, "oidc-audience", "", "the audience (client ID) tokens of --oidc-issuer must carry")
	fs.StringVar(&s.issuer.UsernameClaim, "oidc-username-claim", "email", "the claim that names the user")
	fs.StringVar(&s.issuer.GroupsClaim, "oidc-groups-claim", "groups", "the claim that lists the user's groups")
	fs.BoolVar(&s.issuer.AllowUnverifiedEmail, "oidc-allow-unverified-email", false, "accept tokens of --oidc-issuer whose email_verified is not true (for identity providers that never send it)")
	fs.StringVar(&s.authConfig, "auth-config", "", "YAML file of trusted issuers (people, Kubernetes clusters) and robot tokens")
	fs.StringVar(&cfg.PolicyFile, "policy", "", "YAML authorization policy (default: authenticated users pull and push)")
	fs.BoolVar(&cfg.AnonymousPull, "anonymous-pull", false, "let requests without a token pull")
	fs.BoolVar(&cfg.Options.DisableUI, "disable-ui", false, "serve no web UI at /-/ui/ (and no redirect of browsers from / or from its old pages under /ui/)")
	fs.IntVar(&cfg.Options.MaxUploads, "max-uploads", 64, "blob uploads proxied at once; more get 429 and retry (uploads to presigned URLs are not counted)")
	fs.IntVar(&cfg.Options.MaxUploadsPerIdentity, "max-uploads-per-identity", 16, "blob uploads proxied at once for one identity, or one client address when anonymous; more get 429 and retry")
	fs.StringVar(&s.trustedProxies, "trusted-proxies", "", "comma-separated addresses or CIDR ranges of proxies whose X-Forwarded-For names the client, for --max-uploads-per-identity")
	s.minUploadRate = 64 << 10
	fs.Var((*byteSize)(&s.minUploadRate), "min-upload-rate", "cut a proxied upload whose body arrives slower than `bytes` per second (e.g. 64KiB); 0 turns the floor off")
	cfg.Options.ManifestParseMemory = 256 << 20
	fs.Var((*byteSize)(&cfg.Options.ManifestParseMemory), "manifest-parse-memory", "the `bytes` of memory that manifest PUTs being read and parsed may take at once, each counted as 4× its size (e.g. 256MiB); more wait, then get 429")
	fs.DurationVar(&cfg.Options.IOTimeout, "io-timeout", time.Minute, "abort a request whose body or response makes no progress for this long")
	fs.DurationVar(&cfg.GCInterval, "gc-interval", 0, "run garbage collection this often (0: only on request)")
	fs.DurationVar(&cfg.Options.GCGracePeriod, "gc-grace", time.Hour, "never collect blobs or manifests younger than this")
	fs.DurationVar(&cfg.Options.MaxHoldTTL, "max-hold-ttl", registry.DefaultMaxHoldTTL, "the longest a hold may last; a hold asking for more is refused (holders renew before expiry)")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", 30*time.Second, "wait this long for requests on SIGTERM")
	fs.BoolVar(&s.version, "version", false, "print the version and exit")
	fs.Usage = func() { writeUsage(fs.Output(), fs) }
	return fs
}

// noEnv are the flags without an environment variable.
var noEnv = map[string]bool{"version": true}

// applyEnv sets each flag whose environment variable is set, even to "".
func applyEnv(fs *flag.FlagSet) error {
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || noEnv[f.Name] {
			return
		}
		v, ok := os.LookupEnv(envName(f.Name))
		if !ok {
			return
		}
		if serr := fs.Set(f.Name, v); serr != nil {
			err = fmt.Errorf("%s=%q: %s", envName(f.Name), v, valueHint(f.Value))
		}
	})
	return err
}

// valueHint says what a flag's value looks like.
func valueHint(v flag.Value) string {
	if _, ok := v.(*byteSize); ok {
		return "want a size such as 64KiB or 256MiB"
	}
	g, ok := v.(flag.Getter)
	if !ok {
		return "invalid value"
	}
	switch g.Get().(type) {
	case bool:
		return "want true or false"
	case time.Duration:
		return "want a duration such as 15m"
	case int:
		return "want a whole number"
	}
	return "invalid value"
}

// envVar is an environment variable modelxd reads besides its flags'.
type envVar struct {
	names   []string
	meaning string
}

// otherEnv lists the environment variables modelxd reads, or that the
// libraries it uses read, besides the MODELXD_ ones of its flags.
var otherEnv = []envVar{
	{[]string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"}, "export traces over OTLP/HTTP to this collector (the base URL, or the full traces URL); tracing is off without one"},
	{[]string{"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER"}, "true, and none: turn tracing off, even with an endpoint set"},
	{[]string{"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"}, "http/protobuf, the default and the only protocol: grpc is refused at start-up"},
	{[]string{"OTEL_SERVICE_NAME"}, "the traces' service name (default modelxd)"},
	{[]string{"OTEL_RESOURCE_ATTRIBUTES", "OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_TRACES_SAMPLER", "OTEL_*"}, "the other settings of the OpenTelemetry SDK and OTLP exporter: resource attributes, headers, timeout, TLS, sampling, batching"},
	{[]string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}, "S3 credentials when --s3-access-key and --s3-secret-key are not set (the AWS default credential chain)"},
	{[]string{"AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"}, "the profile and files of the credential chain (~/.aws/credentials and ~/.aws/config by default)"},
	{[]string{"AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_ROLE_SESSION_NAME"}, "web identity credentials of the chain (EKS IRSA and the like)"},
	{[]string{"AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN"}, "container credentials of the chain (ECS, EKS Pod Identity)"},
	{[]string{"AWS_EC2_METADATA_DISABLED"}, "true: skip the EC2 instance role, the chain's last source"},
	{[]string{"AWS_CA_BUNDLE"}, "PEM CA certificates to trust for the S3 endpoint"},
	{[]string{"AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE"}, "the S3 client's retries"},
	{[]string{"HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY"}, "proxy for requests to S3 and to identity providers"},
	{[]string{"SSL_CERT_FILE", "SSL_CERT_DIR"}, "the system's CA certificates, replaced (Linux)"},
}

// envRule says how the MODELXD_ variables work.
const envRule = `Every flag but --version has an environment variable: MODELXD_ and the flag's
name in upper case, '-' written '_' (--gc-interval is MODELXD_GC_INTERVAL). It
replaces the flag's default; the flag on the command line wins. A variable
that is set counts even when it is empty.`

// flagDoc is one flag as help and reference show it.
type flagDoc struct {
	name, value, env, def, usage string
}

// flagDocs lists the flags in name order.
func flagDocs(fs *flag.FlagSet) []flagDoc {
	var out []flagDoc
	fs.VisitAll(func(f *flag.Flag) {
		value, usage := flag.UnquoteUsage(f)
		d := flagDoc{name: f.Name, value: value, usage: usage}
		if !noEnv[f.Name] {
			d.env = envName(f.Name)
		}
		if value != "" && f.DefValue != "" && f.DefValue != "0" && f.DefValue != "0s" {
			d.def = f.DefValue
		}
		out = append(out, d)
	})
	return out
}

// writeUsage prints modelxd --help.
func writeUsage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage:\n  %s\n\n%s\n\nFlags:\n", strings.Join(usageLines, "\n  "), synopsis)
	for _, d := range flagDocs(fs) {
		head := "  --" + d.name
		if d.value != "" {
			head += " " + d.value
		}
		var notes []string
		if d.env != "" {
			notes = append(notes, "env "+d.env)
		}
		if d.def != "" {
			notes = append(notes, "default "+d.def)
		}
		if len(notes) > 0 {
			head += " (" + strings.Join(notes, "; ") + ")"
		}
		fmt.Fprintf(w, "%s\n      %s\n", head, d.usage)
	}
	fmt.Fprintf(w, "\nEnvironment:\n%s\n\n", indent(envRule, "  "))
	for _, e := range otherEnv {
		fmt.Fprintf(w, "  %s\n      %s\n", strings.Join(e.names, ", "), e.meaning)
	}
}

// writeReference writes docs/reference/modelxd.md from the same flags.
func writeReference(w io.Writer, fs *flag.FlagSet) error {
	var b strings.Builder
	b.WriteString("<!-- Generated from the flags of cmd/modelxd by `make docs`; edit cmd/modelxd/flags.go, not this file. -->\n\n")
	fmt.Fprintf(&b, "## modelxd\n\n%s\n\n```\n%s\n```\n\n### Flags\n\n", oneLine(synopsis), strings.Join(usageLines, "\n"))
	b.WriteString("| flag | environment | default | meaning |\n|---|---|---|---|\n")
	for _, d := range flagDocs(fs) {
		flagCol := "`--" + d.name
		if d.value != "" {
			flagCol += " " + d.value
		}
		flagCol += "`"
		cell := func(s string) string {
			if s == "" {
				return ""
			}
			return "`" + s + "`"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", flagCol, cell(d.env), cell(d.def), strings.ReplaceAll(d.usage, "|", `\|`))
	}
	fmt.Fprintf(&b, "\n### Environment\n\n%s\n\n| variable | meaning |\n|---|---|\n", oneLine(envRule))
	for _, e := range otherEnv {
		fmt.Fprintf(&b, "| `%s` | %s |\n", strings.Join(e.names, "`, `"), e.meaning)
	}
	b.WriteString("\nMore on each setting: [configuration.md](../configuration.md#modelxd).\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func indent(s, prefix string) string {
	return prefix + strings.ReplaceAll(s, "\n", "\n"+prefix)
}

// oneLine joins the lines of a paragraph, for markdown.
func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }
