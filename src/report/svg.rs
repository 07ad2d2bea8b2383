//! The report's charts, drawn as inline SVG with nothing but strings.
//!
//! Two kinds are enough for every section: horizontal bars (stacked
//! segments, optionally several bars per row) and horizontal box plots.
//! Both take labelled rows, so 35 languages read top to bottom, and both
//! put the exact numbers in `<title>` tooltips. Output depends only on the
//! input values, so the same run gives the same bytes.

use std::fmt::Write;

use super::format::esc;

const WIDTH: f64 = 880.0;
const LABEL: f64 = 190.0;
const RIGHT: f64 = 150.0;
const AXIS: f64 = 22.0;
const BAR: f64 = 12.0;
const GAP: f64 = 6.0;

/// How values map to the x axis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scale {
    Linear,
    /// Base 10; values at or below zero sit at the axis' left end.
    Log,
}

/// One coloured piece of a bar: its value, CSS class and tooltip.
#[derive(Debug, Clone)]
pub struct Segment {
    pub value: f64,
    pub class: &'static str,
    pub title: String,
}

/// A row of a bar chart: a label and one or more bars (drawn under each
/// other), each a stack of segments, with a text at the end of the row.
#[derive(Debug, Clone)]
pub struct Row {
    pub label: String,
    pub bars: Vec<Vec<Segment>>,
    pub note: String,
}

/// Five numbers of a box plot, and the row's note.
#[derive(Debug, Clone)]
pub struct BoxRow {
    pub label: String,
    pub min: f64,
    pub q1: f64,
    pub median: f64,
    pub q3: f64,
    pub max: f64,
    pub note: String,
}

struct Axis {
    scale: Scale,
    lo: f64,
    hi: f64,
    /// Between linear ticks.
    step: f64,
}

impl Axis {
    fn new(scale: Scale, lo: f64, hi: f64) -> Axis {
        match scale {
            Scale::Linear => {
                let step = nice_step(if hi > lo { (hi - lo) / 5.0 } else { 0.2 });
                let lo = (lo / step + 1e-9).floor() * step;
                let hi = ((hi / step - 1e-9).ceil() * step).max(lo + step);
                Axis {
                    scale,
                    lo,
                    hi,
                    step,
                }
            }
            Scale::Log => {
                let lo = if lo > 0.0 { lo } else { 1.0 };
                let lo = 10f64.powf(lo.log10().floor());
                let hi = if hi > lo { hi } else { lo * 10.0 };
                let hi = 10f64.powf(hi.log10().ceil());
                Axis {
                    scale,
                    lo,
                    hi,
                    step: 0.0,
                }
            }
        }
    }

    /// x of value `v` in the plot area.
    fn x(&self, v: f64) -> f64 {
        let span = WIDTH - LABEL - RIGHT;
        let t = match self.scale {
            Scale::Linear => (v - self.lo) / (self.hi - self.lo),
            Scale::Log => {
                if v <= self.lo {
                    0.0
                } else {
                    (v.log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10())
                }
            }
        };
        LABEL + span * t.clamp(0.0, 1.0)
    }

    fn ticks(&self) -> Vec<f64> {
        match self.scale {
            Scale::Linear => {
                let n = ((self.hi - self.lo) / self.step).round() as i64;
                (0..=n).map(|k| self.lo + k as f64 * self.step).collect()
            }
            Scale::Log => {
                let (a, b) = (self.lo.log10() as i32, self.hi.log10() as i32);
                (a..=b).map(|e| 10f64.powi(e)).collect()
            }
        }
    }

    fn draw(&self, s: &mut String, height: f64) {
        for t in self.ticks() {
            let x = self.x(t);
            let _ = write!(
                s,
                r#"<line class="grid" x1="{x:.1}" y1="{AXIS}" x2="{x:.1}" y2="{height:.1}"/><text class="tick" x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                AXIS - 8.0,
                short(t)
            );
        }
    }
}

/// The smallest 1, 2 or 5 times a power of ten at or above `v`.
fn nice_step(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|&c| c >= v * (1.0 - 1e-9))
        .unwrap_or(10.0 * p)
}

