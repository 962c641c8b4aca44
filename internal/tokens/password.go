package tokens

import (
	"context"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/ringfence/ringfence/internal/api"
	"github.com/ringfence/ringfence/internal/auth"
)

// A token may carry a password, so a person signs in to the web admin as
// the token's identity (user NAME) without pasting its secret: the same
// role, tenant, expiry and revocation; one identity, two ways to prove it.
const (
	minPassword = 12
	maxPassword = 256
	pbkdf2Iter  = 100_000
	hashScheme  = "pbkdf2-sha256"
)

// ErrBadPassword is the one answer to a wrong user or password.
var ErrBadPassword = api.Errorf(api.ErrUnauthorized, "wrong user or password")

// hashPassword is pw's stored form: scheme$iterations$salt$key.
func hashPassword(pw string) (string, error) {
	if n := utf8.RuneCountInString(pw); n < minPassword || len(pw) > maxPassword {
		return "", api.Errorf(api.ErrInvalid, "a password needs %d to %d characters (this one has %d)", minPassword, maxPassword, n)
	}
	var salt [16]byte
	rand.Read(salt[:])
	return encodePassword(pw, salt[:], pbkdf2Iter)
}

func encodePassword(pw string, salt []byte, iter int) (string, error) {
	key, err := pbkdf2.Key(sha256.New, pw, salt, iter, 32)
	if err != nil {
		return "", err
	}
	enc := base64.RawStdEncoding
	return fmt.Sprintf("%s$%d$%s$%s", hashScheme, iter, enc.EncodeToString(salt), enc.EncodeToString(key)), nil
}

// dummyPassword is checked against when the user is unknown or has no
// password, so that costs what a wrong password costs. It is made on
// first use: at package init it cost every CLI run 57 ms.
var dummyPassword = sync.OnceValue(func() string {
	s, _ := encodePassword("ringfence-dummy", make([]byte, 16), pbkdf2Iter)
	return s
})

// passwordMatches reports whether pw is the one stored.
func passwordMatches(stored, pw string) bool {
	f := strings.Split(stored, "$")
	if len(f) != 4 || f[0] != hashScheme {
		return false
	}
	iter, err := strconv.Atoi(f[1])
	salt, serr := base64.RawStdEncoding.DecodeString(f[2])
	if err != nil || serr != nil || iter <= 0 || iter > 10*pbkdf2Iter {
		return false
	}
	got, err := encodePassword(pw, salt, iter)
	return err == nil && subtle.ConstantTimeCompare([]byte(got), []byte(stored)) == 1
}

// AuthenticatePassword is the principal of token name proven by its
// password (the web admin's user and password): ErrBadPassword for an
// unknown user, one without a password, or a wrong password; a revoked
// or expired token says which, as Authenticate does.
func (m *Manager) AuthenticatePassword(ctx context.Context, name, pw, remote string) (auth.Principal, error) {
	var r record
	if len(pw) > maxPassword {
		return auth.Principal{}, ErrBadPassword
	}
	stored := dummyPassword()
	if b, err := m.st.Get(ctx, Prefix+name); err == nil && json.Unmarshal(b, &r) == nil && r.Password != "" {
		stored = r.Password
	}
	if !passwordMatches(stored, pw) || r.Password == "" {
		return auth.Principal{}, ErrBadPassword
	}
	return m.principal(ctx, auth.Token, name, r, remote)
}
