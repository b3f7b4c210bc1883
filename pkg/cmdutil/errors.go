package cmdutil

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/ukernel-dev/ukernel/internal/project"
)

// ErrorReport is a failure as `--json` reports it on stderr: the message, the exit code, and
// where in a project file the problem is when that is known. Errors lists every positioned
// problem when there are several (a ukernel.toml with two bad keys).
type ErrorReport struct {
	Error  string    `json:"error"`
	Code   int       `json:"code"`
	File   string    `json:"file,omitempty"`
	Line   int       `json:"line,omitempty"`
	Key    string    `json:"key,omitempty"`
	Errors []Problem `json:"errors,omitempty"`
}

// Problem is one positioned problem in a project file.
type Problem struct {
	File    string `json:"file"`
	Line    int    `json:"line,omitempty"`
	Key     string `json:"key,omitempty"`
	Message string `json:"message"`
}

// NewErrorReport describes err, which ends the process with code.
func NewErrorReport(err error, code int) ErrorReport {
	r := ErrorReport{Error: strings.TrimSpace(err.Error()), Code: code}
	var probs []Problem
	walkErrors(err, func(e error) {
		if pe, ok := e.(*project.Error); ok {
			probs = append(probs, Problem{File: pe.File, Line: pe.Line, Key: pe.Key, Message: pe.Msg})
		}
	})
	if len(probs) > 0 {
		r.File, r.Line, r.Key = probs[0].File, probs[0].Line, probs[0].Key
	}
	if len(probs) > 1 {
		r.Errors = probs
	}
	return r
}

// walkErrors calls fn for err and everything it wraps, depth first.
func walkErrors(err error, fn func(error)) {
	if err == nil {
		return
	}
	fn(err)
	switch u := err.(type) {
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			walkErrors(e, fn)
		}
	case interface{ Unwrap() error }:
		walkErrors(u.Unwrap(), fn)
	}
}

// PrintError reports a command's failure on w (stderr): one JSON object under --json, else
// "ukernel: MESSAGE" with, for usage errors, a pointer to the help of the command that
// failed (cmdPath, as "ukernel env add"; the root's when empty). An ExitError without a
// message (run passing the workload's exit code on) prints nothing.
func PrintError(w io.Writer, err error, code int, asJSON bool, cmdPath string) {
	var ee *ExitError
	if err == nil || errors.As(err, &ee) && ee.Err == nil {
		return
	}
	msg := strings.TrimSpace(err.Error())
	if msg == "" {
		return
	}
	if asJSON {
		b, _ := json.Marshal(NewErrorReport(err, code))
		fmt.Fprintf(w, "%s\n", b)
		return
	}
	fmt.Fprintln(w, "ukernel: "+msg)
	if code == 2 {
		if cmdPath == "" {
			cmdPath = "ukernel"
		}
		fmt.Fprintf(w, "Run '%s --help' for usage.\n", cmdPath)
	}
}
