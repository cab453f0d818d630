package auth

// Allows parses a grants file and returns its decision function, so that
// the parser and the matcher are tested without a server.
func Allows(file string) (func(caller, method, user string) bool, error) {
	t, err := parseGrants("--grants-file", "grants", []byte(file))
	if err != nil {
		return nil, err
	}
	return func(caller, m, user string) bool {
		return t.allows(caller, methodNames[m], user)
	}, nil
}

// GrantedMethods are the gRPC methods the grants name.
func GrantedMethods() map[string]string {
	out := map[string]string{}
	for full, m := range grantedMethods {
		out[full] = m.String()
	}
	return out
}
