package bench

import (
	"bufio"
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"sort"
)

// Marker is a labelled vertical line on a chart (a peak search's steps).
type Marker struct {
	AtS   float64
	Label string
}

// Chart geometry, in SVG user units.
const (
	chartW      = 960
	chartH      = 660
	plotLeft    = 80
	plotRight   = 790 // the legend is right of it
	panel1Top   = 60
	panel1Bot   = 300
	panel2Top   = 370
	panel2Bot   = 610
	chartYTicks = 5
	chartXTicks = 10
)

var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"}

type series struct {
	name  string
	color string
	width float64
	xs    []float64
	ys    []float64
}

// WriteChart writes a hand-written SVG of a time series: throughput
// (total and per operation type) in the top panel, p99 latency per
// operation type in the bottom one, both over elapsed seconds, with
// axes, tick labels, a legend and optional markers.
func WriteChart(out io.Writer, title string, ivs []Interval, markers []Marker) error {
	ops := map[string]bool{}
	for _, iv := range ivs {
		for name := range iv.Ops {
			ops[name] = true
		}
	}
	names := make([]string, 0, len(ops))
	for n := range ops {
		names = append(names, n)
	}
	sort.Strings(names)
	color := map[string]string{}
	for i, n := range names {
		color[n] = palette[(i+1)%len(palette)]
	}

	total := series{name: "all operations", color: palette[0], width: 2.5}
	var thr, lat []series
	for _, n := range names {
		t := series{name: n, color: color[n], width: 1.5}
		l := series{name: n, color: color[n], width: 1.5}
		for _, iv := range ivs {
			o, ok := iv.Ops[n]
			t.xs, t.ys = append(t.xs, iv.ElapsedS), append(t.ys, o.OpsPerSec)
			if ok && o.Ops > 0 {
				l.xs, l.ys = append(l.xs, iv.ElapsedS), append(l.ys, o.P99Ms)
			}
		}
		thr = append(thr, t)
		lat = append(lat, l)
	}
	for _, iv := range ivs {
		total.xs, total.ys = append(total.xs, iv.ElapsedS), append(total.ys, iv.OpsPerSec)
	}
	if len(names) > 1 {
		thr = append([]series{total}, thr...)
	} else {
		thr = []series{total}
		if len(names) == 1 {
			thr[0].name = names[0]
		}
	}

	xMax := 1.0
	for _, iv := range ivs {
		xMax = math.Max(xMax, iv.ElapsedS)
	}

	var b bytes.Buffer
	fmt.Fprintf(&b, `<?xml version="1.0" encoding="UTF-8"?>`+"\n")
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", chartW, chartH, chartW, chartH)
	fmt.Fprintf(&b, `<rect x="0" y="0" width="%d" height="%d" fill="white"/>`+"\n", chartW, chartH)
	fmt.Fprintf(&b, `<text x="%d" y="28" font-size="16" font-weight="bold">%s</text>`+"\n", plotLeft, esc(title))
	panel(&b, "throughput (ops/s)", panel1Top, panel1Bot, xMax, thr, markers)
	panel(&b, "p99 latency (ms)", panel2Top, panel2Bot, xMax, lat, markers)
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">elapsed (s)</text>`+"\n", (plotLeft+plotRight)/2, panel2Bot+40)
	b.WriteString("</svg>\n")
	bw := bufio.NewWriter(out)
	if _, err := bw.Write(b.Bytes()); err != nil {
		return fmt.Errorf("write chart: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write chart: %w", err)
	}
	return nil
}

func panel(b *bytes.Buffer, ylabel string, top, bot int, xMax float64, ss []series, markers []Marker) {
	yMax := 0.0
	for _, s := range ss {
		for _, y := range s.ys {
			if !math.IsNaN(y) && !math.IsInf(y, 0) {
				yMax = math.Max(yMax, y)
			}
		}
	}
	yStep := niceStep(yMax, chartYTicks)
	yTop := math.Max(yStep, math.Ceil(yMax/yStep-1e-6)*yStep)
	xStep := niceStep(xMax, chartXTicks)
	// A run of 30 s ends at 30.001 s: do not open another tick for it.
	xEnd := math.Max(xStep, math.Ceil(xMax/xStep-0.01)*xStep)
	px := func(x float64) float64 { return plotLeft + (x/xEnd)*(plotRight-plotLeft) }
	py := func(y float64) float64 { return float64(bot) - (y/yTop)*float64(bot-top) }

	// Grid and y ticks.
	for y := 0.0; y <= yTop+yStep/2; y += yStep {
		fmt.Fprintf(b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#e0e0e0"/>`+"\n", plotLeft, py(y), plotRight, py(y))
		fmt.Fprintf(b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", plotLeft-6, py(y)+4, esc(tickLabel(y, yStep)))
	}
	// x ticks.
	for x := 0.0; x <= xEnd+xStep/2; x += xStep {
		fmt.Fprintf(b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="black"/>`+"\n", px(x), bot, px(x), bot+5)
		fmt.Fprintf(b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", px(x), bot+18, esc(tickLabel(x, xStep)))
	}
	// Axes.
	fmt.Fprintf(b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", plotLeft, top, plotLeft, bot)
	fmt.Fprintf(b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", plotLeft, bot, plotRight, bot)
	mid := (top + bot) / 2
	fmt.Fprintf(b, `<text x="20" y="%d" text-anchor="middle" transform="rotate(-90 20 %d)">%s</text>`+"\n", mid, mid, esc(ylabel))
	// Markers.
	for _, m := range markers {
		if m.AtS < 0 || m.AtS > xEnd {
			continue
		}
		fmt.Fprintf(b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#999999" stroke-dasharray="4 3"/>`+"\n", px(m.AtS), top, px(m.AtS), bot)
		fmt.Fprintf(b, `<text x="%.1f" y="%d" font-size="10" fill="#555555">%s</text>`+"\n", px(m.AtS)+3, top+10, esc(m.Label))
	}
	// Lines.
	for _, s := range ss {
		if len(s.xs) == 0 {
			continue
		}
		b.WriteString(`<polyline fill="none" stroke="` + s.color + `" stroke-width="` + fmt.Sprint(s.width) + `" points="`)
		for i := range s.xs {
			if i > 0 {
				b.WriteByte(' ')
			}
			fmt.Fprintf(b, "%.1f,%.1f", px(s.xs[i]), py(s.ys[i]))
		}
		b.WriteString(`"/>` + "\n")
	}
	// Legend.
	for i, s := range ss {
		y := top + 10 + i*18
		fmt.Fprintf(b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="%v"/>`+"\n", plotRight+15, y, plotRight+40, y, s.color, s.width)
		fmt.Fprintf(b, `<text x="%d" y="%d">%s</text>`+"\n", plotRight+46, y+4, esc(s.name))
	}
}

// niceStep returns a tick step of 1, 2 or 5 times a power of ten that
// divides [0, max] into at most about n steps.
func niceStep(maxV float64, n int) float64 {
	if maxV <= 0 || math.IsNaN(maxV) || math.IsInf(maxV, 0) {
		return 1
	}
	raw := maxV / float64(n)
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

func tickLabel(v, step float64) string {
	switch {
	case step >= 1 && v >= 10000:
		return fmt.Sprintf("%.0fk", v/1000)
	case step >= 1:
		return fmt.Sprintf("%.0f", v)
	case step >= 0.1:
		return fmt.Sprintf("%.1f", v)
	case step >= 0.01:
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.3g", v)
}

func esc(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}
