package identity

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpauthz/mcpauthz/credentials/identity/devidp"
)

// TestConcurrentColdTokenVerifiedOnce: 1,000 concurrent VerifyToken calls
// with one token never seen before verify its signature exactly once and
// all get the same Principal.
func TestConcurrentColdTokenVerifiedOnce(t *testing.T) {
	clk := newClock()
	idp := startIdP(t, clk)
	v := newVerifier(t, clk, Config{Issuers: []IssuerConfig{{Name: "i", Issuer: idp.URL()}}})
	ctx := context.Background()
	// Warm the JWKS with another token so the flight is the verification only.
	if _, err := v.VerifyToken(ctx, idp.MustMint(map[string]any{"sub": "warm"})); err != nil {
		t.Fatal(err)
	}
	for round := range 3 {
		before := v.Metrics().Verifications
		tok := idp.MustMint(map[string]any{"sub": "cold", "round": round})
		const n = 1000
		start := make(chan struct{})
		got := make([]*Principal, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				<-start
				got[i], errs[i] = v.VerifyToken(ctx, tok)
			})
		}
		close(start)
		wg.Wait()
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("round %d call %d: %v", round, i, errs[i])
			}
			if got[i] != got[0] {
				t.Fatalf("round %d call %d: a different Principal (verified again)", round, i)
			}
		}
		if d := v.Metrics().Verifications - before; d != 1 {
			t.Fatalf("round %d: %d signature verifications for %d concurrent calls, want 1", round, d, n)
		}
	}
	// Different tokens are never merged: each is verified.
	before := v.Metrics().Verifications
	var wg sync.WaitGroup
	for i := range 50 {
		tok := idp.MustMint(map[string]any{"sub": "u" + strconv.Itoa(i)})
		wg.Go(func() {
			p, err := v.VerifyToken(ctx, tok)
			if err != nil || p.Subject != "u"+strconv.Itoa(i) || p.TokenHash != sha256.Sum256([]byte(tok)) {
				t.Errorf("token %d: %v %+v", i, err, p)
			}
		})
	}
	wg.Wait()
	if d := v.Metrics().Verifications - before; d != 50 {
		t.Fatalf("%d verifications for 50 distinct tokens", d)
	}
}

// TestConcurrentBadTokenSharesRefusal: concurrent calls with one forged
// token all get the refusal; refusals are not handed to later callers.
func TestConcurrentBadTokenSharesRefusal(t *testing.T) {
	clk := newClock()
	idp := startIdP(t, clk)
	v := newVerifier(t, clk, Config{Issuers: []IssuerConfig{{Name: "i", Issuer: idp.URL()}}})
	tok := idp.MustMint(map[string]any{"sub": "a"})
	parts := strings.Split(tok, ".")
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	sig[10] ^= 1
	forged := parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(sig)
	var wg sync.WaitGroup
	for range 100 {
		wg.Go(func() {
			if _, err := v.VerifyToken(context.Background(), forged); reason(err) != ReasonBadSignature {
				t.Errorf("reason = %q", reason(err))
			}
		})
	}
	wg.Wait()
	before := v.Metrics().Verifications
	if _, err := v.VerifyToken(context.Background(), forged); reason(err) != ReasonBadSignature {
		t.Fatalf("reason = %q", reason(err))
	}
	if v.Metrics().Verifications != before+1 {
		t.Fatal("a refusal was served without verifying")
	}
}

// TestRecentHandoffExpires: the recent handoff never serves an entry past
// the token's validity.
func TestRecentHandoffExpires(t *testing.T) {
	var r recentSet
	now := time.Unix(1000, 0)
	e := &cacheEntry{sum: [32]byte{1}, until: now.Add(time.Second), p: &Principal{}}
	r.put(e, now)
	if r.get(e.sum, now) != e {
		t.Fatal("fresh entry not served")
	}
	if r.get(e.sum, now.Add(time.Second)) != nil {
		t.Fatal("entry served at until")
	}
	if r.get(e.sum, now.Add(recentTTL)) != nil {
		t.Fatal("entry served recentTTL after it was put")
	}
	if r.get([32]byte{2}, now) != nil {
		t.Fatal("another token's entry served")
	}
	for i := range recentMax + 10 {
		var s [32]byte
		s[0], s[1], s[2] = 9, byte(i), byte(i>>8)
		r.put(&cacheEntry{sum: s, until: now.Add(time.Hour)}, now)
	}
	if len(r.m) > recentMax || len(r.order) > recentMax {
		t.Fatalf("recent holds %d/%d entries, max %d", len(r.m), len(r.order), recentMax)
	}
}

// BenchmarkVerifyCold: a VerifyToken with an RS256 token never seen before
// (2048-bit key, JWKS loaded; tokens minted in batches of 64), next to the bare crypto/rsa verification of
// a 2048-bit PKCS#1 v1.5 signature in the same loop. It reports the
// medians, their difference (what identity adds to the signature check)
// and their ratio.
func BenchmarkVerifyCold(b *testing.B) {
	clk := newClock()
	idp := startIdP(b, clk)
	v := newVerifier(b, clk, Config{Issuers: []IssuerConfig{{Name: "i", Issuer: idp.URL()}}})
	ctx := context.Background()
	claims := func(i int) map[string]any {
		return map[string]any{"sub": "user-" + strconv.Itoa(i), "client_id": "web", "aud": "https://mcp.example.com/mcp",
			"scope": "tools:read tools:call", "org_id": "org-1", "roles": []string{"viewer"}}
	}
	if _, err := v.VerifyToken(ctx, idp.MustMint(claims(-1), devidp.WithAlg("RS256"))); err != nil {
		b.Fatal(err)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	digest := sha256.Sum256([]byte("header.payload"))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, digest[:])
	if err != nil {
		b.Fatal(err)
	}
	var cold, verify []float64
	b.ReportAllocs()
	b.ResetTimer()
	// Tokens are minted in batches outside the timer, so an RSA signing
	// (and its garbage) does not sit right before every measurement.
	const batch = 64
	toks := make([]string, batch)
	for i := 0; b.Loop(); i++ {
		if i%batch == 0 {
			b.StopTimer()
			for j := range toks {
				toks[j] = idp.MustMint(claims(i+j), devidp.WithAlg("RS256"))
			}
			b.StartTimer()
		}
		tok := toks[i%batch]
		s := time.Now()
		if _, err := v.VerifyToken(ctx, tok); err != nil {
			b.Fatal(err)
		}
		cold = append(cold, float64(time.Since(s)))
		b.StopTimer()
		s = time.Now()
		if err := rsa.VerifyPKCS1v15(&key.PublicKey, crypto.SHA256, digest[:], sig); err != nil {
			b.Fatal(err)
		}
		verify = append(verify, float64(time.Since(s)))
		b.StartTimer()
	}
	c, r := medianOf(cold), medianOf(verify)
	b.ReportMetric(c, "cold-ns")
	b.ReportMetric(r, "rs256-verify-ns")
	b.ReportMetric(c-r, "extra-ns")
	b.ReportMetric(c/r, "cold/rs256")
}

func medianOf(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}