/// A tick label: 1.5k, 20M, 0.25.
pub fn short(v: f64) -> String {
    let a = v.abs();
    let trim = |s: String| {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    };
    if a >= 1e9 {
        format!("{}G", trim(format!("{:.1}", v / 1e9)))
    } else if a >= 1e6 {
        format!("{}M", trim(format!("{:.1}", v / 1e6)))
    } else if a >= 1e4 {
        format!("{}k", trim(format!("{:.1}", v / 1e3)))
    } else if a >= 1.0 || a == 0.0 {
        trim(format!("{v:.2}"))
    } else {
        trim(format!("{v:.3}"))
    }
}

fn open(s: &mut String, id: &str, height: f64, caption: &str) {
    let _ = write!(
        s,
        r#"<svg id="{}" class="chart" role="img" aria-label="{}" width="{WIDTH}" height="{height:.0}" viewBox="0 0 {WIDTH} {height:.0}" xmlns="http://www.w3.org/2000/svg">"#,
        esc(id),
        esc(caption)
    );
}

fn label(s: &mut String, y: f64, text: &str) {
    let _ = write!(
        s,
        r#"<text class="label" x="{:.1}" y="{y:.1}" text-anchor="end">{}</text>"#,
        LABEL - 6.0,
        esc(text)
    );
}

/// A horizontal bar chart: a row per label, each bar a stack of segments.
pub fn bars(id: &str, caption: &str, rows: &[Row], scale: Scale) -> String {
    let max = rows
        .iter()
        .flat_map(|r| {
            r.bars
                .iter()
                .map(|b| b.iter().map(|g| g.value).sum::<f64>())
        })
        .fold(0.0f64, f64::max);
    let min_pos = rows
        .iter()
        .flat_map(|r| r.bars.iter().flatten().map(|g| g.value))
        .filter(|&v| v > 0.0)
        .fold(f64::INFINITY, f64::min);
    let lo = match scale {
        Scale::Linear => 0.0,
        Scale::Log if min_pos.is_finite() => min_pos,
        Scale::Log => 1.0,
    };
    let axis = Axis::new(scale, lo, max);
    let row_h = |r: &Row| r.bars.len().max(1) as f64 * (BAR + 2.0) - 2.0 + GAP;
    let height = AXIS + rows.iter().map(row_h).sum::<f64>() + 4.0;
    let mut s = String::new();
    open(&mut s, id, height, caption);
    axis.draw(&mut s, height);
    let mut y = AXIS + GAP / 2.0;
    for r in rows {
        let h = row_h(r) - GAP;
        label(&mut s, y + h / 2.0 + 4.0, &r.label);
        let mut end: f64 = LABEL;
        for (i, bar) in r.bars.iter().enumerate() {
            let by = y + i as f64 * (BAR + 2.0);
            let mut acc = 0.0;
            for g in bar {
                let x0 = if acc == 0.0 { LABEL } else { axis.x(acc) };
                acc += g.value;
                let x1 = axis.x(acc);
                if g.value <= 0.0 {
                    continue;
                }
                let _ = write!(
                    s,
                    r#"<rect class="{}" x="{x0:.1}" y="{by:.1}" width="{:.1}" height="{BAR}"><title>{}</title></rect>"#,
                    g.class,
                    (x1 - x0).max(0.5),
                    esc(&g.title)
                );
                end = end.max(x1);
            }
        }
        if !r.note.is_empty() {
            let _ = write!(
                s,
                r#"<text class="note" x="{:.1}" y="{:.1}">{}</text>"#,
                end + 4.0,
                y + h / 2.0 + 4.0,
                esc(&r.note)
            );
        }
        y += row_h(r);
    }
    s.push_str("</svg>");
    s
}

