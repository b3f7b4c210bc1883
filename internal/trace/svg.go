package trace

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"time"
)

// TimelineRow is one run in a timeline picture: its phases as bars from the run's start.
type TimelineRow struct {
	Label string
	Bars  []Bar
}

// Bar is one phase of a row.
type Bar struct {
	Phase      string
	Start, End time.Duration
}

// palette colours phases in order of first appearance; colour-blind friendly (Okabe-Ito
// plus greys), repeating past its end.
var palette = []string{"#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7",
	"#999999", "#332288", "#88CCEE", "#44AA99", "#117733", "#DDCC77", "#AA4499"}

// SVG layout in px.
const (
	svgLabelW = 70
	svgPlotW  = 800
	svgRowH   = 18
	svgRowGap = 6
	svgTop    = 30
	svgLegRow = 18
)

// WriteTimeline draws rows as an SVG: one row per run, one coloured bar per phase, an axis in
// milliseconds and a legend. Each bar is a <rect class="phase"> carrying data-run and
// data-phase attributes and a <title> with its duration, so the picture is also checkable.
func WriteTimeline(w io.Writer, title string, rows []TimelineRow) error {
	var phases []string
	colour := map[string]string{}
	var end time.Duration
	for _, r := range rows {
		for _, b := range r.Bars {
			if _, ok := colour[b.Phase]; !ok {
				colour[b.Phase] = palette[len(phases)%len(palette)]
				phases = append(phases, b.Phase)
			}
			end = max(end, b.End)
		}
	}
	totalMS := niceCeil(float64(end) / 1e6)
	x := func(d time.Duration) float64 { return svgLabelW + float64(d)/1e6/totalMS*svgPlotW }
	plotH := len(rows)*(svgRowH+svgRowGap) + svgRowGap
	axisY := svgTop + plotH
	legendCols := 4
	legendH := ((len(phases) + legendCols - 1) / legendCols) * svgLegRow
	width, height := svgLabelW+svgPlotW+20, axisY+30+legendH+10

	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect x="0" y="0" width="%d" height="%d" fill="white"/>`+"\n", width, height)
	fmt.Fprintf(&b, `<text x="%d" y="18" font-size="13">%s</text>`+"\n", svgLabelW, esc(title))
	// Axis with about ten ticks.
	step := niceCeil(totalMS / 10)
	fmt.Fprintf(&b, `<g class="axis" stroke="#444"><line x1="%d" y1="%d" x2="%d" y2="%d"/></g>`+"\n", svgLabelW, axisY, svgLabelW+svgPlotW, axisY)
	for ms := 0.0; ms <= totalMS+step/2; ms += step {
		tx := x(time.Duration(ms * 1e6))
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>`, tx, svgTop, tx, axisY)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%g</text>`+"\n", tx, axisY+14, ms)
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">ms</text>`+"\n", svgLabelW+svgPlotW/2, axisY+27)
	for i, r := range rows {
		y := svgTop + svgRowGap + i*(svgRowH+svgRowGap)
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", svgLabelW-6, y+svgRowH-5, esc(r.Label))
		for _, bar := range r.Bars {
			x0, x1 := x(bar.Start), x(bar.End)
			fmt.Fprintf(&b, `<rect class="phase" data-run="%d" data-phase="%s" x="%.2f" y="%d" width="%.2f" height="%d" fill="%s"><title>%s: %s</title></rect>`+"\n",
				i+1, esc(bar.Phase), x0, y, math.Max(x1-x0, 0.5), svgRowH, colour[bar.Phase], esc(bar.Phase), fmtDur(bar.End-bar.Start))
		}
	}
	legY := axisY + 40
	for i, p := range phases {
		lx := svgLabelW + (i%legendCols)*(svgPlotW/legendCols)
		ly := legY + (i/legendCols)*svgLegRow
		fmt.Fprintf(&b, `<g class="legend"><rect x="%d" y="%d" width="12" height="12" fill="%s"/><text x="%d" y="%d">%s</text></g>`+"\n",
			lx, ly-10, colour[p], lx+16, ly, esc(p))
	}
	b.WriteString("</svg>\n")
	_, err := w.Write(b.Bytes())
	return err
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten (at least 1).
func niceCeil(v float64) float64 {
	if v <= 1 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

func esc(s string) string {
	var b bytes.Buffer
	xml.EscapeText(&b, []byte(s))
	return b.String()
}
