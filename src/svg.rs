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

/// How bar lengths compare.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Scale {
    /// One scale for every bar (the series share a unit).
    Shared,
    /// Each series its own scale (the series have different units).
    PerSeries,
}

/// Width of one character of the 11-pixel labels, generously (sans-serif averages less).
const CHAR_PX: usize = 7;

/// The chart: `title` on top, `groups` from top to bottom, the `series` labels as the legend.
/// Bar lengths are linear in the value, the longest (of all bars, or of its series with
/// [`Scale::PerSeries`]) 480 pixels; the bars start right of the longest group label.
pub fn grouped_bars(title: &str, groups: &[Group], series: &[String], scale: Scale) -> String {
    let bar = 14;
    let group = bar * series.len().max(1) + 10;
    let height = 50 + group * groups.len() + 18 * series.len();
    let longest = |j: Option<usize>| {
        let max = groups
            .iter()
            .flat_map(|g| g.bars.iter().enumerate().filter(|(i, _)| j.is_none_or(|j| *i == j)))
            .filter_map(|(_, b)| b.as_ref().map(|(v, _)| *v))
            .filter(|v| v.is_finite())
            .fold(0.0f64, f64::max);
        if max > 0.0 { max } else { 1.0 }
    };
    let label_chars = groups.iter().map(|g| g.label.chars().count()).max().unwrap_or(0);
    let x = 20 + label_chars * CHAR_PX;
    let note_chars = groups
        .iter()
        .flat_map(|g| g.bars.iter().flatten().map(|(_, n)| n.chars().count()))
        .max()
        .unwrap_or(0);
    let width = x + 490 + note_chars * CHAR_PX;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
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
            let max = longest((scale == Scale::PerSeries).then_some(j));
            let w = (v / max * 480.0).max(1.0) as usize;
            let by = y + j * bar;
            let _ = writeln!(
                s,
                "<rect x=\"{x}\" y=\"{by}\" width=\"{w}\" height=\"{}\" fill=\"{}\"/>\
                 <text x=\"{}\" y=\"{}\">{}</text>",
                bar - 2,
                COLORS[j % COLORS.len()],
                x + 5 + w,
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
        let s = grouped_bars("t & u", &groups, &["x".into(), "y".into()], Scale::Shared);
        assert!(s.starts_with("<svg") && s.ends_with("</svg>\n"), "{s}");
        assert!(s.contains(">t &amp; u</text>") && s.contains(">a&lt;b</text>"), "{s}");
        assert!(s.contains("width=\"480\"") && s.contains("width=\"240\""), "{s}");
        assert_eq!(s.matches("<rect").count(), 3 + 2, "{s}");
    }

    #[test]
    fn per_series_bars_scale_to_their_own_longest_and_labels_fit() {
        let label = "a label of thirty-two characters";
        let groups = [
            Group { label: label.into(), bars: vec![Some((9000.0, "n".into())), None] },
            Group { label: "b".into(), bars: vec![Some((4500.0, "n".into())), None] },
            Group { label: "c".into(), bars: vec![None, Some((40.0, "m".into()))] },
        ];
        let series = ["x".into(), "y".into()];
        let s = grouped_bars("t", &groups, &series, Scale::PerSeries);
        // The read bar (40 of 40) is as long as the packet bar (9000 of 9000).
        assert_eq!(s.matches("width=\"480\"").count(), 2, "{s}");
        assert!(s.contains("width=\"240\""), "{s}");
        // Bars start right of the longest label (32 characters).
        let x = 20 + 32 * CHAR_PX;
        assert!(s.contains(&format!("<rect x=\"{x}\"")), "{s}");
        let shared = grouped_bars("t", &groups, &series, Scale::Shared);
        assert!(shared.contains("width=\"2\""), "{shared}");
    }
}
