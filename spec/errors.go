package spec

import "fmt"

// ErrorCode names one kind of API error. The registry maps each code to one
// HTTP status; clients switch on the code, never on the message.
type ErrorCode string

// The API error codes.
const (
	ErrorBlobUnknown         ErrorCode = "BLOB_UNKNOWN"
	ErrorDigestInvalid       ErrorCode = "DIGEST_INVALID"
	ErrorSizeInvalid         ErrorCode = "SIZE_INVALID"
	ErrorManifestInvalid     ErrorCode = "MANIFEST_INVALID"
	ErrorManifestBlobUnknown ErrorCode = "MANIFEST_BLOB_UNKNOWN"
	ErrorManifestUnknown     ErrorCode = "MANIFEST_UNKNOWN"
	ErrorNameInvalid         ErrorCode = "NAME_INVALID"
	ErrorReferenceInvalid    ErrorCode = "REFERENCE_INVALID"
	ErrorIndexUnknown        ErrorCode = "INDEX_UNKNOWN"
	ErrorHoldUnknown         ErrorCode = "HOLD_UNKNOWN"
	ErrorHoldInvalid         ErrorCode = "HOLD_INVALID"
	ErrorRangeInvalid        ErrorCode = "RANGE_INVALID"
	ErrorTooLarge            ErrorCode = "TOO_LARGE"
	ErrorUnauthorized        ErrorCode = "UNAUTHORIZED"
	ErrorDenied              ErrorCode = "DENIED"
	ErrorUnsupported         ErrorCode = "UNSUPPORTED"
	ErrorConflict            ErrorCode = "CONFLICT"
	ErrorUnavailable         ErrorCode = "UNAVAILABLE"
	ErrorTooManyRequests     ErrorCode = "TOO_MANY_REQUESTS"
	ErrorInternal            ErrorCode = "INTERNAL_ERROR"
)

// Error is the JSON error envelope every failed registry request answers
// with. It is also a Go error, so the client returns it as is.
type Error struct {
	Code    ErrorCode `json:"code"`
	Message string    `json:"message"`
	Detail  any       `json:"detail,omitempty"`
}

// Error formats the code and message, and the detail when it is set.
func (e *Error) Error() string {
	if e.Detail != nil {
		return fmt.Sprintf("%s: %s (%v)", e.Code, e.Message, e.Detail)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
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
