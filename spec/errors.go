package spec

import (
	"fmt"
	"slices"
	"strings"
)

// ErrorCode names one kind of API error. The registry maps each code to one
// HTTP status; clients switch on the code, never on the message.
type ErrorCode string

// The API error codes.
const (
	ErrorBlobUnknown ErrorCode = "BLOB_UNKNOWN"
	// ErrorBlobUploadUnknown: an OCI upload session that does not exist
	// (never started, finished or cancelled).
	ErrorBlobUploadUnknown ErrorCode = "BLOB_UPLOAD_UNKNOWN"
	// ErrorBlobUploadInvalid: an OCI upload request that is malformed.
	ErrorBlobUploadInvalid   ErrorCode = "BLOB_UPLOAD_INVALID"
	ErrorDigestInvalid       ErrorCode = "DIGEST_INVALID"
	ErrorSizeInvalid         ErrorCode = "SIZE_INVALID"
	ErrorManifestInvalid     ErrorCode = "MANIFEST_INVALID"
	ErrorManifestBlobUnknown ErrorCode = "MANIFEST_BLOB_UNKNOWN"
	ErrorManifestUnknown     ErrorCode = "MANIFEST_UNKNOWN"
	ErrorNameInvalid         ErrorCode = "NAME_INVALID"
	ErrorReferenceInvalid    ErrorCode = "REFERENCE_INVALID"
	// ErrorParameterInvalid: a query parameter or form field of the
	// request is malformed or not supported.
	ErrorParameterInvalid ErrorCode = "PARAMETER_INVALID"
	ErrorIndexUnknown     ErrorCode = "INDEX_UNKNOWN"
	ErrorHoldUnknown      ErrorCode = "HOLD_UNKNOWN"
	ErrorHoldInvalid      ErrorCode = "HOLD_INVALID"
	ErrorRangeInvalid     ErrorCode = "RANGE_INVALID"
	ErrorTooLarge         ErrorCode = "TOO_LARGE"
	ErrorUnauthorized     ErrorCode = "UNAUTHORIZED"
	ErrorDenied           ErrorCode = "DENIED"
	ErrorUnsupported      ErrorCode = "UNSUPPORTED"
	ErrorConflict         ErrorCode = "CONFLICT"
	ErrorUnavailable      ErrorCode = "UNAVAILABLE"
	ErrorTooManyRequests  ErrorCode = "TOO_MANY_REQUESTS"
	ErrorInternal         ErrorCode = "INTERNAL_ERROR"
	// ErrorInsufficientStorage: the registry's storage is full; nothing was
	// stored, and retrying will not help until its operator frees space.
	ErrorInsufficientStorage ErrorCode = "INSUFFICIENT_STORAGE"
)

// Error is the JSON error envelope every failed registry request answers
// with. It is also a Go error, so the client returns it as is.
type Error struct {
	Code    ErrorCode `json:"code"`
	Message string    `json:"message"`
	Detail  any       `json:"detail,omitempty"`
}

// Error formats the code and message, and the detail when it is set, for
// people: a request ID as one to quote, lists shortened.
func (e *Error) Error() string {
	if d := formatDetail(e.Detail); d != "" {
		return fmt.Sprintf("%s: %s (%s)", e.Code, e.Message, d)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

// maxDetailItems is how many items of a list detail an error message shows.
const maxDetailItems = 5

// formatDetail renders an error's detail: a JSON object as "key: value"
// pairs in key order, with the request ID as "request ID X" for the
// registry's operator, and lists cut to maxDetailItems with a count.
func formatDetail(detail any) string {
	var m map[string]any
	switch d := detail.(type) {
	case nil:
		return ""
	case map[string]any:
		m = d
	case map[string]string:
		m = make(map[string]any, len(d))
		for k, v := range d {
			m[k] = v
		}
	default:
		return formatDetailValue(d)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		if k == "requestId" {
			continue
		}
		parts = append(parts, k+": "+formatDetailValue(m[k]))
	}
	if id, ok := m["requestId"]; ok && fmt.Sprint(id) != "" {
		parts = append(parts, fmt.Sprintf("request ID %v: quote it to the registry's operator", id))
	}
	return strings.Join(parts, "; ")
}

func formatDetailValue(v any) string {
	var items []string
	switch l := v.(type) {
	case []any:
		for _, x := range l {
			items = append(items, fmt.Sprint(x))
		}
	case []string:
		items = l
	default:
		return fmt.Sprint(v)
	}
	if len(items) > maxDetailItems {
		return fmt.Sprintf("%s and %d more", strings.Join(items[:maxDetailItems], ", "), len(items)-maxDetailItems)
	}
	return strings.Join(items, ", ")
}

// Errorf returns an *Error with the code and a formatted message.
func Errorf(code ErrorCode, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// WithDetail returns a copy of e carrying detail.
func (e *Error) WithDetail(detail any) *Error {
	c := *e
	c.Detail = detail
	return &c
}
