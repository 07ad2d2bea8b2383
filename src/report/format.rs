//! How the report writes values: HTML escaping, counts with thousands
//! separators, measured values, and the table cells that carry each value
//! in a `data-v` attribute.

use std::fmt::Write;

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// 1234567 → "1,234,567".
pub fn int(n: u64) -> String {
    let s = n.to_string();
    let mut o = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            o.push(',');
        }
        o.push(c);
    }
    o
}

/// A measured value, with as many decimals as its size needs.
pub fn num(v: f64) -> String {
    let a = v.abs();
    if !v.is_finite() {
        "–".into()
    } else if a >= 1000.0 {
        let r = v.round();
        let s = int(r.abs() as u64);
        if r < 0.0 {
            format!("-{s}")
        } else {
            s
        }
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// A share as a percentage with two decimals.
pub fn pct(v: f64) -> String {
    format!("{:.2}%", v * 100.0)
}

/// Bytes as megabytes.
pub fn mb(b: u64) -> String {
    format!("{:.2} MB", b as f64 / 1e6)
}

/// A table cell holding a count.
pub fn td_int(col: &str, n: u64) -> String {
    format!(
        r#"<td class="n" data-col="{col}" data-v="{n}">{}</td>"#,
        int(n)
    )
}

/// A table cell holding a measured value, shown by `show`.
pub fn td_f(col: &str, v: f64, show: impl Fn(f64) -> String) -> String {
    format!(
        r#"<td class="n" data-col="{col}" data-v="{v}">{}</td>"#,
        show(v)
    )
}

/// A table cell holding text.
pub fn td(col: &str, text: &str) -> String {
    format!(r#"<td data-col="{col}">{}</td>"#, esc(text))
}

/// A table head with these column titles.
pub fn thead(cols: &[&str]) -> String {
    let mut s = String::from("<thead><tr>");
    for c in cols {
        let _ = write!(s, "<th>{}</th>", esc(c));
    }
    s.push_str("</tr></thead>");
    s
}