/// Horizontal box plots: whiskers from min to max, the box from the first
/// to the third quartile, a line at the median.
pub fn boxes(id: &str, caption: &str, rows: &[BoxRow], scale: Scale) -> String {
    let hi = rows.iter().map(|r| r.max).fold(f64::NEG_INFINITY, f64::max);
    let lo = match scale {
        Scale::Linear => rows.iter().map(|r| r.min).fold(f64::INFINITY, f64::min),
        Scale::Log => rows
            .iter()
            .map(|r| r.min)
            .filter(|&v| v > 0.0)
            .fold(f64::INFINITY, f64::min),
    };
    let lo = if lo.is_finite() { lo } else { 0.0 };
    let hi = if hi.is_finite() { hi } else { 1.0 };
    let axis = Axis::new(scale, lo, hi);
    let row = BAR + GAP;
    let height = AXIS + rows.len() as f64 * row + 4.0;
    let mut s = String::new();
    open(&mut s, id, height, caption);
    axis.draw(&mut s, height);
    for (i, r) in rows.iter().enumerate() {
        let y = AXIS + GAP / 2.0 + i as f64 * row;
        let mid = y + BAR / 2.0;
        label(&mut s, mid + 4.0, &r.label);
        let (x0, x1, x2, x3, x4) = (
            axis.x(r.min),
            axis.x(r.q1),
            axis.x(r.median),
            axis.x(r.q3),
            axis.x(r.max),
        );
        let _ = write!(
            s,
            r#"<g class="box"><title>{}</title><line x1="{x0:.1}" y1="{mid:.1}" x2="{x4:.1}" y2="{mid:.1}"/><rect x="{x1:.1}" y="{y:.1}" width="{:.1}" height="{BAR}"/><line class="median" x1="{x2:.1}" y1="{y:.1}" x2="{x2:.1}" y2="{:.1}"/></g>"#,
            esc(&format!(
                "{}: min {}, q1 {}, median {}, q3 {}, max {}",
                r.label,
                short(r.min),
                short(r.q1),
                short(r.median),
                short(r.q3),
                short(r.max)
            )),
            (x3 - x1).max(1.0),
            y + BAR
        );
        if !r.note.is_empty() {
            let _ = write!(
                s,
                r#"<text class="note" x="{:.1}" y="{:.1}">{}</text>"#,
                x4 + 4.0,
                mid + 4.0,
                esc(&r.note)
            );
        }
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_steps_and_labels() {
        assert_eq!(nice_step(0.3), 0.5);
        assert_eq!(nice_step(3.0), 5.0);
        assert_eq!(nice_step(7.0), 10.0);
        assert_eq!(nice_step(20.0), 20.0);
        let a = Axis::new(Scale::Linear, 0.0, 91.0);
        assert_eq!((a.lo, a.hi), (0.0, 100.0));
        assert_eq!(a.ticks(), vec![0.0, 20.0, 40.0, 60.0, 80.0, 100.0]);
        // Scores: the axis starts near the smallest value, not at 0.
        let a = Axis::new(Scale::Linear, 0.62, 1.0);
        assert!((a.lo - 0.6).abs() < 1e-9 && (a.hi - 1.0).abs() < 1e-9);
        assert_eq!(short(1500.0), "1500");
        assert_eq!(short(15_000.0), "15k");
        assert_eq!(short(2_000_000.0), "2M");
        assert_eq!(short(0.25), "0.25");
        assert_eq!(short(0.0), "0");
    }

    #[test]
    fn log_axis_spans_whole_decades() {
        let a = Axis::new(Scale::Log, 37.0, 52_000.0);
        assert_eq!((a.lo, a.hi), (10.0, 100_000.0));
        assert_eq!(a.ticks(), vec![10.0, 100.0, 1000.0, 10_000.0, 100_000.0]);
        assert!((a.x(10.0) - LABEL).abs() < 1e-9);
        assert!((a.x(100_000.0) - (WIDTH - RIGHT)).abs() < 1e-9);
        assert!(a.x(1000.0) > a.x(100.0));
    }

    #[test]
    fn bar_lengths_follow_values() {
        let seg = |v: f64| Segment {
            value: v,
            class: "a",
            title: format!("v{v}"),
        };
        let rows = vec![
            Row {
                label: "one".into(),
                bars: vec![vec![seg(10.0)]],
                note: "10".into(),
            },
            Row {
                label: "two <&>".into(),
                bars: vec![vec![seg(5.0), seg(15.0)]],
                note: String::new(),
            },
        ];
        let svg = bars("c", "cap", &rows, Scale::Linear);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("two &lt;&amp;&gt;"));
        let widths: Vec<f64> = svg
            .split(r#"width=""#)
            .skip(2)
            .map(|w| w.split('"').next().unwrap().parse().unwrap())
            .collect();
        // Axis 0..20: 10 is half the plot, then 5 and 15 are a quarter and three quarters.
        let span = WIDTH - LABEL - RIGHT;
        assert_eq!(widths.len(), 3);
        assert!((widths[0] - span / 2.0).abs() < 0.1, "{widths:?}");
        assert!((widths[1] - span / 4.0).abs() < 0.1, "{widths:?}");
        assert!((widths[2] - span * 3.0 / 4.0).abs() < 0.1, "{widths:?}");
    }
}
