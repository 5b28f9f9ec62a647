package testenv

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	"sigs.k8s.io/yaml"
)

// DexVersion is the Dex release the tests run against; keep it in step
// with tools/dex/go.mod and the Makefile.
const DexVersion = "v2.45.1"

// DexUser is a static password user of the test identity provider.
type DexUser struct {
	Email, Username, Password string
	// Groups are the user's groups claim (with the groups scope).
	Groups []string
	// EmailUnverified makes Dex say email_verified: false for this user.
	EmailUnverified bool
}

// DexOptions configure StartDex.
type DexOptions struct {
	// Users log in with email and password; default alice, bob and carol
	// (password "password").
	Users []DexUser
	// ClientIDs are public OAuth clients (password and device grants); default "modelx".
	ClientIDs []string
	// IDTokenExpiry shortens token lifetimes, e.g. to test expiry; default 1h.
	IDTokenExpiry time.Duration
}

// Dex is a running Dex identity provider.
type Dex struct {
	// Issuer is the OIDC issuer URL, http://127.0.0.1:PORT/dex.
	Issuer string
	users  []DexUser
}

// StartDex starts Dex with in-memory storage and stops it when the test ends.
func StartDex(t testing.TB, opts DexOptions) *Dex {
	t.Helper()
	bin := RequireBinary(t, "dex", DexVersion)
	if len(opts.Users) == 0 {
		for _, n := range []string{"alice", "bob", "carol"} {
			opts.Users = append(opts.Users, DexUser{Email: n + "@example.com", Username: n, Password: "password"})
		}
	}
	if len(opts.ClientIDs) == 0 {
		opts.ClientIDs = []string{"modelx"}
	}
	if opts.IDTokenExpiry == 0 {
		opts.IDTokenExpiry = time.Hour
	}
	port := FreePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	d := &Dex{Issuer: "http://" + addr + "/dex", users: opts.Users}
	var passwords []map[string]any
	for i, u := range opts.Users {
		hash, err := bcrypt.GenerateFromPassword([]byte(u.Password), bcrypt.DefaultCost)
		if err != nil {
			t.Fatal(err)
		}
		p := map[string]any{"email": u.Email, "username": u.Username, "hash": string(hash), "userID": fmt.Sprint(1000 + i)}
		if len(u.Groups) > 0 {
			p["groups"] = u.Groups
		}
		if u.EmailUnverified {
			p["emailVerified"] = false
		}
		passwords = append(passwords, p)
	}
	var clients []map[string]any
	for _, id := range opts.ClientIDs {
		clients = append(clients, map[string]any{"id": id, "name": id, "public": true, "redirectURIs": []string{"/device/callback"}})
	}
	cfg := map[string]any{
		"issuer":  d.Issuer,
		"storage": map[string]any{"type": "memory"},
		"web":     map[string]any{"http": addr},
		"logger":  map[string]any{"level": "info"},
		"expiry":  map[string]any{"idTokens": opts.IDTokenExpiry.String(), "deviceRequests": "5m"},
		"oauth2": map[string]any{
			"skipApprovalScreen": true, "passwordConnector": "local",
			"grantTypes": []string{"authorization_code", "refresh_token", "password", "urn:ietf:params:oauth:grant-type:device_code"},
		},
		"enablePasswordDB": true,
		"staticPasswords":  passwords,
		"staticClients":    clients,
	}
	data, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "dex.yaml")
	if err := os.WriteFile(cfgPath, data, 0o600); err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(filepath.Join(dir, "dex.log"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "serve", cfgPath)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start dex: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() { cancel(); <-exited; logFile.Close() })
	if err := WaitHealthy(context.Background(), d.Issuer+"/.well-known/openid-configuration", exited); err != nil {
		b, _ := os.ReadFile(logFile.Name())
		t.Fatalf("dex did not start: %v\n%s", err, b)
	}
	return d
}

// Token logs a user in with the password grant and returns the ID token.
func (d *Dex) Token(t testing.TB, clientID, email string) string {
	t.Helper()
	tok, err := d.PasswordToken(clientID, email)
	if err != nil {
		t.Fatal(err)
	}
	return tok.IDToken
}

// TokenResponse is what Dex's token endpoint answers.
type TokenResponse struct {
	IDToken      string `json:"id_token"`
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	ExpiresIn    int    `json:"expires_in"`
}

// PasswordToken runs the password grant for a user.
func (d *Dex) PasswordToken(clientID, email string) (*TokenResponse, error) {
	password := ""
	for _, u := range d.users {
		if u.Email == email {
			password = u.Password
		}
	}
	resp, err := http.PostForm(d.Issuer+"/token", url.Values{
		"grant_type": {"password"}, "username": {email}, "password": {password},
		"client_id": {clientID}, "scope": {"openid email profile groups offline_access"},
	})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var tok TokenResponse
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK || tok.IDToken == "" {
		return nil, fmt.Errorf("password grant for %s: HTTP %d", email, resp.StatusCode)
	}
	return &tok, nil
}

// ApproveDevice plays the user's part of the device flow in place of a
// browser: open the verification URL, enter the code, log in.
func (d *Dex) ApproveDevice(userCode, email string) error {
	password := ""
	for _, u := range d.users {
		if u.Email == email {
			password = u.Password
		}
	}
	jar := newJar()
	c := &http.Client{Jar: jar}
	resp, err := c.PostForm(d.Issuer+"/device/auth/verify_code", url.Values{"user_code": {userCode}})
	if err != nil {
		return err
	}
	resp.Body.Close()
	login := resp.Request.URL // the redirects end at the password login form
	if !strings.Contains(login.Path, "/auth/local/login") {
		return fmt.Errorf("device verification ended at %s, not the login form", login)
	}
	resp, err = c.PostForm(login.String(), url.Values{"login": {email}, "password": {password}})
	if err != nil {
		return err
	}
	resp.Body.Close()
	if !strings.Contains(resp.Request.URL.Path, "/device/callback") || resp.StatusCode != http.StatusOK {
		return fmt.Errorf("device login ended at %s with HTTP %d", resp.Request.URL, resp.StatusCode)
	}
	return nil
}

func newJar() http.CookieJar {
	jar, _ := cookiejar.New(nil)
	return jar
}
