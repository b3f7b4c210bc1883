package run

import (
	"testing"

	"github.com/ukernel-dev/ukernel/internal/template"
	"github.com/ukernel-dev/ukernel/internal/vmm/launch"
)

// A template's run settings fill what the flags left to the image; flags win. The store's
// directory goes with the run: a detached guest's restarts pin the template there.
func TestTemplateRunSettings(t *testing.T) {
	tr := &templateRun{store: template.At("/templates"), res: &template.Resolved{
		Spec:     template.Spec{Name: "api", VCPU: 2, MemoryMB: 512, DataMB: 64, Publish: []string{"8080:80"}},
		Revision: template.Revision{ID: "abc123"},
	}}
	var o launch.Options
	tr.apply(&o)
	if o.Name != "api" || o.VCPU != 2 || o.MemoryMB != 512 || o.DataMB != 64 || o.Publish[0] != "8080:80" ||
		o.Template != "api" || o.Revision != "abc123" || o.WantDigest != "abc123" || o.Templates != "/templates" {
		t.Fatalf("template settings: %+v", o)
	}
	o = launch.Options{Name: "other", VCPU: 4, DataMB: 256, Publish: []string{"9090:80"}}
	tr.apply(&o)
	if o.Name != "other" || o.VCPU != 4 || o.MemoryMB != 512 || o.DataMB != 256 || o.Publish[0] != "9090:80" {
		t.Fatalf("flags over the template's settings: %+v", o)
	}
}
