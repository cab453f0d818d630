package config

import (
	"fmt"
	"strconv"

	"github.com/cbkgate/cbkgate/internal/state"
)

// StateMemory is --state's default: the state of this process alone.
const StateMemory = "memory"

// stateSettings reads --state and --state-key-file. The key file is read by
// the app (internal/state.LoadKey); here it is only required with Redis and
// refused without, where it would silently be ignored. No error quotes the
// Redis URL's password.
func (in *input) stateSettings(c *Config) error {
	v, src, _ := in.get(fState)
	c.State = StateURL(v)
	if v != StateMemory {
		if _, err := state.ParseRedisURL(v); err != nil {
			return fmt.Errorf("%s: %v", src, err)
		}
	}
	keyFile, keySrc, _ := in.get(fStateKeyFile)
	switch {
	case v == StateMemory && keyFile != "":
		return fmt.Errorf("%s needs --state redis://...: in memory mode each process seals its records with a key of its own", keySrc)
	case v != StateMemory && keyFile == "":
		return fmt.Errorf("%s needs --state-key-file: records shared in Redis are sealed with a key every replica holds", src)
	}
	c.StateKeyFile = keyFile
	return nil
}

// StateURL is --state: StateMemory or a Redis URL, which may hold a
// password. Its String is the value with the password replaced, so a
// printed or logged Config never shows it; Reveal is the value itself.
type StateURL string

func (u StateURL) String() string {
	if u == StateMemory || u == "" {
		return string(u)
	}
	return state.RedactURL(string(u))
}

// GoString keeps %#v from printing the password too.
func (u StateURL) GoString() string { return strconv.Quote(u.String()) }

// Reveal is the URL as given, password included: for the Redis client only.
func (u StateURL) Reveal() string { return string(u) }

// Memory says whether the state is this process's own.
func (u StateURL) Memory() bool { return u == StateMemory || u == "" }
