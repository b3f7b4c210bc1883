package diff

import (
	"fmt"
	"io"
	"strings"
)

// MaxFileLines is how many changed files the text report lists; --json lists all.
const MaxFileLines = 200

// WriteText prints the report for people: what changed, packages, sizes, then files.
func WriteText(w io.Writer, r *Report) error {
	var b strings.Builder
	if r.Identical {
		fmt.Fprintf(&b, "%s and %s are identical (%s", r.A, r.B, r.Kind)
		if r.Kind == KindImage {
			b.WriteString(", same SHA-256")
		}
		b.WriteString(")\n")
		_, err := io.WriteString(w, b.String())
		return err
	}
	fmt.Fprintf(&b, "--- %s\n+++ %s\n", r.A, r.B)
	for _, c := range r.Changes {
		fmt.Fprintf(&b, "%s: %s -> %s\n", c.What, orNone(c.A), orNone(c.B))
	}
	if n := len(r.Added) + len(r.Removed) + len(r.Updated); n > 0 {
		fmt.Fprintf(&b, "\nPackages: %d added, %d removed, %d changed\n", len(r.Added), len(r.Removed), len(r.Updated))
		for _, p := range r.Added {
			fmt.Fprintf(&b, "  + %s %s\n", p.Name, p.B)
		}
		for _, p := range r.Removed {
			fmt.Fprintf(&b, "  - %s %s\n", p.Name, p.A)
		}
		for _, p := range r.Updated {
			fmt.Fprintf(&b, "  ~ %s %s -> %s\n", p.Name, p.A, p.B)
		}
	}
	if len(r.Sizes) > 0 {
		b.WriteString("\nSizes:\n")
		for _, s := range r.Sizes {
			fmt.Fprintf(&b, "  %-40s %10s -> %10s  (%s)\n", s.What, bytesStr(s.A), bytesStr(s.B), delta(s.B-s.A))
		}
	}
	if len(r.Files) > 0 {
		var add, rm, ch int
		var d int64
		for _, f := range r.Files {
			switch {
			case f.SizeA < 0:
				add++
				d += f.SizeB
			case f.SizeB < 0:
				rm++
				d -= f.SizeA
			default:
				ch++
				d += f.SizeB - f.SizeA
			}
		}
		fmt.Fprintf(&b, "\nFiles: %d added, %d removed, %d changed (%s)\n", add, rm, ch, delta(d))
		for i, f := range r.Files {
			if i == MaxFileLines {
				fmt.Fprintf(&b, "  ... %d more (--json lists all)\n", len(r.Files)-MaxFileLines)
				break
			}
			switch {
			case f.SizeA < 0:
				fmt.Fprintf(&b, "  + %s (%s)\n", f.Path, bytesStr(f.SizeB))
			case f.SizeB < 0:
				fmt.Fprintf(&b, "  - %s (%s)\n", f.Path, bytesStr(f.SizeA))
			default:
				fmt.Fprintf(&b, "  ~ %s (%s -> %s)\n", f.Path, bytesStr(f.SizeA), bytesStr(f.SizeB))
			}
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func orNone(s string) string {
	if strings.TrimSpace(s) == "" {
		return "(none)"
	}
	return s
}

func bytesStr(n int64) string {
	switch {
	case n < 0:
		return "-"
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func delta(d int64) string {
	if d == 0 {
		return "±0"
	}
	sign := "+"
	if d < 0 {
		sign, d = "-", -d
	}
	return sign + bytesStr(d)
}
