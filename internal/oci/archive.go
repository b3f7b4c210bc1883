package oci

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content/oci"

	"github.com/ukernel-dev/ukernel/internal/atomicfile"
	"github.com/ukernel-dev/ukernel/internal/workdir"
)

// openArchiveForWrite stages an OCI layout in a directory beside file; finish writes it as a
// tar (sorted, fixed times, so the same content gives the same archive) to a temporary file
// renamed over file. A killed push leaves file as it was; its staging is swept by the next.
func openArchiveForWrite(ctx context.Context, file string) (oras.GraphTarget, func() error, func(), error) {
	dir := filepath.Dir(file)
	prefix := "." + filepath.Base(file) + ".tmp-"
	if _, err := workdir.Sweep(dir, prefix); err != nil {
		return nil, nil, nil, err
	}
	stage, err := workdir.Mkdir(dir, prefix)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("OCI archive %s: %w", file, err)
	}
	cleanup := func() { os.RemoveAll(stage) }
	st, err := oci.NewWithContext(ctx, stage)
	if err != nil {
		cleanup()
		return nil, nil, nil, err
	}
	finish := func() error { return writeTar(stage, file) }
	return st, finish, cleanup, nil
}

func writeTar(src, file string) error {
	err := atomicfile.Write(file, 0o644, func(f *os.File) error {
		tw := tar.NewWriter(f)
		err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
			if err != nil || p == src {
				return err
			}
			rel, _ := filepath.Rel(src, p)
			hdr := &tar.Header{Name: filepath.ToSlash(rel), Mode: 0o644, Format: tar.FormatPAX}
			if d.IsDir() {
				hdr.Typeflag, hdr.Name, hdr.Mode = tar.TypeDir, hdr.Name+"/", 0o755
				return tw.WriteHeader(hdr)
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			hdr.Typeflag, hdr.Size = tar.TypeReg, fi.Size()
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			in, err := os.Open(p)
			if err != nil {
				return err
			}
			defer in.Close()
			_, err = io.Copy(tw, in)
			return err
		})
		if err != nil {
			return err
		}
		return tw.Close()
	})
	if err != nil {
		return fmt.Errorf("OCI archive %s: %w", file, err)
	}
	return nil
}
