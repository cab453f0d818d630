package config

import (
	"flag"
	"fmt"
	"strconv"
)

// input resolves each setting from the parsed flags, the environment and
// the defaults, and remembers where a value came from so that errors can
// blame the right name.
type input struct {
	fs       *flag.FlagSet
	set      map[string]bool
	getenv   func(string) string
	byFlag   map[string]*setting
	emulator bool // --emulator: devDef defaults apply
}

// get returns the setting's value, the name to blame for it ("--flag" or
// the environment variable), and whether the operator gave it explicitly.
// An explicitly empty flag (--api-keys-file=) wins over the environment: it
// is how to switch off a variable set elsewhere.
func (in *input) get(name string) (val, src string, explicit bool) {
	s := in.byFlag[name]
	if in.set[name] {
		return in.fs.Lookup(name).Value.String(), "--" + name, true
	}
	if v := in.getenv(s.env); v != "" {
		return v, s.env, true
	}
	if in.emulator && s.devDef != "" {
		return s.devDef, "--" + name, false
	}
	return s.def, "--" + name, false
}

// blame returns the name to use in an error about the setting.
func (in *input) blame(name string) string {
	_, src, _ := in.get(name)
	return src
}

func (in *input) boolean(name string) (bool, error) {
	v, src, _ := in.get(name)
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%s: %q: not true or false", src, v)
	}
	return b, nil
}
