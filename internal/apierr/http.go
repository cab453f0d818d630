package apierr

// Reasons of the refusals cbkgate's HTTP port makes before a request
// becomes a call: the router's and the body rules'. Each goes with its
// HTTP status (404, 405, 413, 415), whoever answers.
const (
	// ReasonNotFound: no route at the request's path.
	ReasonNotFound = "NOT_FOUND"
	// ReasonMethodNotAllowed: a known path asked with another method.
	ReasonMethodNotAllowed = "METHOD_NOT_ALLOWED"
	// ReasonPayloadTooLarge: a request body or message over the limit.
	ReasonPayloadTooLarge = "PAYLOAD_TOO_LARGE"
	// ReasonUnsupportedMediaType: a body of a type the route does not read.
	ReasonUnsupportedMediaType = "UNSUPPORTED_MEDIA_TYPE"
)
