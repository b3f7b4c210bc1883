package oci

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ukernel-dev/ukernel/internal/template"
)

// TemplateResult is a pulled image added to a template.
type TemplateResult struct {
	Template string `json:"template"`
	Revision string `json:"revision"`
	Created  bool   `json:"created"` // the pull created the template
}

// IntoTemplate adds a pulled image (res, from Pull) to template name as a revision and makes it
// current. A template the pull creates has no source: it runs (run --template NAME), it does
// not build; its run settings are the image's defaults until `template edit` changes them.
func IntoTemplate(ctx context.Context, s *template.Store, name string, res PullResult, command string) (TemplateResult, error) {
	out := TemplateResult{Template: name}
	if err := template.ValidateName(name); err != nil {
		return out, err
	}
	_, err := s.Get(name)
	var nf *template.NotFoundError
	if errors.As(err, &nf) {
		err = s.Create(&template.Spec{Name: name})
		var ex *template.ExistsError
		if errors.As(err, &ex) { // another pull made it meanwhile
			err = nil
		} else if err == nil {
			out.Created = true
		}
	}
	if err != nil {
		return out, err
	}
	release, err := s.Lock(ctx, name, command, nil)
	if err != nil {
		return out, err
	}
	defer release()
	rev := template.Revision{BuiltAt: res.Created}
	r, err := s.AddImage(name, res.Path, rev)
	if err != nil {
		return out, fmt.Errorf("template %s: %w", name, err)
	}
	if r.ID != res.Revision {
		return out, fmt.Errorf("template %s: the stored image is revision %s, the pull's %s", name, r.ID, res.Revision)
	}
	out.Revision = r.ID
	return out, s.SetCurrent(name, r.ID)
}

// createdAt reads the manifest's creation time (the build's fixed time).
func createdAt(ann map[string]string) time.Time {
	t, err := time.Parse(time.RFC3339, ann[AnnotationCreated])
	if err != nil {
		return time.Time{}
	}
	return t
}
