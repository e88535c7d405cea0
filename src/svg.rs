//! One grouped horizontal bar chart as SVG, for the benchmarks that plot (`bench linux`,
//! `bench io`): a group of bars per row, one bar per series (colour), each annotated, a
//! legend of the series under the groups.

use std::fmt::Write as _;

/// One group of bars: its label and, per series, the bar's value and annotation (`None`: no
/// bar for that series).
pub struct Group {
    pub label: String,
    pub bars: Vec<Option<(f64, String)>>,
}

const COLORS: [&str; 5] = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1"];

/// The chart: `title` on top, `groups` from top to bottom, the `series` labels as the legend.
/// Bar lengths are linear in the value, the longest 480 pixels.
pub fn grouped_bars(title: &str, groups: &[Group], series: &[String]) -> String {
    let bar = 14;
    let group = bar * series.len().max(1) + 10;
    let height = 50 + group * groups.len() + 18 * series.len();
    let max = groups
        .iter()
        .flat_map(|g| g.bars.iter().flatten().map(|(v, _)| *v))
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let max = if max > 0.0 { max } else { 1.0 };
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"760\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"11\">\n<text x=\"10\" y=\"18\" font-size=\"14\">\
         {}</text>\n",
        escape(title)
    );
    for (i, g) in groups.iter().enumerate() {
        let y = 36 + i * group;
        let _ = writeln!(s, "<text x=\"10\" y=\"{}\">{}</text>", y + bar, escape(&g.label));
        for (j, b) in g.bars.iter().enumerate() {
            let Some((v, note)) = b else { continue };
            let v = if v.is_finite() { v.max(0.0) } else { 0.0 };
            let w = (v / max * 480.0).max(1.0) as usize;
            let by = y + j * bar;
            let _ = writeln!(
                s,
                "<rect x=\"110\" y=\"{by}\" width=\"{w}\" height=\"{}\" fill=\"{}\"/>\
                 <text x=\"{}\" y=\"{}\">{}</text>",
                bar - 2,
                COLORS[j % COLORS.len()],
                115 + w,
                by + bar - 4,
                escape(note)
            );
        }
    }
    let legend = 40 + group * groups.len();
    for (j, label) in series.iter().enumerate() {
        let y = legend + j * 18;
        let _ = writeln!(
            s,
            "<rect x=\"10\" y=\"{y}\" width=\"12\" height=\"12\" fill=\"{}\"/>\
             <text x=\"28\" y=\"{}\">{}</text>",
            COLORS[j % COLORS.len()],
            y + 10,
            escape(label)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Text as SVG character data.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_longest_and_text_is_escaped() {
        let groups = [
            Group { label: "a<b".into(), bars: vec![Some((2.0, "two".into())), None] },
            Group {
                label: "c".into(),
                bars: vec![Some((1.0, "one".into())), Some((0.0, "".into()))],
            },
        ];
        let s = grouped_bars("t & u", &groups, &["x".into(), "y".into()]);
        assert!(s.starts_with("<svg") && s.ends_with("</svg>\n"), "{s}");
        assert!(s.contains(">t &amp; u</text>") && s.contains(">a&lt;b</text>"), "{s}");
        assert!(s.contains("width=\"480\"") && s.contains("width=\"240\""), "{s}");
        assert_eq!(s.matches("<rect").count(), 3 + 2, "{s}");
    }
}
