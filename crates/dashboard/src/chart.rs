//! Charts as server-side SVG: readable without JavaScript, no chart library. Bars for
//! shares (repostats' languages by bytes), lines for counts over time (mining's progress).

use std::fmt::Write;

/// Escapes text for SVG/XML.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Horizontal bars, largest first as given, labelled with `label` and `value_text`.
pub fn bars(title: &str, items: &[(String, f64, String)]) -> String {
    let (row, label_w, bar_w) = (20.0, 130.0, 320.0);
    let height = row * items.len().max(1) as f64 + 10.0;
    let max = items
        .iter()
        .map(|i| i.1)
        .fold(0.0_f64, f64::max)
        .max(f64::MIN_POSITIVE);
    let mut svg = format!(
        r#"<svg role="img" aria-label="{}" viewBox="0 0 {} {height}" width="100%" style="max-width:40rem">"#,
        escape(title),
        label_w + bar_w + 160.0
    );
    let _ = write!(svg, "<title>{}</title>", escape(title));
    for (i, (label, value, text)) in items.iter().enumerate() {
        let y = i as f64 * row + 5.0;
        let w = (value / max * bar_w).max(1.0);
        let _ = write!(
            svg,
            r##"<text x="{}" y="{}" text-anchor="end">{}</text><rect x="{}" y="{}" width="{w:.1}" height="{}" fill="#1f6feb"/><text x="{}" y="{}">{}</text>"##,
            label_w - 6.0,
            y + 13.0,
            escape(label),
            label_w,
            y + 2.0,
            row - 6.0,
            label_w + w + 6.0,
            y + 13.0,
            escape(text)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The most values of any series, and the largest value (at least 1, to scale by).
fn extent(series: &[(&str, &str, Vec<i64>)]) -> (usize, f64) {
    let n = series.iter().map(|s| s.2.len()).max().unwrap_or(0);
    let max = series.iter().flat_map(|s| s.2.iter().copied()).max();
    (n, max.unwrap_or(0).max(1) as f64)
}

/// Lines over time: `series` of (name, colour, values), one value per bucket; `labels` under
/// the first and last bucket.
pub fn lines(title: &str, series: &[(&str, &str, Vec<i64>)], first: &str, last: &str) -> String {
    let (w, h, pad) = (560.0, 160.0, 30.0);
    let (n, max) = extent(series);
    let mut svg = format!(
        r#"<svg role="img" aria-label="{}" viewBox="0 0 {w} {}" width="100%" style="max-width:40rem">"#,
        escape(title),
        h + 40.0
    );
    let _ = write!(svg, "<title>{}</title>", escape(title));
    let _ = write!(
        svg,
        r##"<line x1="{pad}" y1="{h}" x2="{w}" y2="{h}" stroke="#999"/><text x="{pad}" y="{}">{}</text><text x="{w}" y="{}" text-anchor="end">{}</text><text x="2" y="12">{max}</text>"##,
        h + 14.0,
        escape(first),
        h + 14.0,
        escape(last)
    );
    for (k, (name, colour, values)) in series.iter().enumerate() {
        let step = if n > 1 {
            (w - pad) / (n - 1) as f64
        } else {
            0.0
        };
        let points: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                format!(
                    "{:.1},{:.1}",
                    pad + i as f64 * step,
                    h - (*v as f64 / max) * (h - 10.0)
                )
            })
            .collect();
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/><rect x="{}" y="{}" width="10" height="10" fill="{colour}"/><text x="{}" y="{}">{}</text>"#,
            points.join(" "),
            pad + k as f64 * 130.0,
            h + 22.0,
            pad + k as f64 * 130.0 + 14.0,
            h + 31.0,
            escape(name)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// A small chart in a table cell: `series` of (name, colour, values) as lines scaled to
/// their own maximum, named in its title (its tooltip) with their totals.
pub fn spark(title: &str, series: &[(&str, &str, Vec<i64>)]) -> String {
    let (w, h) = (120.0, 24.0);
    let (n, max) = extent(series);
    let totals: Vec<String> = series
        .iter()
        .map(|(name, _, values)| format!("{} {name}", values.iter().sum::<i64>()))
        .collect();
    let label = format!("{title}: {}", totals.join(", "));
    let mut svg = format!(
        r#"<svg class="spark" role="img" aria-label="{}" viewBox="0 0 {w} {h}" width="{w}" height="{h}"><title>{}</title>"#,
        escape(&label),
        escape(&label)
    );
    let step = if n > 1 { w / (n - 1) as f64 } else { 0.0 };
    for (_, colour, values) in series {
        let points: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                format!(
                    "{:.1},{:.1}",
                    i as f64 * step,
                    h - 1.0 - (*v as f64 / max) * (h - 2.0)
                )
            })
            .collect();
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/>"#,
            points.join(" ")
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest_and_escape_labels() {
        let svg = bars(
            "by bytes",
            &[
                ("C<++>".into(), 10.0, "10".into()),
                ("Go".into(), 5.0, "5".into()),
            ],
        );
        assert!(svg.contains("C&lt;++&gt;"));
        assert!(svg.contains(r#"width="320.0""#) && svg.contains(r#"width="160.0""#));
        let svg = lines("t", &[("a", "#000", vec![0, 2, 4])], "then", "now");
        assert!(
            svg.contains("30.0,160.0") && svg.contains("560.0,10.0"),
            "{svg}"
        );
    }
}
